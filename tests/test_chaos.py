"""Chaos: the call sync killed at random points, racing, throttled, losing its token and its storage;
presence events delivered twice, out of order and late. Every Work call must end up in Dataverse
exactly once, compared against the Enreach emulator's own record set."""

from __future__ import annotations

import contextlib
import random
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from bridge.settings import load_settings
from call_sync.calls import call_key, sync_phone_calls
from call_sync.parking import ParkedCalls
from call_sync.runtime import lookup_for
from call_sync.runtime import options as options_for
from core.schema import CALL_SYNC
from core.state import CheckpointStore
from emulators._protection import ServerLimits
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

    def save_run(self, name, record):
        return self._store.save_run(name, record)

    def last_run(self, name):
        return self._store.last_run(name)


def _record(
    call_id: str, user: str, start: datetime, seconds: int, direction: str, number: str, classification: str | None
) -> dict:
    """One Enreach call record in the API's field names (the one place this module writes them);
    ``user`` is the Enreach user id, whose login e-mail is ``<id>@example.fi`` here."""
    return enreach_call(
        call_id,
        f"{user}@example.fi",
        start,
        seconds=seconds,
        outgoing=direction == "out",
        number=number,
        classification=classification,
        modified=start + timedelta(seconds=seconds + 1),
    )


def _calls(rng: random.Random, count: int) -> list[dict]:
    calls = []
    for i in range(count):
        start = NOW - timedelta(hours=3) + timedelta(minutes=i * 3 + rng.randint(0, 2))
        calls.append(
            _record(
                f"k{i:03d}",
                rng.choice([*USERS, "ghost"]),
                start,
                rng.choice([3, 45, 120, 600]),
                rng.choice(["in", "out"]),
                rng.choice(["+358501234567", "+358409998877"]),
                rng.choice(["Work", "Work", "Work", "Private", None]),
            )
        )
    return calls


def _parsed(world) -> list[EnreachCall]:
    """The emulator's call records as the app reads them, each with the user its query named."""
    return [EnreachCall.from_api(item, user_id=item["UserName"].split("@")[0]) for item in world.enreach.calls]


def _to_sync(world, users=USERS) -> list[EnreachCall]:
    return [
        call
        for call in _parsed(world)
        if call.classification == "Work" and call.duration_seconds >= 10 and call.user_id in users
    ]


def _expected(world, users=USERS) -> list[str]:
    return sorted(call_key(call) for call in _to_sync(world, users))


def _synced(world) -> list[str]:
    return sorted(r[CALL_SYNC.call_id_column] for r in world.dataverse.rows("phonecalls"))


@pytest.fixture(params=["single-stream", "parallel"])
def chaos_env(request, world, azurite):
    if request.param == "parallel":  # Dataverse recommends 4 in flight: the writes go out in parallel
        world.dataverse.configure_limits(ServerLimits(dop_hint=4))
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
    return settings, store, _parking(settings)


def _parking(settings) -> ParkedCalls:
    return ParkedCalls(settings.storage_connection_string, table_name=f"p{uuid.uuid4().hex[:12]}")


def _run(settings, store, session=None, *, parking, now=NOW):
    client = dataverse_client_for(settings, session=session)
    enreach = enreach_client_for(settings)
    lookup = lookup_for(settings, client)
    return sync_phone_calls(enreach, client, store, lookup, options_for(settings), parking=parking, now=now)


@pytest.mark.parametrize("seed", range(50))
def test_killed_at_a_random_point_then_rerun_leaves_every_call_exactly_once(world, chaos_env, seed):
    settings, store, parking = chaos_env
    rng = random.Random(seed)
    world.enreach.load({"calls": _calls(rng, 18)})
    for _ in range(rng.randint(1, 2)):  # one or two crashed runs
        session = ChaosSession(die_after=rng.randint(1, 10), lose_answer=rng.random() < 0.5)
        try:
            _run(settings, DyingStore(store, die=rng.random() < 0.3), session, parking=parking)
        except Killed:
            pass
    final = _run(settings, store, parking=parking)
    assert final.failed == 0
    assert _synced(world) == _expected(world), f"seed {seed}"
    for row in world.dataverse.rows("phonecalls"):
        assert row["statecode"] == 1  # never left open by a crash between create and complete


class DyingParking:
    """The parked calls' store, dying at its ``die_at``-th change (park, expire, release)."""

    def __init__(self, parking: ParkedCalls, die_at: int | None) -> None:
        self._parking, self._left = parking, die_at

    def _change(self) -> None:
        if self._left is not None:
            self._left -= 1
            if self._left < 0:
                raise Killed

    def all(self):
        return self._parking.all()

    def park(self, *args, **kwargs):
        self._change()
        return self._parking.park(*args, **kwargs)

    def expire(self, *args, **kwargs):
        self._change()
        return self._parking.expire(*args, **kwargs)

    def release(self, keys):
        for key in keys:
            self._change()
            self._parking.release([key])

    def purge_expired(self, now):
        return self._parking.purge_expired(now)


GHOST, GHOST_DV = "ghost", "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a09"
EVERYONE = {**USERS, GHOST: GHOST_DV}


def _agent_made(world, rng: random.Random) -> dict[str, str]:
    """For about half of the calls to sync, the agent logged a phonecall (no call id) within 40 s of
    its start, with the number in local format; returns call key -> that phonecall's id."""
    rows, made = [], {}
    for call in _to_sync(world, EVERYONE):
        if rng.random() < 0.5:
            activity = str(uuid.uuid4())
            start = call.start + timedelta(seconds=rng.randint(-40, 40))
            rows.append(
                {
                    "activityid": activity,
                    "subject": f"agent's notes {call.call_id}",
                    "phonenumber": "0" + str(call.other_number)[4:],
                    "actualstart": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "_ownerid_value": EVERYONE[str(call.user_id)],
                    "statecode": rng.choice([0, 0, 1]),
                }
            )
            made[call_key(call)] = activity
    world.dataverse.load({"phonecalls": rows})
    return made


def _keys(world) -> list[str]:
    return sorted(
        r[CALL_SYNC.call_id_column] for r in world.dataverse.rows("phonecalls") if r.get(CALL_SYNC.call_id_column)
    )


@pytest.mark.parametrize("seed", range(30))
def test_killed_at_any_point_with_adoption_and_parking_every_call_ends_exactly_once(world, chaos_env, seed):
    settings, store, parking = chaos_env
    rng = random.Random(1000 + seed)
    world.enreach.load({"directory": [{"Id": GHOST, "Email": "new.hire@example.fi"}], "calls": _calls(rng, 18)})
    made = _agent_made(world, rng)
    for _ in range(rng.randint(1, 2)):  # one or two crashed runs
        session = ChaosSession(die_after=rng.randint(1, 12), lose_answer=rng.random() < 0.5)
        dying_parking = DyingParking(parking, rng.choice([None, 0, 1, 2]))
        with contextlib.suppress(Killed):
            _run(settings, DyingStore(store, die=rng.random() < 0.3), session, parking=dying_parking)
    final = _run(settings, store, parking=parking)
    assert final.failed == 0 and final.throttled == 0
    ghost_calls = sorted(call_key(c) for c in _to_sync(world, {GHOST: GHOST_DV}))
    assert sorted(p.key for p in parking.all()) == ghost_calls, f"seed {seed}"
    assert _keys(world) == _expected(world), f"seed {seed}"
    # The new employee gets her Dataverse user; later runs (no backfill) sync her parked calls.
    world.dataverse.load(
        {"systemusers": [{"systemuserid": GHOST_DV, "fullname": "New", "internalemailaddress": "new.hire@example.fi"}]}
    )
    for _ in range(rng.randint(0, 1)):  # perhaps killed once more
        session = ChaosSession(die_after=rng.randint(1, 6), lose_answer=rng.random() < 0.5)
        with contextlib.suppress(Killed):
            _run(
                settings,
                store,
                session,
                parking=DyingParking(parking, rng.choice([None, 0])),
                now=NOW + timedelta(hours=1),
            )
    later = _run(settings, store, parking=parking, now=NOW + timedelta(hours=2))
    assert later.failed == 0 and parking.all() == [], f"seed {seed}"
    assert _keys(world) == _expected(world, EVERYONE), f"seed {seed}"
    rows = world.dataverse.rows("phonecalls")
    by_id = {r["activityid"]: r for r in rows}
    for key, activity in made.items():  # every agent-made phonecall became its call's record
        assert by_id[activity][CALL_SYNC.call_id_column] == key, f"seed {seed}: {key}"
        assert by_id[activity]["subject"].startswith("agent's notes")
    assert len(rows) == len(_keys(world))  # no agent-made phonecall left beside a second activity
    for row in rows:
        assert row["statecode"] == 1  # never left open by a crash


def test_racing_runs_under_random_throttling_and_server_errors(world, chaos_env):
    settings, store, parking = chaos_env
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
            _run(settings, store, parking=parking)
        except Exception as error:  # a run that gives up is fine: the next one retries
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.dataverse.clear_faults()
    world.enreach.clear_faults()
    _run(settings, store, parking=parking)
    assert _synced(world) == _expected(world)


def test_token_expiry_mid_run_is_survived(world, chaos_env):
    settings, store, parking = chaos_env
    world.enreach.load({"calls": _calls(random.Random(3), 20)})
    expire_at = {2, 5}
    issued = world.issuer.issued_count
    session = ChaosSession(on_request=lambda n: world.issuer.expire_all() if n in expire_at else None)
    report = _run(settings, store, session, parking=parking)
    assert report.failed == 0 and _synced(world) == _expected(world)
    assert world.issuer.issued_count - issued == 3  # the first token, then one fresh token per expiry


def test_azurite_restarted_mid_run_loses_the_checkpoint_but_no_call(world, chaos_env, azurite):
    settings, store, parking = chaos_env
    world.enreach.load({"calls": _calls(random.Random(5), 12)})

    def restart_storage(n):
        if n == 3:
            azurite.restart()

    session = ChaosSession(on_request=restart_storage)
    with contextlib.suppress(Exception):
        _run(settings, store, session, parking=parking)  # its checkpoint write meets an empty, restarted Azurite
    fresh = CheckpointStore(settings.storage_connection_string, table_name=f"x{uuid.uuid4().hex[:12]}")
    report = _run(
        settings, fresh, parking=_parking(settings)
    )  # no checkpoint: the day is read again; nothing is written twice
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


def _follow_up_world(world, rng: random.Random) -> list[dict]:
    """Calls of two customers' numbers: misses (EndResult non-zero) and answered calls, some with a
    transcript (UNVERIFIED field TranscriptId), half of those still Pending."""
    calls = []
    for i in range(14):
        start = NOW - timedelta(hours=3) + timedelta(minutes=i * 4)
        missed = rng.random() < 0.5
        record = _record(
            f"f{i:02d}",
            rng.choice(list(USERS)),
            start,
            0 if missed else rng.choice([45, 120]),
            "in" if missed else rng.choice(["in", "out"]),
            rng.choice(["+358501234567", "+358409998877"]),
            "Work",
        )
        record["EndResult"] = 1 if missed else 0
        if not missed and rng.random() < 0.6:
            record["TranscriptId"] = f"tr-{i}"
            world.enreach.set_transcript(f"tr-{i}", rng.choice(["Pending", "Completed"]), f"words of call {i}")
        calls.append(record)
    return calls


@pytest.mark.parametrize("die_after", range(1, 13))
@pytest.mark.parametrize("lose_answer", [False, True])
def test_killed_at_every_request_follow_ups_and_transcript_notes_end_exactly_once(
    world, chaos_env, die_after, lose_answer
):
    from call_sync.followups import is_missed
    from call_sync.transcripts import PendingTranscripts, note_id
    from core.schema import FOLLOW_UPS

    settings, store, parking = chaos_env
    rng = random.Random(die_after)
    world.enreach.load({"calls": _follow_up_world(world, rng)})
    pending = PendingTranscripts(settings.storage_connection_string, table_name=f"t{uuid.uuid4().hex[:12]}")

    def run(session=None, now=NOW):
        client = dataverse_client_for(settings, session=session)
        options = replace(options_for(settings), transcripts=True)
        return sync_phone_calls(
            enreach_client_for(settings),
            client,
            store,
            lookup_for(settings, client),
            options,
            parking=parking,
            now=now,
            transcripts=pending,
        )

    with contextlib.suppress(Killed):
        run(ChaosSession(die_after=die_after, lose_answer=lose_answer))
    for transcript_id in list(world.enreach.transcripts):  # transcription finishes meanwhile
        world.enreach.set_transcript(transcript_id, "Completed", world.enreach.transcripts[transcript_id]["Text"])
    with contextlib.suppress(Killed):
        run(ChaosSession(die_after=die_after + 3, lose_answer=lose_answer), now=NOW + timedelta(minutes=5))
    final = run(now=NOW + timedelta(minutes=10))
    assert final.failed == 0 and final.throttled == 0
    parsed = sorted(_parsed(world), key=lambda c: c.start)
    assert _synced(world) == sorted(call_key(c) for c in parsed)
    tasks = world.dataverse.rows("tasks")
    for number in {c.other_number for c in parsed}:
        mine = [c for c in parsed if c.other_number == number]
        open_tasks = [t for t in tasks if t.get(FOLLOW_UPS.follow_up_key_column) == number]
        assert len(open_tasks) == (1 if is_missed(mine[-1]) else 0), f"{number}: {tasks}"
        if open_tasks:  # the open one lists every miss since the last answered call, once each
            since_answer = []
            for call in mine:
                since_answer = [*since_answer, call_key(call)] if is_missed(call) else []
            listed = [
                line.split()[2] for line in open_tasks[0]["description"].splitlines() if line.startswith("Missed")
            ]
            assert listed == since_answer
    every_listed = [
        line.split()[2] for t in tasks for line in str(t["description"]).splitlines() if line.startswith("Missed call")
    ]
    assert len(every_listed) == len(set(every_listed))  # no miss added twice to any follow-up
    notes = world.dataverse.rows("annotations")
    with_transcript = sorted(note_id(call_key(c)) for c in parsed if c.transcript_id)
    assert sorted(n["annotationid"] for n in notes) == with_transcript
    assert pending.all() == []
