"""Outgoing webhook deliveries of an emulator, in order, on a background thread (as the real
services deliver them asynchronously). ``drain()`` waits until everything queued was delivered."""

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
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._run, name="webhook-sender", daemon=True).start()

    def configure(self, url: str | None, headers: dict[str, str] | None = None) -> None:
        self.url, self.headers = url, dict(headers or {})

    def send(self, payload: dict[str, Any]) -> None:
        if self.url:
            self._queue.put(payload)

    def drain(self) -> None:
        self._queue.join()

    def _run(self) -> None:
        import requests

        session = requests.Session()
        while True:
            payload = self._queue.get()
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
            finally:
                self._queue.task_done()
