"""The routing decision: caller number in, target (or no change) out, within a time budget."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core import metrics
from core.masking import mask_phone, mask_phones_in
from matching import CallerLookup, Candidate, LookupResult, looks_like_e164, to_e164

from .availability import Availability, AvailabilitySource
from .rules import CallContext, Rule, evaluate

__all__ = ["DEFAULT_MAX_LOOKUPS", "Decision", "InFlightLookups", "LookupCache", "Router"]

DEFAULT_MAX_LOOKUPS = 64

log = logging.getLogger("routing")


@dataclass
class Decision:
    """What the webhook answers, and why."""

    target: str | None
    reason: str
    caller: str | None = None  # E.164
    rule: str | None = None
    candidates: tuple[Candidate, ...] = ()
    per_record: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False
    used_index: bool | None = None
    dataverse_requests: int = 0
    elapsed_ms: float = 0.0
    fail_target: str | None = None
    shared: bool = False  # answered by another caller's lookup of the same number, in flight
    fallback: str | None = None  # 204 because the lookup "failed" or ran out of "budget" (or capacity)

    @property
    def outcome(self) -> str:
        """``target``, ``no_match`` or ``fallback_failure`` / ``fallback_budget`` (the bridge.routing meters)."""
        return "target" if self.target else f"fallback_{self.fallback}" if self.fallback else "no_match"

    @property
    def status(self) -> int:
        return 200 if self.target else 204

    def answer(self) -> dict[str, str] | None:
        if not self.target:
            return None
        answer = {"InitialTarget": self.target}
        if self.fail_target:
            answer["FailTarget"] = self.fail_target
        return answer

    def explain(self) -> dict[str, Any]:
        """The full reasoning, for authorised callers (``?explain=true``) and the CLI."""
        return {
            "status": self.status,
            "answer": self.answer(),
            "reason": self.reason,
            "caller": self.caller,
            "rule": self.rule,
            "matches": [
                {"table": c.table, "id": c.id, "name": c.name, **r}
                for c, r in zip(self.candidates, self.per_record, strict=False)
            ],
            "cached": self.cached,
            "shared": self.shared,
            "used_index": self.used_index,
            "dataverse_requests": self.dataverse_requests,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }

    def log_line(self, pool: str) -> str:
        """One structured line: numbers masked, record ids (not names) only."""
        return json.dumps(
            {
                "event": "routing_decision",
                "status": self.status,
                "outcome": self.outcome,
                "caller": mask_phone(self.caller) if self.caller else None,
                "pool": mask_phone(pool),
                "target": mask_phone(self.target) if self.target else None,
                "fail_target": mask_phone(self.fail_target) if self.fail_target else None,
                "rule": self.rule,
                "reason": mask_phones_in(self.reason),
                "matches": [f"{c.table}:{c.id}" for c in self.candidates],
                "cached": self.cached,
                "shared": self.shared,
                "used_index": self.used_index,
                "dataverse_requests": self.dataverse_requests,
                "elapsed_ms": round(self.elapsed_ms, 1),
            }
        )


class LookupCache:
    """Per-instance cache of lookups by caller E.164 (positive and negative), LRU-bounded."""

    def __init__(self, ttl_seconds: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, LookupResult]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> LookupResult | None:
        if self._ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] < self._clock():
                self._entries.pop(key, None)
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: LookupResult) -> None:
        if self._ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + self._ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class InFlightLookups:
    """Caller lookups on worker threads: at most ``limit`` at once, and callers of the same number
    share the lookup already in flight. Beyond the limit a caller is refused at once (``None``)
    instead of queueing, so memory stays bounded whatever arrives."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="routing-lookup")
        self._in_flight: dict[str, Future[LookupResult]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def start(self, key: str, work: Callable[[], LookupResult]) -> tuple[Future[LookupResult] | None, bool]:
        """(the lookup's future, whether it was already in flight); (None, False) when full."""
        with self._lock:
            running = self._in_flight.get(key)
            if running is not None:
                return running, True
            if len(self._in_flight) >= self._limit:
                return None, False
            future = self._pool.submit(work)
            self._in_flight[key] = future
        future.add_done_callback(lambda done: self._forget(key, done))
        return future, False

    def _forget(self, key: str, future: Future[LookupResult]) -> None:
        with self._lock:
            if self._in_flight.get(key) is future:
                del self._in_flight[key]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Router:
    """Decides where a call goes. Thread-safe; one per Functions instance."""

    def __init__(
        self,
        lookup: CallerLookup,
        *,
        rules: Sequence[Rule],
        region: str,
        owner_column: str,
        budget_seconds: float = 1.5,
        cache_ttl_seconds: float = 60.0,
        max_lookups: int = DEFAULT_MAX_LOOKUPS,
        availability: AvailabilitySource | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._setup: tuple[tuple[Rule, ...], CallerLookup] = (tuple(rules), lookup)
        self._region = region
        self._owner_column = owner_column
        self._budget = budget_seconds
        self._availability = availability
        self._clock = clock
        self.cache = LookupCache(cache_ttl_seconds)
        self.lookups = InFlightLookups(max_lookups)

    def close(self) -> None:
        self.lookups.close()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._setup[0]

    @property
    def lookup(self) -> CallerLookup:
        return self._setup[1]

    @property
    def has_availability(self) -> bool:
        return self._availability is not None

    def reconfigure(
        self, rules: Sequence[Rule], lookup: CallerLookup, *, availability: AvailabilitySource | None = None
    ) -> None:
        """New rules (and the lookup fetching what they need) for the calls that start from now on;
        calls under way finish with what they started with. Cached lookups are dropped (they were
        fetched for the old rules)."""
        if availability is not None:
            self._availability = availability
        self._setup = (tuple(rules), lookup)
        self.cache.clear()

    def route(self, anum: str, bnum: str, *, queue_id: str | None = None) -> Decision:
        started = time.monotonic()
        decision = self._decide(anum, bnum, queue_id, started)
        decision.elapsed_ms = (time.monotonic() - started) * 1000
        return decision

    def _lookup_within_budget(self, caller: str, deadline: float, lookup: CallerLookup) -> tuple[LookupResult, bool]:
        # The lookup runs in a worker so the answer leaves on time whatever happens below
        # (token refresh, DNS, a slow Dataverse); a late result still fills the cache.
        def work() -> LookupResult:
            result = lookup.find(caller, deadline=deadline)
            if self._setup[1] is lookup:  # not fetched for rules replaced meanwhile
                self.cache.put(caller, result)
            return result

        future, shared = self.lookups.start(caller, work)
        if future is None:
            raise _Overloaded
        return future.result(timeout=max(0.0, deadline - time.monotonic())), shared

    def _decide(self, anum: str, bnum: str, queue_id: str | None, started: float) -> Decision:
        caller = to_e164(anum, self._region)
        if caller is None:
            return Decision(None, "caller number is not a recognisable phone number")
        pool = to_e164(bnum, self._region) or bnum
        deadline = started + self._budget
        rules, lookup = self._setup  # one configuration for the whole call
        result = self.cache.get(caller)
        cached, shared = result is not None, False
        if result is None:
            try:
                result, shared = self._lookup_within_budget(caller, deadline, lookup)
            except FutureTimeout:
                why = f"Dataverse did not answer within the {self._budget:g}s budget"
                return Decision(None, why, caller, fallback="budget")
            except _Overloaded:
                why = f"over {len(self.lookups)} caller lookups already running: not routed"
                return Decision(None, why, caller, fallback="budget")
            except Exception as error:  # any failure below means: let the call go on normally
                why = f"lookup failed: {type(error).__name__}: {_short(error)}"
                return Decision(None, why, caller, fallback="failure")
        context = CallContext(
            pool=pool,
            queue_id=queue_id,
            now=self._clock(),
            owner_column=self._owner_column,
            region=self._region,
            availability=self._availability_check(deadline),
        )
        decision = self._apply_rules(caller, result, context, rules)
        decision.cached, decision.shared = cached, shared
        decision.used_index = result.used_index
        decision.dataverse_requests = 0 if cached or shared else result.requests
        if decision.target and (decision.target == pool or decision.target == bnum):
            decision.reason = f"rule {decision.rule} chose the pool the call is already in (bnum): not routed"
            decision.target = decision.fail_target = None
        elif decision.target and not looks_like_e164(decision.target):
            decision.reason = "the chosen target is not an E.164 number: not routed"
            decision.target = decision.fail_target = None
        elif decision.fail_target and decision.fail_target in (pool, bnum):
            decision.reason += "; FailTarget left out: it is the pool the call is in (bnum)"
            decision.fail_target = None
        return decision

    def _availability_check(self, deadline: float) -> Callable[[Mapping[str, Any]], Availability]:
        source, seen = self._availability, {}

        def check(user: Mapping[str, Any]) -> Availability:
            user_id = str(user.get("systemuserid") or "").lower()
            if source is None or not user_id:
                return Availability(None, "no availability source" if source is None else "the user has no id")
            if user_id not in seen:  # one check per user and call, however many records share them
                enreach_id = user.get("enr_enreachuserid")
                seen[user_id] = source.is_available(user_id, str(enreach_id) if enreach_id else None, deadline=deadline)
            return seen[user_id]

        return check

    def _apply_rules(
        self, caller: str, result: LookupResult, context: CallContext, rules: tuple[Rule, ...]
    ) -> Decision:
        candidates = result.candidates
        if not candidates:
            return Decision(None, "caller not found in Dataverse", caller)
        per_record = []
        for candidate in candidates:
            outcome = evaluate(rules, candidate, context)
            per_record.append(
                {
                    "target": outcome.target,
                    "rule": outcome.rule,
                    "fail_target": outcome.fail_target,
                    "rules": [step.as_dict() for step in outcome.steps],
                }
            )
        targets = {r["target"] for r in per_record}
        if len(targets) != 1 or None in targets:
            reason = (
                "no rule routes this caller"
                if targets == {None}
                else f"{len(candidates)} records match and do not lead to one target (ambiguous)"
            )
            return Decision(None, reason, caller, candidates=candidates, per_record=per_record)
        fired = {r["rule"] for r in per_record}
        fail_targets = {r["fail_target"] for r in per_record}
        return Decision(
            str(targets.pop()),
            "routed",
            caller,
            rule=",".join(sorted(str(r) for r in fired)),
            candidates=candidates,
            per_record=per_record,
            fail_target=str(fail_targets.pop()) if len(fail_targets) == 1 and None not in fail_targets else None,
        )


class _Overloaded(Exception):
    pass


def _short(error: BaseException) -> str:
    text = str(error)
    return text if len(text) <= 200 else text[:197] + "..."


def log_decision(decision: Decision, pool: str) -> None:
    log.info("%s", decision.log_line(pool))
    metrics.routing_decision(decision.outcome, decision.elapsed_ms)
