"""The Dataverse schema the app adds to an environment (created by provisioning, issue 6).

Kept as data so the provisioning command, the doctor, the emulator and the jobs agree.
Logical names use the publisher prefix ``enr``; navigation properties equal the lookups'
logical names (schema names are created lower-case).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CALLBACKS",
    "CALL_SYNC",
    "CUSTOMER_TABLES",
    "FOLLOW_UPS",
    "PHONE_INDEX",
    "CallSyncSchema",
    "CallbackSchema",
    "CustomerTable",
    "FollowUpSchema",
    "PhoneIndexSchema",
    "SavedView",
]


@dataclass(frozen=True)
class CustomerTable:
    """A table whose rows can be callers: contact, account, lead."""

    logical_name: str
    entity_set: str
    primary_key: str
    name_column: str
    index_lookup: str  # lookup column on the phone index that points at this table


CUSTOMER_TABLES: tuple[CustomerTable, ...] = (
    CustomerTable("contact", "contacts", "contactid", "fullname", "enr_contact"),
    CustomerTable("account", "accounts", "accountid", "name", "enr_account"),
    CustomerTable("lead", "leads", "leadid", "fullname", "enr_lead"),
)


@dataclass(frozen=True)
class PhoneIndexSchema:
    """One row per (record, phone column) holding the number normalised to E.164.

    ``enr_e164`` is what routing matches with ``eq`` (add it to the table's Quick Find
    view so Dataverse indexes it); ``enr_key`` (``<table>:<record id>:<column>``) is the
    alternate key the index job upserts by.
    """

    logical_name: str = "enr_phoneindex"
    entity_set: str = "enr_phoneindexes"
    primary_key: str = "enr_phoneindexid"
    key_column: str = "enr_key"
    key_name: str = "enr_key_unique"
    number_column: str = "enr_e164"
    source_column: str = "enr_column"


PHONE_INDEX = PhoneIndexSchema()


@dataclass(frozen=True)
class CallSyncSchema:
    """Columns the call and user id syncs add: the Enreach call id (alternate key) and the review
    note on phonecall, the Enreach user id and e-mail override on systemuser."""

    call_id_column: str = "enr_enreachcallid"
    call_key_name: str = "enr_enreachcallid_key"
    # Set on a call whose number matched several records (all are parties, none is regarding):
    # says which; users pick the regarding record and clear it. Text, so views can filter on it.
    review_column: str = "enr_callreview"
    review_length: int = 400
    user_id_column: str = "enr_enreachuserid"
    user_email_column: str = "enr_enreachemail"


CALL_SYNC = CallSyncSchema()


@dataclass(frozen=True)
class SavedView:
    """A system view (``savedquery``) provisioning adds: its name, table and FetchXML filter."""

    name: str
    table: str  # returnedtypecode (logical name)
    filter_xml: str  # the <filter> element of the view's FetchXML
    columns: tuple[str, ...]


@dataclass(frozen=True)
class FollowUpSchema:
    """What missed calls, unknown callers and their follow-ups add (issue 23).

    * phonecall ``enr_callresult``: "Missed" on a missed incoming call (the "Missed calls" view);
    * phonecall ``enr_unknowncaller``: the E.164 number of a caller no record matched (the
      "Calls from unknown numbers" view);
    * task ``enr_followupkey``: the caller's E.164 number while the task is the caller's open
      follow-up; an alternate key, so there is never more than one, and cleared when the
      follow-up is completed (a key value may be empty on any number of rows);
    * lead ``enr_callernumber``: the number a lead was created for (alternate key: one lead per
      number however many runs or instances race).
    """

    result_column: str = "enr_callresult"
    missed_value: str = "Missed"
    unknown_column: str = "enr_unknowncaller"
    follow_up_key_column: str = "enr_followupkey"
    follow_up_key_name: str = "enr_followupkey_key"
    lead_number_column: str = "enr_callernumber"
    lead_key_name: str = "enr_callernumber_key"
    views: tuple[SavedView, ...] = (
        SavedView(
            "Calls from unknown numbers",
            "phonecall",
            '<filter type="and"><condition attribute="enr_unknowncaller" operator="not-null" /></filter>',
            ("subject", "enr_unknowncaller", "actualstart", "ownerid"),
        ),
        SavedView(
            "Missed calls",
            "phonecall",
            '<filter type="and"><condition attribute="enr_callresult" operator="eq" value="Missed" /></filter>',
            ("subject", "phonenumber", "actualstart", "ownerid", "regardingobjectid"),
        ),
    )


FOLLOW_UPS = FollowUpSchema()


class CallbackSchema:
    """Columns the callback sync adds to phonecall: the Enreach request id (alternate key: one
    activity per request), the callback list's name, the attempts, and the state both sides last
    agreed on (``open``, ``closed``; ``dynamics`` = closed in Dynamics only), which is what keeps
    a change the app made from coming back as news."""

    request_id_column: str = "enr_enreachcallbackid"
    request_key_name: str = "enr_enreachcallbackid_key"
    list_column: str = "enr_callbacklist"
    list_length: int = 200
    attempts_column: str = "enr_callbackattempts"
    state_column: str = "enr_callbackstate"


CALLBACKS = CallbackSchema()
