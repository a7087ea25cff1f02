"""The SmartRouting webhook's HTTP contract, without Azure types: authenticate, validate, decide, answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.auth import authenticate_enreach, same_secret

from .service import Decision, Router, log_decision

__all__ = ["MAX_BODY_BYTES", "HttpResult", "authenticate", "handle_routing_request"]

MAX_BODY_BYTES = 16 * 1024
MAX_NUMBER_LENGTH = 32


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: Mapping[str, str] | None = None


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> HttpResult:
    return HttpResult(status, json.dumps(payload).encode("utf-8"), "application/json", headers)


def _error(status: int, message: str, field: str | None = None) -> HttpResult:
    error: dict[str, Any] = {"error": message}
    if field is not None:
        error["field"] = field
    headers = {"WWW-Authenticate": 'Basic realm="routing"'} if status == 401 else None
    return _json(status, error, headers)


def authenticate(
    headers: Mapping[str, str], *, api_key: str | None, basic_user: str | None, basic_password: str | None
) -> bool:
    """Enreach's ``X-Benemen-APIKey`` header or HTTP Basic, compared in constant time."""
    return authenticate_enreach(headers, api_key=api_key, basic_user=basic_user, basic_password=basic_password)


def _parse(headers: Mapping[str, str], body: bytes) -> tuple[str, str, str | None] | HttpResult:
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return _error(415, "send the call information as JSON (Content-Type: application/json)", "Content-Type")
    if len(body) > MAX_BODY_BYTES:
        return _error(413, f"the body is over {MAX_BODY_BYTES} bytes", "body")
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _error(400, "the body is not valid JSON", "body")
    if not isinstance(payload, dict):
        return _error(400, "the body must be a JSON object with anum and bnum", "body")
    numbers = []
    for name in ("anum", "bnum"):
        value = payload.get(name)
        if value is None:
            return _error(400, f"{name} is missing", name)
        if not isinstance(value, str) or not value.strip():
            return _error(400, f"{name} must be a non-empty string (an E.164 number)", name)
        if len(value) > MAX_NUMBER_LENGTH:
            return _error(400, f"{name} is longer than {MAX_NUMBER_LENGTH} characters", name)
        numbers.append(value.strip())
    if "targetid" in payload and payload["targetid"] is not None and not isinstance(payload["targetid"], str):
        return _error(400, "targetid must be a string", "targetid")
    extradata = payload.get("extradata")
    if extradata is not None and not isinstance(extradata, dict):
        return _error(400, "extradata must be a JSON object", "extradata")
    queue = (extradata or {}).get("CurrQueueId")
    if queue is not None and (isinstance(queue, bool) or not isinstance(queue, (str, int)) or len(str(queue)) > 64):
        return _error(400, "extradata.CurrQueueId must be the queue id (a string)", "extradata.CurrQueueId")
    return numbers[0], numbers[1], str(queue).strip() or None if queue is not None else None


def handle_routing_request(
    *,
    method: str,
    headers: Mapping[str, str],
    params: Mapping[str, str],
    body: bytes,
    router: Callable[[], Router],
    api_key: str | None,
    basic_user: str | None,
    basic_password: str | None,
    explain_key: str | None = None,
) -> HttpResult:
    """Answer one SmartRouting webhook call. ``router`` is called only for authenticated, valid requests.

    ``?explain=true`` answers the reasoning (customers' names included) instead: an operator feature,
    refused (403) unless ``explain_key`` (ROUTING_EXPLAIN_KEY) is set and sent in ``X-Explain-Key``;
    the routing key Enreach holds is not enough."""
    if not authenticate(headers, api_key=api_key, basic_user=basic_user, basic_password=basic_password):
        return _error(401, "authenticate with the X-Benemen-APIKey header or HTTP Basic")
    if method.upper() != "POST":
        return _error(405, "use POST", "method")
    explain = params.get("explain", "").lower() in ("1", "true", "yes")
    if explain:
        given = {k.lower(): v for k, v in headers.items()}.get("x-explain-key")
        if not explain_key:
            return _error(403, "explain is off: set ROUTING_EXPLAIN_KEY and send it in X-Explain-Key", "explain")
        if given is None or not same_secret(given, explain_key):
            return _error(403, "explain needs the operators' key (ROUTING_EXPLAIN_KEY) in X-Explain-Key", "explain")
    parsed = _parse(headers, body)
    if isinstance(parsed, HttpResult):
        return parsed
    anum, bnum, queue_id = parsed
    decision: Decision = router().route(anum, bnum, queue_id=queue_id)
    log_decision(decision, bnum)
    if explain:
        return _json(200, decision.explain())
    answer = decision.answer()
    return _json(200, answer) if answer else HttpResult(204)
