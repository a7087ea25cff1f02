"""What the app exports to Application Insights leaks nothing (issue 22), end to end.

A fake ingestion endpoint on loopback records every payload the Azure Monitor exporter posts
(``<IngestionEndpoint>/v2.1/track``: JSON envelopes, maybe gzipped). The app runs in a process of
its own (tests/telemetry_probe.py: the OpenTelemetry providers are process-wide) against the
emulators, with the SDK's control plane and statistics off, every span sampled, and sockets
guarded to loopback. It answers routing calls for every customer of the sample data, runs every
timer (the call sync meets an Enreach 500 whose body holds a number and an e-mail address; both
services throttle once), and takes both presence webhooks. Then every captured payload is
searched for phone numbers, e-mail addresses and secrets.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emulators._server import FaultRule
from emulators.dataverse import OMNICHANNEL_PRESENCES, _execution_context
from sandbox.services import load_data, provision_app_schema, shift_call_times

ROOT = Path(__file__).resolve().parent.parent
AGENT = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01"  # Aino Virtanen in the sample data
ENREACH_AGENT = "e1a0c001-0000-4000-8000-000000000001"
KEY = "telemetry-routing-key-0123456789"
PRESENCE_KEY = "telemetry-presence-key-0123456789"
SECRET = "telemetry-enreach-secret-0123456789"
# The call sync runs twice: the first run meets the Enreach 500, the second syncs the calls.
TIMERS = [
    "sync_enreach_user_ids",
    "sync_phone_index",
    "sync_phone_calls",
    "sync_phone_calls",
    "reconcile_presence",
    "sync_presence",
]
LEAKY_BODY = {"Message": "call of +358401234599 for tiina.leak@example.fi could not be read"}
UNKNOWN_CALLER = "+358449998877"


class FakeIngestion:
    """Records what the exporter posts; answers as the ingestion service does (all accepted)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        ingestion = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if body[:2] == b"\x1f\x8b":
                    body = gzip.decompress(body)
                text = body.decode("utf-8", "replace")
                items: list[Any] = []
                if text.strip():
                    try:
                        parsed = json.loads(text)
                        items = parsed if isinstance(parsed, list) else [parsed]
                    except ValueError:
                        items = [json.loads(line) for line in text.splitlines() if line.strip()]
                with ingestion.lock:
                    ingestion.posts.append({"path": self.path, "text": text, "items": items})
                answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def envelopes(self) -> list[dict[str, Any]]:
        return [item for post in self.posts if post["path"].endswith("/track") for item in post["items"]]


@pytest.fixture(scope="module")
def ingestion() -> Iterator[FakeIngestion]:
    fake = FakeIngestion()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _numbers_in(data: dict[str, Any]) -> set[str]:
    """Every phone number of the sample data, as its digits."""
    found: set[str] = set()

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and re.search(r"phone|mobile|number|anum|bnum|numbers", key, re.I):
            digits = re.sub(r"\D", "", value)
            if len(digits) >= 7:
                found.add(digits)

    walk(data)
    return found


@pytest.fixture(scope="module")
def exported(services, azurite, ingestion, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """One run of the app for the module's tests (a fresh world, as the ``world`` fixture makes it)."""
    world = services
    tmp_path = tmp_path_factory.mktemp("telemetry")
    for emulator in (world.dataverse, world.enreach, world.tokens):
        emulator.reset_requests()
        emulator.clear_faults()
    world.dataverse.reset()
    world.enreach.reset()
    data = load_data(None)
    shift_call_times(data)
    world.dataverse.load(data["dataverse"])
    world.enreach.load(data["enreach"])
    provision_app_schema(world.dataverse)
    world.dataverse.set_presence(AGENT, OMNICHANNEL_PRESENCES["Available"][0])
    status_id = next(r for r in world.dataverse.rows("msdyn_agentstatuses") if r["_msdyn_agentid_value"] == AGENT)[
        "msdyn_agentstatusid"
    ]
    # The call sync meets an Enreach 500 whose body holds a number and an address; both services throttle once.
    world.enreach.inject(FaultRule(500, count=1, path="calls", method="GET", body=LEAKY_BODY))
    world.enreach.inject(FaultRule(429, count=1, retry_after=1, path="users", method="GET"))
    world.dataverse.inject(FaultRule(429, count=1, retry_after=1, path="systemusers", method="GET"))

    customers = [*data["dataverse"]["contacts"], *data["dataverse"]["accounts"], *data["dataverse"].get("leads", [])]
    numbers = {c.get(column) for c in customers for column in ("mobilephone", "telephone1") if c.get(column)}
    callers = [*sorted(numbers), UNKNOWN_CALLER]
    bnum = data["enreach"]["queues"][0]["Numbers"][0]
    enreach_event = {
        "Id": "7e57e000-0000-4000-8000-000000000001",
        "Timestamp": "2026-11-25T08:00:00.000Z",
        "RootEntityType": "User",
        "RootEntityId": ENREACH_AGENT,
        "EntityType": "User",
        "EntityId": ENREACH_AGENT,
        "EventType": "EmulatorAvailabilityChanged",
    }
    routing = {"X-Benemen-APIKey": KEY}
    plan = {
        "timers": TIMERS,
        "posts": [
            *({"route": "routing", "body": {"anum": c, "bnum": bnum}, "headers": routing} for c in callers),
            {"route": "routing", "body": {"anum": "+358501234567x", "bnum": bnum}, "headers": routing},
            {"route": "routing", "body": {"anum": "+358501234567"}, "headers": routing},  # 400: refused
            # Omnichannel DND is mirrored to Enreach; Enreach's notification of it is the echo, dropped.
            {
                "route": "presence/dataverse",
                "body": _execution_context(status_id, AGENT, OMNICHANNEL_PRESENCES["Busy - DND"][0]),
                "headers": {"X-Presence-Key": PRESENCE_KEY},
            },
            {"route": "presence/enreach", "body": enreach_event, "headers": {"Secret": SECRET}},
            {"route": "presence/dataverse", "body": {}, "headers": {"X-Presence-Key": "wrong-key"}},  # 401
        ],
    }
    plan_path, result_path = tmp_path / "plan.json", tmp_path / "result.json"
    plan_path.write_text(json.dumps(plan))
    settings = world.app_settings(
        {
            "ROUTING_API_KEY": KEY,
            "PRESENCE_WEBHOOK_KEY": PRESENCE_KEY,
            "ENREACH_WEBHOOK_SECRET": SECRET,
            "AzureWebJobsStorage": azurite.connection_string,
            "ENREACH_FIELD_MAP": json.dumps(
                {"events": {"availability_changed": ["EmulatorAvailabilityChanged"], "call_end": ["EmulatorCallEnded"]}}
            ),
        }
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TMPDIR": str(tmp_path),  # the exporter's retry storage
        "HOME": str(tmp_path),
        **settings,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            "InstrumentationKey=00000000-0000-4000-8000-000000000022;"
            f"IngestionEndpoint={ingestion.url};LiveEndpoint={ingestion.url}"
        ),
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
        "OTEL_TRACES_SAMPLER": "microsoft.fixed_percentage",  # every span, no rate limit
        "OTEL_TRACES_SAMPLER_ARG": "1.0",
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",  # the Azure VM detector would ask 169.254.169.254
    }
    console_path = tmp_path / "console.txt"
    with console_path.open("w") as console:
        returncode = subprocess.run(
            [sys.executable, "-m", "tests.telemetry_probe", str(plan_path), str(result_path)],
            cwd=ROOT,
            env=env,
            stdout=console,
            stderr=subprocess.STDOUT,
            timeout=300,
        ).returncode
    output = console_path.read_text()
    assert returncode == 0, output[-4000:]
    result = json.loads(result_path.read_text())
    secrets = [
        KEY,
        PRESENCE_KEY,
        SECRET,
        settings["AZURE_CLIENT_SECRET"],
        settings["ENREACH_SECRET_KEY"],
        re.search(r"AccountKey=([^;]+)", azurite.connection_string).group(1),  # type: ignore[union-attr]
    ]
    if os.environ.get("TELEMETRY_DUMP"):  # a file to read what was exported, when changing this test
        Path(os.environ["TELEMETRY_DUMP"]).write_text(json.dumps(ingestion.posts, indent=1))
    yield {
        "result": result,
        "console": output,
        "envelopes": ingestion.envelopes(),
        "posts": ingestion.posts,
        "numbers": _numbers_in(data) | {"358401234599", "358449998877", "358501234567"},
        "secrets": secrets,
    }
    world.dataverse.clear_faults()
    world.enreach.clear_faults()


EMAIL = re.compile(r"[A-Za-z0-9._+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def _leaks(text: str, numbers: set[str], secrets: list[str]) -> list[str]:
    """The numbers (any 7 consecutive digits of one, separators ignored), addresses and secrets in ``text``."""
    found = [f"e-mail {m}" for m in EMAIL.findall(text)]
    squeezed = re.sub(r"[ \-().]|%20|\\u00a0", "", text)
    for number in numbers:
        tail = number[-7:]
        if tail in squeezed:
            at = squeezed.index(tail)
            found.append(f"number ...{tail}: {squeezed[max(0, at - 60) : at + 20]!r}")
    found += [f"secret {s[:4]}..." for s in secrets if s in text]
    found += [f"token {m[:12]}..." for m in re.findall(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", text)]
    return found


def _kind(envelope: dict[str, Any]) -> str:
    return str(envelope.get("data", {}).get("baseType") or envelope.get("name"))


def test_exported_telemetry_carries_no_number_email_or_secret(exported):
    envelopes = exported["envelopes"]
    kinds = Counter(_kind(e) for e in envelopes)
    # Not vacuous: the exporter sent what the run produced.
    assert kinds["RemoteDependencyData"] >= 20, kinds
    assert kinds["MessageData"] >= 10, kinds
    assert kinds["ExceptionData"] >= 1, kinds
    assert exported["result"]["failed_timers"] == ["sync_phone_calls"], exported["result"]
    statuses = exported["result"]["statuses"]
    assert statuses["presence/dataverse"] == [200, 401] and statuses["presence/enreach"] == [200], statuses
    assert 200 in statuses["routing"] and 204 in statuses["routing"] and statuses["routing"][-1] == 400, statuses

    leaks: list[str] = []
    for envelope in envelopes:
        text = json.dumps(envelope, ensure_ascii=False)
        for leak in _leaks(text, exported["numbers"], exported["secrets"]):
            leaks.append(f"{_kind(envelope)}: {leak}")
    assert not leaks, f"{len(leaks)} leaks in {len(envelopes)} exported items:\n" + "\n".join(sorted(set(leaks)))


def test_a_failed_timer_hands_the_host_a_masked_exception_and_exports_its_stack(exported):
    (raised,) = exported["result"]["raised"]  # what the Functions host would report, unscrubbed
    assert "TimerRunFailed: sync_phone_calls failed: EnreachUnavailable" in raised, raised
    assert not _leaks(raised, exported["numbers"], exported["secrets"]), raised
    stacks = [
        e["data"]["baseData"]
        for e in exported["envelopes"]
        if _kind(e) == "ExceptionData"
        and (e["data"]["baseData"].get("properties") or {}).get("event") == "sync_phone_calls"
    ]
    assert len(stacks) == 1 and "enreach/_client.py" in stacks[0]["exceptions"][0]["stack"], stacks


def test_nothing_leaves_loopback_and_the_console_is_masked_too(exported):
    assert exported["result"]["blocked"] == []
    leaks = _leaks(exported["console"], exported["numbers"], exported["secrets"])
    assert not leaks, "\n".join(leaks)
    for post in exported["posts"]:  # live metrics posts too, not only /v2.1/track
        assert not _leaks(post["text"], exported["numbers"], exported["secrets"]), post["path"]
    assert any(post["path"].endswith("/v2.1/track") for post in exported["posts"])


def test_one_trace_per_log_line(exported):
    messages = [
        (e["time"], e["data"]["baseData"].get("message")) for e in exported["envelopes"] if _kind(e) == "MessageData"
    ]
    duplicates = [m for m, n in Counter(messages).items() if n > 1]
    assert not duplicates, duplicates[:5]


def _metrics(envelopes: list[dict[str, Any]]) -> list[tuple[str, dict[str, str], float]]:
    return [
        (metric["name"], e["data"]["baseData"].get("properties") or {}, metric["value"])
        for e in envelopes
        if _kind(e) == "MetricData"
        for metric in e["data"]["baseData"]["metrics"]
    ]


def test_the_bridge_meters_are_exported_with_plain_attributes(exported):
    found: dict[str, Counter[str]] = {}
    for name, properties, value in _metrics(exported["envelopes"]):
        if name.startswith("bridge."):
            label = ",".join(f"{k}={v}" for k, v in sorted(properties.items()) if not k.startswith("_MS"))
            found.setdefault(name, Counter())[label] += value
    decisions = found.get("bridge.routing.decisions", Counter())
    assert decisions["outcome=target"] >= 1 and decisions["outcome=no_match"] >= 1, found
    assert decisions["outcome=refused"] == 1, found
    assert "outcome=target" in found["bridge.routing.duration"], found
    assert found["bridge.calls"]["result=synced"] >= 1, found
    assert found["bridge.throttled"] == Counter({"service=dataverse": 1, "service=enreach": 1}), found
    assert found["bridge.presence.writes"]["direction=to_enreach"] == 1, found
    assert found["bridge.presence.echoes_dropped"][""] == 1, found
    assert found["bridge.presence.refused"] == Counter({"status=401": 1}), found
    for name, labels in found.items():
        for label in labels:
            assert not _leaks(label, exported["numbers"], exported["secrets"]), (name, label)
            assert re.fullmatch(r"(\w+=[a-z0-9_]+)?(,\w+=[a-z0-9_]+)*", label), (name, label)


def test_timer_lines_carry_their_fields_as_custom_dimensions(exported):
    lines = {}
    for e in exported["envelopes"]:
        if _kind(e) == "MessageData":
            properties = e["data"]["baseData"].get("properties") or {}
            if "event" in properties:
                lines.setdefault(properties["event"], []).append(properties)
    for timer in set(TIMERS):
        event = {"sync_presence": "presence_poll"}.get(timer, timer)  # skipped here: notifications are mapped
        assert event in lines, sorted(lines)
        assert all("outcome" in p for p in lines[event]), lines[event]
    for timer in ("sync_enreach_user_ids", "sync_phone_index", "sync_phone_calls"):  # core.telemetry.run_logged
        assert all("duration_ms" in p for p in lines[timer]), lines[timer]
    calls = lines["sync_phone_calls"]
    assert calls[0]["outcome"] == "failed" and "parked" in calls[-1] and "read" in calls[-1], calls
    assert {"routing_decision", "presence_change", "http_refused"} <= set(lines), sorted(lines)
    assert {p["outcome"] for p in lines["routing_decision"]} >= {"target", "no_match"}
