"""``python -m ops config show`` and ``python -m ops config import`` as an operator runs them, against
the emulators (issue 19, item 6)."""

from __future__ import annotations

import json

import pytest

from core.schema import BRIDGE_SETTING, ROUTING_RULE
from sandbox.services import provision_app_schema
from tests.test_ops import _ops

DESK = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a09"
RULES = [
    {
        "name": "vip",
        "kind": "field",
        "table": "account",
        "column": "accountcategorycode",
        "equals": 1,
        "target": "+358942420001",
    },
    {
        "name": "evenings",
        "kind": "default",
        "pools": ["+358942420100"],
        "target": "+358942420199",
        "outside_hours": {
            "timezone": "Europe/Helsinki",
            "weekly": {"mon-fri": ["08:00-16:00"]},
            "holidays": ["2026-12-24"],
        },
    },
]


@pytest.fixture()
def settings_file(world, tmp_path):
    world.dataverse.load({"systemusers": [{"systemuserid": DESK, "fullname": "Call Desk"}]})
    provision_app_schema(world.dataverse)
    values = world.app_settings(
        {
            "ROUTING_API_KEY": "test-routing-key-0123456789",
            "ROUTING_RULES": json.dumps(RULES),
            "DEFAULT_CRM_ASSIGNEE": DESK,
            "CALL_DURATION_LIMIT": "10",
        }
    )
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": values}))
    return path


def test_import_writes_the_business_options_and_rules_once_and_show_names_each_source(world, settings_file):
    ca = world.ca.bundle_path
    dry = _ops(settings_file, "config", "import", "--dry-run", ca_bundle=ca)
    assert dry.returncode == 0, dry.stderr
    assert "would create 4 rows, 0 already there" in dry.stdout
    assert world.dataverse.request_count(method="PATCH") == 0
    done = _ops(settings_file, "config", "import", ca_bundle=ca)
    assert done.returncode == 0, done.stderr
    assert "created 4 rows, 0 already there" in done.stdout
    settings = {r["enr_name"]: r for r in world.dataverse.rows(BRIDGE_SETTING.entity_set)}
    assert settings["DEFAULT_CRM_ASSIGNEE"]["_enr_user_value"] == DESK  # the lookup, not a pasted GUID
    assert settings["CALL_DURATION_LIMIT"]["enr_value"] == "10"
    rules = sorted(world.dataverse.rows(ROUTING_RULE.entity_set), key=lambda r: r["enr_order"])
    assert [(r["enr_name"], r["enr_order"]) for r in rules] == [("vip", 10), ("evenings", 20)]
    again = _ops(settings_file, "config", "import", ca_bundle=ca)
    assert "created 0 rows, 4 already there" in again.stdout  # idempotent

    world.dataverse.touch(
        BRIDGE_SETTING.entity_set, settings["CALL_DURATION_LIMIT"]["enr_bridgesettingid"], enr_value="30"
    )
    shown = _ops(settings_file, "config", "show", ca_bundle=ca)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert "row" in lines["CALL_DURATION_LIMIT"] and "30" in lines["CALL_DURATION_LIMIT"]
    assert "overrides the app setting" in lines["CALL_DURATION_LIMIT"]
    assert "app setting" in lines["PHONE_DEFAULT_REGION"] and "default" in lines["PRESENCE_POLLING"]
    assert "(set, hidden)" in lines["ROUTING_API_KEY"] and "test-routing-key" not in shown.stdout
    assert "(set, hidden)" in lines["AZURE_CLIENT_SECRET"]
    assert "routing rules: 2 from rows" in shown.stdout and "problems: none" in shown.stdout


def test_show_lists_rows_that_do_not_apply_and_exits_1(world, settings_file):
    world.dataverse.load(
        {
            ROUTING_RULE.entity_set: [{"enr_name": "broken", "enr_kind": 727_000_005, "enr_target": "soon"}],
            BRIDGE_SETTING.entity_set: [{"enr_name": "ROUTING_API_KEY", "enr_value": "x"}],
        }
    )
    shown = _ops(settings_file, "config", "show", ca_bundle=world.ca.bundle_path)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "problems: 2 rows do not apply" in shown.stdout
    assert "routing rule row 'broken'" in shown.stdout and "setting row 'ROUTING_API_KEY'" in shown.stdout
    assert "routing rules: 2 from the app setting ROUTING_RULES" in shown.stdout  # the broken row left out
    assert "Traceback" not in shown.stderr


def test_import_adds_rules_after_the_active_rule_rows_and_says_so(world, settings_file):
    """Found by a newcomer: imported rules took order 10, 20 between the existing rows' and went
    live at once without a word."""
    world.dataverse.load(
        {ROUTING_RULE.entity_set: [{"enr_name": "owner", "enr_kind": 727_000_000, "enr_order": 20, "statecode": 0}]}
    )
    done = _ops(settings_file, "config", "import", ca_bundle=world.ca.bundle_path)
    assert done.returncode == 0, done.stderr
    assert "1 active routing rule rows exist: imported rules are added after them (order > 20)" in done.stdout
    rules = sorted(world.dataverse.rows(ROUTING_RULE.entity_set), key=lambda r: r["enr_order"])
    assert [(r["enr_name"], r["enr_order"]) for r in rules] == [("owner", 20), ("vip", 30), ("evenings", 40)]
