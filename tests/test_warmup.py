"""The warm-up trigger and the cold first request: one token, the router built once, shared."""

from __future__ import annotations

import json

import requests

from tests.helpers import serving_app

KEY = "test-routing-key-0123456789"
OWNER = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01"
DATA = {
    "systemusers": [{"systemuserid": OWNER, "fullname": "Aino", "address1_telephone1": "+358942421001"}],
    "accounts": [{"name": "Oy", "telephone1": "+358501234567", "_ownerid_value": OWNER}],
}


def _route(host) -> requests.Response:
    return requests.post(
        f"{host.url}/api/routing",
        data=json.dumps({"anum": "+358501234567", "bnum": "+358942420000"}),
        headers={"Content-Type": "application/json", "X-Benemen-APIKey": KEY},
        timeout=10,
    )


def test_warm_up_gets_the_token_once_and_the_first_call_reuses_it(world, monkeypatch, caplog):
    world.dataverse.load(DATA)
    issued = world.issuer.issued_count
    with serving_app(monkeypatch, world.app_settings({"ROUTING_API_KEY": KEY})) as host:
        with caplog.at_level("INFO", logger="routing.warmup"):
            host.warm_up()
        line = json.loads(next(r.getMessage() for r in caplog.records if r.name == "routing.warmup"))
        assert line["event"] == "routing_warmup" and line["ok"] is True
        assert world.issuer.issued_count - issued == 1
        assert world.dataverse.request_count() == 1  # WhoAmI: token, TLS and connection, nothing else
        world.dataverse.reset_requests()
        answer = _route(host)
        assert answer.status_code == 200 and answer.json() == {"InitialTarget": "+358942421001"}
        assert world.issuer.issued_count - issued == 1  # the first call used the warm-up's token
        assert world.dataverse.request_count() == 1  # one lookup


def test_without_warm_up_the_first_request_does_the_same_work_and_answers(world, monkeypatch):
    world.dataverse.load(DATA)
    issued = world.issuer.issued_count
    with serving_app(monkeypatch, world.app_settings({"ROUTING_API_KEY": KEY})) as host:
        assert _route(host).status_code == 200
        assert _route(host).status_code == 200
    assert world.issuer.issued_count - issued == 1


def test_a_failing_warm_up_is_logged_and_never_stops_the_instance(world, monkeypatch, caplog):
    settings = world.app_settings({"ROUTING_API_KEY": KEY, "AZURE_CLIENT_SECRET": "not-the-secret"})
    with serving_app(monkeypatch, settings) as host, caplog.at_level("INFO", logger="routing.warmup"):
        host.warm_up()
        line = json.loads(next(r.getMessage() for r in caplog.records if r.name == "routing.warmup"))
        assert line["ok"] is False and "TokenUnavailable" in line["error"]
        assert "not-the-secret" not in caplog.text
        assert _route(host).status_code == 204  # the call still gets its answer: not routed


def test_the_first_call_fetches_the_token_while_it_imports_and_asks_for_it_once(world, monkeypatch):
    """The prefetch starts before the imports; the router's client takes its token (or waits for it)
    instead of asking a second time, even while the token service takes its time."""
    from bridge import prefetch

    world.dataverse.load(DATA)
    world.tokens.token_latency_ms = 300
    issued = world.issuer.issued_count
    with serving_app(monkeypatch, world.app_settings({"ROUTING_API_KEY": KEY})) as host:
        answer = _route(host)
        assert answer.status_code == 200 and answer.json() == {"InitialTarget": "+358942421001"}
        assert prefetch._prefetch is not None and prefetch._prefetch[1].done()  # it was the prefetch's token
        assert _route(host).status_code == 200
    assert world.issuer.issued_count - issued == 1


def test_a_failed_prefetch_leaves_the_first_call_to_the_normal_path(world, monkeypatch):
    from bridge import prefetch

    world.dataverse.load(DATA)
    settings = world.app_settings({"ROUTING_API_KEY": KEY})
    with serving_app(monkeypatch, settings) as host:
        prefetch.start({**settings, "AZURE_CLIENT_SECRET": "not-the-secret"})  # the prefetch is refused
        prefetch._prefetch[1].exception(timeout=30)
        prefetch._prefetch[0].update(prefetch._values(settings))  # as if the values had matched
        answer = _route(host)
        assert answer.status_code == 200 and answer.json() == {"InitialTarget": "+358942421001"}


def test_settings_unlike_the_prefetchs_values_get_their_own_credential(world, monkeypatch):
    from bridge import prefetch
    from bridge.settings import load_settings

    settings = world.app_settings({"ROUTING_API_KEY": KEY})
    prefetch._reset()
    prefetch.start({**settings, "DATAVERSE_URL": "http://127.0.0.1:9"})
    built = []
    assert prefetch.credential_for(load_settings(settings).dataverse, lambda: built.append(1) or "own") == "own"
    prefetch._reset()
