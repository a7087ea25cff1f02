"""The call sync's write step two ways: ``$batch`` change sets (what the app does) and the bulk operation
messages ``CreateMultiple`` + ``UpdateMultiple`` (MicrosoftDocs/powerapps-docs bulk-operations.md).

Used by ``call_sync.py`` (``make bench``) on its world, after the full sync: the same phone call bodies
(create, then complete: Made 2 / Received 4), fresh call keys for each variant, the same parallelism.

Dataverse does not offer the bulk messages on ``phonecall``: its table reference page
(reference/entities/phonecall.md) lists Create, Update and Upsert but no CreateMultiple,
UpdateMultiple or UpsertMultiple. The emulator refuses them as Dataverse would; for this
measurement only it is told to allow them (``definition["bulk"]``), so the figures answer
"what if they were available". The emulator charges the same server time per row either way
(Microsoft gives no figure for the bulk messages' gain), so the difference measured is requests,
payloads and per-request latency.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from call_sync.calls import UserDirectory, _changeset, call_key, phonecall_body, write_page
from core.schema import CALL_SYNC
from dataverse import DataverseClient, DataverseError
from enreach import EnreachCall
from matching import to_e164
from sandbox.services import Services

__all__ = ["WriteFigures", "compare_writes"]

PHONECALL = "Microsoft.Dynamics.CRM.phonecall"


@dataclass(frozen=True)
class WriteFigures:
    name: str
    calls: int
    requests: int
    seconds: float

    def line(self, per: int = 10_000) -> str:
        scale = per / self.calls
        return (
            f"{self.name:<46} {self.requests * scale:7.0f} requests, {self.seconds * scale:6.1f} s "
            f"per {per:,} calls (measured on {self.calls:,})"
        )


def _bodies(
    calls: Sequence[EnreachCall], users: UserDirectory, region: str
) -> list[tuple[EnreachCall, dict[str, Any]]]:
    out = []
    for call in calls:
        owner = users.by_enreach_id[call.user_id or ""]
        out.append((call, phonecall_body(call, owner, to_e164(call.other_number, region), None)))
    return out


def _status(call: EnreachCall) -> int:
    return 2 if call.direction == "out" else 4


def _bulk_chunk(client: DataverseClient, chunk: Sequence[tuple[EnreachCall, dict[str, Any]]]) -> None:
    created = client.request(
        "POST",
        "phonecalls/Microsoft.Dynamics.CRM.CreateMultiple",
        json={"Targets": [{"@odata.type": PHONECALL, **body} for _, body in chunk]},
    ).json()
    closes = [
        {"@odata.type": PHONECALL, "activityid": new_id, "statecode": 1, "statuscode": _status(call)}
        for (call, _), new_id in zip(chunk, created["Ids"], strict=True)
    ]
    client.request("POST", "phonecalls/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": closes})


def bulk_refused(client: DataverseClient) -> str:
    """What the emulator (as Dataverse) answers a CreateMultiple of phone calls."""
    try:
        client.request(
            "POST", "phonecalls/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [{"@odata.type": PHONECALL}]}
        )
    except DataverseError as error:
        return f"refused with HTTP {error.status} {error.code}"
    return "accepted (unexpected)"


def compare_writes(
    services: Services,
    client: DataverseClient,
    users: UserDirectory,
    calls: Sequence[EnreachCall],
    *,
    batch_size: int,
    bulk_size: int,
    region: str = "FI",
    tag: str = "",
) -> list[WriteFigures]:
    """Write ``calls`` as phone calls with each variant; return their request counts and wall times."""
    emulator = services.dataverse
    figures = []
    batch_calls = [replace(c, call_id=f"wb{tag}-" + c.call_id) for c in calls]
    items = [_changeset(call, body) for call, body in _bodies(batch_calls, users, region)]
    emulator.reset_requests()
    started = time.perf_counter()
    answers = write_page(client, items, batch_size=batch_size)
    figures.append(
        WriteFigures(
            f"$batch change sets ({batch_size}/batch)",
            len(calls),
            emulator.request_count(),
            time.perf_counter() - started,
        )
    )
    assert all(a is not None and a.ok for a in answers), "every $batch change set written"

    bulk_calls = [replace(c, call_id=f"wm{tag}-" + c.call_id) for c in calls]
    bodies = _bodies(bulk_calls, users, region)
    # sized as send_parallel sizes batches: every stream gets a share, at most bulk_size per request
    size = max(1, min(bulk_size, -(-len(bodies) // client.parallelism())))
    chunks = [bodies[i : i + size] for i in range(0, len(bodies), size)]
    table = emulator.table("phonecalls")
    table.definition["bulk"] = True  # what if Dataverse offered them on phonecall (it does not)
    try:
        emulator.reset_requests()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=client.parallelism()) as pool:
            list(pool.map(lambda chunk: _bulk_chunk(client, chunk), chunks))
        figures.append(
            WriteFigures(
                f"CreateMultiple+UpdateMultiple (<={size}/request)",
                len(calls),
                emulator.request_count(),
                time.perf_counter() - started,
            )
        )
    finally:
        table.definition.pop("bulk", None)
    keys = {call_key(c) for c in bulk_calls}
    written = [r for r in emulator.rows("phonecalls") if r.get(CALL_SYNC.call_id_column) in keys]
    assert len(written) == len(calls) and all(r.get("statecode") == 1 for r in written), "every bulk call written"
    return figures
