"""Which matched record a call is about, when the other party's number matched several.

1. One record: it is the customer (regarding and party).
2. A contact whose parent account matched too (the company's switchboard number is on both):
   the contact wins.
3. Still several: the one owned by the call's owner wins.
4. Still several: no regarding record (never a guess); every matched record becomes a party,
   so the call shows on each timeline, and the call gets a review note naming them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.schema import CALL_SYNC
from matching import Candidate

__all__ = ["PARENT_COLUMN", "CustomerChoice", "choose_customer"]

PARENT_COLUMN = "_parentcustomerid_value"  # read for contacts (call_sync.runtime.lookup_for)


@dataclass(frozen=True)
class CustomerChoice:
    regarding: Candidate | None
    parties: tuple[Candidate, ...]
    review: str | None = None  # set when the number stays ambiguous


NOBODY = CustomerChoice(None, ())


def _lower(value: object) -> str:
    return str(value or "").lower()


def choose_customer(candidates: Sequence[Candidate], owner: str) -> CustomerChoice:
    if not candidates:
        return NOBODY
    if len(candidates) == 1:
        return CustomerChoice(candidates[0], (candidates[0],))
    remaining = list(candidates)
    accounts = {c.id for c in candidates if c.table == "account"}
    of_matched_account = [
        c for c in remaining if c.table == "contact" and _lower(c.fields.get(PARENT_COLUMN)) in accounts
    ]
    if of_matched_account:
        remaining = of_matched_account
    owned = [c for c in remaining if _lower(c.fields.get("_ownerid_value")) == owner.lower()]
    if owned:
        remaining = owned
    if len(remaining) == 1:
        return CustomerChoice(remaining[0], (remaining[0],))
    names = ", ".join(f"{c.table} {c.name or c.id}" for c in candidates)
    note = f"Several records match this number ({names}). Set Regarding to the right one, then clear this field."
    return CustomerChoice(None, tuple(candidates), note[: CALL_SYNC.review_length])
