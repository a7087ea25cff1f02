"""Process-wide clients shared by every job, built on first use from the settings: the Dataverse
client, the Enreach client and the checkpoint store. Each job's ``runtime.py`` builds its own
services from these and from its own section."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from .settings import get_settings

if TYPE_CHECKING:
    from core.state import CheckpointStore
    from dataverse import DataverseClient
    from enreach import EnreachClient

__all__ = ["checkpoint_store", "dataverse_client", "enreach_client"]


@lru_cache(maxsize=1)
def dataverse_client() -> DataverseClient:
    import requests
    from requests.adapters import HTTPAdapter

    from dataverse import client_from_config

    settings = get_settings()
    session = requests.Session()
    # one pooled connection per concurrent caller lookup, so a routing burst reuses connections
    lookups = settings.routing.max_lookups if settings.has("routing") else 0
    adapter = HTTPAdapter(pool_maxsize=max(10, lookups, settings.dataverse.max_parallel_batches + 2))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return client_from_config(settings.dataverse, session=session)


@lru_cache(maxsize=1)
def enreach_client() -> EnreachClient:
    from enreach import client_from_config

    return client_from_config(get_settings().enreach)


@lru_cache(maxsize=1)
def checkpoint_store() -> CheckpointStore:
    from core.state import CheckpointStore

    return CheckpointStore(get_settings().storage_connection_string)
