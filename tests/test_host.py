"""The local Functions host on its own: NCRONTAB timers, refused requests, robustness at the socket."""

from __future__ import annotations

import json
import logging
import socket
import threading
from datetime import UTC, datetime

import azure.functions as func
import pytest

from sandbox.host import MAX_BODY_BYTES, LocalFunctionsHost
from sandbox.ncrontab import ScheduleError, parse_schedule


def test_ncrontab_next_occurrences():
    at = datetime(2026, 11, 25, 16, 3, 7, tzinfo=UTC)
    assert parse_schedule("0 */5 * * * *").next_after(at) == datetime(2026, 11, 25, 16, 5, 0, tzinfo=UTC)
    assert parse_schedule("0 0 * * * *").next_after(at) == datetime(2026, 11, 25, 17, 0, 0, tzinfo=UTC)
    assert parse_schedule("*/10 * * * * *").next_after(at) == datetime(2026, 11, 25, 16, 3, 10, tzinfo=UTC)
    assert parse_schedule("0 30 9 * * Mon-Fri").next_after(at) == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    assert parse_schedule("0 0 0 1 Jan *").next_after(at) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_schedule("0 0 12 * * 0").next_after(at) == datetime(2026, 11, 29, 12, tzinfo=UTC)  # Sunday
    assert parse_schedule("0 0 0 29 2 *").next_after(at) == datetime(2028, 2, 29, tzinfo=UTC)
    with pytest.raises(ScheduleError, match="minute field"):
        parse_schedule("0 61 * * * *")
    with pytest.raises(ScheduleError, match="six fields"):
        parse_schedule("*/5 * * * *")


def _app(runs: list[str]) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.function_name("echo")
    @app.route(route="echo", methods=["POST"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps({"length": len(req.get_body()), "body": req.get_body().decode()}))

    @app.function_name("every_second")
    @app.timer_trigger(schedule="%HOST_TEST_SCHEDULE%", arg_name="timer")
    def every_second(timer: func.TimerRequest) -> None:
        runs.append(datetime.now(UTC).isoformat())

    return app


@pytest.fixture()
def host(monkeypatch):
    monkeypatch.setenv("HOST_TEST_SCHEDULE", "* * * * * *")
    runs: list[str] = []
    started = LocalFunctionsHost(_app(runs), port=0, read_timeout=1.0).start()
    started.runs = runs  # type: ignore[attr-defined]
    yield started
    started.stop()


def _raw(host: LocalFunctionsHost, data: bytes, *, half_close: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b"Content-Length: " in answer:
                head, _, body = answer.partition(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
        return answer


def test_timers_fire_on_their_schedule(host):
    first = host.start_timers()
    assert set(first) == {"every_second"}
    deadline = threading.Event()
    for _ in range(100):
        if len(host.runs) >= 2:
            break
        deadline.wait(0.1)
    assert len(host.runs) >= 2


def test_chunked_bodies_are_read(host):
    body = b'{"anum": "+358501234567"}'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]))
    answer = _raw(
        host,
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + chunks
        + b"0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"length": len(body), "body": body.decode()}


def test_bad_oversized_and_short_content_length_are_refused_and_logged(host, caplog):
    caplog.set_level(logging.WARNING, logger="bridge.events")
    bad = _raw(host, b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n")
    assert bad.startswith(b"HTTP/1.1 400") and b"not a number" in bad
    big = _raw(host, b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1))
    assert big.startswith(b"HTTP/1.1 413")
    # promises 100 bytes, sends 10 and stops: answered 400 once the read times out (1 s here), thread freed
    short = _raw(host, b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    assert short.startswith(b"HTTP/1.1 400")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "bridge.events"]
    assert [(e["status"], e["route"]) for e in lines] == [(400, "/api/echo"), (413, "/api/echo"), (400, "/api/echo")]
    assert all("0123456789" not in json.dumps(e) for e in lines)
    ok = _raw(host, b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert ok.startswith(b"HTTP/1.1 200")  # the host still serves


def test_listen_backlog_is_at_least_128(host):
    assert host._server is not None and host._server.request_queue_size >= 128
    sockets = [socket.create_connection(("127.0.0.1", host.port), timeout=5) for _ in range(150)]
    try:
        answer = _raw(host, b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        for sock in sockets:
            sock.close()
