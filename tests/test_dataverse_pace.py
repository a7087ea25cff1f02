"""Dataverse's pace in the emulator (server time, x-ms-dop-hint, service protection limits with the
documented 429 answers) and the client's parallel batch writes against it, over loopback HTTP."""

from __future__ import annotations

import threading

import pytest
import requests

from core.retry import RetryPolicy
from dataverse import BatchRequest, ChangeSet, Throttled
from emulators._protection import ServerLimits
from tests.helpers import dataverse_client_for

NO_RETRY = RetryPolicy(max_attempts=1)


def _burst(count: int, action) -> list[object]:
    """Run ``action`` on ``count`` threads released at once; each outcome is "ok" or the exception."""
    barrier = threading.Barrier(count)
    outcomes: list[object] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            action()
            result: object = "ok"
        except Throttled as error:
            result = error
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_a_burst_over_the_concurrent_limit_gets_429_with_the_documented_code(world, settings):
    client = dataverse_client_for(settings, retry=NO_RETRY)
    client.whoami()  # token and connection first: the burst is only the requests
    world.dataverse.configure_limits(ServerLimits(op_ms=1000, max_concurrent=3))
    outcomes = _burst(6, client.whoami)
    throttled = [o for o in outcomes if isinstance(o, Throttled)]
    assert len(outcomes) == 6 and 1 <= len(throttled) <= 3
    for error in throttled:
        assert (error.status, error.code) == (429, "0x80072326")
        assert error.message == "Number of concurrent requests exceeded the limit of 3."
        assert error.retry_after == 1
    # (>=: a late lookup left running by an earlier test's routing budget may be refused as well)
    assert world.dataverse.protection.throttled.get("0x80072326", 0) >= len(throttled)


def test_the_request_limit_per_window_answers_429_with_retry_after_and_is_not_waited_past_the_cap(
    world, settings, dataverse_client
):
    world.dataverse.configure_limits(ServerLimits(max_requests=3))
    for _ in range(3):
        dataverse_client.whoami()
    with pytest.raises(Throttled) as raised:
        dataverse_client.whoami()
    error = raised.value
    assert error.code == "0x80072322"
    assert error.message == "Number of requests exceeded the limit of 3 over time window of 300 seconds."
    assert error.retry_after is not None and 1 <= error.retry_after <= 300
    # Retry-After is over the retry policy's cap: the client gives up at once instead of sleeping
    assert world.dataverse.request_count("WhoAmI") == 4


def test_a_batch_counts_as_one_request_and_its_operations_as_execution_time(world, settings, dataverse_client):
    world.dataverse.configure_limits(ServerLimits(op_ms=5, max_execution_ms=40, max_requests=5))
    answers = dataverse_client.batch([BatchRequest("GET", "WhoAmI") for _ in range(10)])
    assert [a.status for a in answers] == [200] * 10
    user = next(iter(world.dataverse.protection.snapshot()["users"].values()))
    assert user["requests_in_window"] == 1 and user["execution_ms_in_window"] == 50.0  # 10 operations x 5 ms
    with pytest.raises(Throttled) as raised:
        dataverse_client.whoami()
    assert raised.value.code == "0x80072321"
    assert raised.value.message.startswith(
        "Combined execution time of incoming requests exceeded limit of 40 milliseconds over time window of 300 "
        "seconds."
    )


def test_requests_run_in_parallel_only_up_to_the_workers(world, settings):
    client = dataverse_client_for(settings)
    client.whoami()
    world.dataverse.configure_limits(ServerLimits(op_ms=500, workers=2))
    outcomes = _burst(5, client.whoami)
    assert outcomes == ["ok"] * 5
    assert world.dataverse.protection.peak_running == 2  # five waiting, two at a time


def test_the_dop_hint_is_sent_and_bounds_parallelism_with_the_setting(world, settings):
    world.dataverse.configure_limits(ServerLimits(dop_hint=7))
    response = requests.get(world.dataverse.url + "/api/data/v9.2/WhoAmI", timeout=5)
    assert response.status_code == 401 and "x-ms-dop-hint" not in response.headers  # not for strangers
    bounded = dataverse_client_for(settings)  # max_parallel 4, the default of DATAVERSE_MAX_PARALLEL_BATCHES
    assert bounded.parallelism() == 1  # nothing heard yet
    bounded.whoami()
    assert (bounded.dop_hint, bounded.parallelism()) == (7, 4)
    wide = dataverse_client_for(settings, max_parallel=52)
    wide.whoami()
    assert wide.parallelism() == 7


def test_the_limits_are_off_after_clearing_faults_and_set_over_http(world, settings, dataverse_client):
    base = world.dataverse.url + "/_emulator/limits"
    assert requests.post(base, json={"max_requests": 1, "dop_hint": 2}, timeout=5).status_code == 204
    assert requests.get(base, timeout=5).json()["limits"]["max_requests"] == 1
    bad = requests.post(base, json={"max_request": 1}, timeout=5)
    assert bad.status_code == 400 and "max_request" in bad.json()["error"]["message"]
    dataverse_client.whoami()
    with pytest.raises(Throttled):
        dataverse_client.whoami()
    assert requests.delete(world.dataverse.url + "/_emulator/faults", timeout=5).status_code == 204
    for _ in range(3):
        dataverse_client.whoami()


def _calls(world, keys):
    world.dataverse.add_alternate_key("phonecalls", "enr_callid_key", ["enr_callid"])
    return [
        ChangeSet(
            [
                BatchRequest("POST", "phonecalls", {"subject": key, "enr_callid": key}),
                BatchRequest("PATCH", "$1", {"statecode": 1, "statuscode": 4}),
            ]
        )
        for key in keys
    ]


def test_parallel_writes_are_sized_and_counted_by_the_dop_hint_and_answer_in_order(world, settings):
    client = dataverse_client_for(settings)
    world.dataverse.configure_limits(ServerLimits(dop_hint=4, op_ms=2))
    keys = [f"p{i:02d}" for i in range(40)]
    items = _calls(world, keys)
    client.create("phonecalls", {"subject": "there", "enr_callid": "p05"})  # learns the hint too
    world.dataverse.reset_requests()
    outcomes = client.batch_each_parallel(items, max_batch=100, idempotent=True)
    assert [o.status if o else None for o in outcomes] == [412 if k == "p05" else 204 for k in keys]
    assert world.dataverse.request_count("$batch") == 4  # 4 streams x 10 calls
    world.dataverse.reset_requests()
    client.batch_each_parallel(items, max_batch=5, idempotent=True)  # the job's batch size caps a batch
    assert world.dataverse.request_count("$batch") == 8
    assert sorted(r["enr_callid"] for r in world.dataverse.rows("phonecalls")) == keys


def test_parallel_writes_wait_out_a_long_429_then_send_again_without_duplicates(world, settings):
    impatient = RetryPolicy(max_attempts=2, backoff_seconds=0.01, max_backoff_seconds=0.02, max_retry_after_seconds=0.5)
    client = dataverse_client_for(settings, retry=impatient)
    world.dataverse.configure_limits(ServerLimits(dop_hint=2, max_requests=2, window_seconds=1))
    client.whoami()  # learns the hint
    keys = [f"t{i}" for i in range(6)]
    outcomes = client.batch_each_parallel(_calls(world, keys), max_batch=1, idempotent=True)
    assert [o.status if o else None for o in outcomes] == [204] * 6
    assert world.dataverse.protection.throttled.get("0x80072322", 0) >= 1
    assert sorted(r["enr_callid"] for r in world.dataverse.rows("phonecalls")) == keys


def test_a_429_longer_than_the_wait_budget_leaves_items_unanswered_never_lost(world, settings):
    impatient = RetryPolicy(max_attempts=1, max_retry_after_seconds=0.5)
    client = dataverse_client_for(settings, retry=impatient)
    world.dataverse.configure_limits(ServerLimits(dop_hint=2, max_requests=2, window_seconds=60))
    client.whoami()  # learns the hint, and is the window's first request
    keys = [f"u{i}" for i in range(4)]
    outcomes = client.batch_each_parallel(_calls(world, keys), max_batch=1, idempotent=True, max_throttle_wait=0)
    written = sorted(r["enr_callid"] for r in world.dataverse.rows("phonecalls"))
    assert [k for k, o in zip(keys, outcomes, strict=True) if o is not None and o.ok] == written
    assert len(written) == 1 and outcomes.count(None) == 3  # the window held one more request
