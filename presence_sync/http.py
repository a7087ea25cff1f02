"""The presence webhooks' HTTP contracts, without Azure types.

* ``POST /api/presence/dataverse``: Dataverse's service-endpoint webhook for updates of
  ``msdyn_agentstatus`` (a RemoteExecutionContext), authenticated by the ``X-Presence-Key`` header
  only (``PRESENCE_WEBHOOK_KEY``; a query string lands in access logs). The agent is the one on the
  status row ``PrimaryEntityId`` names, read from Dataverse; a body naming another is refused (403).
* ``POST /api/presence/enreach``: Enreach's webhook notifications (availability and call
  events, read through ``ENREACH_FIELD_MAP.events``), authenticated by the endpoint's own shared
  ``Secret`` only (``ENREACH_WEBHOOK_SECRET`` in the ``ENREACH_WEBHOOK_SECRET_HEADER`` header): the
  routing webhook's API key and Basic credentials are refused here (each endpoint its own
  credential). Unmapped event types are answered 202; events older than
  ``PRESENCE_MAX_EVENT_AGE_SECONDS`` 200 with action ``stale``, not acted on.

Answers: 400 (naming the field), 401, 403, 404, 413 (over ``MAX_BODY_BYTES``), 415 (not JSON);
a storage or downstream failure is 503 with ``Retry-After`` (the sender delivers the event again,
and the redelivery finishes what the first delivery left undone), never 500. Both webhooks answer
within ``PRESENCE_TIME_BUDGET_SECONDS``: work not done by then goes on in the background and the
answer is 503 with ``Retry-After`` (every step is retry-safe, so the redelivery and the unfinished
work cannot disagree).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from azure.core.exceptions import AzureError

from core.auth import same_secret
from core.ids import canonical_guid
from core.logsafe import safe_text
from dataverse import DataverseError
from enreach import EnreachError, EventError, EventMap, IgnoredEvent, InvalidId, parse_event

from .service import AgentMismatch, Outcome, PresenceSync, UnknownAgent
from .state import StateUnavailable

__all__ = [
    "MAX_BODY_BYTES",
    "RETRY_AFTER_SECONDS",
    "Answer",
    "handle_dataverse_webhook",
    "handle_enreach_webhook",
    "wait_idle",
]

log = logging.getLogger("presence_sync")
MAX_BODY_BYTES = 256 * 1024  # a RemoteExecutionContext with images is a few KB
RETRY_AFTER_SECONDS = 10
MAX_IN_FLIGHT = 32  # events being worked on at once (past their budget included); beyond: 503 at once
_workers = ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT, thread_name_prefix="presence-event")
_in_flight = threading.BoundedSemaphore(MAX_IN_FLIGHT)
Answer = tuple[int, bytes, dict[str, str]]  # status, JSON body, extra headers


class _BadRequest(ValueError):
    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, json.dumps(payload).encode("utf-8"), headers or {}


def _error(status: int, message: str, field: str | None = None) -> Answer:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return _json(status, {"error": message, **({"field": field} if field else {})}, headers)


def _load(headers: Mapping[str, str], body: bytes) -> Any:
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise _BadRequest("Content-Type", "send JSON (Content-Type: application/json)", 415)
    if len(body) > MAX_BODY_BYTES:
        raise _BadRequest("body", f"the body is over {MAX_BODY_BYTES} bytes", 413)
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _BadRequest("body", "the body is not valid JSON") from None


def _attributes(entity: Any) -> dict[str, Any]:
    if not isinstance(entity, dict) or not isinstance(entity.get("Attributes"), list):
        return {}
    return {
        a["key"]: a.get("value") for a in entity["Attributes"] if isinstance(a, dict) and isinstance(a.get("key"), str)
    }


def _reference_id(value: Any) -> str | None:
    return canonical_guid(value.get("Id") if isinstance(value, dict) else None)


def parse_execution_context(context: Any) -> tuple[str | None, str, str]:
    """(agent systemuserid or None, msdyn_agentstatus id, new presence id) from a RemoteExecutionContext."""
    if not isinstance(context, dict):
        raise _BadRequest("body", "the body must be a RemoteExecutionContext JSON object")
    if context.get("PrimaryEntityName") != "msdyn_agentstatus":
        raise _BadRequest("PrimaryEntityName", "register the webhook on msdyn_agentstatus")
    if context.get("MessageName") not in ("Update", "Create"):
        raise _BadRequest("MessageName", "register the webhook on the Update message")
    status_id = canonical_guid(context.get("PrimaryEntityId"))
    if status_id is None:
        raise _BadRequest("PrimaryEntityId", "PrimaryEntityId must be the msdyn_agentstatus id (a GUID)")
    parameters = context.get("InputParameters")
    target = (
        next((p.get("value") for p in parameters if isinstance(p, dict) and p.get("key") == "Target"), None)
        if isinstance(parameters, list)
        else None
    )
    attributes = _attributes(target)
    images = context.get("PostEntityImages")
    for image in images if isinstance(images, list) else []:
        if isinstance(image, dict):
            attributes = {**_attributes(image.get("value")), **attributes}
    presence = _reference_id(attributes.get("msdyn_currentpresenceid"))
    if presence is None:
        raise _BadRequest(
            "msdyn_currentpresenceid",
            "the Target holds no msdyn_currentpresenceid: filter the webhook step on that column",
        )
    return _reference_id(attributes.get("msdyn_agentid")), status_id, presence


def wait_idle(timeout: float) -> bool:
    """Wait until no event is being worked on (work past its budget included); False on timeout."""
    taken = 0
    try:
        for _ in range(MAX_IN_FLIGHT):
            if not _in_flight.acquire(timeout=timeout):
                return False
            taken += 1
        return True
    finally:
        for _ in range(taken):
            _in_flight.release()


def _apply(action: Callable[[], Outcome]) -> Answer:
    try:
        outcome = action()
    except UnknownAgent as error:
        log.warning("presence event for an unknown agent: %s", safe_text(error))
        return _error(404, str(error), error.field)
    except AgentMismatch as error:
        log.warning("presence webhook refused (403): %s", safe_text(error))
        return _error(403, str(error), error.field)
    except InvalidId as error:  # an id from Dataverse or Enreach that may not go into a URL path
        log.warning("presence event refused: %s", safe_text(error))
        return _error(400, str(error), error.field)
    except (DataverseError, EnreachError) as error:
        # The clients already retried with back-off; a 503 makes the sender deliver it again.
        log.error("presence change not applied: %s", safe_text(error))
        return _error(503, f"downstream service failed: {type(error).__name__}; deliver the event again")
    except StateUnavailable as error:
        log.error("presence change not applied: %s", safe_text(error))
        return _error(503, "presence state storage failed; deliver the event again")
    except AzureError as error:  # e.g. the token endpoint unreachable (azure-identity)
        log.error("presence change not applied: %s", type(error).__name__)
        return _error(503, f"an Azure service failed: {type(error).__name__}; deliver the event again")
    log.info(
        "%s",
        json.dumps(
            {"event": "presence_change", "action": outcome.action, "agent": outcome.agent, "detail": outcome.detail}
        ),
    )
    return _json(200, {"action": outcome.action, "agent": outcome.agent, "detail": outcome.detail})


def _run(action: Callable[[], Outcome], budget: float | None = None) -> Answer:
    """``action``'s answer, or 503 with ``Retry-After`` when it is not done within ``budget`` seconds
    (it goes on in the background: its steps are retry-safe, and the redelivery finishes the job)."""
    if budget is None:
        return _apply(action)
    if not _in_flight.acquire(blocking=False):
        log.error("%s", json.dumps({"event": "presence_busy", "in_flight": MAX_IN_FLIGHT}))
        return _error(503, "too many presence events in progress; deliver the event again")

    def work() -> Answer:
        try:
            return _apply(action)
        finally:
            _in_flight.release()

    try:
        future = _workers.submit(work)
    except RuntimeError:  # the pool is shut down (the process is stopping)
        _in_flight.release()
        return _error(503, "the app is stopping; deliver the event again")
    try:
        return future.result(timeout=budget)
    except FutureTimeout:
        log.error("%s", json.dumps({"event": "presence_over_budget", "budget_seconds": budget}))
        return _error(
            503,
            f"not done within PRESENCE_TIME_BUDGET_SECONDS ({budget:g} s): a downstream service is slow; "
            "deliver the event again",
        )


def handle_dataverse_webhook(
    *,
    headers: Mapping[str, str],
    params: Mapping[str, str],
    body: bytes,
    key: str,
    sync: Callable[[], PresenceSync],
    budget: float | None = None,
) -> Answer:
    lowered = {k.lower(): v for k, v in headers.items()}
    given = lowered.get("x-presence-key") or ""
    if not given or not same_secret(given, key):
        where = (
            " (a key in the query string is not accepted: it lands in access logs; set the service endpoint's "
            "authentication to HttpHeader with X-Presence-Key)"
            if "key" in params
            else ""
        )
        return _error(401, "authenticate with the X-Presence-Key header" + where)
    try:
        agent, status_id, presence = parse_execution_context(_load(headers, body))
    except _BadRequest as error:
        return _error(error.status, str(error), error.field)

    def act() -> Outcome:
        service = sync()
        return service.on_omnichannel_change(service.verified_agent(status_id, agent), presence)

    return _run(act, budget)


def handle_enreach_webhook(
    *,
    headers: Mapping[str, str],
    body: bytes,
    secret: str | None,
    sync: Callable[[], PresenceSync],
    secret_header: str = "Secret",  # noqa: S107 - a header name, not a secret
    events: EventMap = EventMap(),
    budget: float | None = None,
) -> Answer:
    """Enreach's webhook notifications, authenticated by the endpoint's own shared ``Secret`` that
    Enreach support configured (in the ``secret_header`` header) and nothing else."""
    lowered = {k.lower(): v for k, v in headers.items()}
    given = lowered.get(secret_header.lower())
    if not secret or given is None or not same_secret(given, secret):
        # Header names only (never values): shows an operator which header carries Enreach's secret.
        log.warning(
            "Enreach notification refused (401): no valid %s header; headers present: %s",
            secret_header,
            safe_text(", ".join(sorted(k[:40].lower() for k in headers)[:30])),
        )
        how = (
            f"authenticate with the {secret_header} header (the webhook Secret Enreach support configured)"
            if secret
            else "this endpoint is closed: set ENREACH_WEBHOOK_SECRET to the webhook Secret Enreach support configured"
        )
        return _error(401, how + "; the routing API key is not accepted here")
    try:
        event = parse_event(_load(headers, body), events)
    except _BadRequest as error:
        return _error(error.status, str(error), error.field)
    except EventError as error:
        return _error(400, str(error), error.field)
    if isinstance(event, IgnoredEvent):
        return _json(202, {"outcome": "ignored", "event_type": event.event_type, "reason": event.reason})
    return _run(lambda: sync().on_enreach_event(event), budget)
