"""The bridge's meters (core/metrics.py): their names, kinds and attributes as infra/'s alerts and
workbook query them, and nothing recorded or imported while telemetry is off. Each case runs in
a process of its own: the OpenTelemetry MeterProvider is process-wide. (The meters as the app
really emits them, through the exporter: tests/test_telemetry_export.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RECORD = """
import json, sys
from opentelemetry import metrics as otel
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

reader = InMemoryMetricReader()
otel.set_meter_provider(MeterProvider(metric_readers=[reader]))
from core import metrics
metrics.enable()
metrics.routing_decision("target", 12.5)
metrics.routing_decision("fallback_budget", 1500.0)
metrics.routing_decision("refused", None)
metrics.routing_decision("+358501234567", 3.0)  # never a number as an attribute
metrics.call_results(synced=3, parked=1, review=0, failed=2)
metrics.presence_write("to_enreach")
metrics.presence_write("to_omnichannel")
metrics.presence_write("aino.virtanen@example.fi")
metrics.presence_echo_dropped()
metrics.presence_refused(503)
metrics.throttled("dataverse")
metrics.throttled("enreach")
found = []
for resource in reader.get_metrics_data().resource_metrics:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            for point in metric.data.data_points:
                value = getattr(point, "value", None)
                if value is None:
                    value = {"count": point.count, "sum": point.sum}
                found.append([metric.name, metric.unit, type(metric.data).__name__, dict(point.attributes), value])
print(json.dumps(found))
"""


def _run(code: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env or {"PATH": ""}, check=True
    )
    return result.stdout


def test_every_meter_with_its_attributes():
    found = json.loads(_run(RECORD))
    points = {
        (name, json.dumps(attributes, sort_keys=True)): (unit, kind, value)
        for name, unit, kind, attributes, value in found
    }
    assert points[("bridge.routing.decisions", '{"outcome": "target"}')] == ("1", "Sum", 1)
    assert points[("bridge.routing.decisions", '{"outcome": "fallback_budget"}')] == ("1", "Sum", 1)
    assert points[("bridge.routing.decisions", '{"outcome": "refused"}')] == ("1", "Sum", 1)
    assert points[("bridge.routing.duration", '{"outcome": "fallback_budget"}')] == (
        "ms",
        "Histogram",
        {"count": 1, "sum": 1500.0},
    )
    assert ("bridge.routing.duration", '{"outcome": "refused"}') not in points  # refused before deciding
    assert points[("bridge.calls", '{"result": "synced"}')][2] == 3
    assert points[("bridge.calls", '{"result": "parked"}')][2] == 1
    assert points[("bridge.calls", '{"result": "failed"}')][2] == 2
    assert ("bridge.calls", '{"result": "review"}') not in points  # nothing to add
    assert points[("bridge.presence.writes", '{"direction": "to_enreach"}')][2] == 1
    assert points[("bridge.presence.writes", '{"direction": "to_omnichannel"}')][2] == 1
    assert points[("bridge.presence.echoes_dropped", "{}")][2] == 1
    assert points[("bridge.presence.refused", '{"status": "503"}')][2] == 1
    assert points[("bridge.throttled", '{"service": "dataverse"}')][2] == 1
    assert points[("bridge.throttled", '{"service": "enreach"}')][2] == 1
    # A value outside the vocabulary is recorded as "other": never a number or an address.
    assert points[("bridge.routing.decisions", '{"outcome": "other"}')][2] == 1
    assert points[("bridge.presence.writes", '{"direction": "other"}')][2] == 1
    text = json.dumps(found)
    assert "358501234567" not in text and "@" not in text


def test_meters_cost_nothing_while_telemetry_is_off():
    code = (
        "import sys, function_app\n"
        "from core import metrics\n"
        "metrics.routing_decision('target', 1.0); metrics.throttled('dataverse'); metrics.call_results(synced=2)\n"
        "print(metrics.enabled(), sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    assert _run(code).strip() == "False []"
