"""Callback notifications at the one Enreach notification endpoint (``POST /api/presence/enreach``).

The endpoint's handler asks ``callbacks.runtime.dispatch_notification`` first: a body whose
event type is one of the callback event names (``ENREACH_FIELD_MAP.callbacks.created_events``,
``changed_events``, ``closed_events``;
``CallbackCreated``, ``CallbackUpdated``, ``CallbackChanged``, ``CallbackClosed`` by default) is
answered here; anything else (``None``) goes on to the presence handler unchanged.

A notification is a hint, not the record: the request is read back from Enreach by its id and
applied as the timer applies it (``CallbackSync.apply_one``). Answers: 200 applied; 202 ignored
(``callbacks`` not in ``BRIDGE_JOBS``, or ``CALLBACK_MODE=poll``); 400 naming the field; 401; 503 with ``Retry-After``
when Enreach, Dataverse or storage failed (the sender delivers it again, and the next poll finds
the request anyway).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TypeVar

from enreach import CallbackFields, first_present

if TYPE_CHECKING:
    from .sync import CallbackSync

__all__ = ["RETRY_AFTER_SECONDS", "handle_callback_notification", "not_a_callback", "request_id_of"]

log = logging.getLogger("callbacks")
T = TypeVar("T")
RETRY_AFTER_SECONDS = 10
MAX_BODY_BYTES = 256 * 1024
Answer = tuple[int, bytes, dict[str, str]]


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, json.dumps(payload).encode("utf-8"), headers or {}


def _peek(headers: Mapping[str, str], body: bytes) -> Any:
    """The JSON body, or None when it is not one (the presence handler then answers 400/413/415)."""
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" or len(body) > MAX_BODY_BYTES:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if text and len(text) <= 128 and text.isprintable() else None


def _find(payload: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` at the top of the body, else one level down (an envelope's data object)."""
    value = _scalar(first_present(payload, names)[1])
    if value is not None:
        return value
    for nested in payload.values():
        if isinstance(nested, Mapping):
            value = _scalar(first_present(nested, names)[1])
            if value is not None:
                return value
    return None


class _OverBudget(Exception):
    pass


_WORKERS: ThreadPoolExecutor | None = None
_WORKERS_LOCK = threading.Lock()


def _within(work: Callable[[], T], budget: float | None) -> T:
    """``work()``'s result, or ``_OverBudget`` when it takes longer than ``budget`` seconds (it goes
    on in the background). Without a budget it runs here."""
    global _WORKERS
    if budget is None:
        return work()
    with _WORKERS_LOCK:
        if _WORKERS is None:
            _WORKERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="callback-notification")
    future = _WORKERS.submit(work)
    try:
        return future.result(timeout=budget)
    except FutureTimeout:
        raise _OverBudget from None


_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def request_id_of(payload: Mapping[str, Any], names: CallbackFields) -> str | None:
    return _find(payload, names.event_item_id)


def handle_callback_notification(
    *,
    headers: Mapping[str, str],
    body: bytes,
    event_type_names: tuple[str, ...],
    names: CallbackFields,
    authenticate: Callable[[Mapping[str, str]], bool],
    enabled: bool,
    unauthenticated: str = "authenticate with the webhook Secret header, X-Benemen-APIKey or HTTP Basic",
    sync: Callable[[], CallbackSync],
    budget: float | None = None,
) -> Answer | None:
    """The answer to a callback notification, or None when the body is no callback notification."""
    payload = _peek(headers, body)
    if not isinstance(payload, Mapping):
        return None
    event_type = _find(payload, event_type_names)
    if event_type is None or not names.is_callback_event(event_type):
        return None
    if not authenticate(headers):
        return _json(401, {"error": unauthenticated})
    if not enabled:
        reason = "callback notifications are off (callbacks not in BRIDGE_JOBS, or CALLBACK_MODE=poll)"
        return _json(202, {"outcome": "ignored", "event_type": event_type, "reason": reason})
    request_id = request_id_of(payload, names)
    if request_id is not None and not _ID_SHAPE.fullmatch(request_id):
        # It goes into an Enreach URL path: `..` or `.` would address another resource.
        return _json(
            400,
            {
                "error": "the callback request id is not id-shaped (letters, digits, - and _, at most 64)",
                "field": names.event_item_id[0],
            },
        )
    if request_id is None:
        field = names.event_item_id[0]
        return _json(
            400,
            {
                "error": "the callback notification names no request: one of " + ", ".join(names.event_item_id),
                "field": field,
            },
        )
    from azure.core.exceptions import AzureError

    from dataverse import DataverseError
    from enreach import EnreachError

    try:
        report, written = _within(lambda: sync().apply_one(request_id), budget)
    except _OverBudget:
        # The work goes on (applying a request is idempotent); the redelivery finds it done or finishes it.
        log.error("callback notification not applied within %s s: answered 503", budget)
        return _json(
            503,
            {"error": "a downstream service is slow; deliver the notification again"},
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    except (DataverseError, EnreachError, AzureError) as error:
        log.error("callback notification not applied: %s", type(error).__name__)
        return _json(
            503,
            {"error": f"downstream service failed: {type(error).__name__}; deliver the notification again"},
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if not written:
        return _json(
            503,
            {"error": "the callback request was not written; deliver the notification again"},
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    from core.telemetry import log_event

    counts = {k: v for k, v in report.counts().items() if v}
    log_event("callback_notification", event_type=event_type, request=request_id, **counts)
    return _json(200, {"outcome": "applied", "event_type": event_type, "request": request_id, **counts})


def not_a_callback(headers: Mapping[str, str], body: bytes) -> Answer:
    """The answer where only the callbacks job listens (no presence job): 415/413/400 for a body that
    is no JSON notification, 202 (ignored) for another event type."""
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return _json(415, {"error": "send JSON (Content-Type: application/json)", "field": "Content-Type"})
    if len(body) > MAX_BODY_BYTES:
        return _json(413, {"error": f"the body is over {MAX_BODY_BYTES} bytes", "field": "body"})
    if not isinstance(_peek(headers, body), Mapping):
        return _json(400, {"error": "the body is not a JSON object", "field": "body"})
    reason = "not a callback notification, and the presence job is off (BRIDGE_JOBS)"
    return _json(202, {"outcome": "ignored", "reason": reason})
