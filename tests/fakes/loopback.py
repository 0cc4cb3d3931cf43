"""A threaded HTTP server on 127.0.0.1 with an ephemeral port, for fakes."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


class Request:
    """What a fake received, decoded."""

    def __init__(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        parts = urlsplit(handler.path)
        self.method = handler.command
        self.raw_path = parts.path
        self.raw_query = parts.query
        self.query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.query_pairs = parse_qsl(parts.query, keep_blank_values=True)
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        self.body = body


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops connections when many clients start at once.
    request_queue_size = 128


class LoopbackServer:
    """Start with ``with``; subclasses answer in ``respond``."""

    # When true, the whole answer, headers included, is sent through ``write_body``.
    slow_headers = False

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body waits
            # for the client's delayed ACK (40 ms on Linux) on every kept-alive request.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = owner.respond(Request(self, body))
                if owner.slow_headers:
                    # The status line and headers go out through write_body too, slowly.
                    head = f"HTTP/1.1 {status} OK\r\nContent-Length: {len(payload)}\r\n"
                    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                    try:
                        owner.write_body(self.wfile, (head + "\r\n").encode() + payload, headers)
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True
                    return
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    if "Transfer-Encoding" not in headers:
                        self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    owner.write_body(self.wfile, payload, headers)
                except (BrokenPipeError, ConnectionResetError):
                    # The client stopped waiting (a read timeout): nobody to answer.
                    self.close_connection = True

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval lets ``__exit__`` return at once instead of after 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def respond(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def write_body(self, wfile: Any, payload: bytes, headers: dict[str, str]) -> None:
        """Send the answer's body; a subclass may send it slowly."""
        wfile.write(payload)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
