"""Dataverse Web API client shared by every job of the app.

Public surface: ``DataverseClient``, the ``$filter`` builders in ``filters``,
the ``$batch`` types, and typed errors. Nothing here imports Azure Functions.
"""

from . import _filters as filters
from ._auth import TokenProvider, credential_from_config
from ._batch import BatchRequest, BatchResponse, ChangeSet
from ._client import (
    DataverseClient,
    DeadlineExceeded,
    Page,
    TokenUnavailable,
    UpsertResult,
    client_from_config,
    key_path,
    query_path,
)
from ._errors import (
    AuthenticationFailed,
    DataverseError,
    DuplicateKey,
    Forbidden,
    NotFound,
    PreconditionFailed,
    ServiceUnavailable,
    Throttled,
)

__all__ = [
    "AuthenticationFailed",
    "BatchRequest",
    "BatchResponse",
    "ChangeSet",
    "DataverseClient",
    "DataverseError",
    "DeadlineExceeded",
    "DuplicateKey",
    "Forbidden",
    "NotFound",
    "Page",
    "PreconditionFailed",
    "ServiceUnavailable",
    "Throttled",
    "TokenProvider",
    "TokenUnavailable",
    "UpsertResult",
    "client_from_config",
    "credential_from_config",
    "filters",
    "key_path",
    "query_path",
]
