"""Which jobs run in this deployment: ``BRIDGE_JOBS``, a comma list (default: every job but
``callbacks``, which is new and off until named; ``all``: every job).

Read by ``function_app.py`` at import (only the enabled jobs' functions are registered with the
host) and by ``bridge.settings`` (only the enabled jobs' settings are required). Imports nothing
heavy: the host imports it on every cold start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["ALL_JOBS", "DEFAULT_JOBS", "JOB_FUNCTIONS", "JobsError", "enabled_jobs"]

# Each job and the functions it registers (README, "Jobs").
JOB_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "routing": ("routing", "warmup", "sync_phone_index"),
    "call_sync": ("sync_phone_calls",),
    "user_ids": ("sync_enreach_user_ids",),
    "presence": ("presence_dataverse", "presence_enreach", "reconcile_presence", "sync_presence"),
    # callback notifications arrive at presence_enreach; without the presence job, at callback_notifications
    "callbacks": ("sync_callbacks",),
}
ALL_JOBS = tuple(JOB_FUNCTIONS)
# Existing deployments run every job they ran before BRIDGE_JOBS existed; callback requests are new
# and stay off until named (BRIDGE_JOBS=routing,call_sync,user_ids,presence,callbacks, or all).
DEFAULT_JOBS = tuple(job for job in ALL_JOBS if job != "callbacks")


class JobsError(ValueError):
    """BRIDGE_JOBS names a job that does not exist."""


def enabled_jobs(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The jobs ``BRIDGE_JOBS`` switches on (``DEFAULT_JOBS`` when unset, every job for ``all``); an
    unknown name raises ``JobsError``."""
    env = os.environ if environ is None else environ
    text = env.get("BRIDGE_JOBS", "").strip()
    if not text:
        return frozenset(DEFAULT_JOBS)
    if text.lower() == "all":
        return frozenset(ALL_JOBS)
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in JOB_FUNCTIONS]
    if unknown or not names:
        raise JobsError(
            f"BRIDGE_JOBS names no such job: {', '.join(unknown) or repr(text)}; "
            f"use a comma list of {', '.join(ALL_JOBS)} (or all)"
        )
    return frozenset(names)
