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
from dataclasses import dataclass, replace

from core.schema import CALL_SYNC
from matching import Candidate

__all__ = ["PARENT_COLUMN", "CustomerChoice", "Regarding", "choose_customer", "regarding_for"]

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


@dataclass(frozen=True)
class Regarding:
    """What a call is regarding, and the sentence saying why (written in the activity)."""

    table: str  # logical name: contact, account, lead, incident, opportunity
    entity_set: str
    id: str | None  # None with ``key``: bound by alternate key (a lead created for the number)
    reason: str
    key: str | None = None  # e.g. "leads(enr_callernumber='+358...')"

    @property
    def bind(self) -> str:
        return f"/{self.key}" if self.key else f"/{self.entity_set}({self.id})"


_SETS = {"contact": "contacts", "account": "accounts", "lead": "leads"}


def _named(record: Candidate) -> str:
    return f"{record.table} {record.name or record.id}"


def regarding_for(choice: CustomerChoice, *, case: bool, opportunity: bool) -> Regarding | None:
    """The call's regarding record: the customer's only open case (``CALL_SYNC_REGARDING_CASE``),
    else its only open opportunity (``CALL_SYNC_REGARDING_OPPORTUNITY``), else the customer."""
    record = choice.regarding
    if record is None:
        return None
    customer = Regarding(record.table, _SETS[record.table], record.id, "")
    for on, table, word, plural in (
        (case, "incident", "case", "cases"),
        (opportunity, "opportunity", "opportunity", "opportunities"),
    ):
        found = [r for r in record.open_records if r.table == table] if on else []
        if len(found) == 1:
            only = found[0]
            reason = f"Regarding {word} {only.name or only.id}: the only open {word} of {_named(record)}."
            return Regarding(table, only.entity_set, only.id, reason)
        if len(found) > 1:
            return replace(
                customer, reason=f"Regarding {_named(record)}: {len(found)} open {plural}, so none was chosen."
            )
    if case or opportunity:
        looked = " or ".join(w for w, on in (("case", case), ("opportunity", opportunity)) if on)
        return replace(customer, reason=f"Regarding {_named(record)}: no open {looked}.")
    return replace(customer, reason=f"Regarding {_named(record)}.")
