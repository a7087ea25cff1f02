"""The app indexes as the Functions host sees it: names, triggers, routes, schedules."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache

EXPECTED_HTTP = {
    # name: (route, methods, auth level)
    "health": ("health", ["GET"], "ANONYMOUS"),
    "routing": ("routing", ["POST"], "FUNCTION"),
    "presence_dataverse": ("presence/dataverse", ["POST"], "FUNCTION"),
    "presence_enreach": ("presence/enreach", ["POST"], "FUNCTION"),
}
EXPECTED_TIMERS: dict[str, str] = {
    # name: schedule (an app-setting expression, resolved by the host, when the setting is set)
    "sync_phone_index": "%PHONE_INDEX_SCHEDULE%",
    "sync_phone_calls": "%PHONE_CALL_SYNC_SCHEDULE%",
    "sync_enreach_user_ids": "%USER_ID_SYNC_SCHEDULE%",
    "reconcile_presence": "%PRESENCE_RECONCILE_SCHEDULE%",
    "sync_presence": "%PRESENCE_POLL_SCHEDULE%",
}


DEFAULT_SCHEDULES = {
    "sync_phone_index": "0 */5 * * * *",
    "sync_phone_calls": "0 */5 * * * *",
    "sync_enreach_user_ids": "0 0 * * * *",
    "reconcile_presence": "0 */5 * * * *",
    "sync_presence": "0 */2 * * * *",
}
_INDEX = (
    "import json, function_app\n"
    "from sandbox.host import index_functions\n"
    "print(json.dumps({f.get_function_name(): json.loads(f.get_function_json())"
    " for f in index_functions(function_app.app)}))"
)


def _index_with(environ: dict[str, str]) -> dict[str, dict]:
    """Index the app as the host does, in a fresh process with these app settings (the host imports
    ``function_app`` once, with the app settings already in its environment)."""
    result = subprocess.run(
        [sys.executable, "-c", _INDEX], capture_output=True, text=True, env={"PATH": "", **environ}, check=True
    )
    return json.loads(result.stdout)


@lru_cache(maxsize=1)
def _index():
    schedules = {value.strip("%"): "0 */7 * * * *" for value in EXPECTED_TIMERS.values()}
    return _index_with(schedules)


def test_every_function_is_registered_with_its_route_and_schedule():
    found = _index()
    assert set(found) == set(EXPECTED_HTTP) | set(EXPECTED_TIMERS) | {"warmup"}
    assert found["warmup"]["bindings"][0]["type"] == "warmupTrigger"
    for name, (route, methods, auth) in EXPECTED_HTTP.items():
        trigger = found[name]["bindings"][0]
        assert trigger["type"] == "httpTrigger"
        assert (trigger["route"], trigger["methods"], trigger["authLevel"]) == (route, methods, auth)
    for name, schedule in EXPECTED_TIMERS.items():
        trigger = found[name]["bindings"][0]
        assert trigger["type"] == "timerTrigger" and trigger["schedule"] == schedule
        assert trigger.get("runOnStartup") is False


def test_an_unset_schedule_takes_its_documented_default():
    found = _index_with({})
    for name, schedule in DEFAULT_SCHEDULES.items():
        assert found[name]["bindings"][0]["schedule"] == schedule


def test_bridge_jobs_registers_only_the_enabled_jobs_functions():
    """Issue 19: with BRIDGE_JOBS=routing only the routing functions (and the health probe) exist."""
    assert set(_index_with({"BRIDGE_JOBS": "routing"})) == {"health", "routing", "warmup", "sync_phone_index"}
    assert set(_index_with({"BRIDGE_JOBS": "user_ids, presence"})) == {
        "health",
        "sync_enreach_user_ids",
        "presence_dataverse",
        "presence_enreach",
        "reconcile_presence",
        "sync_presence",
    }
    assert set(_index_with({"BRIDGE_JOBS": "faxes"})) == {"health"}  # the health probe names the problem


def test_callbacks_are_registered_only_when_named_in_bridge_jobs():
    """Issue 20: callback requests are off by default; named (or all), their timer runs every minute
    by default; without the presence job, callback notifications get the Enreach endpoint of their own."""
    assert "sync_callbacks" not in _index_with({})
    everything = _index_with({"BRIDGE_JOBS": "all"})
    assert everything["sync_callbacks"]["bindings"][0]["schedule"] == "0 * * * * *"
    assert "callback_notifications" not in everything  # presence_enreach dispatches callback events
    scheduled = _index_with({"BRIDGE_JOBS": "all", "CALLBACK_SYNC_SCHEDULE": "0 */3 * * * *"})
    assert scheduled["sync_callbacks"]["bindings"][0]["schedule"] == "%CALLBACK_SYNC_SCHEDULE%"
    alone = _index_with({"BRIDGE_JOBS": "callbacks"})
    assert set(alone) == {"health", "sync_callbacks", "callback_notifications"}
    trigger = alone["callback_notifications"]["bindings"][0]
    assert (trigger["route"], trigger["methods"], trigger["authLevel"]) == ("presence/enreach", ["POST"], "FUNCTION")


def test_importing_the_app_needs_no_settings_and_loads_no_heavy_modules():
    code = (
        "import sys, function_app; "
        "heavy = [m for m in ('requests', 'azure.identity', 'msal', 'phonenumbers', 'azure.data.tables') "
        "if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""}, check=True)
    assert result.stdout.strip() == "[]"


def test_health_reports_misconfiguration_without_details(monkeypatch):
    import azure.functions as func

    from bridge.settings import get_settings
    from function_app import app
    from sandbox.host import index_functions

    health = {f.get_function_name(): f for f in index_functions(app)}["health"].get_user_function()
    monkeypatch.delenv("DATAVERSE_URL", raising=False)
    get_settings.cache_clear()
    response = health(func.HttpRequest("GET", "/api/health", body=b""))
    get_settings.cache_clear()
    assert response.status_code == 503
    body = json.loads(response.get_body())
    assert body["status"] == "misconfigured" and body["problems"] >= 1
    assert "DATAVERSE_URL" not in response.get_body().decode()


def test_every_setting_is_in_the_sample_and_the_readme():
    from pathlib import Path

    from bridge.settings import SETTING_NAMES

    root = Path(__file__).resolve().parent.parent
    sample = json.loads((root / "local.settings.sample.json").read_text())["Values"]
    readme = (root / "README.md").read_text()
    for name in SETTING_NAMES:
        assert name in sample, f"{name} missing from local.settings.sample.json"
        assert f"`{name}`" in readme, f"{name} missing from the README's settings table"
