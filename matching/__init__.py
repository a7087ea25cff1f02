"""Caller matching: phone numbers normalised to E.164, the exact forms they are stored in,
and the one-round-trip lookup of the contacts, accounts and leads a number belongs to.

Shared by the routing webhook and the phone call sync; it knows nothing of either.
"""

from ._lookup import CallerLookup, Candidate, LastCall, LookupNeeds, LookupResult, NeedsLookup, OpenRecord
from ._numbers import looks_like_e164, stored_forms, to_e164

__all__ = [
    "CallerLookup",
    "Candidate",
    "LastCall",
    "LookupNeeds",
    "LookupResult",
    "NeedsLookup",
    "OpenRecord",
    "looks_like_e164",
    "stored_forms",
    "to_e164",
]
