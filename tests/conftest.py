"""Shared fixtures: the emulated world (token service, Dataverse, Enreach) over real loopback HTTP,
and Azurite for Table storage. Nothing here is a mock: the app's own clients talk HTTP to them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.settings import Settings, load_settings
from sandbox.services import Azurite, Services
from tests.helpers import dataverse_client_for, enreach_client_for


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """Emulators for the whole session; tests reset what they touch (see ``world``)."""
    started = Services(data={}, with_azurite=False, environ={}).start()
    os.environ["REQUESTS_CA_BUNDLE"] = started.ca.bundle_path
    yield started
    started.stop()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    if Azurite.executable() is None:
        pytest.fail("Azurite is not installed: run `npm ci` (make test does it)")
    started = Azurite().start()
    yield started
    started.stop()


@pytest.fixture()
def world(services: Services) -> Iterator[Services]:
    """The session's emulators with clean request logs, no faults, and fresh Dataverse/Enreach data."""
    for emulator in (services.dataverse, services.enreach, services.tokens):
        emulator.reset_requests()
        emulator.clear_faults()
    services.dataverse.reset()
    services.enreach.reset()
    yield services


@pytest.fixture()
def settings(world: Services) -> Settings:
    return load_settings(world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"}))


@pytest.fixture()
def dataverse_client(settings: Settings) -> Iterator[Any]:
    client = dataverse_client_for(settings)
    yield client
    client.close()


@pytest.fixture()
def enreach_client(settings: Settings) -> Iterator[Any]:
    client = enreach_client_for(settings)
    yield client
    client.close()
