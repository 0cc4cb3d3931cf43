"""A loopback server that answers slowly: headers at once, then the body a byte at a time."""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.loopback import LoopbackServer, Request


class TrickleServer(LoopbackServer):
    """Answers every request with ``body``, one byte every ``interval`` seconds."""

    def __init__(
        self,
        body: bytes,
        *,
        interval: float = 0.2,
        chunked: bool = False,
        slow_headers: bool = False,
    ) -> None:
        super().__init__()
        self.slow_headers = slow_headers
        self.body = body
        self.interval = interval
        self.chunked = chunked
        self.requests: list[tuple[str, str]] = []

    def respond(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((request.method, request.raw_path))
        headers = {"Content-Type": "application/json"}
        if self.chunked:
            headers["Transfer-Encoding"] = "chunked"
        return 200, headers, self.body

    def write_body(self, wfile: Any, payload: bytes, headers: dict[str, str]) -> None:
        for byte in payload:
            piece = bytes([byte])
            wfile.write(b"1\r\n" + piece + b"\r\n" if self.chunked else piece)
            wfile.flush()
            time.sleep(self.interval)
        if self.chunked:
            wfile.write(b"0\r\n\r\n")
