"""A local stand-in for the Functions host: serves a ``FunctionApp``'s HTTP functions and admin endpoint.

It reads the app the way the host does (``app.get_functions()``): each HTTP
trigger is served at ``/api/<route>`` for its methods, and every function can be
run by hand with ``POST /admin/functions/<name>`` (answers 202, like the host).
Function keys are not checked, as with ``func start``. Timer schedules may use
``%SETTING%`` placeholders, resolved from the environment as the host does, and
``start_timers()`` fires each timer on its NCRONTAB schedule (UTC), one run at a time.

Requests the host refuses itself (unknown route, bad or oversized ``Content-Length``, a
body that does not arrive) are answered 4xx and logged as one ``http_refused`` line; the
app's own refusals are logged by the app (``core.telemetry.log_refusal``). The listen
backlog is 128, a socket that stops sending times out, and chunked bodies are read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from core.telemetry import log_event

from .ncrontab import Schedule, parse_schedule

__all__ = ["MAX_BODY_BYTES", "HttpRoute", "LocalFunctionsHost"]

log = logging.getLogger("sandbox.host")

MAX_BODY_BYTES = 1024 * 1024  # the app's own limits are lower (routing: 16 KB)
READ_TIMEOUT_SECONDS = 10.0  # a client that stops sending mid-request frees its thread after this


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # listen backlog (socketserver's default is 5)
    daemon_threads = True


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
    def __init__(
        self,
        app: func.FunctionApp,
        *,
        host: str = "127.0.0.1",
        port: int = 7071,
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        self.host, self.port = host, port
        self._app = app
        self.read_timeout = read_timeout
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
        self._timers_stop = threading.Event()
        self._running: set[str] = set()
        self._running_lock = threading.Lock()

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

    def schedules(self) -> dict[str, Schedule]:
        """Each timer function's schedule, ``%SETTING%`` resolved (a bad one raises ScheduleError naming it)."""
        found: dict[str, Schedule] = {}
        for function in index_functions(self._app):
            trigger = function.get_trigger()
            if trigger.get_binding_name() == "timerTrigger":
                text = resolve_setting(str(trigger.schedule))
                try:
                    found[function.get_function_name()] = parse_schedule(text)
                except ValueError as error:
                    raise ValueError(f"timer {function.get_function_name()}: {error}") from None
        return found

    def _run_timer(self, name: str) -> None:
        with self._running_lock:
            if name in self._running:  # the host runs a timer function once at a time
                log.info("timer %s is still running: this occurrence is skipped", name)
                return
            self._running.add(name)
        try:
            self.run_function(name)
        except Exception:
            log.exception("function %s failed", name)
        finally:
            with self._running_lock:
                self._running.discard(name)

    def start_timers(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> dict[str, datetime]:
        """Fire each timer on its schedule until ``stop()``; returns each one's first occurrence."""
        schedules = self.schedules()
        due = {name: schedule.next_after(clock()) for name, schedule in schedules.items()}
        first = dict(due)

        def loop() -> None:
            while due and not self._timers_stop.is_set():
                name = min(due, key=due.__getitem__)
                wait = (due[name] - clock()).total_seconds()
                if wait > 0 and self._timers_stop.wait(min(wait, 60.0)):
                    return
                if due[name] > clock():
                    continue
                due[name] = schedules[name].next_after(max(clock(), due[name]))
                threading.Thread(target=self._run_timer, args=(name,), name=f"timer-{name}", daemon=True).start()

        threading.Thread(target=loop, name="timers", daemon=True).start()
        return first

    def handle(
        self, method: str, raw_url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_url)
        path = split.path
        admin = re.fullmatch(r"/admin/functions/([^/]+)", path)
        if admin and method == "POST":
            name = admin.group(1)
            if name not in self.functions:
                return self._refuse(404, path, f"no function named {name}")
            try:
                self.run_function(name)
            except ValueError as error:
                return 400, {"Content-Type": "application/json"}, json.dumps({"error": str(error)}).encode()
            except Exception:
                log.exception("function %s failed", name)
            return 202, {}, b""
        if not path.startswith("/api/"):
            return self._refuse(404, path, "no such route")
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
        if any(route.pattern.match(sub) for route in self.routes):
            return self._refuse(405, path, f"method {method} not allowed")
        return self._refuse(404, path, "no such route")

    @staticmethod
    def _refuse(status: int, route: str, reason: str) -> tuple[int, dict[str, str], bytes]:
        log_event("http_refused", level=logging.WARNING, function="host", status=status, route=route, reason=reason)
        body = json.dumps({"error": reason}).encode()
        return status, {"Content-Type": "application/json"}, body

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

            timeout = host.read_timeout  # socket timeout: a stalled body cannot hold a thread

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    return _read_chunked(self.rfile)
                text = self.headers.get("Content-Length")
                if text is None:
                    return b""
                if not text.strip().isdigit():
                    raise _BadRequest(400, f"Content-Length {text[:20]!r} is not a number")
                length = int(text)
                if length > MAX_BODY_BYTES:
                    raise _BadRequest(413, f"body of {length} bytes is over the host's {MAX_BODY_BYTES}")
                body = self.rfile.read(length)
                if len(body) < length:
                    raise _BadRequest(400, f"body ended after {len(body)} of {length} bytes")
                return body

            def _serve(self) -> None:
                try:
                    body = self._body()
                except (_BadRequest, TimeoutError, OSError) as error:
                    status, reason = (
                        (error.status, error.reason)
                        if isinstance(error, _BadRequest)
                        else (400, "the body did not arrive in time")
                    )
                    self.close_connection = True  # the rest of the stream cannot be trusted
                    self._answer(*host._refuse(status, urlsplit(self.path).path, reason))
                    return
                self._answer(*host.handle(self.command, self.path, dict(self.headers.items()), body))

            def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self._server = _Server((self.host, self.port), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="functions-host", daemon=True).start()
        return self

    def stop(self) -> None:
        self._timers_stop.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _read_chunked(stream: Any) -> bytes:
    """A ``Transfer-Encoding: chunked`` body (sizes in hex, optional extensions and trailers)."""
    body = bytearray()
    while True:
        line = stream.readline(1024)
        if not line.endswith(b"\n"):
            raise _BadRequest(400, "chunked body: a chunk size line did not end")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequest(400, f"chunked body: {size_text[:20]!r} is not a chunk size") from None
        if size == 0:
            break
        if len(body) + size > MAX_BODY_BYTES:
            raise _BadRequest(413, f"chunked body is over the host's {MAX_BODY_BYTES} bytes")
        chunk = stream.read(size)
        if len(chunk) < size or stream.readline(3).strip():
            raise _BadRequest(400, "chunked body: a chunk ended early")
        body += chunk
    while stream.readline(8192).strip():  # trailers, up to the empty line
        pass
    return bytes(body)
