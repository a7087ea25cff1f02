"""Many ``$batch`` writes in parallel, at the degree Dataverse recommends (``x-ms-dop-hint``).

Dataverse runs the operations of one ``$batch`` one after another; throughput comes from
several smaller batches in flight at once, within the service protection limits
(learn.microsoft.com/power-apps/developer/data-platform/send-parallel-requests).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ._batch import MAX_BATCH_REQUESTS, BatchItem, BatchResponse, ChangeSet
from ._errors import DataverseError, Throttled

if TYPE_CHECKING:
    from ._client import DataverseClient

__all__ = ["send_parallel"]

log = logging.getLogger("dataverse.parallel")

# A 429 without Retry-After (the client's retries ran out on short waits): pause this long.
_DEFAULT_PAUSE_SECONDS = 5.0
# Every pause is charged at least this much, so a storm of 429s with "Retry-After: 0" ends in the
# budget instead of resending for ever.
_MIN_PAUSE_SECONDS = 1.0


class _ThrottleGate:
    """Shared by the streams of one write: after a long 429 every stream waits, within a budget."""

    def __init__(self, budget_seconds: float) -> None:
        self._budget = budget_seconds
        self._until = 0.0
        self._spent = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        while True:
            with self._lock:
                delay = self._until - time.monotonic()
            if delay <= 0:
                return
            time.sleep(delay)

    def pause(self, error: Throttled) -> bool:
        """Hold every stream for the wait Dataverse asked for; False when that would pass the budget."""
        seconds = error.retry_after if error.retry_after is not None else _DEFAULT_PAUSE_SECONDS
        seconds = max(seconds, _MIN_PAUSE_SECONDS)
        with self._lock:
            now = time.monotonic()
            until = now + seconds
            if until > self._until:
                extra = until - max(self._until, now)
                if self._spent + extra > self._budget:
                    return False
                self._spent += extra
                self._until = until
                log.warning(
                    "%s",
                    json.dumps(
                        {
                            "event": "dataverse_throttled",
                            "code": error.code,
                            "pause_seconds": round(seconds, 1),
                            "paused_total_seconds": round(self._spent, 1),
                        }
                    ),
                )
        return True


def send_parallel(
    client: DataverseClient,
    items: Sequence[BatchItem],
    *,
    max_batch: int,
    idempotent: bool,
    max_throttle_wait: float,
) -> list[BatchResponse | None]:
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    if not items:
        return []
    streams = client.parallelism()
    size = max(1, min(max_batch, math.ceil(len(items) / streams)))
    chunks: list[tuple[int, Sequence[BatchItem]]] = []
    for first in range(0, len(items), size):
        # also within Dataverse's 1,000 requests per $batch (change sets may hold several each)
        start, count = first, 0
        for index in range(first, min(first + size, len(items))):
            item = items[index]
            weight = len(item.requests) if isinstance(item, ChangeSet) else 1
            if count and count + weight > MAX_BATCH_REQUESTS:
                chunks.append((start, items[start:index]))
                start, count = index, 0
            count += weight
        chunks.append((start, items[start : min(first + size, len(items))]))
    outcomes: list[BatchResponse | None] = [None] * len(items)
    gate = _ThrottleGate(max_throttle_wait)

    def send(start: int, chunk: Sequence[BatchItem]) -> None:
        while True:
            gate.wait()
            try:
                answers = client.batch_each(chunk, idempotent=idempotent)
            except Throttled as error:
                # Dataverse did not run a throttled request: sending it again cannot duplicate anything.
                if gate.pause(error):
                    continue
                raise
            outcomes[start : start + len(chunk)] = answers
            return

    errors: list[DataverseError] = []
    if len(chunks) == 1 or streams == 1:
        for start, chunk in chunks:
            try:
                send(start, chunk)
            except DataverseError as error:
                errors.append(error)
                log.warning("a $batch of %d writes failed whole: %s", len(chunk), error)
    else:
        with ThreadPoolExecutor(max_workers=min(streams, len(chunks)), thread_name_prefix="dataverse-write") as pool:
            futures = [(pool.submit(send, start, chunk), chunk) for start, chunk in chunks]
            for future, chunk in futures:
                try:
                    future.result()
                except DataverseError as error:
                    errors.append(error)
                    log.warning("a $batch of %d writes failed whole: %s", len(chunk), error)
    if errors and len(errors) == len(chunks):
        raise errors[0]
    return outcomes
