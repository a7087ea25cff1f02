"""Run the app with Azure Monitor export on, in a process of its own, as tests/test_telemetry_export.py
asks: ``python -m tests.telemetry_probe plan.json result.json``.

The environment names the app's settings and an ``APPLICATIONINSIGHTS_CONNECTION_STRING`` whose
endpoints are a fake ingestion server on loopback. The plan lists the timers to run (a failure is
logged with its traceback, as the Functions worker does) and the requests to post (routing calls,
webhooks), in order. Then the providers are flushed, and the answers and anything refused at
the socket are written to ``result.json``.

Sockets are guarded: a connection or a name lookup beyond loopback is refused and recorded, so
the test can assert that nothing left the machine.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import sys
import traceback
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

_blocked: list[str] = []
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", ""}


def _is_loopback(host: str) -> bool:
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guard_sockets() -> None:
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(str(address[0])):
            _blocked.append(f"connect {address[0]}:{address[1]}")
            raise OSError(f"telemetry probe: {address[0]} is beyond loopback")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if not _is_loopback(name):
            _blocked.append(f"lookup {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"telemetry probe: {name} is beyond loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo


def _post(url: str, body: Any, headers: dict[str, str]) -> int:
    data = json.dumps(body).encode()
    request = Request(url, data=data, method="POST", headers={"Content-Type": "application/json", **headers})
    try:
        with urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except HTTPError as error:
        error.read()
        return int(error.code)


def _flush() -> None:
    from opentelemetry import _logs, metrics, trace

    for provider in (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider()):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush()


def main(plan_path: str, result_path: str) -> int:
    _guard_sockets()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # as the sandbox: the SDKs log every exchange at INFO
    with open(plan_path, encoding="utf-8") as handle:
        plan = json.load(handle)

    import function_app
    from core.telemetry import configure_telemetry
    from sandbox.host import LocalFunctionsHost

    assert configure_telemetry()  # a second set-up (a re-import, a CLI helper) must not add a second pipeline

    host = LocalFunctionsHost(function_app.app, port=0).start()
    statuses: dict[str, list[int]] = {}
    failed: list[str] = []
    raised: list[str] = []
    worker_log = logging.getLogger("azure_functions_worker")  # where the Python worker logs a failed invocation
    try:
        for name in plan["timers"]:
            try:
                host.run_function(name)
            except Exception as error:
                failed.append(name)
                # What the worker hands the host, which reports it outside the app's scrubbing.
                raised.append("".join(traceback.format_exception(error)))
                worker_log.exception("Executed 'Functions.%s' (Failed)", name)
        for post in plan["posts"]:
            status = _post(f"{host.url}/api/{post['route']}", post["body"], post["headers"])
            statuses.setdefault(post["route"], []).append(status)
    finally:
        host.stop()
        _flush()
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump({"blocked": _blocked, "statuses": statuses, "failed_timers": failed, "raised": raised}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
