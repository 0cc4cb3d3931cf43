"""Helpers for tests that invoke the handler the way Function Compute does."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from addon_watch.__main__ import make_server
from addon_watch.handler import handle
from tests.fakes import ticks
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import WebhookReceiver

DATA = Path(__file__).parent / "data"
HTTP_TOKEN = "test-http-token-5f0c6d1e2a9b4c83"
CLUSTER = "c0123456789abcdef"
TARGETS = (f"{CLUSTER}/metrics-server", f"{CLUSTER}/flexvolume")


def load_event(name: str) -> dict[str, Any]:
    """A sample FC event from ``tests/data``, as a fresh dict."""
    return copy.deepcopy(json.loads((DATA / f"{name}.json").read_text()))


def environment(sim: AckSimulator, hooks: WebhookReceiver, tmp_path: Path) -> dict[str, str]:
    """Settings that point everything at the local fakes."""
    state = f"sqlite://{tmp_path / 'state.sqlite3'}"
    return {**ticks.environment(sim, hooks, state, TARGETS), "HTTP_TOKEN": HTTP_TOKEN}


def watch(sim: AckSimulator) -> None:
    """Both targets installed, metrics-server upgrading."""
    sim.add_addon(CLUSTER, "metrics-server", "v0.3.9.4")
    sim.add_addon(CLUSTER, "flexvolume", "v1.30.1")
    sim.start_task(CLUSTER, "metrics-server", "2026-01-02T03:00:00Z")


def finish(sim: AckSimulator) -> None:
    sim.finish_task(CLUSTER, "metrics-server", "Success", "2026-01-02T03:06:00Z")


def tick(env: dict[str, str], context: object = None) -> dict[str, Any]:
    """One timer invocation."""
    event = {"triggerTime": "2026-01-02T03:05:00Z", "triggerName": "every-5m", "payload": ""}
    return handle(json.dumps(event).encode(), context, environ=env)


@dataclass
class Answer:
    """An HTTP response from the handler, decoded."""

    status: int
    headers: dict[str, str]
    json: Any
    raw: dict[str, Any] = field(repr=False)


def call(event: dict[str, Any], env: dict[str, str], context: object = None) -> Answer:
    """Invoke the handler with an HTTP event, as bytes, and decode the response."""
    result = handle(json.dumps(event).encode(), context, environ=env)
    assert set(result) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert result["isBase64Encoded"] is False
    assert result["headers"]["Content-Type"].startswith("application/json")
    return Answer(result["statusCode"], result["headers"], json.loads(result["body"]), result)


@contextmanager
def serving(env: dict[str, str]) -> Iterator[str]:
    """The local server (``python -m addon_watch serve``) on a free loopback port: its address."""
    httpd = make_server("127.0.0.1", 0, env)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
