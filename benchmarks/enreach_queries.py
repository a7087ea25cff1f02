"""Enreach requests per call sync run for 50, 500 and 2,000 users, in both query modes.

Against the Enreach emulator limited to ``--rate`` requests per second (429 with ``Retry-After:
1`` beyond; Enreach publishes no limits), the Dataverse emulator and Azurite, real
``sync_phone_calls`` runs (one every 5 minutes of simulated time) until every user has been read
once for the window:

* ``per_user``, no budget: the baseline, one ``GET calls?UserIDs=<id>`` per user in one run;
* ``per_user``, ``CALL_SYNC_ENREACH_REQUEST_BUDGET`` (default 1000): the same reads spread over runs;
* ``all``: one ``GET calls`` without ``UserIDs`` for the organisation.

Every user (each mapped to a Dataverse user) has one Work call in the window, and the benchmark
checks each landed exactly once. Printed per case: runs to read every user, Enreach requests per
run (discovery, ``GET users`` and the directory included), 429s answered, wall seconds per run,
and the requests of the busiest run as a ratio of the baseline's.
Run: python benchmarks/enreach_queries.py [--users 50,500,2000] [--rate 100] [--budget 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.settings import Settings, load_settings
from call_sync.calls import sync_phone_calls
from call_sync.parking import ParkedCalls
from call_sync.runtime import lookup_for
from call_sync.runtime import options as options_for
from core.schema import CALL_SYNC
from core.state import CheckpointStore
from dataverse import DataverseClient, credential_from_config
from enreach import client_from_config
from sandbox.services import Services, provision_app_schema
from tests.helpers import enreach_call, enreach_users

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ASSIGNEE = "00000000-0000-4000-8000-00000000a551"


def tenant(services: Services, users: int) -> None:
    services.enreach.reset()
    services.dataverse.reset()
    people = [(f"e0000000-0000-4000-8000-{i:012d}", f"agent{i}@example.fi", f"+3584011{i:05d}") for i in range(users)]
    services.dataverse.load(
        {
            "systemusers": [
                {"systemuserid": ASSIGNEE, "fullname": "Call Desk", "internalemailaddress": "d@example.fi"},
                *(
                    {
                        "systemuserid": f"00000000-0000-4000-8000-{i:012d}",
                        "fullname": f"Agent {i}",
                        "internalemailaddress": name,
                        CALL_SYNC.user_id_column: enreach_id,
                    }
                    for i, (enreach_id, name, _) in enumerate(people)
                ),
            ]
        }
    )
    provision_app_schema(services.dataverse)
    services.enreach.load(
        {
            **enreach_users(*people),
            "calls": [
                enreach_call(f"call-{i}", name, NOW - timedelta(hours=2, seconds=i), seconds=60)
                for i, (_, name, _) in enumerate(people)
            ],
        }
    )


def run_case(services: Services, settings: Settings, *, users: int, mode: str, budget: int, rate: int) -> dict:
    tenant(services, users)
    services.enreach.configure(rate_limit=rate, rate_window=1.0, rate_retry_after=1, calls_without_user="all")
    if mode == "all":
        settings = load_settings(
            {
                **services.app_settings(_BASE),
                "ENREACH_FIELD_MAP": json.dumps({"calls": {"query_mode": "all"}}),
            }
        )
    dataverse = DataverseClient(settings.dataverse.url, credential=credential_from_config(settings.dataverse))
    store = CheckpointStore(settings.storage_connection_string, table_name="q" + uuid.uuid4().hex[:10])
    parking = ParkedCalls(settings.storage_connection_string, table_name="p" + uuid.uuid4().hex[:10])
    options = replace(options_for(settings), enreach_request_budget=budget, batch_size=100)
    runs: list[tuple[int, int, float]] = []
    now = NOW
    while True:
        enreach = client_from_config(settings.enreach)  # a timer run builds nothing new but counts per run
        throttled_before = services.enreach.throttled
        started = time.perf_counter()
        report = sync_phone_calls(
            enreach, dataverse, store, lookup_for(settings, dataverse), options, parking=parking, now=now
        )
        runs.append(
            (report.enreach_requests, services.enreach.throttled - throttled_before, time.perf_counter() - started)
        )
        enreach.close()
        if report.users_left == 0 or len(runs) > 20:
            break
        now += timedelta(minutes=5)
    synced = [str(r[CALL_SYNC.call_id_column]).split(":")[0] for r in services.dataverse.rows("phonecalls")]
    assert sorted(synced) == sorted(f"call-{i}" for i in range(users)), "every call exactly once"
    dataverse.close()
    return {"runs": runs}


_BASE = {"ROUTING_API_KEY": "benchmark-key-0123456789", "DEFAULT_CRM_ASSIGNEE": ASSIGNEE}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", default="50,500,2000")
    parser.add_argument("--rate", type=int, default=100, help="Enreach emulator: requests per second before 429")
    parser.add_argument("--budget", type=int, default=1000, help="CALL_SYNC_ENREACH_REQUEST_BUDGET")
    args = parser.parse_args()
    services = Services(environ={}).start()
    os.environ["REQUESTS_CA_BUNDLE"] = services.ca.bundle_path
    try:
        settings = load_settings(services.app_settings(_BASE))
        print(f"Enreach requests per call sync run; emulator limited to {args.rate} requests/s (429, Retry-After: 1)")
        print(
            "| users | mode | runs to read everyone | Enreach requests per run | 429s | seconds per run "
            "| busiest run vs baseline |"
        )
        print("|---:|---|---:|---|---:|---|---:|")
        for users in (int(u) for u in args.users.split(",")):
            baseline = None
            for label, mode, budget in (
                ("per_user, no budget (baseline)", "per_user", 0),
                (f"per_user, budget {args.budget}", "per_user", args.budget),
                ("all", "all", 0),
            ):
                runs = run_case(services, settings, users=users, mode=mode, budget=budget, rate=args.rate)["runs"]
                busiest = max(r[0] for r in runs)
                baseline = baseline or busiest
                print(
                    f"| {users:,} | {label} | {len(runs)} | {', '.join(str(r[0]) for r in runs)} | "
                    f"{sum(r[1] for r in runs)} | {', '.join(f'{r[2]:.1f}' for r in runs)} | "
                    f"{busiest / baseline:.3f} |",
                    flush=True,
                )
    finally:
        services.stop()


if __name__ == "__main__":
    main()
