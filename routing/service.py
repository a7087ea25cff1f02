"""The routing decision: caller number in, target (or no change) out, within a time budget."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from core.masking import mask_phone, mask_phones_in

from .lookup import CallerLookup, LookupResult
from .numbers import looks_like_e164, to_e164
from .rules import Candidate, Rule, evaluate

__all__ = ["Decision", "LookupCache", "Router"]

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

    @property
    def status(self) -> int:
        return 200 if self.target else 204

    def answer(self) -> dict[str, str] | None:
        return {"InitialTarget": self.target} if self.target else None

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
                "caller": mask_phone(self.caller) if self.caller else None,
                "pool": mask_phone(pool),
                "target": mask_phone(self.target) if self.target else None,
                "rule": self.rule,
                "reason": mask_phones_in(self.reason),
                "matches": [f"{c.table}:{c.id}" for c in self.candidates],
                "cached": self.cached,
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
        workers: int = 8,
    ) -> None:
        self._lookup = lookup
        self._rules = tuple(rules)
        self._region = region
        self._owner_column = owner_column
        self._budget = budget_seconds
        self.cache = LookupCache(cache_ttl_seconds)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="routing-lookup")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def route(self, anum: str, bnum: str) -> Decision:
        started = time.monotonic()
        decision = self._decide(anum, bnum, started)
        decision.elapsed_ms = (time.monotonic() - started) * 1000
        return decision

    def _lookup_within_budget(self, caller: str, started: float) -> LookupResult:
        # The lookup runs in a worker so the answer leaves on time whatever happens below
        # (token refresh, DNS, a slow Dataverse); a late result still fills the cache.
        deadline = started + self._budget

        def work() -> LookupResult:
            result = self._lookup.find(caller, deadline=deadline)
            self.cache.put(caller, result)
            return result

        future = self._pool.submit(work)
        return future.result(timeout=max(0.0, deadline - time.monotonic()))

    def _decide(self, anum: str, bnum: str, started: float) -> Decision:
        caller = to_e164(anum, self._region)
        if caller is None:
            return Decision(None, "caller number is not a recognisable phone number")
        pool = to_e164(bnum, self._region) or bnum
        result = self.cache.get(caller)
        cached = result is not None
        if result is None:
            try:
                result = self._lookup_within_budget(caller, started)
            except FutureTimeout:
                return Decision(None, f"Dataverse did not answer within the {self._budget:g}s budget", caller)
            except Exception as error:  # any failure below means: let the call go on normally
                return Decision(None, f"lookup failed: {type(error).__name__}: {_short(error)}", caller)
        decision = self._apply_rules(caller, result)
        decision.cached = cached
        decision.used_index = result.used_index
        decision.dataverse_requests = 0 if cached else result.requests
        if decision.target and (decision.target == pool or decision.target == bnum):
            decision.reason = f"rule {decision.rule} chose the pool the call is already in (bnum): not routed"
            decision.target = None
        elif decision.target and not looks_like_e164(decision.target):
            decision.reason = "the chosen target is not an E.164 number: not routed"
            decision.target = None
        return decision

    def _apply_rules(self, caller: str, result: LookupResult) -> Decision:
        candidates = result.candidates
        if not candidates:
            return Decision(None, "caller not found in Dataverse", caller)
        per_record = []
        for candidate in candidates:
            target, rule = evaluate(self._rules, candidate, owner_column=self._owner_column, region=self._region)
            per_record.append({"target": target, "rule": rule})
        targets = {r["target"] for r in per_record}
        if len(targets) != 1 or None in targets:
            reason = (
                "no rule routes this caller"
                if targets == {None}
                else f"{len(candidates)} records match and do not lead to one target (ambiguous)"
            )
            return Decision(None, reason, caller, candidates=candidates, per_record=per_record)
        rules = {r["rule"] for r in per_record}
        return Decision(
            targets.pop(),
            "routed",
            caller,
            rule=",".join(sorted(str(r) for r in rules)),
            candidates=candidates,
            per_record=per_record,
        )


def _short(error: BaseException) -> str:
    text = str(error)
    return text if len(text) <= 200 else text[:197] + "..."


def log_decision(decision: Decision, pool: str) -> None:
    log.info("%s", decision.log_line(pool))
