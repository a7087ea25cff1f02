"""Backfill at Dataverse's pace: N Enreach calls over 30 days written by the call sync, in parallel
batches sized by ``x-ms-dop-hint``, beside today's single stream of 500-call batches, in one run.

The Dataverse emulator charges 10 ms of server time per operation (a call is two: create with
its parties, then complete), runs a ``$batch``'s operations one after another and separate
requests in parallel, sends ``x-ms-dop-hint``, and enforces the documented service protection
limits (6,000 requests and 1,200,000 ms of execution time per 5-minute window, 52 concurrent
requests) with 429 + Retry-After; 20 ms network latency per request. Each run starts with a
fresh window (as on another day) and writes its own calls.

Reported per run: wall time, Dataverse round trips, operations, 429s answered by the emulator
(each one retried by the client), and the check that every call landed exactly once (0 lost,
0 duplicates, 0 failed). Goal: parallel >= 4x faster than the single stream.
Run: python benchmarks/backfill.py [--calls 100000] [--parallel 4] [--dop-hint 8]
     (--baseline-calls N times the single stream on N calls and scales it to --calls; say so when used)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.call_sync import ENREACH_IDS, bench_world, call
from bridge.settings import Settings
from call_sync.calls import CallSyncOptions, CallSyncReport, UserDirectory, call_key, sync_calls
from call_sync.runtime import lookup_for
from core.schema import CALL_SYNC
from dataverse import DataverseClient, credential_from_config
from emulators._protection import DOCUMENTED_LIMITS
from enreach import EnreachCall
from sandbox.services import Services

UTC = UTC
FIRST_DAY = datetime(2026, 10, 26, tzinfo=UTC)
DAYS = 30


def make_calls(count: int, *, prefix: str, users: list[str], customers: int) -> list[EnreachCall]:
    """``count`` calls spread evenly over 30 days, built as the call sync benchmark builds them."""
    return [
        call(
            f"{prefix}-{i:06d}",
            users[i % len(users)],
            FIRST_DAY + timedelta(seconds=i * DAYS * 86400 // count),
            i,
            customers,
        )
        for i in range(count)
    ]


@dataclass
class RunResult:
    label: str
    calls: int
    seconds: float
    requests: int
    operations: int
    throttled: dict[str, int]
    report: CallSyncReport
    lost: int
    duplicates: int


def run(
    label: str,
    services: Services,
    settings: Settings,
    calls: list[EnreachCall],
    *,
    parallel: int,
    batch_size: int,
    prefix: str,
    timeout: float,
) -> RunResult:
    emulator = services.dataverse
    limits = emulator.protection.limits
    client = DataverseClient(
        settings.dataverse.url,
        credential=credential_from_config(settings.dataverse),
        max_parallel=parallel,
        timeout=timeout,
    )
    lookup = lookup_for(settings, client)
    lookup.find_many(["+358501200000"])  # token, connection, index state and dop hint before timing
    emulator.configure_limits(limits)  # a fresh 5-minute window for this run
    emulator.reset_requests()
    report = CallSyncReport()
    started = time.perf_counter()
    sync_calls(
        calls,
        client=client,
        lookup=lookup,
        users=UserDirectory.load(client, "FI"),
        enreach_users={},
        options=CallSyncOptions(region="FI", batch_size=batch_size),
        report=report,
    )
    seconds = time.perf_counter() - started
    with emulator.lock:
        stored = [
            r[CALL_SYNC.call_id_column]
            for r in emulator.tables["phonecalls"].rows.values()
            if str(r.get(CALL_SYNC.call_id_column, "")).startswith(prefix + "-")
        ]
    expected = {call_key(c) for c in calls}
    client.close()
    return RunResult(
        label,
        len(calls),
        seconds,
        emulator.request_count(),
        len(emulator.batch_parts),
        dict(emulator.protection.throttled),
        report,
        lost=len(expected - set(stored)),
        duplicates=len(stored) - len(set(stored)),
    )


def describe(result: RunResult, scale: float = 1.0) -> str:
    throttled = sum(result.throttled.values())
    codes = ", ".join(f"{n} x {code}" for code, n in sorted(result.throttled.items())) or "none"
    scaled = f" (measured on {result.calls} calls, x{scale:g})" if scale != 1.0 else ""
    return (
        f"{result.label}: {result.seconds * scale:7.1f} s{scaled}, {result.requests * scale:.0f} requests, "
        f"{result.operations * scale:.0f} operations; {result.report.created} created "
        f"({result.report.already_synced} found already there after a resend), {result.lost} lost, "
        f"{result.duplicates} duplicates, {result.report.failed} failed; 429s answered and retried: {throttled} "
        f"({codes})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--baseline-calls", type=int, default=0, help="single-stream sample size (default: --calls)")
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=500, help="CALL_SYNC_BATCH_SIZE of both runs")
    parser.add_argument("--parallel", type=int, default=4, help="DATAVERSE_MAX_PARALLEL_BATCHES of the new run")
    parser.add_argument("--dop-hint", type=int, default=8, help="x-ms-dop-hint the emulated environment sends")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--op-ms", type=float, default=10.0, help="server time per operation")
    args = parser.parse_args()
    baseline_calls = args.baseline_calls or args.calls

    enreach_ids = ENREACH_IDS
    services, settings = bench_world(args.customers)
    try:
        services.dataverse.inject(latency_ms=args.latency_ms)
        services.dataverse.configure_limits(
            replace(DOCUMENTED_LIMITS, op_ms=args.op_ms, dop_hint=args.dop_hint, workers=52)
        )
        logging.basicConfig(level=logging.ERROR)  # retries are counted below, not printed one by one
        print(
            f"{args.calls} calls over {DAYS} days, {args.customers} customers; {args.latency_ms:g} ms latency, "
            f"{args.op_ms:g} ms server time per operation, x-ms-dop-hint {args.dop_hint}, documented limits "
            f"(6,000 requests and 1,200,000 ms per 300 s, 52 concurrent); batch size {args.batch_size}",
            flush=True,
        )
        new = run(
            f"parallel (min(dop hint {args.dop_hint}, {args.parallel}) in flight)",
            services,
            settings,
            make_calls(args.calls, prefix="par", users=enreach_ids, customers=args.customers),
            parallel=args.parallel,
            batch_size=args.batch_size,
            prefix="par",
            timeout=settings.dataverse.timeout,
        )
        print(describe(new), flush=True)
        old = run(
            "today: single stream",
            services,
            settings,
            make_calls(baseline_calls, prefix="one", users=enreach_ids, customers=args.customers),
            parallel=1,
            batch_size=args.batch_size,
            prefix="one",
            # A 500-call batch takes 500 x 2 x op_ms of server time (10 s at 10 ms): at the app's default
            # HTTP_TIMEOUT_SECONDS (10) it times out and is sent again. The baseline gets room to finish,
            # so the ratio compares pace, not timeouts.
            timeout=max(settings.dataverse.timeout, args.batch_size * 2 * args.op_ms / 1000 * 3),
        )
        scale = args.calls / baseline_calls
        print(describe(old, scale), flush=True)
        ratio = old.seconds * scale / new.seconds
        print(f"ratio: parallel is {ratio:.1f}x faster than the single stream (goal >= 4x)")
        clean = new.lost == new.duplicates == new.report.failed == 0 and old.lost == old.duplicates == 0
        print(f"exactly once: {'yes' if clean else 'NO'} (0 lost, 0 duplicates, 0 failed in both runs)")
    finally:
        services.stop()


if __name__ == "__main__":
    main()
