"""Phone call sync cost: 10,000 Enreach calls into the Dataverse emulator with injected latency.

Reports Dataverse requests per 1,000 calls (goal <= 5, with the per-page query for calls
already synced and agent-made phonecalls to adopt) and the wall time (goal <= 15 s) of the real
sync (batched lookups, one query and one $batch write per page), beside a naive baseline
measured in the same run: one request per operation (lookup GET, adoption-candidate GET, create
POST, complete PATCH per call). ``--agent-made`` of the calls have a phonecall an agent logged
during the call, which the sync adopts. The baseline runs on a sample of the calls (it is slow
by design) and is reported per 1,000 calls.
Then the write step alone, ``$batch`` change sets beside the bulk messages CreateMultiple + UpdateMultiple
(``--bulk-calls``, ``--bulk-size``; ``benchmarks/bulk_writes.py``), with no server time and at Dataverse's pace.

Issue 23's options are on in the measured run: ``--missed`` of the calls are missed incoming calls
(follow-ups opened, added to and completed, in the same change sets as the calls), every customer
lookup expands open cases (``--cases`` of the customers have one: the call is regarding it), and
``--transcripts`` of the calls have a Completed transcript in Enreach (a note in the call's change
set; the transcript GETs go to Enreach, not Dataverse).
Run: python benchmarks/call_sync.py [--calls 10000] [--baseline-calls 300] [--batch-size 500] [--agent-made 0.05]
     [--missed 0.1] [--cases 0.1] [--transcripts 0.2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bulk_writes import bulk_refused, compare_writes
from bridge.settings import Settings, load_settings
from call_sync.calls import (
    CallSyncOptions,
    CallSyncReport,
    UserDirectory,
    _changeset,
    call_key,
    phonecall_body,
    sync_calls,
)
from call_sync.customers import choose_customer
from call_sync.runtime import lookup_for
from core.schema import CALL_SYNC
from core.state import CheckpointStore
from dataverse import DataverseClient, credential_from_config
from dataverse import filters as f
from emulators._protection import DOCUMENTED_LIMITS
from enreach import EnreachCall, client_from_config
from matching import to_e164
from routing.index_sync import sync_phone_index
from sandbox.services import Services
from tests.helpers import enreach_call

UTC = UTC


USERS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(20)]  # Dataverse users
ENREACH_IDS = [f"e-{i}" for i in range(20)]  # their Enreach user ids


def call(
    call_id: str, user: str, begin: datetime, i: int, customers: int, *, missed: bool = False, transcript: bool = False
) -> EnreachCall:
    """Call ``i`` as the Enreach client reads it: one customer of ``customers`` on the line, every
    other call outgoing, the record in the API's names (tests.helpers.enreach_call)."""
    record = enreach_call(
        call_id,
        f"{user}@example.fi",
        begin,
        seconds=0 if missed else 90,
        outgoing=i % 2 == 0 and not missed,
        number=f"+3585012{i % customers:05d}",
    )
    record["EndResult"] = 1 if missed else 0
    if transcript:
        record["TranscriptId"] = f"tr-{call_id}"
    return EnreachCall.from_api(record, user_id=user)


def make_calls(
    count: int, users: list[str], customers: int, *, missed: float = 0.0, transcripts: float = 0.0
) -> list[EnreachCall]:
    start = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    miss_every = max(1, round(1 / missed)) if missed > 0 else 0
    transcript_every = max(1, round(1 / transcripts)) if transcripts > 0 else 0
    return [
        call(
            f"bench-{i:06d}",
            users[i % len(users)],
            start + timedelta(seconds=3 * i),
            i,
            customers,
            # a customer's calls come every `customers` calls: some of them missed, some answered after
            missed=bool(miss_every) and (i + i // customers) % miss_every == 1,
            transcript=bool(transcript_every) and i % transcript_every == 3,
        )
        for i in range(count)
    ]


def bench_world(customers: int) -> tuple[Services, Settings]:
    """The tenant both call sync benchmarks use: ``USERS`` mapped to ``ENREACH_IDS``, ``customers``
    accounts, the app's schema, and the phone index synced; the caller stops the services."""
    data = {
        "dataverse": {
            "systemusers": [
                {"systemuserid": u, "fullname": f"User {i}", CALL_SYNC.user_id_column: ENREACH_IDS[i]}
                for i, u in enumerate(USERS)
            ],
            "accounts": [{"name": f"Customer {i}", "telephone1": f"+358 50 12{i:05d}"} for i in range(customers)],
        }
    }
    services = Services(data=data, environ={}).start()  # provisions the app's schema
    os.environ["REQUESTS_CA_BUNDLE"] = services.ca.bundle_path
    settings = load_settings(services.app_settings({"ROUTING_API_KEY": "benchmark-key-0123456789"}))
    sync_phone_index(
        DataverseClient(settings.dataverse.url, credential=credential_from_config(settings.dataverse)),
        CheckpointStore(settings.storage_connection_string, table_name="b" + uuid.uuid4().hex[:8]),
        phone_columns=settings.matching.phone_columns,
        region="FI",
    )
    return services, settings


def naive(calls: list[EnreachCall], client: DataverseClient, users: UserDirectory, region: str) -> None:
    """One request per operation: what a straightforward port of the vendor's plugin would do."""
    from call_sync.calls import _ENTITY_SET
    from matching import Candidate

    for call in calls:
        owner = users.by_enreach_id[call.user_id or ""]
        number = to_e164(call.other_number, region)
        found = []
        for table, entity_set, key, name in (("account", "accounts", "accountid", "name"),):
            for row in client.query(entity_set, select=[key, name], filter=f.eq("telephone1", number)):
                found.append(Candidate(table, row[key], row.get(name), {}, None))
        margin = timedelta(seconds=120)
        list(
            client.query(
                "phonecalls",
                select=["activityid", "phonenumber", "actualstart"],
                filter=f.and_(
                    f.eq(CALL_SYNC.call_id_column, None),
                    f.eq("_ownerid_value", uuid.UUID(owner)),
                    f.ge("actualstart", call.start - margin),
                    f.le("actualstart", call.start + margin),
                ),
            )
        )
        body = phonecall_body(call, owner, number, choose_customer(found, owner))
        new_id = client.create("phonecalls", body)
        status = 2 if call.direction == "out" else 4
        client.update("phonecalls", new_id, {"statecode": 1, "statuscode": status})
    assert _ENTITY_SET and _changeset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--baseline-calls", type=int, default=300)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--agent-made", type=float, default=0.05, help="share of calls an agent logged meanwhile")
    parser.add_argument("--missed", type=float, default=0.1, help="share of calls that are missed (follow-ups)")
    parser.add_argument("--cases", type=float, default=0.1, help="share of customers with one open case")
    parser.add_argument("--transcripts", type=float, default=0.2, help="share of calls with a Completed transcript")
    parser.add_argument("--bulk-calls", type=int, default=10_000, help="calls for the $batch vs bulk messages writes")
    parser.add_argument("--bulk-size", type=int, default=1_000, help="targets per CreateMultiple/UpdateMultiple")
    args = parser.parse_args()

    users, enreach_ids = USERS, ENREACH_IDS
    services, settings = bench_world(args.customers)
    try:
        client = DataverseClient(settings.dataverse.url, credential=credential_from_config(settings.dataverse))
        lookup = lookup_for(settings, client)
        enreach_client = client_from_config(settings.enreach)
        directory = UserDirectory.load(client, "FI")
        lookup.find_many(["+358501200000"])  # settle the index state and the token before timing
        services.dataverse.inject(latency_ms=args.latency_ms)

        calls = make_calls(args.calls, enreach_ids, args.customers, missed=args.missed, transcripts=args.transcripts)
        for c in calls:
            if c.transcript_id:
                services.enreach.set_transcript(c.transcript_id, "Completed", f"Transcript of {c.call_id}. " * 40)
        case_every = max(1, round(1 / args.cases)) if args.cases > 0 else 0
        accounts = sorted(services.dataverse.rows("accounts"), key=lambda r: str(r["name"]))
        services.dataverse.load(
            {
                "incidents": [
                    {"title": f"Case of {a['name']}", "_customerid_value": a["accountid"], "statecode": 0}
                    for n, a in enumerate(accounts)
                    if case_every and n % case_every == 0
                ]
            }
        )
        step = max(1, round(1 / args.agent_made)) if args.agent_made > 0 else 0
        agent_made = calls[::step] if step else []
        services.dataverse.load(
            {
                "phonecalls": [
                    {
                        "subject": "logged by the agent",
                        "phonenumber": c.other_number,
                        "actualstart": (c.start + timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "_ownerid_value": users[enreach_ids.index(c.user_id or "")],
                    }
                    for c in agent_made
                ]
            }
        )
        services.dataverse.reset_requests()
        report = CallSyncReport()
        started = time.perf_counter()
        directory = UserDirectory.load(client, "FI")  # part of a run
        result = sync_calls(
            calls,
            client=client,
            lookup=lookup,
            users=directory,
            enreach_users={},
            options=CallSyncOptions(region="FI", batch_size=args.batch_size, transcripts=True),
            report=report,
            enreach=enreach_client,
        )
        batched_seconds = time.perf_counter() - started
        batched_requests = services.dataverse.request_count()
        assert not result.retry and report.created + report.adopted == args.calls, report.summary()
        assert report.adopted == len(agent_made), report.summary()
        assert report.transcripts_attached == sum(1 for c in calls if c.transcript_id), report.summary()
        assert report.follow_ups_opened > 0 or not args.missed, report.summary()
        assert report.regarding_case > 0 or not args.cases, report.summary()
        opened = [t for t in services.dataverse.rows("tasks") if t.get("enr_followupkey")]
        assert len(opened) == len({t["enr_followupkey"] for t in opened}), "one open follow-up per number"
        rows = services.dataverse.rows("phonecalls")
        synced = [r[CALL_SYNC.call_id_column] for r in rows]
        assert sorted(synced) == sorted(call_key(c) for c in calls), "every call exactly once, agent-made ones adopted"

        sample = make_calls(args.baseline_calls, enreach_ids, args.customers)
        sample = [EnreachCall(**{**c.__dict__, "call_id": "naive-" + c.call_id}) for c in sample]
        services.dataverse.reset_requests()
        started = time.perf_counter()
        naive(sample, client, directory, "FI")
        naive_seconds = time.perf_counter() - started
        naive_requests = services.dataverse.request_count()

        per_k = batched_requests * 1000 / args.calls
        naive_per_k = naive_requests * 1000 / len(sample)
        naive_time_k = naive_seconds * 1000 / len(sample)
        print(
            f"{args.calls} calls, {args.customers} customers, batch size {args.batch_size}, "
            f"{args.latency_ms:g} ms injected latency per Dataverse request; "
            f"{len(agent_made)} agent-made phonecalls adopted; with follow-ups ({report.missed} missed calls: "
            f"{report.follow_ups_opened} follow-ups opened, {report.follow_ups_added} added to, "
            f"{report.follow_ups_completed} completed), case lookup ({report.regarding_case} calls regarding a case) "
            f"and transcripts ({report.transcripts_attached} notes) on"
        )
        print(
            f"batched sync:   {batched_requests} Dataverse requests = {per_k:.2f} per 1,000 calls (goal <= 5); "
            f"wall time {batched_seconds:.1f} s (goal <= 15 s)"
        )
        print(
            f"naive baseline: {naive_per_k:.0f} requests per 1,000 calls; {naive_time_k:.1f} s per 1,000 calls "
            f"(measured on {len(sample)} calls in this run)"
        )
        print(
            f"ratio: {naive_per_k / per_k:.0f}x fewer requests; "
            f"{naive_time_k * args.calls / 1000 / batched_seconds:.1f}x faster than the baseline would take"
        )
        if args.bulk_calls:
            write_calls = make_calls(args.bulk_calls, enreach_ids, args.customers)
            print(
                "write step only, $batch change sets vs bulk messages; phonecall CreateMultiple: "
                + bulk_refused(client)
            )
            print("  (Dataverse's phonecall reference lists no bulk messages); the figures below are a what-if, with")
            print("  the emulator told to allow them (see benchmarks/bulk_writes.py)")
            print(f"  a) {args.latency_ms:g} ms latency, no server time (the overhead of each way):")
            fast = compare_writes(
                services, client, directory, write_calls, batch_size=args.batch_size, bulk_size=args.bulk_size
            )
            for figure in fast:
                print("     " + figure.line())
            print(f"     ratio: bulk/$batch time {fast[1].seconds / fast[0].seconds:.2f}")
            services.dataverse.configure_limits(replace(DOCUMENTED_LIMITS, op_ms=10.0, dop_hint=8, workers=52))
            paced = DataverseClient(
                settings.dataverse.url,
                credential=credential_from_config(settings.dataverse),
                timeout=120.0,
                max_parallel=8,
            )
            paced.whoami()  # learn x-ms-dop-hint
            print("  b) at Dataverse's pace (10 ms server time per row either way, x-ms-dop-hint 8, as backfill.py):")
            slow = compare_writes(
                services, paced, directory, write_calls, batch_size=args.batch_size, bulk_size=args.bulk_size, tag="p"
            )
            for figure in slow:
                print("     " + figure.line())
            print(f"     ratio: bulk/$batch time {slow[1].seconds / slow[0].seconds:.2f}")
    finally:
        services.stop()


if __name__ == "__main__":
    main()
