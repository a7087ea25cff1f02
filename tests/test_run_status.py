"""Run status in Dynamics (issue 19, item 2): every timer run upserts its job's enr_bridgerun row,
over HTTP through the local Functions host against the emulators and Azurite."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import requests

from call_sync.calls import CallSyncReport
from core.runstatus import FinishedRun, RunStatusWriter, status_row
from core.schema import BRIDGE_RUN
from emulators._server import FaultRule
from sandbox.services import provision_app_schema
from tests.helpers import serving_app

KEY = "test-routing-key-0123456789"
OK, PARTIAL, FAILED = (BRIDGE_RUN.column("enr_outcome").option_value(o) for o in ("ok", "partial", "failed"))


@pytest.fixture()
def settings(world, azurite):
    provision_app_schema(world.dataverse)
    return world.app_settings(
        {"ROUTING_API_KEY": KEY, "AzureWebJobsStorage": azurite.connection_string, "BRIDGE_JOBS": "all"}
    )


def _run(host, name):
    response = requests.post(f"{host.url}/admin/functions/{name}", timeout=60)
    assert response.status_code == 202, response.text


def _rows(world):
    return {row["enr_job"]: row for row in world.dataverse.rows(BRIDGE_RUN.entity_set)}


def test_each_timer_run_writes_its_row_with_one_request(world, settings, monkeypatch):
    timers = (
        "sync_phone_index",
        "sync_enreach_user_ids",
        "sync_phone_calls",
        "reconcile_presence",
        "sync_presence",
        "sync_callbacks",
    )
    with serving_app(monkeypatch, settings) as host:
        for name in timers:
            world.dataverse.reset_requests()
            _run(host, name)
            writes = [r for r in world.dataverse.requests if BRIDGE_RUN.entity_set in r["path"]]
            assert [r["method"] for r in writes] == ["PATCH"], (name, writes)  # one upsert by the job key
            assert f"enr_job='{name}'" in writes[0]["path"]
        rows = _rows(world)
        assert set(rows) == set(timers)
        calls = rows["sync_phone_calls"]
        assert calls["enr_outcome"] == OK and calls["enr_read"] == 0 and calls["enr_waiting"] == 0
        assert calls["enr_started"] <= calls["enr_finished"] and calls["enr_problem"] is None
        assert calls["enr_checkpoint"] and calls["enr_lagminutes"] is not None
        assert "phone calls:" in calls["enr_summary"]
        first = rows["sync_phone_index"]["versionnumber"]
        _run(host, "sync_phone_index")  # the next run overwrites the same row
        again = _rows(world)
        assert len(again) == len(timers) and again["sync_phone_index"]["versionnumber"] > first


def test_a_failed_run_is_recorded_as_failed_with_its_problem(world, settings, monkeypatch):
    with serving_app(monkeypatch, settings) as host:
        world.enreach.inject(FaultRule(status=401, count=1000))  # Enreach refuses the credentials
        try:
            _run(host, "sync_enreach_user_ids")
        finally:
            world.enreach.clear_faults()
    row = _rows(world)["sync_enreach_user_ids"]
    assert row["enr_outcome"] == FAILED and row["enr_problem"], row


def test_a_status_write_that_fails_does_not_fail_the_run(world, settings, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "bridge.events")
    world.dataverse.tables.pop(BRIDGE_RUN.entity_set)  # not provisioned yet
    with serving_app(monkeypatch, settings) as host:
        _run(host, "sync_phone_index")
    assert any(
        '"event": "sync_phone_index"' in r.getMessage() and '"outcome": "ok"' in r.getMessage() for r in caplog.records
    )
    assert any("run_status_failed" in r.getMessage() and "ops provision" in r.getMessage() for r in caplog.records)


def test_the_row_carries_counts_lag_oldest_parked_and_the_problem():
    finished = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    report = CallSyncReport(read=7, created=5, parked=1, waiting=2, for_review=1, failed=1)
    report.checkpoint, report.oldest_parked = "2026-12-06T11:45:00Z", "2026-12-04T08:00:00Z"
    report.problems.append("page 3: Dataverse throttled the writes")
    run = FinishedRun("sync_phone_calls", finished - timedelta(seconds=3), finished, "partial", 3000.4, report)
    row = status_row(run)
    assert row["enr_outcome"] == PARTIAL and row["enr_lagminutes"] == 15 and row["enr_durationms"] == 3000
    assert (row["enr_read"], row["enr_created"], row["enr_parked"], row["enr_waiting"]) == (7, 5, 1, 2)
    assert (row["enr_forreview"], row["enr_failed"]) == (1, 1)
    assert row["enr_oldestparked"] == "2026-12-04T08:00:00Z"
    assert row["enr_problem"] == "page 3: Dataverse throttled the writes"

    class Described(Exception):  # an error that says its cause and fix (core.cli's protocol)
        cause, fix = "the Enreach API key was refused", "set ENREACH_SECRET_KEY"

    failed = status_row(FinishedRun("x", finished, finished, "failed", 1, None, Described()))
    assert failed["enr_problem"] == "the Enreach API key was refused; fix: set ENREACH_SECRET_KEY"
    assert failed["enr_outcome"] == FAILED and failed["enr_read"] is None

    sent = []
    RunStatusWriter(lambda *args: sent.append(args))(run)
    assert sent == [(BRIDGE_RUN.entity_set, {"enr_job": "sync_phone_calls"}, row)]
