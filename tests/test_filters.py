"""Pure unit tests of the $filter builders and key paths."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from dataverse import filters as f
from dataverse import key_path


def test_string_literals_double_single_quotes():
    assert f.eq("fullname", "O'Brien") == "fullname eq 'O''Brien'"


def test_values_of_every_type():
    guid = uuid.UUID("c0c0c001-2222-4000-8000-000000000001")
    moment = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    assert f.and_(f.eq("a", 1), f.eq("b", True), f.eq("c", None), f.eq("d", guid), f.ge("modifiedon", moment)) == (
        "(a eq 1 and b eq true and c eq null and d eq c0c0c001-2222-4000-8000-000000000001 "
        "and modifiedon ge 2026-11-24T08:00:00Z)"
    )


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        f.eq("modifiedon", datetime(2026, 11, 24))


@pytest.mark.parametrize("name", ["fullname eq 'x' or 1", "a b", "", "x'", "1abc", "name)"])
def test_column_names_must_be_identifiers(name):
    with pytest.raises(ValueError):
        f.eq(name, "x")


def test_in_and_like_helpers():
    assert f.in_("mobilephone", ["+358 1", "x'y"]) == (
        "Microsoft.Dynamics.CRM.In(PropertyName='mobilephone',PropertyValues=['+358 1','x''y'])"
    )
    guid = uuid.UUID("c0c0c001-2222-4000-8000-000000000001")
    assert f.in_("_customerid_value", [guid, 3]) == (  # In() takes Collection(Edm.String)
        "Microsoft.Dynamics.CRM.In(PropertyName='_customerid_value',"
        "PropertyValues=['c0c0c001-2222-4000-8000-000000000001','3'])"
    )
    assert f.contains("fullname", "5%_[") == "contains(fullname,'5[%][_][[]')"
    with pytest.raises(ValueError):
        f.in_("x", [])
    with pytest.raises(TypeError):
        f.in_("x", [None])


def test_only_built_filters_combine():
    with pytest.raises(TypeError):
        f.and_(f.eq("a", 1), "b eq 2")  # type: ignore[arg-type]
    assert f.not_(f.eq("a", 1)) == "not (a eq 1)"


def test_key_paths_escape_alternate_key_values():
    assert (
        key_path("contacts", "C0C0C001-2222-4000-8000-000000000001") == "contacts(C0C0C001-2222-4000-8000-000000000001)"
    )
    assert key_path("phonecalls", {"enr_callid": "a'b/c?d"}) == "phonecalls(enr_callid='a''b%2Fc%3Fd')"
    with pytest.raises(ValueError):
        key_path("contacts", "not-a-guid")
    with pytest.raises(ValueError):
        key_path("contacts", "c0c0c001-2222-4000-8000-000000000001\n")  # exactly one GUID, nothing after
    with pytest.raises(ValueError):
        key_path("contacts)/x", "C0C0C001-2222-4000-8000-000000000001")


def test_canonical_guid_accepts_exactly_one_guid():
    from core.ids import canonical_guid

    assert canonical_guid("C0C0C001-2222-4000-8000-00000000000A") == "c0c0c001-2222-4000-8000-00000000000a"
    for value in (
        "{c0c0c001-2222-4000-8000-000000000001}",
        "c0c0c00122224000800000000000000001--",  # 36 characters, hyphens misplaced
        "c0c0c001-2222-4000-8000-000000000001\n",
        "' or 1 eq 1 or '00000000000000000000",
        None,
        36,
    ):
        assert canonical_guid(value) is None, value
