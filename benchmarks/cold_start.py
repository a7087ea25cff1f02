"""Cold start: from process start to the first routing answer, in a fresh process each run.

The emulators run in this process with 20 ms network latency (Dataverse and the token service)
and a token endpoint that takes 150 ms to issue a token. Each run starts a new Python process
that does what a new Functions instance does: import ``function_app``, index its functions, and
answer a SmartRouting call through the ``routing`` function, then 20 more (the steady state,
cache off so each is a Dataverse lookup). Two kinds of instance, ``--runs`` of each:

* ``cold``: no warm-up (the Consumption plan): the first request imports routing, gets the token
  and opens the connection inside its 1.5 s budget;
* ``warmup``: the host calls the ``warmup`` function first (Premium, on scale-out), then the call.

Reported per kind: median and max time from process start to the first answer; the share of
first calls answered from a lookup (200 with a target: the budget answers 204 otherwise) within
the 1.5 s budget (goal 100 %); the first call's own time against the steady-state median (ratio).
Run: python benchmarks/cold_start.py [--runs 10] [--latency-ms 20] [--token-ms 150]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KEY = "benchmark-routing-key-0123456789"
POOL = "+358942429999"


def caller(i: int) -> str:
    return f"+35850{i:03d}{i % 10000:04d}"


def child(kind: str, calls: int) -> None:
    """One instance: import the app as the host does, (warm up,) answer routing calls; print timings."""
    import azure.functions as func

    from function_app import app

    functions = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}
    warmed_at = None
    if kind == "warmup":
        functions["warmup"](func.warmup.WarmUpContext())
        warmed_at = time.time()

    def call(anum: str) -> tuple[int, float]:
        request = func.HttpRequest(
            "POST",
            "http://localhost/api/routing",
            headers={"Content-Type": "application/json", "X-Benemen-APIKey": KEY},
            body=json.dumps({"anum": anum, "bnum": POOL}).encode(),
        )
        started = time.perf_counter()
        response = functions["routing"](request)
        return response.status_code, time.perf_counter() - started

    status, first = call(caller(1))
    answered_at = time.time()
    import statistics

    steady, steady_routed = [], 0
    for i in range(2, calls + 2):
        code, seconds = call(caller(i))
        steady_routed += code == 200
        steady.append(seconds)
    print(
        json.dumps(
            {
                "status": status,
                "first_s": first,
                "answered_at": answered_at,
                "warmed_at": warmed_at,
                "steady_median_s": statistics.median(steady),
                "steady_routed": steady_routed,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per kind (default 10)")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--token-ms", type=float, default=150.0)
    parser.add_argument("--steady-calls", type=int, default=20)
    parser.add_argument("--child", choices=["cold", "warmup"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steady_calls)
        return

    import statistics
    import subprocess

    from bridge.settings import load_settings
    from core.state import CheckpointStore
    from dataverse import DataverseClient, credential_from_config
    from routing.index_sync import sync_phone_index
    from sandbox.services import Services

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
        env = services.app_settings({"ROUTING_API_KEY": KEY, "ROUTING_CACHE_TTL_SECONDS": "0"})
        settings = load_settings(env)
        sync_phone_index(
            DataverseClient(settings.dataverse.url, credential=credential_from_config(settings.dataverse)),
            CheckpointStore(settings.storage_connection_string),
            phone_columns=settings.matching.phone_columns,
            region=settings.matching.region,
        )
        services.dataverse.inject(latency_ms=args.latency_ms)
        services.tokens.inject(latency_ms=args.latency_ms)
        services.tokens.token_latency_ms = args.token_ms
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "ROUTING_", "DATAVERSE_"))}
        child_env.update(env)
        results: dict[str, list[dict[str, float]]] = {"cold": [], "warmup": []}
        for _ in range(args.runs):
            for kind in results:  # interleaved, so both kinds see the same machine conditions
                started = time.time()
                out = subprocess.run(
                    [sys.executable, __file__, "--child", kind, "--steady-calls", str(args.steady_calls)],
                    cwd=ROOT,
                    env=child_env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if out.returncode != 0:
                    raise SystemExit(f"cold_start: a {kind} run failed:\n{out.stderr[-2000:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result["to_answer_s"] = result["answered_at"] - started
                results[kind].append(result)

        budget = settings.routing.time_budget_seconds
        print(
            f"{args.runs} fresh processes per kind; {args.latency_ms:g} ms latency (Dataverse, token service), "
            f"token issued in {args.token_ms:g} ms, {args.customers} customers indexed, budget {budget:g} s"
        )
        for kind, label in (("cold", "no warm-up (Consumption)"), ("warmup", "warm-up trigger first (Premium)")):
            runs = results[kind]
            to_answer = [r["to_answer_s"] for r in runs]
            first = [r["first_s"] for r in runs]
            steady = statistics.median(r["steady_median_s"] for r in runs)
            answered = sum(1 for r in runs if r["status"] == 200 and r["first_s"] <= budget)
            print(f"{label}:")
            print(
                f"  process start -> first answer: median {statistics.median(to_answer) * 1000:6.0f} ms, "
                f"max {max(to_answer) * 1000:6.0f} ms"
            )
            print(
                f"  first calls answered from a lookup within {budget:g} s: {answered}/{len(runs)} "
                f"= {100 * answered / len(runs):.0f} %   (goal 100 %)"
            )
            print(
                f"  first call {statistics.median(first) * 1000:6.1f} ms (median; max {max(first) * 1000:.1f}) vs "
                f"steady-state call {steady * 1000:5.1f} ms: ratio {statistics.median(first) / steady:.1f}x"
            )
    finally:
        services.stop()


if __name__ == "__main__":
    main()
