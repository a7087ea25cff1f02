"""Dataverse's pace and service protection limits, for the Dataverse emulator (all off by default).

* **Server time**: each operation costs ``op_ms`` of server time; the operations of one
  ``$batch`` run one after another (a 100-operation batch takes 100 x ``op_ms``), separate
  requests run in parallel up to ``workers`` at once (more wait for a free worker).
* **``x-ms-dop-hint``**: the recommended degree of parallelism, sent on every answer when set.
* **Service protection limits**, per user (the token's client), in a sliding window of
  ``window_seconds`` (documented defaults: 6,000 requests and 1,200,000 ms of combined
  execution time per 300 s, 52 concurrent requests). Past a limit the answer is 429 with
  Dataverse's code and message and ``Retry-After`` in seconds: for the window limits the time
  until enough of the window has slid by, for concurrency ``concurrent_retry_after`` seconds.
  As on Dataverse, a ``$batch`` counts as one request, its operations' time as execution time,
  and the window limits apply to the requests after the one that went over.

Source: learn.microsoft.com/power-apps/developer/data-platform/api-limits (codes, messages,
limits) and .../send-parallel-requests (``x-ms-dop-hint``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["DOCUMENTED_LIMITS", "ServerLimits", "ServiceProtection", "Throttle"]

REQUESTS_CODE = "0x80072322"
EXECUTION_TIME_CODE = "0x80072321"
CONCURRENCY_CODE = "0x80072326"


@dataclass(frozen=True)
class ServerLimits:
    """How the emulated server paces work; every field 0/None = off (the emulator's default)."""

    op_ms: float = 0.0  # server time per operation (a request outside $batch is one operation)
    workers: int = 0  # requests executed at once; 0 = no limit
    dop_hint: int | None = None  # x-ms-dop-hint on every answer
    max_requests: int = 0  # per window and user; Dataverse: 6000
    max_execution_ms: float = 0.0  # per window and user; Dataverse: 1,200,000
    max_concurrent: int = 0  # per user; Dataverse: 52
    window_seconds: float = 300.0
    concurrent_retry_after: float = 1.0

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> ServerLimits:
        names = {f.name for f in fields(cls)}
        unknown = set(spec) - names
        if unknown:
            raise ValueError(f"unknown limit settings {sorted(unknown)}; known: {sorted(names)}")
        return cls(**spec)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


DOCUMENTED_LIMITS = ServerLimits(max_requests=6000, max_execution_ms=1_200_000, max_concurrent=52)


@dataclass(frozen=True)
class Throttle:
    code: str
    message: str
    retry_after: int  # whole seconds, as Dataverse sends


class _UserState:
    def __init__(self) -> None:
        self.in_flight = 0
        self.arrivals: deque[float] = deque()  # request times in the window
        self.executions: deque[tuple[float, float]] = deque()  # (finished at, ms) in the window
        self.execution_ms = 0.0


class ServiceProtection:
    """Admission, server time and limit bookkeeping; thread-safe."""

    def __init__(self, limits: ServerLimits | None = None, *, clock: Any = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._users: dict[str, _UserState] = {}
        self.throttled: dict[str, int] = {}  # code -> 429s answered
        self.running = 0  # requests spending server time right now
        self.peak_running = 0  # the most at once since configure()
        self._limits = limits or ServerLimits()
        self._workers: threading.BoundedSemaphore | None = None
        self.configure(self._limits)

    @property
    def limits(self) -> ServerLimits:
        return self._limits

    def configure(self, limits: ServerLimits) -> None:
        with self._lock:
            self._limits = limits
            self._workers = threading.BoundedSemaphore(limits.workers) if limits.workers > 0 else None
            self._users.clear()
            self.throttled.clear()
            self.peak_running = 0

    def _prune(self, state: _UserState, now: float) -> None:
        horizon = now - self._limits.window_seconds
        while state.arrivals and state.arrivals[0] <= horizon:
            state.arrivals.popleft()
        while state.executions and state.executions[0][0] <= horizon:
            state.execution_ms -= state.executions.popleft()[1]

    def admit(self, user: str) -> Throttle | None:
        """Count a request in, or say why it is refused (then it is not counted)."""
        limits = self._limits
        with self._lock:
            now = self._clock()
            state = self._users.setdefault(user, _UserState())
            self._prune(state, now)
            throttle: Throttle | None = None
            window = f"{limits.window_seconds:g}"
            if limits.max_concurrent and state.in_flight >= limits.max_concurrent:
                throttle = Throttle(
                    CONCURRENCY_CODE,
                    f"Number of concurrent requests exceeded the limit of {limits.max_concurrent}.",
                    max(1, math.ceil(limits.concurrent_retry_after)),
                )
            elif limits.max_requests and len(state.arrivals) >= limits.max_requests:
                # room again once the request that filled the window has slid out of it
                oldest = state.arrivals[len(state.arrivals) - limits.max_requests]
                throttle = Throttle(
                    REQUESTS_CODE,
                    f"Number of requests exceeded the limit of {limits.max_requests} over time window of "
                    f"{window} seconds.",
                    max(1, math.ceil(oldest + limits.window_seconds - now)),
                )
            elif limits.max_execution_ms and state.execution_ms >= limits.max_execution_ms:
                excess, wait = state.execution_ms - limits.max_execution_ms, 0.0
                for finished, spent in state.executions:
                    excess -= spent
                    wait = finished + limits.window_seconds - now
                    if excess < 0:
                        break
                throttle = Throttle(
                    EXECUTION_TIME_CODE,
                    f"Combined execution time of incoming requests exceeded limit of {limits.max_execution_ms:,.0f} "
                    f"milliseconds over time window of {window} seconds. Decrease number of concurrent requests "
                    "or reduce the duration of requests and try again later.",
                    max(1, math.ceil(wait)),
                )
            if throttle is not None:
                self.throttled[throttle.code] = self.throttled.get(throttle.code, 0) + 1
                return throttle
            state.in_flight += 1
            state.arrivals.append(now)
            return None

    def execute(self, user: str, operations: int) -> None:
        """Spend the server time of ``operations`` run one after another, on a free worker."""
        spent_ms = operations * self._limits.op_ms
        if spent_ms > 0:
            workers = self._workers
            if workers is not None:
                with workers:
                    self._run(spent_ms)
            else:
                self._run(spent_ms)
        with self._lock:
            state = self._users.setdefault(user, _UserState())
            if spent_ms > 0:
                state.executions.append((self._clock(), spent_ms))
                state.execution_ms += spent_ms

    def _run(self, spent_ms: float) -> None:
        with self._lock:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
        try:
            time.sleep(spent_ms / 1000.0)
        finally:
            with self._lock:
                self.running -= 1

    def release(self, user: str) -> None:
        with self._lock:
            state = self._users.get(user)
            if state is not None and state.in_flight > 0:
                state.in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "limits": self._limits.to_json(),
                "throttled": dict(self.throttled),
                "peak_running": self.peak_running,
                "users": {
                    user: {
                        "in_flight": s.in_flight,
                        "requests_in_window": len(s.arrivals),
                        "execution_ms_in_window": round(s.execution_ms, 1),
                    }
                    for user, s in self._users.items()
                },
            }
