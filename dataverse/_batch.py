"""Encode ``$batch`` requests and decode their multipart responses (OData 4.0 multipart/mixed)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import DataverseError, error_from_response

__all__ = [
    "BatchRequest",
    "BatchResponse",
    "ChangeSet",
    "decode_batch",
    "decode_batch_groups",
    "encode_batch",
    "outcome",
]

MAX_BATCH_REQUESTS = 1000


@dataclass
class BatchRequest:
    """One operation in a ``$batch``. ``path`` is relative to the API root (``phonecalls``,
    ``contacts(<id>)``) or a ``$<Content-ID>`` reference inside the same change set."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_id: str | None = None


@dataclass
class ChangeSet:
    """Operations applied atomically: all succeed or none does. No GETs allowed."""

    requests: list[BatchRequest]


@dataclass
class BatchResponse:
    status: int
    headers: dict[str, str]
    body: Any
    content_id: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> DataverseError:
        return error_from_response(self.status, self.body)

    def raise_for_status(self) -> None:
        if not self.ok:
            raise self.error()

    def entity_id(self) -> str | None:
        """The GUID in ``OData-EntityId`` (set on create and upsert answers)."""
        value = self.headers.get("odata-entityid", "")
        match = re.search(r"\(([0-9a-fA-F-]{36})\)\s*$", value)
        return match.group(1) if match else None


BatchItem = BatchRequest | ChangeSet


def _encode_request(request: BatchRequest, api_root: str) -> list[str]:
    url = request.path if request.path.startswith("$") else api_root + request.path
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if request.content_id is not None:
        lines.append(f"Content-ID: {request.content_id}")
    lines += ["", f"{request.method.upper()} {url} HTTP/1.1"]
    headers = dict(request.headers)
    if request.body is not None:
        headers.setdefault("Content-Type", "application/json; type=entry")
    else:
        headers.setdefault("Accept", "application/json")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("")
    lines.append(json.dumps(request.body, separators=(",", ":")) if request.body is not None else "")
    return lines


def encode_batch(items: Sequence[BatchItem], api_root: str) -> tuple[str, bytes]:
    """Return (content type, body) for a ``$batch`` POST. ``api_root`` ends with ``/``."""
    count = sum(len(i.requests) if isinstance(i, ChangeSet) else 1 for i in items)
    if not 0 < count <= MAX_BATCH_REQUESTS:
        raise ValueError(f"a $batch holds 1 to {MAX_BATCH_REQUESTS} requests (got {count})")
    boundary = f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    for item in items:
        lines.append(f"--{boundary}")
        if isinstance(item, ChangeSet):
            if any(r.method.upper() == "GET" for r in item.requests):
                raise ValueError("a change set cannot hold a GET")
            changeset = f"changeset_{uuid.uuid4()}"
            lines += [f'Content-Type: multipart/mixed; boundary="{changeset}"', ""]
            for number, request in enumerate(item.requests, start=1):
                if request.content_id is None:
                    request.content_id = str(number)
                lines.append(f"--{changeset}")
                lines += _encode_request(request, api_root)
            lines.append(f"--{changeset}--")
        else:
            lines += _encode_request(item, api_root)
    lines.append(f"--{boundary}--")
    lines.append("")
    return f'multipart/mixed; boundary="{boundary}"', "\r\n".join(lines).encode("utf-8")


def _boundary(content_type: str) -> str:
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.I)
    if not match:
        raise ValueError(f"multipart content type without boundary: {content_type!r}")
    return match.group(1)


def _split_parts(body: str, boundary: str) -> list[str]:
    parts: list[str] = []
    for chunk in re.split(r"(?:\r?\n)?--" + re.escape(boundary), body)[1:]:
        if chunk.startswith("--"):
            break
        parts.append(chunk.lstrip("\r\n") if chunk.startswith(("\r\n", "\n")) else chunk)
    return parts


def _split_head(text: str) -> tuple[dict[str, str], str]:
    """Split MIME/HTTP headers from what follows the first blank line."""
    match = re.search(r"\r?\n\r?\n", text)
    head, rest = (text[: match.start()], text[match.end() :]) if match else (text, "")
    headers: dict[str, str] = {}
    for line in re.split(r"\r?\n", head):
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _decode_http_part(part: str) -> BatchResponse:
    mime_headers, http = _split_head(part)
    status_line, _, after = http.partition("\n")
    match = re.match(r"HTTP/1\.1 (\d{3})", status_line.strip())
    if not match:
        raise ValueError(f"unexpected $batch response part: {status_line[:80]!r}")
    headers, body_text = ({}, after) if re.match(r"\r?\n", after) else _split_head(after)
    body_text = body_text.strip()
    body: Any = None
    if body_text:
        try:
            body = json.loads(body_text)
        except ValueError:
            body = body_text
    return BatchResponse(int(match.group(1)), headers, body, mime_headers.get("content-id"))


def decode_batch_groups(content_type: str, body: bytes) -> list[list[BatchResponse]]:
    """One list per answered item, in order: a succeeded change set's answers together, a failed
    change set's single error, a request outside change sets alone."""
    groups: list[list[BatchResponse]] = []
    for part in _split_parts(body.decode("utf-8"), _boundary(content_type)):
        headers, rest = _split_head(part)
        part_type = headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            groups.append([_decode_http_part(inner) for inner in _split_parts(rest, _boundary(part_type))])
        else:
            groups.append([_decode_http_part(part)])
    return groups


def decode_batch(content_type: str, body: bytes) -> list[BatchResponse]:
    """Flatten a ``$batch`` response into one ``BatchResponse`` per answered request, in order."""
    return [answer for group in decode_batch_groups(content_type, body) for answer in group]


def outcome(group: Sequence[BatchResponse]) -> BatchResponse:
    """What decided an item: its first failed answer, else its last answer."""
    return next((answer for answer in group if not answer.ok), group[-1])
