"""The Dataverse Web API client shared by every job."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from core.ids import is_guid
from core.retry import DeadlineExceeded as _RetryDeadline
from core.retry import RetryExhausted, RetryPolicy, retry_after_seconds, send_with_retry

from ._auth import TokenProvider
from ._batch import BatchItem, BatchResponse, decode_batch, decode_batch_groups, encode_batch, outcome
from ._errors import (
    AuthenticationFailed,
    DataverseError,
    NotFound,
    ServiceUnavailable,
    error_from_response,
    first_line,
)
from ._filters import Value, column, literal

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from .config import DataverseConfig

__all__ = [
    "DataverseClient",
    "DeadlineExceeded",
    "Page",
    "TokenUnavailable",
    "UpsertResult",
    "client_from_config",
    "key_path",
]

_ENTITY_SET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUERY_SAFE = "'(),/:@*$"
_KEY_SAFE = "'(),=:@*$"
MAX_PARALLEL = 52  # Dataverse's documented concurrent request limit per user
_IDEMPOTENT = frozenset({"GET", "PUT", "PATCH", "DELETE", "HEAD"})
_ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    "If-None-Match": "null",
}


class DeadlineExceeded(ServiceUnavailable):
    """The caller's deadline passed before Dataverse answered."""


class TokenUnavailable(DataverseError):
    """No token could be had for Dataverse (wrong secret, tenant, or authority down)."""

    @property
    def cause(self) -> str:
        return first_line(self)

    @property
    def fix(self) -> str:
        return (
            "check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (secrets expire: make a new one under "
            "Certificates & secrets) or AZURE_CLIENT_CERTIFICATE_PATH; then run python -m ops doctor"
        )


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    next_link: str | None


@dataclass(frozen=True)
class UpsertResult:
    id: str | None
    created: bool


def key_path(entity_set: str, key: str | uuid.UUID | Mapping[str, Value]) -> str:
    """``contacts(<guid>)`` for a primary key, ``phonecalls(col='v')`` for an alternate key."""
    if not _ENTITY_SET.match(entity_set):
        raise ValueError(f"not an entity set name: {entity_set!r}")
    if isinstance(key, Mapping):
        if not key:
            raise ValueError("an alternate key needs at least one column")
        inner = ",".join(f"{column(k)}={literal(v)}" for k, v in key.items())
    else:
        text = str(key)
        if not is_guid(text):
            raise ValueError(f"a primary key must be a GUID (got {text!r}); pass a dict for an alternate key")
        inner = text
    return f"{entity_set}({quote(inner, safe=_KEY_SAFE)})"


def query_path(
    entity_set: str,
    *,
    select: Sequence[str],
    filter: str | None = None,
    top: int | None = None,
    orderby: str | None = None,
    expand: str | None = None,
) -> str:
    """``contacts?$select=...&$filter=...``: a query URL relative to the API root, URL-encoded.

    ``filter`` must come from ``dataverse.filters``; ``expand`` and ``orderby`` are built by
    the app from checked column names, never from request input.
    """
    if not _ENTITY_SET.match(entity_set):
        raise ValueError(f"not an entity set name: {entity_set!r}")
    if not select:
        raise ValueError("always $select the columns you need")
    params = {"$select": ",".join(column(c) for c in select)}
    if filter:
        params["$filter"] = filter
    if top is not None:
        params["$top"] = str(int(top))
    if orderby:
        params["$orderby"] = orderby
    if expand:
        params["$expand"] = expand
    return f"{entity_set}?{_query_string(params)}"


def _query_string(params: Mapping[str, str]) -> str:
    return "&".join(f"{name}={quote(value, safe=_QUERY_SAFE)}" for name, value in params.items())


class DataverseClient:
    """Talks to one Dataverse environment.

    The credential and the session are injected: pass any azure-identity
    ``TokenCredential`` and, in tests, a session of your own. Every request has
    ``timeout`` seconds per attempt; 429/503 are retried honouring Retry-After.
    """

    def __init__(
        self,
        url: str,
        *,
        credential: TokenCredential,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        api_version: str = "v9.2",
        page_size: int = 5000,
        max_parallel: int = 4,
    ) -> None:
        if not 1 <= max_parallel <= MAX_PARALLEL:
            raise ValueError(f"max_parallel must be 1 to {MAX_PARALLEL} (Dataverse's concurrent request limit)")
        self.url = url.rstrip("/")
        self.api_root = f"{self.url}/api/data/{api_version}/"
        self._tokens = TokenProvider(credential, self.url + "/.default")
        if session is None:
            session = requests.Session()
            # one pooled connection per parallel stream (requests keeps 10 per host by default)
            adapter = HTTPAdapter(pool_maxsize=max(10, max_parallel + 2))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session
        self._timeout = timeout
        self._retry = retry
        self._page_size = page_size
        self.max_parallel = max_parallel
        # Dataverse's recommended degree of parallelism (x-ms-dop-hint), from its latest answer.
        self.dop_hint: int | None = None

    # -- plumbing -----------------------------------------------------------------

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _token(self, stale: str | None = None) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return self._tokens.refresh(stale) if stale else self._tokens.token()
        except ClientAuthenticationError as exc:
            raise TokenUnavailable(0, None, f"could not get a Dataverse token: {exc.message}") from exc

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        deadline: float | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """Send one request (relative to the API root, or an absolute nextLink); raise on errors."""
        url = path_or_url if path_or_url.startswith("http") else self.api_root + path_or_url
        if params:
            url += ("&" if "?" in url else "?") + _query_string(params)
        all_headers = dict(_ODATA_HEADERS)
        if json is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        method = method.upper()
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        path = url[len(self.api_root) :].split("?", 1)[0] if url.startswith(self.api_root) else url
        token = self._token()
        for attempt in (1, 2):
            all_headers["Authorization"] = f"Bearer {token}"
            try:
                response = send_with_retry(
                    self._session,
                    method,
                    url,
                    policy=self._retry,
                    timeout=timeout or self._timeout,
                    idempotent=idempotent,
                    deadline=deadline,
                    json=json,
                    data=data,
                    headers=all_headers,
                    service="dataverse",
                )
            except _RetryDeadline as exc:
                raise DeadlineExceeded(0, None, str(exc), method=method, path=path) from exc
            except RetryExhausted as exc:
                if exc.response is not None:
                    self._note_dop_hint(exc.response)
                    error = error_from_response(exc.response.status_code, _body(exc.response), method=method, path=path)
                    error.retry_after = retry_after_seconds(exc.response)
                    raise error from exc
                raise ServiceUnavailable(0, None, str(exc), method=method, path=path) from exc
            except requests.RequestException as exc:
                raise ServiceUnavailable(
                    0,
                    None,
                    f"{exc.__class__.__name__}: the request may or may not have been applied",
                    method=method,
                    path=path,
                ) from exc
            self._note_dop_hint(response)
            if response.status_code == 401 and attempt == 1:
                token = self._token(stale=token)  # expired or revoked: one fresh token, one more try
                continue
            if response.status_code == 401:
                error = error_from_response(401, _body(response))
                raise AuthenticationFailed(
                    401,
                    error.code,
                    f"{error.message} (a fresh token was refused too: check that an enabled application user "
                    "exists in Dataverse for AZURE_CLIENT_ID)",
                    method=method,
                    path=path,
                )
            if response.status_code >= 400:
                raise error_from_response(response.status_code, _body(response), method=method, path=path)
            return response
        raise AssertionError("unreachable")

    def _note_dop_hint(self, response: requests.Response) -> None:
        value = response.headers.get("x-ms-dop-hint", "")
        if value.strip().isdigit() and int(value) > 0:
            self.dop_hint = int(value)

    def parallelism(self) -> int:
        """How many requests to have in flight: Dataverse's ``x-ms-dop-hint``, at most ``max_parallel``
        (1 until Dataverse has said)."""
        return max(1, min(self.dop_hint or 1, self.max_parallel))

    # -- operations ---------------------------------------------------------------

    def whoami(self, *, deadline: float | None = None) -> dict[str, Any]:
        """``{"BusinessUnitId", "UserId", "OrganizationId"}`` of the application user."""
        result: dict[str, Any] = self.request("GET", "WhoAmI", deadline=deadline).json()
        return result

    def query_page(
        self,
        entity_set: str,
        *,
        select: Sequence[str],
        filter: str | None = None,
        top: int | None = None,
        orderby: str | None = None,
        expand: str | None = None,
        page_size: int | None = None,
        next_link: str | None = None,
        annotations: bool = False,
        deadline: float | None = None,
    ) -> Page:
        """One page of a query; pass the returned ``next_link`` back for the next one."""
        path = next_link or query_path(
            entity_set, select=select, filter=filter, top=top, orderby=orderby, expand=expand
        )
        return self.get_page(path, page_size=page_size, annotations=annotations, deadline=deadline)

    def get_page(
        self,
        path: str,
        *,
        page_size: int | None = None,
        annotations: bool = False,
        deadline: float | None = None,
    ) -> Page:
        """One page of a query given as a ``query_path()`` or an ``@odata.nextLink``."""
        prefer = [f"odata.maxpagesize={page_size or self._page_size}"]
        if annotations:
            prefer.append('odata.include-annotations="*"')
        response = self.request("GET", path, headers={"Prefer": ",".join(prefer)}, deadline=deadline)
        body = response.json()
        return Page(body.get("value", []), body.get("@odata.nextLink"))

    def query(self, entity_set: str, *, select: Sequence[str], **options: Any) -> Iterator[dict[str, Any]]:
        """Every matching record, following ``@odata.nextLink`` page by page."""
        page = self.query_page(entity_set, select=select, **options)
        yield from page.records
        while page.next_link:
            page = self.query_page(
                entity_set,
                select=select,
                next_link=page.next_link,
                page_size=options.get("page_size"),
                annotations=options.get("annotations", False),
                deadline=options.get("deadline"),
            )
            yield from page.records

    def get(
        self, entity_set: str, key: str | uuid.UUID | Mapping[str, Value], *, select: Sequence[str]
    ) -> dict[str, Any] | None:
        """One record by primary or alternate key, or None."""
        try:
            response = self.request(
                "GET", key_path(entity_set, key), params={"$select": ",".join(column(c) for c in select)}
            )
        except NotFound:
            return None
        result: dict[str, Any] = response.json()
        return result

    def create(self, entity_set: str, record: Mapping[str, Any]) -> str:
        """Create a record (deep insert allowed); return its id. Not retried after a dropped connection."""
        if not _ENTITY_SET.match(entity_set):
            raise ValueError(f"not an entity set name: {entity_set!r}")
        response = self.request("POST", entity_set, json=dict(record))
        return _entity_id(response)

    def update(self, entity_set: str, key: str | uuid.UUID | Mapping[str, Value], changes: Mapping[str, Any]) -> None:
        """Update an existing record; ``NotFound`` if it does not exist (never creates)."""
        self.request("PATCH", key_path(entity_set, key), json=dict(changes), headers={"If-Match": "*"})

    def upsert(
        self, entity_set: str, key: str | uuid.UUID | Mapping[str, Value], record: Mapping[str, Any]
    ) -> UpsertResult:
        """Create or update by key (PATCH without If-Match): safe to repeat."""
        response = self.request(
            "PATCH", key_path(entity_set, key), json=dict(record), headers={"Prefer": "return=representation"}
        )
        return UpsertResult(_entity_id(response, required=False), created=response.status_code == 201)

    def delete(self, entity_set: str, key: str | uuid.UUID | Mapping[str, Value]) -> None:
        self.request("DELETE", key_path(entity_set, key))

    def batch(
        self,
        items: Sequence[BatchItem],
        *,
        continue_on_error: bool = False,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> list[BatchResponse]:
        """Send a ``$batch``; return one response per answered request, in order.

        Without ``continue_on_error`` Dataverse stops at the first failure (a failed
        change set is rolled back whole) and later requests get no response.
        ``idempotent=True`` (only GETs and upserts inside) lets a dropped connection be retried.
        """
        response = self._post_batch(
            items, continue_on_error=continue_on_error, idempotent=idempotent, deadline=deadline
        )
        return decode_batch(response.headers.get("Content-Type", ""), response.content)

    def batch_each(
        self, items: Sequence[BatchItem], *, idempotent: bool = False, deadline: float | None = None
    ) -> list[BatchResponse | None]:
        """Send a ``$batch`` that goes on after failures; return one outcome per item, in order.

        An item's outcome is its failed answer (a failed change set is rolled back whole and
        answers once) or, when it succeeded, its last answer; ``None`` when Dataverse did not
        answer it at all. Callers decide per item without counting answers.
        """
        response = self._post_batch(items, continue_on_error=True, idempotent=idempotent, deadline=deadline)
        groups = decode_batch_groups(response.headers.get("Content-Type", ""), response.content)
        outcomes: list[BatchResponse | None] = [outcome(group) if group else None for group in groups[: len(items)]]
        return outcomes + [None] * (len(items) - len(outcomes))

    def batch_each_parallel(
        self,
        items: Sequence[BatchItem],
        *,
        max_batch: int = 100,
        idempotent: bool = False,
        max_throttle_wait: float = 600.0,
    ) -> list[BatchResponse | None]:
        """``batch_each`` for many items: split into ``$batch`` requests sent in parallel.

        ``parallelism()`` batches are in flight at once (Dataverse's ``x-ms-dop-hint``, at most
        ``max_parallel``), each of at most ``max_batch`` items, sized so every stream gets a share.
        One outcome per item, in order, as ``batch_each``; ``None`` for the items of a batch that
        failed whole (logged). A 429 is retried by the client honouring ``Retry-After``; when the
        wait asked for is longer than its retry policy allows, every stream pauses that long and
        the batch is sent again, for at most ``max_throttle_wait`` seconds in all. If every batch
        failed, the first error is raised (a token or permission problem is not a per-item failure).
        """
        from ._parallel import send_parallel

        return send_parallel(
            self, items, max_batch=max_batch, idempotent=idempotent, max_throttle_wait=max_throttle_wait
        )

    def _post_batch(
        self, items: Sequence[BatchItem], *, continue_on_error: bool, idempotent: bool, deadline: float | None
    ) -> requests.Response:
        content_type, body = encode_batch(items, self.api_root)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        return self.request("POST", "$batch", data=body, headers=headers, idempotent=idempotent, deadline=deadline)


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _entity_id(response: requests.Response, *, required: bool = True) -> str:
    header = response.headers.get("OData-EntityId", "")
    match = re.search(r"\(([0-9a-fA-F-]{36})\)\s*$", header)
    if match:
        return match.group(1)
    if required:
        raise DataverseError(response.status_code, None, "Dataverse answered without the new record's id")
    return ""


def client_from_config(config: DataverseConfig, **options: Any) -> DataverseClient:
    """A client for the Dataverse section: its URL, credential, timeout and parallelism; ``options``
    (``session``, ``retry``, ``timeout``, ``max_parallel``, ``credential``) override them."""
    from ._auth import credential_from_config

    options.setdefault("timeout", config.timeout)
    options.setdefault("max_parallel", config.max_parallel_batches)
    if "credential" not in options:
        options["credential"] = credential_from_config(config)
    return DataverseClient(config.url, **options)
