"""A small threaded HTTP server with a request log and fault injection, shared by the emulators.

Control endpoints (never counted, never faulted):
  GET    /_emulator/requests   -> {"count": n, "requests": [{"method", "path", "query"}]}
  DELETE /_emulator/requests   -> reset the log
  POST   /_emulator/faults     -> {"latency_ms": 20, "rules": [{"status": 429, "retry_after": 1,
                                   "count": 2, "path": "contacts", "method": "GET",
                                   "after": false}],
                                   "drop": 0}  ("status": 0 drops the connection)
  DELETE /_emulator/faults     -> clear faults
"""

from __future__ import annotations

import json
import random
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["EmulatorServer", "FaultRule", "Request", "Response", "json_response"]


@dataclass
class Request:
    method: str
    path: str  # percent-decoded
    raw_path: str  # as sent
    query: dict[str, str]
    raw_query: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    all_headers = {"Content-Type": "application/json; odata.metadata=minimal"}
    all_headers.update(headers or {})
    return Response(status, json.dumps(payload).encode("utf-8"), all_headers)


@dataclass
class FaultRule:
    status: int  # 0 = drop the connection without answering
    count: int = 1
    retry_after: float | None = None
    path: str = ""  # substring of the path that must match ("" = any)
    method: str = ""  # "" = any
    body: dict[str, Any] | None = None
    after: bool = False  # with status 0: handle the request, then drop the connection unanswered
    chance: float = 1.0  # each matching request is faulted with this probability (seeded: see seed())


class EmulatorServer:
    """Serve ``handle(request) -> Response`` on loopback; subclasses implement ``handle``."""

    name = "emulator"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self._requested_port = port
        self._ssl_context = ssl_context
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._log_lock = threading.Lock()
        self.requests: list[dict[str, str]] = []
        # Requests inside a $batch, in the same shape; not in ``requests``, which counts round trips.
        self.batch_parts: list[dict[str, str]] = []
        self.latency_ms = 0.0
        self.fault_rules: list[FaultRule] = []
        self._random = random.Random(0)

    # -- lifecycle ----------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() the emulator first"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        host = "localhost" if self._ssl_context else self.host
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> EmulatorServer:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm meets the
            # client's delayed ACK and every keep-alive response waits ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                emulator._dispatch(self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self._httpd = ThreadingHTTPServer((self.host, self._requested_port), Handler)
        self._httpd.daemon_threads = True
        if self._ssl_context:
            self._httpd.socket = self._ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request log and faults (Python API; the same over HTTP under /_emulator) ---

    def request_count(self, path_contains: str = "", method: str = "") -> int:
        with self._log_lock:
            return sum(
                1 for r in self.requests if path_contains in r["path"] and (not method or r["method"] == method.upper())
            )

    def reset_requests(self) -> None:
        with self._log_lock:
            self.requests.clear()
            self.batch_parts.clear()

    def inject(self, *rules: FaultRule, latency_ms: float | None = None) -> None:
        with self._log_lock:
            self.fault_rules.extend(rules)
            if latency_ms is not None:
                self.latency_ms = latency_ms

    def seed(self, value: int) -> None:
        """Make probabilistic faults repeatable."""
        with self._log_lock:
            self._random = random.Random(value)

    def clear_faults(self) -> None:
        with self._log_lock:
            self.fault_rules.clear()
            self.latency_ms = 0.0

    def _take_fault(self, request: Request) -> FaultRule | None:
        with self._log_lock:
            for rule in self.fault_rules:
                if rule.path in request.path and (not rule.method or rule.method == request.method):
                    if rule.chance < 1.0 and self._random.random() >= rule.chance:
                        continue
                    rule.count -= 1
                    if rule.count <= 0:
                        self.fault_rules.remove(rule)
                    return rule
        return None

    # -- dispatch -----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def _control(self, request: Request) -> Response:
        if request.path == "/_emulator/requests":
            if request.method == "DELETE":
                self.reset_requests()
                return Response(204)
            with self._log_lock:
                return json_response(200, {"count": len(self.requests), "requests": list(self.requests)})
        if request.path == "/_emulator/faults":
            if request.method == "DELETE":
                self.clear_faults()
                return Response(204)
            spec = request.json() or {}
            rules = [FaultRule(**rule) for rule in spec.get("rules", [])]
            if spec.get("drop"):
                rules.append(FaultRule(status=0, count=int(spec["drop"])))
            self.inject(*rules, latency_ms=spec.get("latency_ms"))
            return Response(204)
        extra = self.control(request)
        if extra is not None:
            return extra
        return json_response(404, {"error": {"code": "NotFound", "message": f"no control endpoint {request.path}"}})

    def control(self, request: Request) -> Response | None:
        """Emulator-specific ``/_emulator/...`` endpoints; None if unknown."""
        return None

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(
            method=handler.command,
            path=unquote(split.path),
            raw_path=split.path,
            query={k: v for k, v in parse_qsl(split.query, keep_blank_values=True)},
            raw_query=split.query,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        if request.path.startswith("/_emulator/"):
            self._write(handler, self._control(request))
            return
        with self._log_lock:
            self.requests.append({"method": request.method, "path": request.path, "query": unquote(split.query)})
            latency = self.latency_ms
        if latency:
            time.sleep(latency / 1000.0)
        fault = self._take_fault(request)
        if fault is not None and fault.after:
            self.handle(request)  # the work is done; the answer is lost, as when a client dies
            fault = FaultRule(status=0)
        if fault is not None:
            if fault.status == 0:
                handler.close_connection = True
                try:
                    handler.connection.shutdown(2)
                except OSError:
                    pass
                return
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            payload = fault.body or {
                "error": {"code": "0x80072322" if fault.status == 429 else "0x80040216", "message": "injected fault"}
            }
            self._write(handler, json_response(fault.status, payload, headers))
            return
        try:
            response = self.handle(request)
        except Exception as exc:  # an emulator bug must show, not hang the client
            response = json_response(500, {"error": {"code": "EmulatorBug", "message": repr(exc)}})
        self._write(handler, response)

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, response: Response) -> None:
        try:
            handler.send_response(response.status)
            for name, value in response.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(response.body)))
            handler.end_headers()
            if response.body:
                handler.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up (its timeout): nothing to answer
