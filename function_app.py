"""Azure Functions entry point (Python v2 model): only glue, one Blueprint per job.

Keep imports here cheap: the host imports this module on every cold start. Each
blueprint imports its business logic inside the function bodies.

Only the jobs ``BRIDGE_JOBS`` switches on (default: all but ``callbacks``) have their functions registered, so a
disabled job's timers never fire and its webhooks answer 404 (README, "Jobs").
"""

from __future__ import annotations

from collections.abc import Mapping

import azure.functions as func

from bridge.jobs import JobsError, enabled_jobs
from core.telemetry import configure_telemetry


def build_app(environ: Mapping[str, str] | None = None) -> func.FunctionApp:
    """The function app with the health probe and the functions of each enabled job."""
    from call_sync.blueprint import bp as call_sync_bp
    from call_sync.blueprint import users_bp
    from callbacks.blueprint import bp as callbacks_bp
    from callbacks.blueprint import notifications_bp
    from health.blueprint import bp as health_bp
    from presence_sync.blueprint import bp as presence_bp
    from routing.blueprint import bp as routing_bp

    try:
        jobs = enabled_jobs(environ)
    except JobsError:
        jobs = frozenset()  # the health probe answers 503 and names the problem count; the doctor names it
    built = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    built.register_functions(health_bp)
    for job, blueprint in (
        ("routing", routing_bp),
        ("call_sync", call_sync_bp),
        ("user_ids", users_bp),
        ("presence", presence_bp),
        ("callbacks", callbacks_bp),
    ):
        if job in jobs:
            built.register_functions(blueprint)
    if "callbacks" in jobs and "presence" not in jobs:  # callback notifications need the Enreach endpoint
        built.register_functions(notifications_bp)
    return built


configure_telemetry()
app = build_app()
