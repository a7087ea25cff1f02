"""One retry discipline for every outbound HTTP call (Dataverse and Enreach).

* 429 and 503 are retried after ``Retry-After`` seconds (capped), else after a
  jittered exponential back-off; 502/504 and connection failures the same way.
* A request that may have reached the server (read timeout, dropped connection)
  is retried only when the caller says it is idempotent.
* Every attempt has a timeout, and an optional absolute deadline (monotonic
  seconds) bounds the whole sequence: no sleep or attempt runs past it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from . import metrics

__all__ = ["DeadlineExceeded", "RetryExhausted", "RetryPolicy", "retry_after_seconds", "send_with_retry"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    max_retry_after_seconds: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential back-off for the given (1-based) failed attempt."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


class RetryExhausted(Exception):
    """Transient failures went on past the retry policy; ``response`` is the last one, if any."""

    def __init__(self, message: str, response: requests.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


class DeadlineExceeded(RetryExhausted):
    """The caller's deadline passed before a usable answer arrived."""


def retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def send_with_retry(
    session: requests.Session,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    timeout: float,
    idempotent: bool,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    service: str | None = None,
    **kwargs: Any,
) -> requests.Response:
    """Send one request, retrying transient failures; return the first non-transient response.
    ``service`` (``dataverse``, ``enreach``) names it in the ``bridge.throttled`` meter."""
    attempt = 0
    while True:
        attempt += 1
        attempt_timeout = timeout
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0.01:
                raise DeadlineExceeded(f"{method} {_path(url)}: deadline passed before attempt {attempt}")
            attempt_timeout = min(timeout, remaining)
        wait: float | None = None
        last: requests.Response | None = None
        try:
            last = session.request(method, url, timeout=attempt_timeout, **kwargs)
        except requests.ConnectTimeout as exc:
            reason = f"connect timeout ({exc.__class__.__name__})"
        except (requests.ConnectionError, requests.Timeout) as exc:
            # The server may have acted on it: only an idempotent request is sent again.
            if not idempotent:
                raise
            reason = exc.__class__.__name__
        else:
            if last.status_code not in RETRY_STATUSES:
                return last
            reason = f"HTTP {last.status_code}"
            if last.status_code == 429 and service:
                metrics.throttled(service)
            wait = retry_after_seconds(last)
            if wait is not None and wait > policy.max_retry_after_seconds:
                raise RetryExhausted(
                    f"{method} {_path(url)}: server asked to wait {wait:.0f}s, over the "
                    f"{policy.max_retry_after_seconds:.0f}s cap",
                    last,
                )
        if attempt >= policy.max_attempts:
            raise RetryExhausted(f"{method} {_path(url)}: {reason} after {attempt} attempts", last)
        delay = policy.backoff(attempt) if wait is None else wait
        if deadline is not None and time.monotonic() + delay >= deadline:
            raise DeadlineExceeded(f"{method} {_path(url)}: {reason}; retrying would pass the deadline", last)
        log.warning("retrying %s %s in %.2fs: %s (attempt %d)", method, _path(url), delay, reason, attempt)
        sleep(delay)


def _path(url: str) -> str:
    """The URL without its query string (which may hold customer data)."""
    return url.split("?", 1)[0]
