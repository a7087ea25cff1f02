"""Chaos: the call sync killed at random points, racing, throttled, losing its token and its storage;
presence events delivered twice, out of order and late. Every Work call must end up in Dataverse
exactly once, compared against the Enreach emulator's own record set."""

from __future__ import annotations

import contextlib
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from call_sync.calls import call_key, sync_phone_calls
from call_sync.runtime import lookup_for
from call_sync.runtime import options as options_for
from core.schema import CALL_SYNC
from core.settings import load_settings
from core.state import CheckpointStore
from emulators._server import FaultRule
from enreach import EnreachCall, EnreachClient
from sandbox.services import provision_app_schema
from tests.helpers import dataverse_client_for, enreach_call, enreach_client_for, enreach_users

UTC = UTC
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
USERS = {f"e{i}": f"4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a0{i}" for i in range(1, 4)}


class Killed(BaseException):
    """Process death: a BaseException, so no ``except Exception`` in the app can swallow it."""


class ChaosSession(requests.Session):
    """The transport seam: after ``die_after`` Dataverse requests the 'process' dies, optionally
    after the last request was applied but before its answer was read; ``on_request`` runs hooks."""

    def __init__(self, die_after: int | None = None, lose_answer: bool = False, on_request=None) -> None:
        super().__init__()
        self.left, self.lose_answer, self.on_request, self.sent = die_after, lose_answer, on_request, 0

    def request(self, *args, **kwargs):  # type: ignore[override]
        self.sent += 1
        if self.on_request:
            self.on_request(self.sent)
        if self.left is not None:
            self.left -= 1
            if self.left < 0:
                raise Killed
            if self.left == 0 and self.lose_answer:
                super().request(*args, **kwargs)
                raise Killed
        return super().request(*args, **kwargs)


class DyingStore:
    def __init__(self, store: CheckpointStore, die: bool) -> None:
        self._store, self._die = store, die

    def read(self, name):
        return self._store.read(name)

    def write(self, name, value, *, expected):
        if self._die:
            raise Killed
        return self._store.write(name, value, expected=expected)


def _calls(rng: random.Random, count: int) -> list[dict]:
    calls = []
    for i in range(count):
        start = NOW - timedelta(hours=3) + timedelta(minutes=i * 3 + rng.randint(0, 2))
        seconds = rng.choice([3, 45, 120, 600])
        calls.append(
            enreach_call(
                f"k{i:03d}",
                f"{rng.choice([*USERS, 'ghost'])}@example.fi",
                start,
                seconds=seconds,
                outgoing=rng.choice([True, False]),
                number=rng.choice(["+358501234567", "+358409998877"]),
                classification=rng.choice(["Work", "Work", "Work", "Private", None]),
                modified=start + timedelta(seconds=seconds + 1),
            )
        )
    return calls


def _expected(world) -> list[str]:
    keys = []
    for item in world.enreach.calls:
        user = item["UserName"].split("@")[0]
        call = EnreachCall.from_api(item, user_id=user)
        if call.classification == "Work" and call.duration_seconds >= 10 and user in USERS:
            keys.append(call_key(call))
    return sorted(keys)


def _synced(world) -> list[str]:
    return sorted(r[CALL_SYNC.call_id_column] for r in world.dataverse.rows("phonecalls"))


@pytest.fixture()
def chaos_env(world, azurite):
    world.dataverse.load(
        {
            "systemusers": [
                {"systemuserid": dv, "fullname": e, CALL_SYNC.user_id_column: e} for e, dv in USERS.items()
            ],
            "accounts": [{"name": "Oy", "telephone1": "+358 50 123 4567"}],
        }
    )
    provision_app_schema(world.dataverse)
    world.enreach.load(enreach_users(*((e, f"{e}@example.fi", None) for e in [*USERS, "ghost"])))
    settings = load_settings(
        world.app_settings(
            {
                "ROUTING_API_KEY": "test-routing-key-0123456789",
                "AzureWebJobsStorage": azurite.connection_string,
                "CALL_SYNC_BATCH_SIZE": "4",
                "CALL_DURATION_LIMIT": "10",
            }
        )
    )
    store = CheckpointStore(settings.storage_connection_string, table_name=f"x{uuid.uuid4().hex[:12]}")
    return settings, store


def _run(settings, store, session=None):
    client = dataverse_client_for(settings, session=session)
    enreach = enreach_client_for(settings)
    lookup = lookup_for(settings, client)
    return sync_phone_calls(enreach, client, store, lookup, options_for(settings), now=NOW)


@pytest.mark.parametrize("seed", range(50))
def test_killed_at_a_random_point_then_rerun_leaves_every_call_exactly_once(world, chaos_env, seed):
    settings, store = chaos_env
    rng = random.Random(seed)
    world.enreach.load({"calls": _calls(rng, 18)})
    for _ in range(rng.randint(1, 2)):  # one or two crashed runs
        session = ChaosSession(die_after=rng.randint(1, 10), lose_answer=rng.random() < 0.5)
        try:
            _run(settings, DyingStore(store, die=rng.random() < 0.3), session)
        except Killed:
            pass
    final = _run(settings, store)
    assert final.failed == 0
    assert _synced(world) == _expected(world), f"seed {seed}"
    for row in world.dataverse.rows("phonecalls"):
        assert row["statecode"] == 1  # never left open by a crash between create and complete


def test_racing_runs_under_random_throttling_and_server_errors(world, chaos_env):
    settings, store = chaos_env
    world.enreach.load({"calls": _calls(random.Random(7), 40)})
    world.dataverse.seed(7)
    world.dataverse.inject(
        FaultRule(status=429, retry_after=0, count=10_000, chance=0.15),
        FaultRule(status=503, retry_after=0, count=10_000, chance=0.1),
    )
    world.enreach.inject(FaultRule(status=429, retry_after=0, count=10_000, chance=0.15))
    errors: list[BaseException] = []

    def run():
        try:
            _run(settings, store)
        except Exception as error:  # a run that gives up is fine: the next one retries
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.dataverse.clear_faults()
    world.enreach.clear_faults()
    _run(settings, store)
    assert _synced(world) == _expected(world)


def test_token_expiry_mid_run_is_survived(world, chaos_env):
    settings, store = chaos_env
    world.enreach.load({"calls": _calls(random.Random(3), 20)})
    expire_at = {2, 5}
    issued = world.issuer.issued_count
    session = ChaosSession(on_request=lambda n: world.issuer.expire_all() if n in expire_at else None)
    report = _run(settings, store, session)
    assert report.failed == 0 and _synced(world) == _expected(world)
    assert world.issuer.issued_count - issued == 3  # the first token, then one fresh token per expiry


def test_azurite_restarted_mid_run_loses_the_checkpoint_but_no_call(world, chaos_env, azurite):
    settings, store = chaos_env
    world.enreach.load({"calls": _calls(random.Random(5), 12)})

    def restart_storage(n):
        if n == 3:
            azurite.restart()

    session = ChaosSession(on_request=restart_storage)
    with contextlib.suppress(Exception):
        _run(settings, store, session)  # its checkpoint write meets an empty, restarted Azurite
    fresh = CheckpointStore(settings.storage_connection_string, table_name=f"x{uuid.uuid4().hex[:12]}")
    report = _run(settings, fresh)  # no checkpoint: the day is read again; nothing is written twice
    assert report.failed == 0
    assert _synced(world) == _expected(world)


@pytest.mark.parametrize("seed", range(20))
def test_presence_events_twice_out_of_order_and_late_never_leave_the_agent_in_dnd(world, azurite, seed):
    from emulators.dataverse import OMNICHANNEL_PRESENCES
    from enreach import EventMap, IgnoredEvent, parse_event
    from presence_sync.mapping import parse_mapping
    from presence_sync.service import PresenceSync
    from presence_sync.state import PresenceStore

    agent, enreach_id = USERS["e1"], "e1"
    world.dataverse.load(
        {"systemusers": [{"systemuserid": agent, "fullname": "A", CALL_SYNC.user_id_column: enreach_id}]}
    )
    provision_app_schema(world.dataverse)
    away = OMNICHANNEL_PRESENCES["Away"][0]
    world.dataverse.set_presence(agent, away)
    settings = load_settings(
        world.app_settings(
            {"ROUTING_API_KEY": "test-routing-key-0123456789", "AzureWebJobsStorage": azurite.connection_string}
        )
    )
    client = dataverse_client_for(settings)
    sync = PresenceSync(
        dataverse=client,
        enreach=EnreachClient("x@example.fi", "x", api_url=world.enreach.url),
        store=PresenceStore(settings.storage_connection_string, table_name=f"q{uuid.uuid4().hex[:12]}"),
        mapping=parse_mapping(None, None),
    )
    rng = random.Random(seed)
    events = []
    for call in ("a", "b", "c")[: rng.randint(1, 3)]:
        events += [
            {"EventType": rng.choice(["QueueCallInAllocated", "QueueCallInConnected"]), "RootEntityId": call},
            {"EventType": "TestCallEnded", "RootEntityId": call},
        ]
    events += [dict(e) for e in rng.sample(events, k=rng.randint(0, len(events)))]  # duplicates
    rng.shuffle(events)  # out of order: an end may come before its start (a late start)
    for event in events:
        parsed = parse_event({**event, "EntityId": enreach_id}, EventMap(call_end=("TestCallEnded",)))
        assert not isinstance(parsed, IgnoredEvent)
        sync.on_enreach_event(parsed)
    rows = [r for r in world.dataverse.rows("msdyn_agentstatuses") if r["_msdyn_agentid_value"] == agent]
    assert rows[0]["_msdyn_currentpresenceid_value"] == away, f"seed {seed}: {events}"
    state = sync._store.read(agent)
    assert not state.in_call and state.pending_presence is None
