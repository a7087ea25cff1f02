"""A Dataverse Web API emulator: the parts of ``/api/data/v9.2/`` the app uses, behaving like the service.

Entity sets with a schema (unknown columns are errors, as on Dataverse), ``$select``,
``$filter`` (see ``odata.py``), ``$top``, ``$orderby``, ``$expand`` of activity parties,
paging with ``Prefer: odata.maxpagesize`` and ``@odata.nextLink``, create with deep
insert and ``@odata.bind``, update/upsert by primary or alternate key with
``If-Match``/``If-None-Match``, the 412 duplicate-key error, ``$batch`` with atomic
change sets and ``Content-ID`` references, ``WhoAmI``, Dataverse's error JSON, and
401 for a bearer token it did not issue or has expired (``/_emulator/expire-tokens``).
Table, column and key definitions are read in ``_entitydefs.py`` (written in ``_metadata.py``);
the bulk messages, ``$count`` and derived ``fullname`` are in ``_bulk.py``.

Pace and service protection limits (``_protection.py``; all off unless configured, through
``limits=`` or ``POST /_emulator/limits`` with ``ServerLimits`` fields, ``GET`` shows them with
the 429s answered, ``DELETE`` or ``DELETE /_emulator/faults`` turns them off): server time per
operation, sequential inside a ``$batch`` and parallel across requests, ``x-ms-dop-hint``, and
the per-user request, execution-time and concurrency limits with Dataverse's 429 answers.
"""

from __future__ import annotations

import copy
import email
import re
import ssl
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ._apps import APP_SCHEMA, handle_apps
from ._bulk import count_of, derive_names, handle_bulk
from ._metadata import handle_metadata, record_view_in_solution
from ._protection import ServerLimits, ServiceProtection
from ._server import EmulatorServer, Request, Response, json_response
from ._webhooks import WebhookSender
from .odata import FilterSyntaxError, UnknownColumn, compile_filter
from .tokens import TokenIssuer

__all__ = ["APPLICATION_USER_ID", "BASE_SCHEMA", "DataverseEmulator", "Table"]

API_PREFIX = "/api/data/v9.2/"
APPLICATION_USER_ID = "00000000-0000-0000-0000-00000000a99e"
BUSINESS_UNIT_ID = "00000000-0000-0000-0000-0000000000b0"
ORGANIZATION_ID = "00000000-0000-0000-0000-0000000000c0"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_COMMON = {
    "createdon",
    "modifiedon",
    "versionnumber",
    "statecode",
    "statuscode",
    "_ownerid_value",
    "_createdby_value",
    "_modifiedby_value",
    "_owningbusinessunit_value",
}
_ACTIVITY = {
    "subject",
    "description",
    "actualstart",
    "actualend",
    "actualdurationminutes",
    "scheduledstart",
    "scheduledend",
    "_regardingobjectid_value",
    "activitytypecode",
    "prioritycode",
}

# entity set -> (logical name, primary key, columns)
BASE_SCHEMA: dict[str, tuple[str, str, set[str]]] = {
    "contacts": (
        "contact",
        "contactid",
        _COMMON
        | {
            "fullname",
            "firstname",
            "lastname",
            "emailaddress1",
            "telephone1",
            "telephone2",
            "telephone3",
            "mobilephone",
            "address1_telephone1",
            "address1_telephone2",
            "address1_telephone3",
            "_parentcustomerid_value",
            "preferredcontactmethodcode",
            "new_preferredlanguage",
            "jobtitle",
        },
    ),
    "accounts": (
        "account",
        "accountid",
        _COMMON
        | {
            "name",
            "accountnumber",
            "emailaddress1",
            "telephone1",
            "telephone2",
            "telephone3",
            "address1_telephone1",
            "address1_telephone2",
            "address1_telephone3",
            "_primarycontactid_value",
            "customertypecode",
            "accountcategorycode",
            "industrycode",
        },
    ),
    "leads": (
        "lead",
        "leadid",
        _COMMON
        | {
            "fullname",
            "firstname",
            "lastname",
            "subject",
            "companyname",
            "emailaddress1",
            "telephone1",
            "telephone2",
            "telephone3",
            "mobilephone",
            "address1_telephone1",
        },
    ),
    "systemusers": (
        "systemuser",
        "systemuserid",
        {
            "createdon",
            "modifiedon",
            "versionnumber",
            "fullname",
            "firstname",
            "lastname",
            "domainname",
            "internalemailaddress",
            "address1_telephone1",
            "mobilephone",
            "isdisabled",
            "accessmode",
            "applicationid",
            "_businessunitid_value",
            "azureactivedirectoryobjectid",
        },
    ),
    "teams": ("team", "teamid", {"createdon", "modifiedon", "versionnumber", "name", "_businessunitid_value"}),
    "incidents": (
        "incident",
        "incidentid",
        _COMMON | {"title", "ticketnumber", "_customerid_value", "prioritycode", "caseorigincode"},
    ),
    "phonecalls": ("phonecall", "activityid", _COMMON | _ACTIVITY | {"phonenumber", "directioncode"}),
    # follow-ups of missed calls (tasks, put in a queue with a queue item), transcripts (notes),
    # the open opportunities a call may be regarding, and system views (issue 23)
    "tasks": ("task", "activityid", _COMMON | _ACTIVITY | {"percentcomplete"}),
    "annotations": (
        "annotation",
        "annotationid",
        _COMMON
        | {
            "subject",
            "notetext",
            "isdocument",
            "filename",
            "mimetype",
            "documentbody",
            "_objectid_value",
            "objecttypecode",
        },
    ),
    "opportunities": (
        "opportunity",
        "opportunityid",
        _COMMON | {"name", "_customerid_value", "estimatedvalue"},
    ),
    "savedqueries": (
        "savedquery",
        "savedqueryid",
        {
            "createdon",
            "modifiedon",
            "versionnumber",
            "name",
            "description",
            "returnedtypecode",
            "querytype",
            "fetchxml",
            "layoutxml",
            "isdefault",
        },
    ),
    # queues and their items (a callback request no agent has is put in its list's queue)
    "queues": ("queue", "queueid", _COMMON | {"name", "emailaddress", "queueviewtype"}),
    "queueitems": ("queueitem", "queueitemid", _COMMON | {"_queueid_value", "_objectid_value", "title"}),
    "activityparties": (
        "activityparty",
        "activitypartyid",
        {"_activityid_value", "_partyid_value", "participationtypemask", "addressused"},
    ),
    "msdyn_presences": (
        "msdyn_presence",
        "msdyn_presenceid",
        _COMMON
        | {
            "msdyn_name",
            "msdyn_presencestatustext",
            "msdyn_basepresencestatus",
            "msdyn_canuserset",
            "msdyn_presencecolor",
        },
    ),
    "msdyn_agentstatuses": (
        "msdyn_agentstatus",
        "msdyn_agentstatusid",
        _COMMON
        | {
            "_msdyn_agentid_value",
            "_msdyn_currentpresenceid_value",
            "msdyn_isagentloggedin",
            "msdyn_presencemodifiedon",
        },
    ),
    # solution-aware customisation (python -m ops provision)
    "publishers": (
        "publisher",
        "publisherid",
        {
            "createdon",
            "modifiedon",
            "versionnumber",
            "uniquename",
            "friendlyname",
            "description",
            "customizationprefix",
            "customizationoptionvalueprefix",
        },
    ),
    "solutions": (
        "solution",
        "solutionid",
        {
            "createdon",
            "modifiedon",
            "versionnumber",
            "uniquename",
            "friendlyname",
            "description",
            "version",
            "ismanaged",
            "_publisherid_value",
        },
    ),
    "solutioncomponents": (
        "solutioncomponent",
        "solutioncomponentid",
        {"createdon", "modifiedon", "versionnumber", "objectid", "componenttype", "_solutionid_value"},
    ),
}

OMNICHANNEL_PRESENCES = {
    "Available": ("f523f628-c07a-e811-8162-000d3aa11f50", 192360000),
    "Busy": ("efdeb843-c07a-e811-8162-000d3aa11f50", 192360001),
    "Busy - DND": ("08971864-c07a-e811-8162-000d3aa11f50", 192360002),
    "Away": ("3dacae76-c07a-e811-8162-000d3aa11f50", 192360003),
    "Offline": ("70139190-c07a-e811-8162-000d3aa11f50", 192360004),
}

# column defaults Dataverse fills in when a row is created without them
DEFAULTS: dict[str, dict[str, Any]] = {"systemusers": {"isdisabled": False, "accessmode": 0}}

# collection-valued navigation properties: (entity set, name) -> (child set, child lookup column)
COLLECTIONS = {
    ("phonecalls", "phonecall_activity_parties"): ("activityparties", "_activityid_value"),
    ("contacts", "incident_customer_contacts"): ("incidents", "_customerid_value"),
    ("accounts", "incident_customer_accounts"): ("incidents", "_customerid_value"),
    ("contacts", "opportunity_customer_contacts"): ("opportunities", "_customerid_value"),
    ("accounts", "opportunity_customer_accounts"): ("opportunities", "_customerid_value"),
    ("phonecalls", "PhoneCall_Annotation"): ("annotations", "_objectid_value"),
    # phone calls regarding a customer, and the activity parties involving it
    ("contacts", "Contact_Phonecalls"): ("phonecalls", "_regardingobjectid_value"),
    ("accounts", "Account_Phonecalls"): ("phonecalls", "_regardingobjectid_value"),
    ("leads", "Lead_Phonecalls"): ("phonecalls", "_regardingobjectid_value"),
    ("contacts", "contact_activity_parties"): ("activityparties", "_partyid_value"),
    ("accounts", "account_activity_parties"): ("activityparties", "_partyid_value"),
    ("leads", "lead_activity_parties"): ("activityparties", "_partyid_value"),
}


@dataclass
class Table:
    entity_set: str
    logical_name: str
    primary_key: str
    columns: set[str]
    alternate_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    # alternate key name -> key values -> row id (what Dataverse's unique index does)
    key_index: dict[str, dict[tuple[Any, ...], str]] = field(default_factory=dict)
    # while a change set runs: (table, row id, row before) entries to undo it
    journal: list[tuple[Table, str, dict[str, Any] | None]] | None = None
    # what the metadata API adds: custom, schema_name, primary_name, column types (_entitydefs.py)
    definition: dict[str, Any] = field(default_factory=dict)

    def has_column(self, name: str) -> bool:
        return name == self.primary_key or name in self.columns

    def is_guid(self, name: str) -> bool:
        """Edm.Guid columns: the primary key, lookup values (``_<lookup>_value``) and the Uniqueidentifier
        columns of systemuser (``applicationid``, ``azureactivedirectoryobjectid``: powerapps-docs,
        reference/entities/systemuser)."""
        return (
            name == self.primary_key
            or (name.startswith("_") and name.endswith("_value"))
            or name in ("applicationid", "azureactivedirectoryobjectid")
        )

    def key_values(self, key_name: str, row: dict[str, Any]) -> tuple[Any, ...] | None:
        values = [row.get(c) for c in self.alternate_keys[key_name]]
        if any(v is None for v in values):
            return None
        return tuple(v.casefold() if isinstance(v, str) else v for v in values)

    def reindex(self) -> None:
        self.key_index = {name: {} for name in self.alternate_keys}
        for row_id, row in self.rows.items():
            self._index(row_id, row, add=True)

    def _index(self, row_id: str, row: dict[str, Any], *, add: bool) -> None:
        for name in self.alternate_keys:
            values = self.key_values(name, row)
            if values is None:
                continue
            entries = self.key_index.setdefault(name, {})
            if add:
                entries[values] = row_id
            elif entries.get(values) == row_id:
                del entries[values]

    def put(self, row_id: str, row: dict[str, Any]) -> None:
        old = self.rows.get(row_id)
        if self.journal is not None:
            self.journal.append((self, row_id, copy.deepcopy(old) if old is not None else None))
        if old is not None:
            self._index(row_id, old, add=False)
        self.rows[row_id] = row
        self._index(row_id, row, add=True)

    def remove(self, row_id: str) -> None:
        old = self.rows.pop(row_id, None)
        if old is None:
            return
        if self.journal is not None:
            self.journal.append((self, row_id, copy.deepcopy(old)))
        self._index(row_id, old, add=False)


class DataverseError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Response:
        return json_response(self.status, {"error": {"code": self.code, "message": self.message}})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DataverseEmulator(EmulatorServer):
    name = "dataverse-emulator"

    def __init__(
        self,
        issuer: TokenIssuer,
        data: dict[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, port=port, ssl_context=ssl_context)  # TLS: as clients that refuse http need
        self.issuer = issuer
        self.protection = ServiceProtection(limits)
        self._operations = 1  # operations in the request being executed (set under self.lock)
        self.lock = threading.RLock()
        self._version = 1000
        self.tables: dict[str, Table] = {}
        self.presence_webhook = WebhookSender()  # the service endpoint on msdyn_agentstatus Update
        self.denied_privileges: set[str] = set()  # privileges the application user's role lacks
        self.key_status: dict[str, str] = {}  # alternate key name -> EntityKeyIndexStatus (default Active)
        self.reset()
        if data:
            self.load(data)

    # -- Python API for tests and the sandbox ---------------------------------------

    def reset(self) -> None:
        """Back to the bare schema with only the application user (tests start from here)."""
        with self.lock:
            self.denied_privileges.clear()  # a role is whole again (a test that denied some does not leak)
            self.key_status.clear()
            self.tables = {
                name: Table(name, logical, key, set(columns))
                for name, (logical, key, columns) in {**BASE_SCHEMA, **APP_SCHEMA}.items()
            }
            # Omnichannel's built-in presences (the solution is installed in the environment)
            for name, (presence_id, base) in OMNICHANNEL_PRESENCES.items():
                self.table("msdyn_presences").rows[presence_id] = {
                    "msdyn_presenceid": presence_id,
                    "msdyn_name": name,
                    "msdyn_presencestatustext": name,
                    "msdyn_basepresencestatus": base,
                    "msdyn_canuserset": True,
                    "statecode": 0,
                    "createdon": _now(),
                    "modifiedon": _now(),
                    "versionnumber": 1,
                }
            # unique names are unique, as on Dataverse
            self.add_alternate_key("publishers", "uniquename_key", ["uniquename"])
            self.add_alternate_key("solutions", "uniquename_key", ["uniquename"])
            self.table("systemusers").rows[APPLICATION_USER_ID] = {
                "systemuserid": APPLICATION_USER_ID,
                "fullname": "# Enreach bridge (application user)",
                "isdisabled": False,
                "accessmode": 4,
                "_businessunitid_value": BUSINESS_UNIT_ID,
                "createdon": _now(),
                "modifiedon": _now(),
                "versionnumber": 1,
            }

    def table(self, entity_set: str) -> Table:
        try:
            return self.tables[entity_set]
        except KeyError:
            raise DataverseError(404, "0x80060888", f"Resource not found for the segment '{entity_set}'.") from None

    def add_table(self, entity_set: str, logical_name: str, primary_key: str, columns: Iterable[str]) -> None:
        """Create a (custom) table, as provisioning does through the metadata API; no-op if it exists."""
        with self.lock:
            if entity_set not in self.tables:
                self.tables[entity_set] = Table(
                    entity_set,
                    logical_name,
                    primary_key,
                    {
                        "createdon",
                        "modifiedon",
                        "versionnumber",
                        "statecode",
                        "statuscode",
                        *columns,
                    },
                )

    def add_column(self, entity_set: str, name: str) -> None:
        with self.lock:
            self.table(entity_set).columns.add(name)

    def add_alternate_key(self, entity_set: str, key_name: str, columns: Iterable[str]) -> None:
        with self.lock:
            table = self.table(entity_set)
            table.columns.update(columns)
            table.alternate_keys[key_name] = tuple(columns)
            table.reindex()

    def rows(self, entity_set: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.table(entity_set).rows.values()]

    def load(self, data: dict[str, Any]) -> None:
        """Rows as the Web API returns them: ``{"contacts": [{...}], "$alternatekeys": {...}}``."""
        with self.lock:
            for entity_set, keys in (data.get("$alternatekeys") or {}).items():
                for key_name, columns in keys.items():
                    self.add_alternate_key(entity_set, key_name, columns)
            for entity_set, columns in (data.get("$columns") or {}).items():
                for name in columns:
                    self.add_column(entity_set, name)
            for entity_set, rows in data.items():
                if entity_set.startswith("$"):
                    continue
                table = self.table(entity_set)
                for source in rows:
                    row = dict(source)
                    row.setdefault(table.primary_key, str(uuid.uuid4()))
                    for name in row:
                        if not name.startswith("@") and "@" not in name:
                            table.columns.add(name)
                    for name, value in DEFAULTS.get(entity_set, {}).items():
                        row.setdefault(name, value)
                    row.setdefault("createdon", _now())
                    row.setdefault("modifiedon", row["createdon"])
                    if "_ownerid_value" in table.columns and table.entity_set not in ("systemusers", "teams"):
                        row.setdefault("_ownerid_value", APPLICATION_USER_ID)
                    if "statecode" in table.columns:
                        row.setdefault("statecode", 0)
                    row["versionnumber"] = self._next_version()
                    table.put(str(row[table.primary_key]).lower(), row)

    def set_presence(self, agent: str, presence_id: str) -> None:
        """An agent picks a presence in Omnichannel (or the action sets it): row updated, webhook fired."""
        with self.lock:
            table = self.table("msdyn_agentstatuses")
            agent = agent.lower()
            row_id = next((i for i, r in table.rows.items() if r.get("_msdyn_agentid_value") == agent), None)
            row = dict(table.rows[row_id]) if row_id else {"_msdyn_agentid_value": agent, "createdon": _now()}
            row_id = row_id or str(uuid.uuid4())
            row.update(
                {
                    "msdyn_agentstatusid": row_id,
                    "_msdyn_currentpresenceid_value": presence_id.lower(),
                    "msdyn_presencemodifiedon": _now(),
                    "modifiedon": _now(),
                    "versionnumber": self._next_version(),
                }
            )
            row.setdefault("statecode", 0)
            table.put(row_id, row)
        self.presence_webhook.send(_execution_context(row_id, agent, presence_id.lower()))

    def touch(self, entity_set: str, key: str, **changes: Any) -> None:
        """Change a row as a user would in the UI (modifiedon moves)."""
        with self.lock:
            table = self.table(entity_set)
            row = {**table.rows[key.lower()], **changes, "modifiedon": _now(), "versionnumber": self._next_version()}
            table.put(key.lower(), row)

    def _next_version(self) -> int:
        self._version += 1
        return self._version

    # -- HTTP -----------------------------------------------------------------------

    def configure_limits(self, limits: ServerLimits) -> None:
        """Pace and service protection limits from now on (``ServerLimits()`` turns them off)."""
        self.protection.configure(limits)

    def clear_faults(self) -> None:
        super().clear_faults()
        self.protection.configure(ServerLimits())

    def control(self, request: Request) -> Response | None:
        if request.path == "/_emulator/expire-tokens" and request.method == "POST":
            self.issuer.expire_all()
            return Response(204)
        if request.path == "/_emulator/limits":
            if request.method == "POST":
                try:
                    self.configure_limits(ServerLimits.from_json(request.json() or {}))
                except (TypeError, ValueError) as error:
                    return json_response(400, {"error": {"code": "BadRequest", "message": str(error)}})
                return Response(204)
            if request.method == "DELETE":
                self.configure_limits(ServerLimits())
                return Response(204)
            return json_response(200, self.protection.snapshot())
        return None

    def handle(self, request: Request) -> Response:
        token = request.headers.get("authorization", "")
        audiences = {self.url, f"http://localhost:{self.port}"}
        if not token.startswith("Bearer ") or not any(self.issuer.validate(token[7:], a) for a in audiences):
            return json_response(
                401,
                {"error": {"code": "0x80072560", "message": "The user is not a member of the organization."}},
                {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="expired or unknown token"'},
            )
        # Limits count per user: the caller impersonated with MSCRMCallerID, else the token's client.
        user = request.headers.get("mscrmcallerid") or self.issuer.client_of(token[7:]) or ""
        throttle = self.protection.admit(user)
        if throttle is not None:
            response = json_response(
                429,
                {"error": {"code": throttle.code, "message": throttle.message}},
                {"Retry-After": str(throttle.retry_after)},
            )
        else:
            try:
                response, operations = self._serve(request)
                self.protection.execute(user, operations)
            finally:
                self.protection.release(user)
        if self.protection.limits.dop_hint is not None:
            response.headers["x-ms-dop-hint"] = str(self.protection.limits.dop_hint)
        return response

    def _serve(self, request: Request) -> tuple[Response, int]:
        """Answer a request; also return how many operations it ran (a $batch's parts, else 1)."""
        if not request.path.startswith(API_PREFIX):
            return DataverseError(
                404, "0x80060888", f"No HTTP resource was found that matches {request.path}"
            ).response(), 1
        with self.lock:
            self._operations = 1
            try:
                response = self._execute(request, content_ids={})
            except DataverseError as error:
                response = error.response()
            except (FilterSyntaxError, ValueError) as error:
                response = DataverseError(400, "0x80060888", str(error)).response()
            return response, self._operations

    def _execute(self, request: Request, content_ids: dict[str, str]) -> Response:
        resource = request.path[len(API_PREFIX) :]
        if resource == "WhoAmI" and request.method == "GET":
            return json_response(
                200,
                {
                    "@odata.context": f"{self.url}{API_PREFIX}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                    "BusinessUnitId": BUSINESS_UNIT_ID,
                    "UserId": APPLICATION_USER_ID,
                    "OrganizationId": ORGANIZATION_ID,
                },
            )
        if resource == "$batch" and request.method == "POST":
            return self._batch(request)
        if resource == "CCaaS_ModifyAgentPresence" and request.method == "POST":
            return self._modify_agent_presence(request)
        apps = handle_apps(self, request, resource)
        if apps is not None:
            return apps
        bulk = handle_bulk(self, request, resource, content_ids)
        if bulk is not None:
            return bulk
        metadata = handle_metadata(self, request, resource)
        if metadata is not None:
            return metadata
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?", resource, re.S)
        if not match:
            raise DataverseError(400, "0x80060888", f"Bad Request - Error in query syntax: '{resource}'.")
        table = self.table(match.group(1))
        key_text = match.group(2)
        if key_text is None:
            if request.method == "GET":
                return self._query(table, request)
            if request.method == "POST":
                return self._create(table, request, content_ids)
            raise DataverseError(
                405, "0x80060888", f"The HTTP method '{request.method}' is not allowed on a collection."
            )
        key = self._parse_key(table, key_text)
        if request.method == "GET":
            row = self._find(table, key)
            if row is None:
                raise self._not_found(table, key)
            return json_response(200, self._project(table, row, request.query.get("$select"), request))
        if request.method == "PATCH":
            return self._patch(table, key, request, content_ids)
        if request.method == "DELETE":
            row = self._find(table, key)
            if row is None:
                raise self._not_found(table, key)
            table.remove(str(row[table.primary_key]).lower())
            self._cascade_delete(str(row[table.primary_key]).lower())
            return Response(204, headers={"OData-Version": "4.0"})
        raise DataverseError(405, "0x80060888", f"The HTTP method '{request.method}' is not allowed here.")

    def _cascade_delete(self, row_id: str) -> None:
        """As Dataverse's parental relationships do: a record's notes and queue items go with it."""
        for child_set in ("annotations", "queueitems"):
            child = self.tables.get(child_set)
            if child is None:
                continue
            for child_id in [i for i, r in child.rows.items() if str(r.get("_objectid_value") or "") == row_id]:
                child.remove(child_id)

    def query_table(self, table: Table, request: Request) -> Response:
        """A collection GET over ``table`` (for modules serving a filtered view of one)."""
        return self._query(table, request)

    def create_row(self, table: Table, body: dict[str, Any]) -> Response:
        """Create a row as ``POST <entity set>`` does (204 with ``OData-EntityId``)."""
        row = self._insert(table, body, {})
        return Response(204, headers=self._entity_headers(table, row))

    def _modify_agent_presence(self, request: Request) -> Response:
        body = request.json() or {}
        agent, presence = str(body.get("AgentId", "")).lower(), str(body.get("PresenceId", "")).lower()
        if not _GUID.match(agent) or not _GUID.match(presence):
            raise DataverseError(400, "0x80040203", "AgentId and PresenceId must be GUIDs.")
        if request.headers.get("mscrmcallerid", "").lower() != agent:
            raise DataverseError(403, "0x80040220", "Set MSCRMCallerID to the agent: presence is changed as the agent.")
        if agent not in self.table("systemusers").rows:
            raise DataverseError(404, "0x80040217", f"systemuser With Id = {agent} Does Not Exist")
        if presence not in self.table("msdyn_presences").rows:
            raise DataverseError(404, "0x80040217", f"msdyn_presence With Id = {presence} Does Not Exist")
        self.set_presence(agent, presence)
        return Response(204, headers={"OData-Version": "4.0"})

    # -- keys ---------------------------------------------------------------------

    def _parse_key(self, table: Table, text: str) -> dict[str, Any]:
        if _GUID.match(text):
            return {table.primary_key: text.lower()}
        pairs: dict[str, Any] = {}
        for part in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=('(?:[^']|'')*'|[^,]+)", text):
            name, raw = part
            pairs[name] = raw[1:-1].replace("''", "'") if raw.startswith("'") else _number_or_text(raw)
        if not pairs:
            raise DataverseError(400, "0x80060888", f"Bad Request - Error in query syntax: key '{text}'.")
        if tuple(sorted(pairs)) not in {tuple(sorted(cols)) for cols in table.alternate_keys.values()}:
            raise DataverseError(
                400,
                "0x80060888",
                f"The key '{','.join(pairs)}' is not an alternate key of '{table.logical_name}': define it first.",
            )
        return pairs

    def _find(self, table: Table, key: dict[str, Any]) -> dict[str, Any] | None:
        if list(key) == [table.primary_key]:
            return table.rows.get(str(key[table.primary_key]).lower())
        for name, columns in table.alternate_keys.items():
            if sorted(columns) == sorted(key):
                values = table.key_values(name, key)
                row_id = table.key_index.get(name, {}).get(values) if values is not None else None
                return table.rows.get(row_id) if row_id else None
        for row in table.rows.values():
            if all(_same(row.get(k), v) for k, v in key.items()):
                return row
        return None

    def _not_found(self, table: Table, key: dict[str, Any]) -> DataverseError:
        described = ",".join(f"{k}={v}" for k, v in key.items())
        return DataverseError(404, "0x80040217", f"{table.logical_name} With Ids = {described} Does Not Exist")

    def _check_unique(self, table: Table, row: dict[str, Any], own_id: str | None) -> None:
        for key_name, columns in table.alternate_keys.items():
            values = table.key_values(key_name, row)
            other = table.key_index.get(key_name, {}).get(values) if values is not None else None
            if other is not None and other != own_id:
                raise DataverseError(
                    412,
                    "0x80060892",
                    f"A record that has the attribute values {', '.join(str(row[c]) for c in columns)} already "
                    f"exists. The entity key {key_name} requires that this set of attributes "
                    "contains unique values.",
                )

    # -- reads --------------------------------------------------------------------

    @staticmethod
    def _selected(table: Table, select: str | None) -> list[str]:
        names = [c.strip() for c in select.split(",")] if select else sorted(table.columns)
        for name in names:
            if not table.has_column(name):
                raise DataverseError(
                    400,
                    "0x80060888",
                    f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'.",
                )
        return names

    def _project(self, table: Table, row: dict[str, Any], select: str | None, request: Request) -> dict[str, Any]:
        names = self._selected(table, select)
        annotations = "include-annotations" in request.headers.get("prefer", "")
        out: dict[str, Any] = {"@odata.etag": f'W/"{row.get("versionnumber", 0)}"'}
        for name in names:
            out[name] = row.get(name)
            if annotations and name.startswith("_") and name.endswith("_value") and row.get(name):
                out[f"{name}@Microsoft.Dynamics.CRM.lookuplogicalname"] = row.get(
                    f"{name}@lookuplogicalname", "systemuser"
                )
        out[table.primary_key] = row[table.primary_key]
        return out

    def _query(self, table: Table, request: Request) -> Response:
        query = request.query
        self._selected(table, query.get("$select"))
        skip = int(query.get("$skiptoken", "0") or 0)
        predicate = None
        if query.get("$filter"):
            try:
                predicate = compile_filter(query["$filter"], table.has_column, table.is_guid)
            except UnknownColumn as error:
                raise DataverseError(
                    400,
                    "0x80060888",
                    f"Could not find a property named '{error.name}' on type "
                    f"'Microsoft.Dynamics.CRM.{table.logical_name}'.",
                ) from None
        rows = [r for r in table.rows.values() if predicate is None or predicate(r)]
        if query.get("savedQuery"):  # run a system view (its FetchXML conditions: eq, ne, null, not-null)
            view_filter = self._saved_query(table, query["savedQuery"])
            rows = [r for r in rows if view_filter(r)]
        for part in reversed([p.strip() for p in query.get("$orderby", "").split(",") if p.strip()]):
            name, _, direction = part.partition(" ")
            if not table.has_column(name):
                raise DataverseError(400, "0x80060888", f"Could not find a property named '{name}'.")
            rows.sort(key=lambda r: (r.get(name) is not None, r.get(name) or ""), reverse=direction.strip() == "desc")
        matching = count_of(rows)  # count-rows.md: the rows matching the filter, irrespective of page size
        prefer = request.headers.get("prefer", "")
        page_match = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        headers: dict[str, str] = {"OData-Version": "4.0"}
        if page_match:
            page_size = min(int(page_match.group(1)), 5000)
            headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
        else:
            page_size = 5000
            if query.get("$top"):
                rows = rows[: int(query["$top"])]
        page = rows[skip : skip + page_size]
        payload: dict[str, Any] = {"@odata.context": f"{self.url}{API_PREFIX}$metadata#{table.entity_set}"}
        if query.get("$count", "").lower() == "true":
            payload["@odata.count"] = matching
        payload["value"] = [self._with_expand(table, r, request) for r in page]
        if skip + page_size < len(rows):
            params = [(k, v) for k, v in parse_qsl(request.raw_query, keep_blank_values=True) if k != "$skiptoken"]
            params.append(("$skiptoken", str(skip + page_size)))
            payload["@odata.nextLink"] = f"{self.url}{request.raw_path}?" + "&".join(
                f"{k}={quote(v, safe=chr(39) + '(),/:@$*')}" for k, v in params
            )
        return json_response(200, payload, headers)

    def _saved_query(self, table: Table, view_id: str) -> Any:
        view = self.table("savedqueries").rows.get(view_id.lower())
        if view is None:
            raise DataverseError(404, "0x80040217", f"savedquery With Id = {view_id} Does Not Exist")
        fetch = str(view.get("fetchxml") or "")
        entity = re.search(r'<entity name="([a-z0-9_]+)"', fetch)
        if entity is None or entity.group(1) != table.logical_name:
            raise DataverseError(400, "0x80060888", f"The view {view_id} is not a view of {table.logical_name}.")
        conditions = [
            (m.group(1), m.group(2), m.group(4))
            for m in re.finditer(r'<condition attribute="([a-z0-9_]+)" operator="([a-z-]+)"( value="([^"]*)")?', fetch)
        ]

        def matches(row: dict[str, Any]) -> bool:
            for name, operator, value in conditions:
                current = row.get(name)
                if operator == "not-null" and current is None:
                    return False
                if operator == "null" and current is not None:
                    return False
                if operator == "eq" and str(current) != str(value):
                    return False
                if operator == "ne" and str(current) == str(value):
                    return False
            return True

        return matches

    def _with_expand(self, table: Table, row: dict[str, Any], request: Request) -> dict[str, Any]:
        return self._expanded(table, row, request.query.get("$select"), request.query.get("$expand", ""), request)

    def _expanded(
        self, table: Table, row: dict[str, Any], select: str | None, expand: str, request: Request
    ) -> dict[str, Any]:
        """Project ``row`` and add ``$expand``-ed navigation properties (nested options allowed)."""
        out = self._project(table, row, select, request)
        for item in _split_top(expand, ","):
            name, _, rest = item.partition("(")
            name = name.strip()
            options = dict(
                (k.strip(), v) for k, _, v in (o.partition("=") for o in _split_top(rest[:-1] if rest else "", ";"))
            )
            if (table.entity_set, name) in COLLECTIONS:
                child_set, lookup = COLLECTIONS[(table.entity_set, name)]
                child = self.table(child_set)
                if options.get("$expand") and ("$orderby" in options or "$top" in options):
                    raise DataverseError(  # as Dataverse: not supported beside a nested $expand
                        400, "0x80060888", f"$orderby and $top are not supported with nested $expand of '{name}'."
                    )
                predicate = (
                    compile_filter(options["$filter"], child.has_column, child.is_guid)
                    if options.get("$filter")
                    else None
                )
                own_id = row[table.primary_key]
                out[name] = [
                    self._expanded(child, r, options.get("$select"), options.get("$expand", ""), request)
                    for r in child.rows.values()
                    if r.get(lookup) == own_id and (predicate is None or predicate(r))
                ]
                continue
            target_set, target_id = self._navigate(table, row, name)
            target_row = self.table(target_set).rows.get(target_id) if target_set and target_id else None
            out[name] = (
                None
                if target_row is None
                else self._expanded(
                    self.table(target_set), target_row, options.get("$select"), options.get("$expand", ""), request
                )
            )
        return out

    def _navigate(self, table: Table, row: dict[str, Any], nav: str) -> tuple[str | None, str | None]:
        """Where a single-valued navigation property of ``row`` points: (entity set, id)."""
        if nav == "owninguser":
            kind = row.get("_ownerid_value@lookuplogicalname", "systemuser")
            return ("systemusers", row.get("_ownerid_value")) if kind == "systemuser" else (None, None)
        attribute = self._lookup_attribute(table, nav)
        target_id = row.get(f"_{attribute}_value")
        if not target_id:
            return None, None
        logical = row.get(f"_{attribute}_value@lookuplogicalname") or nav[len(attribute) + 1 :] or None
        for candidate in self.tables.values():
            if (logical is None or candidate.logical_name == logical) and str(target_id).lower() in candidate.rows:
                return candidate.entity_set, str(target_id).lower()
        return None, None

    # -- writes -------------------------------------------------------------------

    def _apply(
        self, table: Table, row: dict[str, Any], body: dict[str, Any], *, creating: bool, content_ids: dict[str, str]
    ) -> list[tuple[str, str, list[dict[str, Any]]]]:
        """Copy ``body`` into ``row`` (validating names and binds); return deep-insert children."""
        children = []
        for name, value in body.items():
            if name.endswith("@odata.bind"):
                nav = name[: -len("@odata.bind")]
                attribute = self._lookup_attribute(table, nav)
                target_set, target_id = self._resolve_bind(value, content_ids)
                row[f"_{attribute}_value"] = target_id
                row[f"_{attribute}_value@lookuplogicalname"] = self.table(target_set).logical_name
            elif (table.entity_set, name) in COLLECTIONS:
                if not creating:
                    raise DataverseError(400, "0x80060888", f"Deep insert of '{name}' is only allowed on create.")
                child_set, lookup = COLLECTIONS[(table.entity_set, name)]
                children.append((child_set, lookup, list(value)))
            elif name.startswith("@") or "@" in name:
                continue
            elif not table.has_column(name) or (name.startswith("_") and name.endswith("_value")):
                raise DataverseError(
                    400,
                    "0x80048d19",
                    f"Invalid property '{name}' was found in entity 'Microsoft.Dynamics.CRM.{table.logical_name}'.",
                )
            elif creating and name == "statecode" and table.entity_set == "phonecalls":
                raise DataverseError(
                    400,
                    "0x80040203",
                    "statecode is not valid on create for an activity: create it open, then update its state.",
                )
            else:
                row[name] = value
        return children

    def _lookup_attribute(self, table: Table, nav: str) -> str:
        parts = nav.split("_")
        for end in range(len(parts), 0, -1):
            candidate = "_".join(parts[:end])
            if f"_{candidate}_value" in table.columns:
                return candidate
        raise DataverseError(
            400,
            "0x80060888",
            f"An undeclared property '{nav}' which only has property annotations in the payload was found "
            f"on type 'Microsoft.Dynamics.CRM.{table.logical_name}'.",
        )

    def _resolve_bind(self, value: Any, content_ids: dict[str, str]) -> tuple[str, str]:
        text = str(value)
        if text.startswith("$") and text in content_ids:
            text = content_ids[text]
        match = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\(([^)]*)\)$", text)
        if not match:
            raise DataverseError(400, "0x80060888", f"Invalid @odata.bind value '{text}'.")
        target = self.table(match.group(1))
        key = self._parse_key(target, unquote(match.group(2)))  # a bind is a URL: %2B is "+"
        row = self._find(target, key)
        if row is None:
            raise self._not_found(target, key)
        return target.entity_set, str(row[target.primary_key])

    def _insert(
        self, table: Table, body: dict[str, Any], content_ids: dict[str, str], preset: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        row: dict[str, Any] = dict(preset or {})
        children = self._apply(table, row, body, creating=True, content_ids=content_ids)
        derive_names(table.logical_name, row, body)
        new_id = str(body.get(table.primary_key) or uuid.uuid4()).lower()
        if new_id in table.rows:
            raise DataverseError(412, "0x80040237", f"Cannot insert duplicate key: {table.logical_name} {new_id}.")
        row[table.primary_key] = new_id
        for name, value in DEFAULTS.get(table.entity_set, {}).items():
            row.setdefault(name, value)
        now = _now()
        row.setdefault("createdon", now)
        row["modifiedon"] = now
        row["versionnumber"] = self._next_version()
        if "statecode" in table.columns:
            row.setdefault("statecode", 0)
            row.setdefault("statuscode", 1)
        if "_ownerid_value" in table.columns:
            row.setdefault("_ownerid_value", APPLICATION_USER_ID)
        self._check_unique(table, row, None)
        table.put(new_id, row)
        for child_set, lookup, items in children:
            child_table = self.table(child_set)
            for item in items:
                self._insert(child_table, item, content_ids, preset={lookup: new_id})
        return row

    def _entity_headers(self, table: Table, row: dict[str, Any]) -> dict[str, str]:
        location = f"{self.url}{API_PREFIX}{table.entity_set}({row[table.primary_key]})"
        return {"OData-Version": "4.0", "OData-EntityId": location, "Location": location}

    def _create(self, table: Table, request: Request, content_ids: dict[str, str]) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise DataverseError(400, "0x80060888", "The request body must be a JSON object.")
        row = self._insert(table, body, content_ids)
        if table.entity_set == "savedqueries":
            record_view_in_solution(self, request, str(row[table.primary_key]))
        return self._write_answer(table, row, request, 201, 204)

    def _write_answer(self, table: Table, row: dict[str, Any], request: Request, created: int, plain: int) -> Response:
        headers = self._entity_headers(table, row)
        if "return=representation" in request.headers.get("prefer", ""):
            payload = self._project(table, row, request.query.get("$select"), request)
            return json_response(created, payload, headers)
        return Response(plain, headers=headers)

    def _patch(self, table: Table, key: dict[str, Any], request: Request, content_ids: dict[str, str]) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise DataverseError(400, "0x80060888", "The request body must be a JSON object.")
        row = self._find(table, key)
        if_match = request.headers.get("if-match")
        if_none_match = request.headers.get("if-none-match")
        if row is None:
            if if_match == "*":
                raise self._not_found(table, key)
            preset = {} if list(key) == [table.primary_key] else dict(key)
            if list(key) == [table.primary_key]:
                body = {**body, table.primary_key: key[table.primary_key]}
            new_row = self._insert(table, body, content_ids, preset=preset)
            return self._write_answer(table, new_row, request, 201, 204)
        if if_none_match == "*":
            raise DataverseError(412, "0x80040237", "A record with matching key values already exists.")
        if if_match and if_match != "*" and if_match != f'W/"{row.get("versionnumber")}"':
            raise DataverseError(
                412, "0x80060882", "The version of the existing record doesn't match the If-Match header."
            )
        candidate = dict(row)
        self._apply(table, candidate, body, creating=False, content_ids=content_ids)
        derive_names(table.logical_name, candidate, body)
        self._check_unique(table, candidate, str(row[table.primary_key]).lower())
        candidate["modifiedon"] = _now()
        candidate["versionnumber"] = self._next_version()
        table.put(str(row[table.primary_key]).lower(), candidate)
        return self._write_answer(table, candidate, request, 200, 204)

    # -- $batch -------------------------------------------------------------------

    def _batch(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/mixed") or "boundary=" not in content_type:
            raise DataverseError(
                400, "0x80060888", "A $batch request needs Content-Type multipart/mixed with a boundary."
            )
        message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
        parts = message.get_payload()
        if not isinstance(parts, list):
            raise DataverseError(400, "0x80060888", "The $batch body has no parts.")
        count = sum(len(p.get_payload()) if p.get_content_type() == "multipart/mixed" else 1 for p in parts)
        if count > 1000:
            raise DataverseError(400, "0x80060888", "The number of requests in a $batch exceeds 1000.")
        continue_on_error = "odata.continue-on-error" in request.headers.get("prefer", "")
        self._operations = 0
        boundary = f"batchresponse_{uuid.uuid4()}"
        out: list[str] = []
        for part in parts:
            if part.get_content_type() == "multipart/mixed":
                ok, text = self._changeset(part, request)
                out.append(f"--{boundary}\r\n{text}")
            else:
                inner = self._inner_request(part, request, {})
                if inner.method != "GET":
                    raise DataverseError(400, "0x80060888", "Only GET is allowed outside a change set in a $batch.")
                response = self._safe_execute(inner, {})
                ok = response.status < 400
                out.append(f"--{boundary}\r\n{_http_part(response, None)}")
            if not ok and not continue_on_error:
                break
        body = "".join(out) + f"--{boundary}--\r\n"
        return Response(
            200,
            body.encode("utf-8"),
            {
                "Content-Type": f"multipart/mixed; boundary={boundary}",
                "OData-Version": "4.0",
            },
        )

    def _changeset(self, part: email.message.Message, outer: Request) -> tuple[bool, str]:
        journal: list[tuple[Table, str, dict[str, Any] | None]] = []
        for table in self.tables.values():
            table.journal = journal
        try:
            return self._run_changeset(part, outer, journal)
        finally:
            for table in self.tables.values():
                table.journal = None

    def _run_changeset(
        self, part: email.message.Message, outer: Request, journal: list[tuple[Table, str, dict[str, Any] | None]]
    ) -> tuple[bool, str]:
        boundary = f"changesetresponse_{uuid.uuid4()}"
        content_ids: dict[str, str] = {}
        answers: list[str] = []
        for sub in part.get_payload():  # type: ignore[union-attr]
            content_id = sub.get("Content-ID")
            inner = self._inner_request(sub, outer, content_ids)
            if inner.method == "GET":
                raise DataverseError(400, "0x80060888", "A change set cannot contain a GET request.")
            response = self._safe_execute(inner, content_ids)
            if response.status >= 400:
                for table in self.tables.values():
                    table.journal = None
                for table, row_id, before in reversed(journal):  # roll the whole change set back
                    if before is None:
                        table.remove(row_id)
                    else:
                        table.put(row_id, before)
                return False, _http_part(response, content_id)
            if content_id and "OData-EntityId" in response.headers:
                content_ids[f"${content_id}"] = response.headers["OData-EntityId"]
            answers.append(f"--{boundary}\r\n{_http_part(response, content_id)}")
        text = f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n" + "".join(answers) + f"--{boundary}--\r\n"
        return True, text

    def _inner_request(self, part: email.message.Message, outer: Request, content_ids: dict[str, str]) -> Request:
        payload = part.get_payload(decode=False)
        text = payload if isinstance(payload, str) else str(payload)
        blank = re.search(r"\r?\n\r?\n", text)
        head, body = (text[: blank.start()], text[blank.end() :]) if blank else (text, "")
        lines = re.split(r"\r?\n", head.strip())
        # As Microsoft's OData reader does: the request line splits at its first and last space only,
        # so a URL may hold unencoded spaces (`$filter=a eq 1`).
        request_line = lines[0].strip()
        method, _, rest = request_line.partition(" ")
        url, _, _version = rest.rpartition(" ") if rest.count(" ") else (rest, "", "")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if url.startswith("$"):
            ref, _, rest = url.partition("/")
            if ref not in content_ids:
                raise DataverseError(400, "0x80060888", f"Content-ID reference {ref} is unknown in this change set.")
            url = content_ids[ref] + ("/" + rest if rest else "")
        split = urlsplit(url)
        path = split.path if split.path.startswith("/") else API_PREFIX + split.path
        self._operations += 1  # each request of a $batch is one operation (run one after another)
        with self._log_lock:
            self.batch_parts.append({"method": method.upper(), "path": unquote(path), "query": unquote(split.query)})
        for header in ("authorization",):
            headers.setdefault(header, outer.headers.get(header, ""))
        return Request(
            method=method.upper(),
            path=unquote(path),
            raw_path=path,
            query={k: v for k, v in parse_qsl(split.query, keep_blank_values=True)},
            raw_query=split.query,
            headers=headers,
            body=body.strip().encode("utf-8"),
        )

    def _safe_execute(self, request: Request, content_ids: dict[str, str]) -> Response:
        if not request.path.startswith(API_PREFIX):
            return DataverseError(
                404, "0x80060888", f"No HTTP resource was found that matches {request.path}"
            ).response()
        try:
            return self._execute(request, content_ids)
        except DataverseError as error:
            return error.response()
        except (FilterSyntaxError, ValueError) as error:
            return DataverseError(400, "0x80060888", str(error)).response()


def _execution_context(status_id: str, agent: str, presence_id: str) -> dict[str, Any]:
    """What a Dataverse service endpoint posts for an Update of msdyn_agentstatus (trimmed)."""
    reference = "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts"
    return {
        "BusinessUnitId": BUSINESS_UNIT_ID,
        "CorrelationId": str(uuid.uuid4()),
        "Depth": 1,
        "InitiatingUserId": agent,
        "MessageName": "Update",
        "Mode": 1,
        "OrganizationId": ORGANIZATION_ID,
        "PrimaryEntityId": status_id,
        "PrimaryEntityName": "msdyn_agentstatus",
        "RequestId": str(uuid.uuid4()),
        "SecondaryEntityName": "none",
        "Stage": 40,
        "UserId": agent,
        "InputParameters": [
            {
                "key": "Target",
                "value": {
                    "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
                    "Id": status_id,
                    "LogicalName": "msdyn_agentstatus",
                    "Attributes": [
                        {
                            "key": "msdyn_currentpresenceid",
                            "value": {
                                "__type": reference,
                                "Id": presence_id,
                                "LogicalName": "msdyn_presence",
                                "Name": None,
                            },
                        },
                        {"key": "msdyn_agentstatusid", "value": status_id},
                    ],
                },
            }
        ],
        "PostEntityImages": [
            {
                "key": "PostImage",
                "value": {
                    "Attributes": [
                        {
                            "key": "msdyn_agentid",
                            "value": {"__type": reference, "Id": agent, "LogicalName": "systemuser"},
                        },
                    ]
                },
            }
        ],
        "PreEntityImages": [],
        "OutputParameters": [],
        "SharedVariables": [],
    }


def _split_top(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses and quotes (``$expand`` option lists)."""
    parts, depth, quoted, current = [], 0, False, ""
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == separator and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    return bool(a == b)


def _number_or_text(raw: str) -> Any:
    try:
        return int(raw)
    except ValueError:
        return raw.lower() if _GUID.match(raw) else raw


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _http_part(response: Response, content_id: str | None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}"]
    lines += [f"{k}: {v}" for k, v in response.headers.items()]
    lines += ["", response.body.decode("utf-8"), ""]
    return "\r\n".join(lines)
