"""Outgoing webhook deliveries of an emulator, in order, on a background thread (as the real
services deliver them asynchronously). ``drain()`` waits until everything queued was delivered.

Tests choose when a notification arrives (``mode``): ``"async"`` (the default, as above),
``"inline"`` (delivered before the request that caused it is answered: the receiver hears of a
change while it is still making its next one) or ``"held"`` (kept until ``release()``, which can
deliver them in reverse order)."""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any

__all__ = ["WebhookSender"]

log = logging.getLogger("emulators.webhooks")


class WebhookSender:
    def __init__(self) -> None:
        self.url: str | None = None
        self.headers: dict[str, str] = {}
        self.delivered: list[tuple[int, dict[str, Any]]] = []  # (status, payload)
        self.mode = "async"  # "async", "inline" or "held"
        self._held: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._run, name="webhook-sender", daemon=True).start()

    def configure(self, url: str | None, headers: dict[str, str] | None = None) -> None:
        self.url, self.headers = url, dict(headers or {})

    def send(self, payload: dict[str, Any]) -> None:
        if not self.url:
            return
        if self.mode == "inline":
            self._deliver(self._session(), payload)
        elif self.mode == "held":
            with self._lock:
                self._held.append(payload)
        else:
            self._queue.put(payload)

    def release(self, *, reverse: bool = False) -> int:
        """Queue the held notifications for delivery (newest first with ``reverse``); back to async."""
        with self._lock:
            held, self._held, self.mode = self._held, [], "async"
        for payload in reversed(held) if reverse else held:
            self._queue.put(payload)
        return len(held)

    def drain(self) -> None:
        self._queue.join()

    @staticmethod
    def _session() -> Any:
        import requests

        return requests.Session()

    def _deliver(self, session: Any, payload: dict[str, Any]) -> None:
        try:
            if self.url:
                response = session.post(
                    self.url,
                    data=json.dumps(payload),
                    timeout=30,
                    headers={"Content-Type": "application/json", **self.headers},
                )
                self.delivered.append((response.status_code, payload))
        except Exception as error:  # a delivery failure is recorded, never fatal
            log.warning("webhook delivery failed: %s", error)
            self.delivered.append((0, payload))

    def _run(self) -> None:
        session = self._session()
        while True:
            payload = self._queue.get()
            try:
                self._deliver(session, payload)
            finally:
                self._queue.task_done()
