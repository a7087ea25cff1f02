"""``sync_enreach_user_ids``: Dataverse users get their Enreach user id, matched by e-mail.

The Enreach e-mail is the user's ``enr_enreachemail`` override when set, else their primary
e-mail (``internalemailaddress``); matching is case-insensitive. Only changed ids are
written (``PATCH`` with ``If-Match: *``, so it can never create a user), in ``$batch``
requests. Users with no Enreach match are reported by name, not touched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.schema import CALL_SYNC
from dataverse import BatchRequest, BatchResponse, ChangeSet, DataverseClient, key_path
from dataverse import filters as f
from enreach import EnreachClient, EnreachUser, users_by_email

__all__ = ["UserIdSyncReport", "enreach_email", "resolve_users", "sync_enreach_user_ids"]

_USER_COLUMNS = [
    "systemuserid",
    "fullname",
    "internalemailaddress",
    CALL_SYNC.user_email_column,
    CALL_SYNC.user_id_column,
]
_ACTIVE_USERS = f.and_(f.eq("isdisabled", False), f.ne("accessmode", 4))  # 4: application users

log = logging.getLogger("call_sync.users")


@dataclass
class UserIdSyncReport:
    users: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    unmatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"Enreach user ids: {self.users} users, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.failed} failed, {len(self.unmatched)} without an Enreach user"
            + (
                f" ({', '.join(self.unmatched[:20])}{', ...' if len(self.unmatched) > 20 else ''})"
                if self.unmatched
                else ""
            )
        )


def enreach_email(user: Mapping[str, Any]) -> str:
    """The e-mail a Dataverse user is matched by: the ``enr_enreachemail`` override, else the primary one."""
    return str(user.get(CALL_SYNC.user_email_column) or user.get("internalemailaddress") or "").strip().lower()


def _write_ids(client: DataverseClient, changes: Sequence[tuple[str, str]]) -> list[BatchResponse | None]:
    """``PATCH`` each user's Enreach id with ``If-Match: *`` (never creates a user), in one ``$batch``."""
    items = [
        ChangeSet(
            [
                BatchRequest(
                    "PATCH",
                    key_path("systemusers", user_id),
                    {CALL_SYNC.user_id_column: value},
                    headers={"If-Match": "*"},
                )
            ]
        )
        for user_id, value in changes
    ]
    return client.batch_each(items, idempotent=True)


# Two columns x 100 addresses of ~40 characters stay near 10 kB of URL, well inside Dataverse's limit.
EMAILS_PER_QUERY = 100


def resolve_users(
    enreach_ids: Iterable[str],
    enreach_users: Sequence[EnreachUser],
    client: DataverseClient,
    *,
    write: bool = True,
) -> dict[str, str]:
    """The call sync's on-the-spot mapping: Dataverse users (systemuserid by lower-cased Enreach id)
    for Enreach users the run found unmapped, matched by e-mail exactly as ``sync_enreach_user_ids``
    does, in one query for all of them; the ids found are written as that sync would write them
    (unless ``write`` is false: a dry run)."""
    wanted = {i.lower() for i in enreach_ids}
    by_email = users_by_email([u for u in enreach_users if u.id.lower() in wanted])
    if not by_email:
        return {}
    emails = sorted(by_email)
    found: dict[str, str] = {}
    changes: list[tuple[str, str]] = []
    # One query per EMAILS_PER_QUERY addresses: a first run of a large tenant finds thousands of
    # unmapped users, and one GET naming them all would pass the URL length Dataverse accepts.
    users = (
        user
        for start in range(0, len(emails), EMAILS_PER_QUERY)
        for chunk in [emails[start : start + EMAILS_PER_QUERY]]
        for user in client.query(
            "systemusers",
            select=_USER_COLUMNS,
            filter=f.and_(
                _ACTIVE_USERS,
                f.or_(f.in_("internalemailaddress", chunk), f.in_(CALL_SYNC.user_email_column, chunk)),
            ),
        )
    )
    for user in users:
        match = by_email.get(enreach_email(user))
        if match is None or match.id.lower() in found:
            continue
        found[match.id.lower()] = user["systemuserid"]
        if str(user.get(CALL_SYNC.user_id_column) or "").lower() != match.id.lower():
            changes.append((user["systemuserid"], match.id))
    if changes and write:
        for (user_id, _), answer in zip(changes, _write_ids(client, changes), strict=True):
            if answer is None or not answer.ok:  # the call is owned anyway; the hourly sync writes it later
                log.warning("Enreach user id of systemuser %s not written: %s", user_id, answer and answer.error())
    return found


def sync_enreach_user_ids(
    enreach: EnreachClient, client: DataverseClient, *, batch_size: int = 100
) -> UserIdSyncReport:
    report = UserIdSyncReport()
    enreach_users = users_by_email(enreach.users())
    changes: list[tuple[str, str]] = []
    for user in client.query("systemusers", select=_USER_COLUMNS, filter=_ACTIVE_USERS):
        email = enreach_email(user)
        if not email:
            continue
        report.users += 1
        match = enreach_users.get(email)
        if match is None:
            report.unmatched.append(str(user.get("fullname") or user["systemuserid"]))
            continue
        if str(user.get(CALL_SYNC.user_id_column) or "").lower() == match.id.lower():
            report.unchanged += 1
            continue
        changes.append((user["systemuserid"], match.id))
    for start in range(0, len(changes), batch_size):
        chunk = changes[start : start + batch_size]
        for (user_id, _), answer in zip(chunk, _write_ids(client, chunk), strict=True):
            if answer is not None and answer.ok:
                report.updated += 1
            else:
                report.failed += 1
                detail = answer.error() if answer is not None else "no answer"
                log.warning("Enreach user id of systemuser %s not written: %s", user_id, detail)
    log.info("%s", report.summary())
    return report
