"""Routing webhook cost against the Dataverse emulator with injected latency.

Reports, in one run:
  * Dataverse requests per uncached call (goal 1),
  * webhook p50/p99 (auth, validation, lookup, rules, answer) against a bare single GET of
    the same Dataverse query on the same connection pool (the baseline; goal <= 1.15x),
  * cache-hit p50 in process (goal <= 2 ms).
Run: python benchmarks/routing.py [--calls 200] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import load_settings
from core.state import CheckpointStore
from dataverse import DataverseClient, credential_from_settings
from routing.http import handle_routing_request
from routing.index_sync import sync_phone_index
from routing.runtime import build_router
from sandbox.services import Services

KEY = "benchmark-routing-key-0123456789"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()

    users = [
        {
            "systemuserid": f"00000000-0000-4000-8000-{i:012d}",
            "fullname": f"User {i}",
            "address1_telephone1": f"+35894242{i:04d}",
        }
        for i in range(20)
    ]
    accounts = [
        {
            "name": f"Customer {i}",
            "telephone1": f"+358 50 {i:03d} {i % 10000:04d}",
            "_ownerid_value": users[i % 20]["systemuserid"],
        }
        for i in range(args.customers)
    ]
    services = Services(data={"dataverse": {"systemusers": users, "accounts": accounts}}, environ={}).start()
    os.environ["REQUESTS_CA_BUNDLE"] = services.ca.bundle_path
    try:
        env = services.app_settings(
            {"ROUTING_API_KEY": KEY, "ROUTING_CACHE_TTL_SECONDS": "0", "ROUTING_TIME_BUDGET_SECONDS": "4"}
        )
        settings = load_settings(env)
        client = DataverseClient(settings.dataverse_url, credential=credential_from_settings(settings))
        sync_phone_index(
            client,
            CheckpointStore(settings.storage_connection_string),
            phone_columns=settings.routing_phone_columns,
            region=settings.phone_default_region,
        )
        router = build_router(settings, client)
        callers = [f"+35850{i % args.customers:03d}{i % args.customers % 10000:04d}" for i in range(args.calls)]
        router.route(callers[0], "+358942429999")  # settle the index state and the token
        services.dataverse.inject(latency_ms=args.latency_ms)

        def webhook(caller: str) -> float:
            body = json.dumps({"anum": caller, "bnum": "+358942429999"}).encode()
            started = time.perf_counter()
            result = handle_routing_request(
                method="POST",
                headers={"Content-Type": "application/json", "X-Benemen-APIKey": KEY},
                params={},
                body=body,
                router=lambda: router,
                api_key=KEY,
                basic_user=None,
                basic_password=None,
            )
            elapsed = time.perf_counter() - started
            assert result.status == 200, router.route(caller, "+358942429999").explain()
            return elapsed

        def bare(caller: str) -> float:
            path = router._lookup.index_query(caller)  # the very query the webhook sends
            started = time.perf_counter()
            client.get_page(path)
            return time.perf_counter() - started

        services.dataverse.reset_requests()
        hook_times, bare_times = [], []
        for caller in callers:  # interleaved, so both see the same machine conditions
            hook_times.append(webhook(caller))
            bare_times.append(bare(caller))
        requests_per_call = (services.dataverse.request_count() - len(callers)) / len(callers)

        cached = build_router(load_settings({**env, "ROUTING_CACHE_TTL_SECONDS": "600"}), client)
        cached.route(callers[1], "+358942429999")
        hits = []
        for _ in range(args.calls):
            started = time.perf_counter()
            decision = cached.route(callers[1], "+358942429999")
            hits.append(time.perf_counter() - started)
            assert decision.cached

        p50_hook, p99_hook = statistics.median(hook_times), percentile(hook_times, 0.99)
        p50_bare, p99_bare = statistics.median(bare_times), percentile(bare_times, 0.99)
        print(
            f"{args.calls} uncached calls, {args.customers} customers indexed, {args.latency_ms:g} ms injected latency"
        )
        print(f"Dataverse requests per uncached call: {requests_per_call:.2f}   (goal 1)")
        print(f"webhook p50 {p50_hook * 1000:6.1f} ms   p99 {p99_hook * 1000:6.1f} ms")
        print(f"bare GET p50 {p50_bare * 1000:6.1f} ms   p99 {p99_bare * 1000:6.1f} ms   (baseline, same run)")
        print(f"ratio webhook/bare: p50 {p50_hook / p50_bare:.3f}x   p99 {p99_hook / p99_bare:.3f}x   (goal <= 1.15x)")
        print(f"cache-hit p50 {statistics.median(hits) * 1000:.3f} ms in process   (goal <= 2 ms)")
        router.close()
        cached.close()
    finally:
        services.stop()


if __name__ == "__main__":
    main()
