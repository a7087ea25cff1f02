"""``sync_enreach_user_ids``: Dataverse users get their Enreach user id, matched by e-mail.

The Enreach e-mail is the user's ``enr_enreachemail`` override when set, else their primary
e-mail (``internalemailaddress``); matching is case-insensitive. Only changed ids are
written (``PATCH`` with ``If-Match: *``, so it can never create a user), in ``$batch``
requests. Users with no Enreach match are reported by name, not touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from core.schema import CALL_SYNC
from dataverse import BatchRequest, ChangeSet, DataverseClient, key_path
from dataverse import filters as f
from enreach import EnreachClient, users_by_email

__all__ = ["UserIdSyncReport", "sync_enreach_user_ids"]

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


def sync_enreach_user_ids(
    enreach: EnreachClient, client: DataverseClient, *, batch_size: int = 100
) -> UserIdSyncReport:
    report = UserIdSyncReport()
    enreach_users = users_by_email(enreach.users())
    changes: list[tuple[str, str]] = []
    for user in client.query(
        "systemusers",
        select=[
            "systemuserid",
            "fullname",
            "internalemailaddress",
            CALL_SYNC.user_email_column,
            CALL_SYNC.user_id_column,
        ],
        filter=f.and_(f.eq("isdisabled", False), f.ne("accessmode", 4)),  # 4: application users
    ):
        email = (user.get(CALL_SYNC.user_email_column) or user.get("internalemailaddress") or "").strip().lower()
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
            for user_id, value in chunk
        ]
        for (user_id, _), answer in zip(chunk, client.batch_each(items, idempotent=True), strict=True):
            if answer is not None and answer.ok:
                report.updated += 1
            else:
                report.failed += 1
                detail = answer.error() if answer is not None else "no answer"
                log.warning("Enreach user id of systemuser %s not written: %s", user_id, detail)
    log.info("%s", report.summary())
    return report
