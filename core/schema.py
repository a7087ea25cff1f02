"""The Dataverse schema the app adds to an environment (created by provisioning, issue 6).

Kept as data so the provisioning command, the doctor, the emulator and the jobs agree.
Logical names use the publisher prefix ``enr``; navigation properties equal the lookups'
logical names (schema names are created lower-case).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BRIDGE_RUN",
    "BRIDGE_SETTING",
    "CALLBACKS",
    "CALL_SYNC",
    "CONFIG_TABLES",
    "CUSTOMER_TABLES",
    "ERROR_COLUMN",
    "FOLLOW_UPS",
    "PHONE_INDEX",
    "REVIEW_VIEW_NAME",
    "ROUTING_RULE",
    "CallSyncSchema",
    "CallbackSchema",
    "Column",
    "ConfigTable",
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


# -- configuration and run status (issue 19): tables an administrator reads and edits in the app ---------

# Choice values start at the publisher's option value prefix (ops.provision.PUBLISHER: 72700).
OPTION_BASE = 727_000_000


@dataclass(frozen=True)
class Column:
    """One column of a configuration table: ``kind`` is string, memo, integer, boolean, choice,
    datetime or lookup (``target`` the referenced table; the value reads as ``_<name>_value``)."""

    name: str
    kind: str
    label: str
    length: int = 100
    options: tuple[str, ...] = ()  # choice labels, valued OPTION_BASE, OPTION_BASE + 1, ...
    target: str = ""

    def option_value(self, label: str) -> int:
        return OPTION_BASE + self.options.index(label)

    def option_label(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        index = value - OPTION_BASE
        return self.options[index] if 0 <= index < len(self.options) else None

    @property
    def read_name(self) -> str:
        """The name a query selects and a row carries (a lookup's value is ``_<name>_value``)."""
        return f"_{self.name}_value" if self.kind == "lookup" else self.name


@dataclass(frozen=True)
class ConfigTable:
    """A table of the app with a primary name column that is also its alternate key."""

    logical_name: str
    entity_set: str
    label: str
    plural: str
    description: str
    name_column: str  # primary name; unique (alternate key ``key_name``)
    name_label: str
    key_name: str
    columns: tuple[Column, ...]

    @property
    def primary_key(self) -> str:
        return f"{self.logical_name}id"

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def select(self) -> list[str]:
        """Every column a reader needs, by the name rows carry."""
        return [self.primary_key, self.name_column, "statecode", *(c.read_name for c in self.columns)]


ERROR_COLUMN = "enr_error"
ERROR_LENGTH = 2000


@dataclass(frozen=True)
class BridgeSettingSchema(ConfigTable):
    value_column: str = "enr_value"
    user_column: str = "enr_user"  # a lookup to systemuser, for options that name a user
    description_column: str = "enr_description"


BRIDGE_SETTING = BridgeSettingSchema(
    logical_name="enr_bridgesetting",
    entity_set="enr_bridgesettings",
    label="Bridge setting",
    plural="Bridge settings",
    description="Business options of the Enreach bridge; a row wins over the app setting of the same name",
    name_column="enr_name",
    name_label="Setting",
    key_name="enr_bridgesetting_name_key",
    columns=(
        Column("enr_value", "memo", "Value", 100_000),
        Column("enr_user", "lookup", "User", target="systemuser"),
        Column("enr_description", "memo", "Description", 2000),
        Column(ERROR_COLUMN, "memo", "Error", ERROR_LENGTH),
    ),
)

RULE_KINDS = ("owner", "field", "open_case", "language", "last_agent", "default")
HOURS_MODES = ("during", "outside")


@dataclass(frozen=True)
class RoutingRuleSchema(ConfigTable):
    pass


ROUTING_RULE = RoutingRuleSchema(
    logical_name="enr_routingrule",
    entity_set="enr_routingrules",
    label="Routing rule",
    plural="Routing rules",
    description="The Enreach bridge's routing rules, tried in order; deactivate a row to switch it off",
    name_column="enr_name",
    name_label="Rule",
    key_name="enr_routingrule_name_key",
    columns=(
        Column("enr_order", "integer", "Order"),
        Column("enr_kind", "choice", "Kind", options=RULE_KINDS),
        Column("enr_target", "string", "Target number", 32),
        Column("enr_targetuser", "lookup", "Target user", target="systemuser"),
        Column("enr_failtarget", "string", "Fail target number", 32),
        Column("enr_requireavailable", "boolean", "Require available"),
        Column("enr_pools", "string", "Pools or queue ids", 2000),
        Column("enr_hours", "memo", "Weekly hours (JSON)", 4000),
        Column("enr_hoursmode", "choice", "Hours apply", options=HOURS_MODES),
        Column("enr_timezone", "string", "Time zone", 64),
        Column("enr_holidays", "memo", "Holidays", 4000),
        Column("enr_callertables", "string", "Caller tables", 100),
        Column("enr_table", "string", "Record table", 100),
        Column("enr_column", "string", "Record column", 100),
        Column("enr_equals", "string", "Equals", 400),
        Column("enr_days", "integer", "Days"),
        Column("enr_targets", "memo", "Targets by value (JSON)", 4000),
        Column("enr_options", "memo", "Other options (JSON)", 4000),
        Column(ERROR_COLUMN, "memo", "Error", ERROR_LENGTH),
    ),
)

RUN_OUTCOMES = ("ok", "partial", "failed")


@dataclass(frozen=True)
class BridgeRunSchema(ConfigTable):
    pass


BRIDGE_RUN = BridgeRunSchema(
    logical_name="enr_bridgerun",
    entity_set="enr_bridgeruns",
    label="Bridge run",
    plural="Bridge runs",
    description="The last run of each Enreach bridge timer job (one row per job, updated by every run)",
    name_column="enr_job",
    name_label="Job",
    key_name="enr_bridgerun_job_key",
    columns=(
        Column("enr_started", "datetime", "Started"),
        Column("enr_finished", "datetime", "Finished"),
        Column("enr_outcome", "choice", "Outcome", options=RUN_OUTCOMES),
        Column("enr_read", "integer", "Read"),
        Column("enr_created", "integer", "Created"),
        Column("enr_parked", "integer", "Parked"),
        Column("enr_waiting", "integer", "Waiting (parked)"),
        Column("enr_oldestparked", "datetime", "Oldest parked call"),
        Column("enr_forreview", "integer", "For review"),
        Column("enr_failed", "integer", "Failed"),
        Column("enr_checkpoint", "string", "Checkpoint", 40),
        Column("enr_lagminutes", "integer", "Lag (minutes)"),
        Column("enr_durationms", "integer", "Duration (ms)"),
        Column("enr_problem", "memo", "Last problem (cause and fix)", 2000),
        Column("enr_summary", "memo", "Summary", 4000),
    ),
)

CONFIG_TABLES: tuple[ConfigTable, ...] = (BRIDGE_SETTING, ROUTING_RULE, BRIDGE_RUN)

# The system view on phonecall listing calls whose number matched several records (enr_callreview set).
REVIEW_VIEW_NAME = "Enreach calls for review"
