"""Issue 21, stacked availabilities: with an operator's mapping (Busy, Away and OffWork given
EventTypeIDs; call start, call end and availability changes mapped), an agent goes Away, then Busy,
then Available in Omnichannel. The app must keep at most one availability of its own active in
Enreach, end the previous one in the order that never shows a stale one, and treat every
notification its change causes as that change's echo, in whichever order they arrive.

Over HTTP: the Dataverse emulator's webhook reaches the app's function, the app writes the Enreach
emulator, and the Enreach emulator's notifications come back to the app's function."""

from __future__ import annotations

import pytest

from tests import test_presence
from tests.test_presence import (
    AGENT,
    AVAILABLE,
    AWAY,
    BUSY,
    DND,
    ENREACH_ID,
    TYPE_IDS,
    enreach_status,
    modify_calls,
    oc_presence,
    set_enreach,
    settle,
)

app = test_presence.app  # the fixture: the app served with the operator's mapping


@pytest.fixture(autouse=True)
def async_delivery(world):
    yield
    world.enreach.webhook.release()  # back to asynchronous delivery for the next test


def active(world):
    """The user's active availabilities in Enreach, oldest first: (EventTypeID, EventSource)."""
    with world.enreach.lock:
        return [
            (a["EventTypeID"], a.get("EventSource"))
            for a in world.enreach.availabilities
            if str(a.get("UserID")).lower() == ENREACH_ID
        ]


def own(world):
    return [a for a in active(world) if a[1] == "Dynamics 365 bridge"]


@pytest.mark.parametrize("delivery", ["inline", "reversed"])
def test_away_busy_available_leaves_nothing_stacked_and_writes_nothing_back(app, world, delivery):
    """``inline``: each notification reaches the app before the Enreach write that caused it is
    answered (the app hears of its change while still making it). ``reversed``: every notification
    is held and delivered after the whole sequence, newest first."""
    world.enreach.webhook.mode = "inline" if delivery == "inline" else "held"
    for presence, expected in ((AWAY, "Away"), (BUSY, "Busy"), (AVAILABLE, "Available")):
        world.dataverse.set_presence(AGENT, presence)
        settle(world)
        assert enreach_status(world) == expected
        assert len(own(world)) <= 1, f"after {expected}: the app's availabilities stacked: {active(world)}"
    if delivery == "reversed":
        assert world.enreach.webhook.release(reverse=True) >= 3
        settle(world)
    assert active(world) == []  # nothing left underneath
    assert enreach_status(world) == "Available"
    assert oc_presence(world) == AVAILABLE
    assert modify_calls(world) == 0  # every notification was the echo of the app's own change
    assert all(status == 200 for status, _ in world.enreach.webhook.delivered)


def test_a_new_availability_starts_before_the_previous_one_ends(app, world):
    """The order that never exposes a stale one: POST the new, then DELETE the old."""
    world.dataverse.set_presence(AGENT, AWAY)
    settle(world)
    world.enreach.reset_requests()
    world.dataverse.set_presence(AGENT, BUSY)
    settle(world)
    writes = [r["method"] for r in world.enreach.requests if "/availability" in r["path"] and r["method"] != "GET"]
    assert writes == ["POST", "DELETE"]
    assert own(world) == [(TYPE_IDS["Busy"], "Dynamics 365 bridge")]


def test_available_leaves_an_availability_the_agent_set_in_enreach(app, world):
    """The decision: "Available" in Omnichannel ends only the availability the app started. One the
    agent set in Enreach themselves is theirs (it may carry their note and end time): it stays, and
    the notification of the app's change that shows it again is an echo, not news."""
    set_enreach(world, "DND")  # the agent's own, in Enreach
    settle(world)
    assert oc_presence(world) == DND
    world.dataverse.reset_requests()
    world.dataverse.set_presence(AGENT, BUSY)
    settle(world)
    assert enreach_status(world) == "Busy"
    world.dataverse.set_presence(AGENT, AVAILABLE)
    settle(world)
    assert active(world) == [(TYPE_IDS["DND"], "user")]  # the agent's own stays; the app's is gone
    assert oc_presence(world) == AVAILABLE  # the agent's latest choice is not overwritten
    assert modify_calls(world) == 0
