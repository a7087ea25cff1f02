"""What Dataverse already holds for a page of calls, in one ``$batch`` round trip:

* the phonecalls that already carry one of the page's call keys (already synced; for a call
  reclassified Private, the record to remove), and
* agent-made phonecalls that may be the same call (``CALL_START_MARGIN_SECONDS``, the product
  guide's ``CallStartMargin``): no Enreach call id, owned by one of the calls' owners, started
  (actual, else scheduled) within the margin of the page's calls. ``match_adoptions`` pairs
  them with calls: same owner, same E.164 number, start within the margin, closest first; a
  call adopts at most one activity and an activity is adopted by at most one call.

The GETs travel inside a ``$batch`` because a page of call keys can exceed the 32 KB URL limit
of a plain GET (64 KB inside a batch).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.schema import CALL_SYNC, FOLLOW_UPS
from dataverse import BatchRequest, DataverseClient, query_path
from dataverse import filters as f
from enreach import EnreachCall, parse_time
from matching import to_e164

__all__ = ["PageState", "match_adoptions", "read_page_state"]

EXISTING_COLUMNS = ["activityid", CALL_SYNC.call_id_column, "subject", "statecode", "_ownerid_value"]
CANDIDATE_COLUMNS = [
    "activityid",
    "phonenumber",
    "actualstart",
    "scheduledstart",
    "_ownerid_value",
    "statecode",
    "description",
]


@dataclass(frozen=True)
class PageState:
    existing: dict[str, dict[str, Any]]  # call key (lower-cased) -> phonecall
    candidates: list[dict[str, Any]]  # agent-made phonecalls that may be adopted
    follow_ups: dict[str, dict[str, Any]] = field(default_factory=dict)  # E.164 -> open follow-up (task)


@dataclass(frozen=True)
class Planned:
    """A call to create (or adopt for), with its owner and the other party's E.164 number."""

    key: str
    call: EnreachCall
    owner: str
    number: str | None


def read_page_state(
    client: DataverseClient,
    keys: Sequence[str],
    to_create: Sequence[Planned],
    margin: timedelta,
    *,
    follow_ups: Sequence[str] = (),
) -> PageState:
    """``follow_ups``: E.164 numbers whose open follow-ups to read too (``followups.follow_up_query``),
    in the same ``$batch``."""
    requests = [
        BatchRequest(
            "GET", query_path("phonecalls", select=EXISTING_COLUMNS, filter=f.in_(CALL_SYNC.call_id_column, keys))
        )
    ]
    wanted = [p for p in to_create if p.number]
    if margin > timedelta(0) and wanted:
        low = min(p.call.start for p in wanted) - margin
        high = max(p.call.start for p in wanted) + margin
        condition = f.and_(
            f.eq(CALL_SYNC.call_id_column, None),
            f.ne("statecode", 2),  # a cancelled activity is not the call
            f.in_("_ownerid_value", sorted({uuid.UUID(p.owner) for p in wanted}, key=str)),
            f.or_(
                f.and_(f.ge("actualstart", low), f.le("actualstart", high)),
                f.and_(f.eq("actualstart", None), f.ge("scheduledstart", low), f.le("scheduledstart", high)),
            ),
        )
        requests.append(BatchRequest("GET", query_path("phonecalls", select=CANDIDATE_COLUMNS, filter=condition)))
    adopting = len(requests) > 1
    if follow_ups:
        from .followups import follow_up_query

        requests.append(follow_up_query(follow_ups))
    answers = client.batch(requests, continue_on_error=True, idempotent=True)
    if len(answers) < len(requests):
        raise RuntimeError("Dataverse left a query of the page unanswered")
    results: list[list[dict[str, Any]]] = []
    for answer in answers:
        answer.raise_for_status()
        rows = list(answer.body.get("value", []))
        link = answer.body.get("@odata.nextLink")
        while link:
            page = client.get_page(link)
            rows += page.records
            link = page.next_link
        results.append(rows)
    existing = {str(r.get(CALL_SYNC.call_id_column) or "").lower(): r for r in results[0]}
    open_follow_ups = (
        {str(r.get(FOLLOW_UPS.follow_up_key_column)): r for r in results[-1] if r.get(FOLLOW_UPS.follow_up_key_column)}
        if follow_ups
        else {}
    )
    return PageState(existing, results[1] if adopting else [], open_follow_ups)


def _start(row: Mapping[str, Any]) -> datetime | None:
    text = row.get("actualstart") or row.get("scheduledstart")
    try:
        return parse_time(str(text)) if text else None
    except ValueError:
        return None


def match_adoptions(
    planned: Sequence[Planned], candidates: Sequence[Mapping[str, Any]], margin: timedelta, region: str
) -> dict[str, Mapping[str, Any]]:
    """Call key -> the phonecall it adopts. Closest pairs first, each side used once."""
    pairs: list[tuple[float, str, str, int]] = []
    for index, row in enumerate(candidates):
        start = _start(row)
        number = to_e164(row.get("phonenumber"), region)
        owner = str(row.get("_ownerid_value") or "").lower()
        if start is None or number is None:
            continue
        for item in planned:
            if item.number != number or item.owner.lower() != owner:
                continue
            distance = abs((start - item.call.start).total_seconds())
            if distance <= margin.total_seconds():
                pairs.append((distance, item.key, str(row["activityid"]), index))
    adopted: dict[str, Mapping[str, Any]] = {}
    taken: set[str] = set()
    for _, key, activity, index in sorted(pairs):
        if key in adopted or activity in taken:
            continue
        adopted[key] = candidates[index]
        taken.add(activity)
    return adopted
