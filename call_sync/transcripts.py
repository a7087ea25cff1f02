"""Enreach transcripts attached to the call's phonecall as a note (``CALL_SYNC_TRANSCRIPTS``, off by default).

How a call names its transcript is UNVERIFIED (``ENREACH_FIELD_MAP.calls.transcript_id``);
``GET calls/transcripts/<id>`` answers ``TranscriptStatus`` Pending or Completed and ``Text``
(mokso/enreachvoice). Per call with a transcript id:

* Completed when the call is written: the note goes in the call's own change set (no extra
  Dataverse request).
* Pending (or Enreach did not answer): the call is remembered in Table Storage (partition
  ``transcripts`` of the parked-calls table) before the call is written, and every later run asks
  again, for ``CALL_SYNC_TRANSCRIPT_WAIT_HOURS``; then it is given up, logged and counted.

The note's id is derived from the call key (UUID 5), so a note is created once whatever is
replayed: a second create is Dataverse's duplicate-key 412. A call reclassified Private loses its
phonecall, and the note with it (notes are parental children of their activity: deleting the
activity deletes them); its pending row is dropped so nothing is attached later.

Texts are kept whole: up to ``NOTE_TEXT_LIMIT`` characters in the note's text, longer ones as a
text file on the note (its text then holds a preview). Previews (the subject) are cut.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from core.schema import CALL_SYNC
from core.state import TableStore
from core.storage_config import StorageConfig
from dataverse import BatchRequest, ChangeSet, DataverseClient, DataverseError, key_path
from enreach import EnreachCall, EnreachClient, EnreachError, Transcript

__all__ = [
    "NOTE_TEXT_LIMIT",
    "PendingTranscript",
    "PendingTranscripts",
    "TranscriptReport",
    "note_id",
    "note_request",
    "settle_pending",
]

log = logging.getLogger("call_sync")
PARTITION = "transcripts"
# annotation.notetext holds 100,000 characters (Dataverse's default maximum for the column);
# longer transcripts go whole into an attached text file.
NOTE_TEXT_LIMIT = 100_000
PREVIEW = 80
FETCH_WORKERS = 8  # transcript GETs in flight at once (Enreach answers 429 when pushed: retried)
_NAMESPACE = uuid.UUID("5d1f8a52-8c0e-4f0b-9a7e-3f3c2b1e6a23")


def note_id(call_key: str) -> str:
    """The transcript note's id: the same for the same call, in every run and instance."""
    return str(uuid.uuid5(_NAMESPACE, f"transcript:{call_key.lower()}"))


def note_request(call_key: str, transcript: Transcript, phonecall_bind: str) -> BatchRequest:
    """Create the note on the phonecall (``phonecall_bind``: ``$1`` in the call's change set, or the
    phonecall by its key). Whole text; only the subject is a preview."""
    text = transcript.text
    flat = " ".join(text.split())
    subject = "Transcript: " + (flat[:PREVIEW] + "…" if len(flat) > PREVIEW else flat or "(empty)")
    body: dict[str, Any] = {
        "annotationid": note_id(call_key),
        "subject": subject[:500],
        "objectid_phonecall@odata.bind": phonecall_bind,
    }
    if len(text) <= NOTE_TEXT_LIMIT:
        body["notetext"] = text
    else:
        body.update(
            {
                "notetext": text[:1000] + "… (the whole transcript is the attached file)",
                "isdocument": True,
                "filename": "transcript.txt",
                "mimetype": "text/plain",
                "documentbody": base64.b64encode(text.encode("utf-8")).decode("ascii"),
            }
        )
    return BatchRequest("POST", "annotations", body, content_id="n")


@dataclass(frozen=True)
class PendingTranscript:
    key: str  # the call key (the phonecall's enr_enreachcallid)
    transcript_id: str
    first_seen: datetime


def _row_key(key: str) -> str:
    return quote(key, safe=" !$&'()*+,-.:;=@[]^_`{|}~")


class PendingTranscripts(TableStore):
    """Calls whose transcript was not Completed yet (beside the parked calls, own partition)."""

    def __init__(self, storage: StorageConfig | str, *, table_name: str = "bridgeparkedcalls") -> None:
        super().__init__(storage, table_name=table_name)

    def remember(self, key: str, transcript_id: str, now: datetime) -> None:
        """Keep asking for this call's transcript (a call remembered before keeps its first time)."""
        from azure.core.exceptions import ResourceExistsError

        entity = {
            "PartitionKey": PARTITION,
            "RowKey": _row_key(key),
            "CallKey": key,
            "Transcript": transcript_id,
            "FirstSeen": now.astimezone(UTC).isoformat(),
        }
        try:
            self._client().create_entity(entity)
        except ResourceExistsError:
            pass

    def all(self) -> list[PendingTranscript]:
        rows = self._client().query_entities(f"PartitionKey eq '{PARTITION}'")
        return [
            PendingTranscript(str(r["CallKey"]), str(r["Transcript"]), datetime.fromisoformat(str(r["FirstSeen"])))
            for r in rows
        ]

    def forget(self, keys: Iterable[str]) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        for key in keys:
            try:
                self._client().delete_entity(PARTITION, _row_key(key))
            except ResourceNotFoundError:
                pass


@dataclass
class TranscriptReport:
    attached: int = 0
    pending: int = 0  # still waiting after this run
    given_up: int = 0  # past CALL_SYNC_TRANSCRIPT_WAIT_HOURS by this run
    unavailable: int = 0  # Enreach did not answer (asked again next run)


def fetch(
    enreach: EnreachClient, calls: Sequence[tuple[str, EnreachCall]], *, workers: int = FETCH_WORKERS
) -> dict[str, Transcript | None]:
    """The transcript of each call naming one, ``workers`` GETs at a time: ``None`` when Enreach did
    not answer or knows none."""
    wanted = [(key, str(call.transcript_id), call.call_id) for key, call in calls if call.transcript_id]

    def one(item: tuple[str, str, str]) -> tuple[str, Transcript | None]:
        key, transcript_id, call_id = item
        try:
            return key, enreach.transcript(transcript_id)
        except EnreachError as error:
            log.warning("transcript of call %s not read (%s); asked again next run", call_id, error)
            return key, None

    if len(wanted) <= 1:
        return dict(one(item) for item in wanted)
    with ThreadPoolExecutor(max_workers=min(workers, len(wanted)), thread_name_prefix="enreach-transcripts") as pool:
        return dict(pool.map(one, wanted))


def settle_pending(
    enreach: EnreachClient,
    client: DataverseClient,
    store: PendingTranscripts,
    *,
    wait: timedelta,
    now: datetime,
    batch_size: int,
    skip: Mapping[str, object] | None = None,
    report: TranscriptReport,
) -> list[str]:
    """Ask again for the pending transcripts; attach the Completed ones (one ``$batch`` write for all),
    give up those older than ``wait``. ``skip``: call keys this run handles itself. Problems, as lines."""
    problems: list[str] = []
    done: list[str] = []
    writes: list[tuple[PendingTranscript, ChangeSet]] = []
    for item in store.all():
        if skip and item.key in skip:
            continue
        if now - item.first_seen > wait:
            done.append(item.key)
            report.given_up += 1
            log.warning(
                "%s",
                json.dumps(
                    {
                        "call_sync_decision": "transcript given up",
                        "call_key": item.key,
                        "hours": wait / timedelta(hours=1),
                    }
                ),
            )
            continue
        try:
            transcript = enreach.transcript(item.transcript_id)
        except EnreachError:
            report.unavailable += 1
            report.pending += 1
            continue
        if transcript is None or not transcript.completed:
            report.pending += 1
            continue
        bind = "/" + key_path("phonecalls", {CALL_SYNC.call_id_column: item.key})
        writes.append((item, ChangeSet([note_request(item.key, transcript, bind)])))
    if writes:
        try:
            answers = client.batch_each_parallel([w for _, w in writes], max_batch=batch_size, idempotent=True)
        except DataverseError as error:
            problems.append(f"transcript notes: {error.__class__.__name__} (asked again next run)")
            answers = [None] * len(writes)
        for (item, _), answer in zip(writes, answers, strict=True):
            if answer is not None and (answer.ok or (answer.status == 412 and answer.error().code == "0x80040237")):
                done.append(item.key)
                report.attached += 1 if answer.ok else 0
            else:
                report.pending += 1  # the phonecall is not written yet (404), or Dataverse failed: next run
    store.forget(done)
    return problems
