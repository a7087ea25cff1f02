"""A local stand-in for the Functions host: serves a ``FunctionApp``'s HTTP functions and admin endpoint.

It reads the app the way the host does (``app.get_functions()``): each HTTP
trigger is served at ``/api/<route>`` for its methods, and every function can be
run by hand with ``POST /admin/functions/<name>`` (answers 202, like the host).
Function keys are not checked, as with ``func start``. Timer schedules may use
``%SETTING%`` placeholders, resolved from the environment as the host does.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

__all__ = ["HttpRoute", "LocalFunctionsHost"]

log = logging.getLogger("sandbox.host")


@dataclass
class HttpRoute:
    name: str
    route: str
    pattern: re.Pattern[str]
    methods: set[str]
    function: Callable[..., Any]
    arg_name: str


def _route_regex(route: str) -> re.Pattern[str]:
    regex = ""
    for piece in re.split(r"(\{[^}]+\})", route.strip("/")):
        if piece.startswith("{"):
            name = piece[1:-1].split(":")[0].rstrip("?")
            regex += f"(?P<{name}>[^/]+)"
        else:
            regex += re.escape(piece)
    return re.compile("^" + regex + "$", re.IGNORECASE)


class _TimerRequest(func.TimerRequest):
    """What a timer function receives when run through the admin endpoint."""

    @property
    def past_due(self) -> bool:
        return False


_INDEXED: dict[int, list[Any]] = {}


def index_functions(app: func.FunctionApp) -> list[Any]:
    """``app.get_functions()`` once per app: it validates names on every call and refuses a second."""
    if id(app) not in _INDEXED:
        _INDEXED[id(app)] = list(app.get_functions())
    return _INDEXED[id(app)]


def resolve_setting(value: str) -> str:
    """Replace ``%NAME%`` with the app setting, as the host does for binding expressions."""
    return re.sub(r"%([A-Za-z0-9_]+)%", lambda m: os.environ.get(m.group(1), m.group(0)), value)


class LocalFunctionsHost:
    def __init__(self, app: func.FunctionApp, *, host: str = "127.0.0.1", port: int = 7071) -> None:
        self.host, self.port = host, port
        self.routes: list[HttpRoute] = []
        self.functions: dict[str, tuple[Callable[..., Any], str, str]] = {}  # name -> (fn, trigger type, arg)
        for function in index_functions(app):
            trigger = function.get_trigger()
            user_function = function.get_user_function()
            name = function.get_function_name()
            self.functions[name] = (user_function, trigger.get_binding_name(), trigger.name)
            if trigger.get_binding_name() == "httpTrigger":
                route = getattr(trigger, "route", None) or name
                methods = {str(getattr(m, "value", m)).upper() for m in (getattr(trigger, "methods", None) or [])}
                self.routes.append(
                    HttpRoute(name, route, _route_regex(route), methods or {"GET", "POST"}, user_function, trigger.name)
                )
        self._server: ThreadingHTTPServer | None = None

    def describe(self) -> list[str]:
        """One line per function, as ``func start`` lists them."""
        lines = []
        for name, (_, trigger_type, _) in self.functions.items():
            route = next((r for r in self.routes if r.name == name), None)
            if route is not None:
                lines.append(f"{name}: [{','.join(sorted(route.methods))}] {self.url}/api/{route.route}")
            else:
                lines.append(f"{name}: {trigger_type} (run it: POST {self.url}/admin/functions/{name})")
        return lines

    def run_function(self, name: str) -> None:
        """Run a timer or the warm-up function once as the admin endpoint does (timers get a
        not-past-due request)."""
        function, trigger_type, arg_name = self.functions[name]
        if trigger_type == "timerTrigger":
            function(**{arg_name: _TimerRequest()})
        elif trigger_type == "warmupTrigger":
            function(**{arg_name: func.warmup.WarmUpContext()})
        else:
            raise ValueError(f"{name} is a {trigger_type} function: call its route instead")

    def handle(
        self, method: str, raw_url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_url)
        path = split.path
        admin = re.fullmatch(r"/admin/functions/([^/]+)", path)
        if admin and method == "POST":
            name = admin.group(1)
            if name not in self.functions:
                return 404, {}, b""
            try:
                self.run_function(name)
            except ValueError as error:
                return 400, {"Content-Type": "application/json"}, json.dumps({"error": str(error)}).encode()
            except Exception:
                log.exception("function %s failed", name)
            return 202, {}, b""
        if not path.startswith("/api/"):
            return 404, {}, b""
        sub = path[len("/api/") :]
        for route in self.routes:
            match = route.pattern.match(sub)
            if match and method in route.methods:
                request = func.HttpRequest(
                    method=method,
                    url=f"http://{self.host}:{self.port}{raw_url}",
                    headers=headers,
                    params=dict(parse_qsl(split.query, keep_blank_values=True)),
                    route_params=match.groupdict(),
                    body=body,
                )
                try:
                    response = route.function(**{route.arg_name: request})
                except Exception:
                    log.exception("function %s failed", route.name)
                    return 500, {}, b""
                out_headers = dict(response.headers)
                if response.mimetype and "content-type" not in {k.lower() for k in out_headers}:
                    out_headers["Content-Type"] = f"{response.mimetype}; charset={response.charset}"
                return response.status_code, out_headers, response.get_body() or b""
        return 404, {}, b""

    def warm_up(self) -> None:
        """Call the app's ``warmup`` function, if it has one, as Premium does for a new instance."""
        for name, (_, trigger_type, _) in self.functions.items():
            if trigger_type == "warmupTrigger":
                self.run_function(name)

    def start(self) -> LocalFunctionsHost:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm meets the
            # client's delayed ACK and every keep-alive response waits ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = host.handle(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="functions-host", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
