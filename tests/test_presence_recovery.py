"""Presence sync recovering from what goes wrong: lost call ends (expiry and reconciliation), users
mapped late (the agent cache), no Enreach notifications at all (the polling fallback), and the
process dying between any two requests (chaos: every request of the scenario is a kill point; the
sender then delivers the unanswered event again to a fresh instance).

The service is built directly (a fake clock stands in for hours passing); Dataverse and Enreach
are the emulators over loopback HTTP and the state is in Azurite."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from azure.core.pipeline.transport import RequestsTransport

from bridge.settings import load_settings
from core.schema import CALL_SYNC
from emulators._server import FaultRule
from emulators.dataverse import OMNICHANNEL_PRESENCES
from enreach import EnreachEvent
from presence_sync.mapping import parse_mapping
from presence_sync.service import PresenceSync, UnknownAgent
from presence_sync.state import PresenceStore
from sandbox.services import provision_app_schema
from tests.helpers import dataverse_client_for, enreach_client_for
from tests.test_chaos import ChaosSession, Killed

AGENT = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01"
ENREACH_ID = "e1a0c001-0000-4000-8000-000000000001"
LATE_AGENT = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a02"
LATE_ENREACH_ID = "e1a0c001-0000-4000-8000-000000000002"
IDS = {name: pid for name, (pid, _) in OMNICHANNEL_PRESENCES.items()}
AVAILABLE, BUSY, DND, AWAY = IDS["Available"], IDS["Busy"], IDS["Busy - DND"], IDS["Away"]
TYPE_IDS = {"Busy": 2, "DND": 3, "OffWork": 4, "Away": 6}
FIELD_MAP = {"availability": {"event_types": TYPE_IDS}, "events": {"call_end": ["TestCallEnded"]}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def minutes(self, value: float) -> None:
        self.now += value * 60


@pytest.fixture()
def env(world, azurite):
    world.dataverse.load(
        {
            "systemusers": [
                {"systemuserid": AGENT, "fullname": "Aino", CALL_SYNC.user_id_column: ENREACH_ID},
                {"systemuserid": LATE_AGENT, "fullname": "Eino"},  # not mapped yet
            ]
        }
    )
    provision_app_schema(world.dataverse)
    world.dataverse.set_presence(AGENT, AWAY)
    world.enreach.load(
        {"users": [{"Id": ENREACH_ID, "UserName": "aino@example.fi"}, {"Id": LATE_ENREACH_ID, "UserName": "e@x.fi"}]}
    )
    settings = load_settings(
        world.app_settings(
            {
                "ROUTING_API_KEY": "test-routing-key-0123456789",
                "AzureWebJobsStorage": azurite.connection_string,
                "ENREACH_FIELD_MAP": json.dumps(FIELD_MAP),
            }
        )
    )
    return settings, f"r{uuid.uuid4().hex[:12]}"


def build(
    settings, table, clock=None, *, dataverse_session=None, enreach_session=None, storage_session=None, echo_ttl=30.0
):
    options = {}
    if storage_session is not None:
        options["transport"] = RequestsTransport(session=storage_session, session_owner=False)
    return PresenceSync(
        dataverse=dataverse_client_for(settings, session=dataverse_session),
        enreach=enreach_client_for(settings, session=enreach_session),
        store=PresenceStore(settings.storage_connection_string, table_name=table, **options),
        mapping=parse_mapping(None, None),
        max_call_minutes=240,
        echo_ttl_seconds=echo_ttl,
        clock=clock or Clock(),
    )


def start(call_id, user=ENREACH_ID):
    return EnreachEvent("call_start", user, call_id=call_id, event_type="QueueCallInAllocated")


def end(call_id, user=ENREACH_ID):
    return EnreachEvent("call_end", user, call_id=call_id, event_type="TestCallEnded")


def oc_presence(world, agent=AGENT):
    rows = [r for r in world.dataverse.rows("msdyn_agentstatuses") if r["_msdyn_agentid_value"] == agent]
    return rows[0]["_msdyn_currentpresenceid_value"] if rows else None


def expired_lines(caplog):
    return [json.loads(r.getMessage()) for r in caplog.records if "presence_call_expired" in r.getMessage()]


# -- lost call ends ----------------------------------------------------------------------------


def test_a_lost_call_end_is_repaired_by_expiry_at_the_next_event(world, env, caplog):
    settings, table = env
    clock = Clock()
    sync = build(settings, table, clock)
    sync.on_enreach_event(start("lost"))  # its end never comes
    assert oc_presence(world) == DND
    clock.minutes(239)
    sync.on_enreach_event(end("never-started"))
    assert oc_presence(world) == DND  # not yet: the call may still be on
    clock.minutes(2)
    with caplog.at_level(logging.INFO, logger="presence_sync"):
        outcome = sync.on_enreach_event(end("never-started-either"))
    assert outcome.action == "restored" and oc_presence(world) == AWAY
    assert expired_lines(caplog)[0]["calls"] == 1 and expired_lines(caplog)[0]["agent"] == AGENT
    assert not sync._store.read(AGENT).in_call


def test_a_new_call_after_a_lost_end_keeps_the_presence_from_before_both(world, env):
    settings, table = env
    clock = Clock()
    sync = build(settings, table, clock)
    sync.on_enreach_event(start("lost"))
    clock.minutes(300)
    sync.on_enreach_event(start("next"))  # Omnichannel shows our DND now; Away is what comes back
    assert oc_presence(world) == DND
    sync.on_enreach_event(end("next"))
    assert oc_presence(world) == AWAY


def test_a_lost_call_end_is_repaired_by_the_reconciliation(world, env, caplog):
    settings, table = env
    clock = Clock()
    sync = build(settings, table, clock)
    sync.on_enreach_event(start("lost"))
    clock.minutes(100)
    assert sync.reconcile().expired_calls == 0 and oc_presence(world) == DND
    clock.minutes(141)
    with caplog.at_level(logging.INFO, logger="presence_sync"):
        report = sync.reconcile()
    assert (report.expired_calls, report.completed_writes, report.failed) == (1, 1, 0)
    assert oc_presence(world) == AWAY and expired_lines(caplog)
    assert any('"event": "reconcile_presence", "outcome": ' in r.getMessage() for r in caplog.records)


def test_the_reconciliation_mirrors_an_availability_change_whose_notification_was_lost(world, env):
    settings, table = env
    sync = build(settings, table)
    sync.on_enreach_event(start("c"))
    sync.on_enreach_event(end("c"))  # the agent is known to the app now
    assert sync.reconcile().baselined == 1  # Enreach says Available: remembered
    world.enreach.set_availability(ENREACH_ID, TYPE_IDS["Busy"])  # no webhook configured: nobody hears of it
    report = sync.reconcile()
    assert report.mirrored == 1 and oc_presence(world) == BUSY


# -- users mapped late ---------------------------------------------------------------------------


def test_a_newly_mapped_agent_is_served_within_a_minute(world, env):
    settings, table = env
    clock = Clock()
    sync = build(settings, table, clock)
    with pytest.raises(UnknownAgent):
        sync.on_enreach_event(start("x", user=LATE_ENREACH_ID))
    world.dataverse.touch("systemusers", LATE_AGENT, **{CALL_SYNC.user_id_column: LATE_ENREACH_ID})  # user id sync
    clock.minutes(1)
    assert sync.on_enreach_event(start("x", user=LATE_ENREACH_ID)).action == "dnd set"
    assert oc_presence(world, LATE_AGENT) == DND


# -- the polling fallback ------------------------------------------------------------------------


def test_polling_mirrors_a_change_made_only_in_enreach_and_not_our_own(world, env):
    settings, table = env
    sync = build(settings, table)
    first = sync.poll(pause_seconds=0)
    assert (first.agents, first.baselined, first.mirrored) == (1, 1, 0)  # only mapped agents; baseline first
    world.enreach.set_availability(ENREACH_ID, TYPE_IDS["Busy"])  # in Enreach only; no notification sent
    world.dataverse.reset_requests()
    report = sync.poll(pause_seconds=0)
    assert report.mirrored == 1 and oc_presence(world) == BUSY
    assert world.dataverse.request_count("CCaaS_ModifyAgentPresence") == 1
    # Our own change to Enreach (mirrored from Omnichannel) is no news to the next poll.
    world.dataverse.set_presence(AGENT, AWAY)
    sync.on_omnichannel_change(AGENT, AWAY)
    assert world.enreach.current_type(ENREACH_ID) == TYPE_IDS["Away"]
    world.dataverse.reset_requests()
    report = sync.poll(pause_seconds=0)
    assert (report.mirrored, report.unchanged) == (0, 1)
    assert world.dataverse.request_count("CCaaS_ModifyAgentPresence") == 0


def test_polling_respects_enreach_throttling(world, env):
    settings, table = env
    sync = build(settings, table)
    sync.poll(pause_seconds=0)
    world.enreach.set_availability(ENREACH_ID, TYPE_IDS["Away"])
    world.enreach.inject(FaultRule(status=429, retry_after=0, count=1, path="/availability/current"))
    assert sync.poll(pause_seconds=0).mirrored == 1  # one 429 honoured and retried
    world.enreach.inject(FaultRule(status=429, retry_after=0, count=99, path="/availability/current"))
    report = sync.poll(pause_seconds=0)
    assert report.failed == 1 and "next run" in report.stopped  # stops; the next run carries on
    world.enreach.clear_faults()


def test_polling_is_on_by_default_only_while_no_availability_notification_is_mapped(world):
    base = world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"})
    assert load_settings(base).presence_polling_enabled
    mapped = {**base, "ENREACH_FIELD_MAP": json.dumps({"events": {"availability_changed": ["UserAvailability"]}})}
    assert not load_settings(mapped).presence_polling_enabled
    assert load_settings({**mapped, "PRESENCE_POLLING": "on"}).presence_polling_enabled
    assert not load_settings({**base, "PRESENCE_POLLING": "off"}).presence_polling_enabled


# -- chaos: the process dies between any two requests ----------------------------------------------


class SharedChaos:
    """One kill counter over every transport (Dataverse, Enreach, Table Storage): request number
    ``die_at`` kills the 'process', before it is sent or (``lose_answer``) after it was applied."""

    def __init__(self, die_at: int | None, lose_answer: bool) -> None:
        self.count, self.die_at, self.lose_answer = 0, die_at, lose_answer

    def session(self) -> ChaosSession:
        chaos = self

        class Counted(ChaosSession):
            def request(self, *args, **kwargs):  # type: ignore[override]
                chaos.count += 1
                if chaos.die_at is not None and chaos.count == chaos.die_at:
                    if chaos.lose_answer:
                        super().request(*args, **kwargs)
                    raise Killed
                return super().request(*args, **kwargs)

        return Counted()


SCENARIOS = {
    # events in order; the expected Omnichannel presence and Enreach availability afterwards
    "call": ([("enreach", start("k1")), ("enreach", end("k1"))], AWAY, "Away"),
    "manual change in a call": (
        [("enreach", start("k1")), ("omnichannel", BUSY), ("enreach", end("k1"))],
        BUSY,
        "Busy",
    ),
    "enreach change, then a call": (
        [("enreach availability", "Busy"), ("enreach", start("k1")), ("enreach", end("k1"))],
        BUSY,
        "Busy",
    ),
}


def _deliver(sync, world, kind, payload):
    if kind == "enreach":
        return sync.on_enreach_event(payload)
    if kind == "enreach availability":  # the agent picks it in Enreach; its notification follows
        if world.enreach.current_type(ENREACH_ID) != TYPE_IDS[payload]:
            world.enreach.set_availability(ENREACH_ID, TYPE_IDS[payload])
        return sync.on_enreach_event(EnreachEvent("availability", ENREACH_ID, event_type="EmulatorAvailabilityChanged"))
    world.dataverse.set_presence(AGENT, payload)  # the agent picks it (the row changes first)
    return sync.on_omnichannel_change(AGENT, payload)


def _requests_in(settings, world, events):
    chaos = SharedChaos(None, False)
    sync = build(
        settings,
        f"c{uuid.uuid4().hex[:12]}",
        dataverse_session=chaos.session(),
        enreach_session=chaos.session(),
        storage_session=chaos.session(),
    )
    world.enreach.set_availability(ENREACH_ID, TYPE_IDS["Away"])
    for kind, payload in events:
        _deliver(sync, world, kind, payload)
    return chaos.count


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_killed_between_any_two_requests_then_redelivered_ends_consistent(world, env, scenario):
    settings, _ = env
    events, expected_oc, expected_enreach = SCENARIOS[scenario]
    total = _requests_in(settings, world, events)
    assert total > 10
    runs = 0
    for die_at in range(1, total + 1):
        for lose_answer in (False, True):
            world.dataverse.set_presence(AGENT, AWAY)
            world.enreach.set_availability(ENREACH_ID, TYPE_IDS["Away"])
            table = f"c{uuid.uuid4().hex[:12]}"
            chaos = SharedChaos(die_at, lose_answer)
            sync = build(
                settings,
                table,
                dataverse_session=chaos.session(),
                enreach_session=chaos.session(),
                storage_session=chaos.session(),
            )
            for kind, payload in events:
                try:
                    _deliver(sync, world, kind, payload)
                except Killed:
                    # A new instance; the sender had no answer, so it delivers the same event again.
                    sync = build(settings, table)
                    _deliver(sync, world, kind, payload)
            runs += 1
            where = f"{scenario}: killed at request {die_at}/{total}, answer lost: {lose_answer}"
            assert oc_presence(world) == expected_oc, where
            type_id = world.enreach.current_type(ENREACH_ID)
            assert type_id == TYPE_IDS[expected_enreach], where
            state = PresenceStore(settings.storage_connection_string, table_name=table).read(AGENT)
            assert not state.in_call and state.pending_presence is None and not state.manual_during_call, where
    assert runs == 2 * total


# -- pure logic --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["a/b", "x\\y", "#", "q?", "\x00", "\x7f", "\x85", "\ud800", "é", "", "a" * 201, "~ab"]
)
def test_storage_keys_of_any_text_are_valid_and_distinct_from_plain_ones(text):
    from presence_sync.state import storage_key

    key = storage_key(text)
    assert key.startswith("~") and len(key) == 65 and all(c in "~0123456789abcdef" for c in key)
    assert storage_key(text + "x") != key


def test_plain_ids_stay_readable_keys():
    from presence_sync.state import storage_key

    assert storage_key(AGENT) == AGENT and storage_key("e1.a_b-C") == "e1.a_b-C"


# -- writes landing out of order, and a DND no debt remembers ------------------------------------


def test_a_stale_write_landing_after_a_newer_one_is_undone(world, env):
    """Instance A owes DND (its write is slow); meanwhile the call ends on instance B, which writes
    and settles the restore. A's DND then lands: on settling, A finds a newer wish and writes it again."""
    settings, table = env
    sync = build(settings, table)
    sync.on_enreach_event(start("s"))
    sync.on_enreach_event(end("s"))
    assert oc_presence(world) == AWAY
    sync._finish(AGENT, DND)  # A's late DND write, for a debt that is no longer there
    assert oc_presence(world) == AWAY
    state = sync._store.read(AGENT)
    assert state.pending_presence is None and state.wanted_presence == AWAY


def test_the_reconciliation_lifts_a_dnd_that_nothing_owes(world, env):
    settings, table = env
    clock = Clock()
    sync = build(settings, table, clock, echo_ttl=0)  # no webhook here consumes our echoes: none expected
    sync.on_enreach_event(start("d"))
    sync.on_enreach_event(end("d"))
    world.dataverse.set_presence(AGENT, DND)  # e.g. a stale write; no webhook reaches the app
    clock.minutes(11)  # older than the grace during which a DND may be the agent's own, in flight
    report = sync.reconcile()
    assert report.completed_writes == 1 and oc_presence(world) == AWAY
    world.dataverse.set_presence(AGENT, DND)
    sync.on_omnichannel_change(AGENT, DND)  # the agent's own DND (its webhook arrived): left alone
    clock.minutes(11)
    assert sync.reconcile().completed_writes == 0 and oc_presence(world) == DND


def test_a_manual_change_in_a_call_wins_even_when_it_cannot_be_mirrored_to_enreach(world, env, azurite):
    """Default mapping: Busy has no EventTypeID (only DND = 3 is evidenced), so Busy is not mirrored to
    Enreach; the agent's Busy, picked by hand mid-call, must still be kept when the call ends."""
    _, table = env
    settings = load_settings(
        world.app_settings(
            {
                "ROUTING_API_KEY": "test-routing-key-0123456789",
                "AzureWebJobsStorage": azurite.connection_string,
                "ENREACH_FIELD_MAP": json.dumps({"events": {"call_end": ["TestCallEnded"]}}),
            }
        )
    )
    sync = build(settings, table, echo_ttl=0)
    sync.on_enreach_event(start("m"))
    world.dataverse.set_presence(AGENT, BUSY)
    outcome = sync.on_omnichannel_change(AGENT, BUSY)
    assert outcome.action == "ignored" and "kept after it" in outcome.detail
    assert sync.on_enreach_event(end("m")).action == "kept manual"
    assert oc_presence(world) == BUSY
