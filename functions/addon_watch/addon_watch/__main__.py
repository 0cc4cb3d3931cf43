"""Command line for local use.

python -m addon_watch check [--dry-run] [--targets C/A,...]   one check with this environment
python -m addon_watch status                                  what the store knows, no API call
python -m addon_watch render [--channel ...] [--outcome ...]  preview a sample message
    (every configured channel, routed, when a webhook or ADDON_WATCH_CONFIG is set)
python -m addon_watch serve [--host 127.0.0.1] [--port 9000]  the HTTP trigger, locally
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import os
import socket
import sys
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .config import LANGUAGES, Env, load_settings
from .errors import AddonWatchError
from .handler import handle, status_report
from .model import Announcement, Outcome, Target
from .redaction import REDACTOR, install_log_redaction

LOOPBACK = ("127.0.0.1", "::1", "localhost")
CHANNELS = ("dingtalk", "slack")
_STATUS_OF = {Outcome.SUCCESS: "Success", Outcome.FAILED: "Failed", Outcome.CANCELED: "Canceled"}
# Set any of these and ``render`` previews the configured channels instead of the built-ins.
_CHANNEL_VARIABLES = (Env.DINGTALK_WEBHOOK_URL, Env.SLACK_WEBHOOK_URL, Env.ADDON_WATCH_CONFIG)


def _print(data: object) -> None:
    print(REDACTOR.scrub(json.dumps(data, ensure_ascii=False, indent=2)))


def sample_announcement(outcome: Outcome) -> Announcement:
    """A made-up finished upgrade, for previews."""
    finished = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    return Announcement(
        target=Target("c0123456789abcdef0123456789abcdef", "metrics-server"),
        task_id="2026-01-02T02:58:17Z",
        outcome=outcome,
        version="v0.3.9.7-9a1b2c3-aliyun",
        status=_STATUS_OF[outcome],
        created_at=finished - timedelta(minutes=5, seconds=48),
        finished_at=finished,
    )


def sample_items(outcomes: list[Outcome]) -> list[Announcement]:
    """One made-up announcement per outcome or notice kind, in order."""
    from .render import sample_notices

    notices = {item.outcome: item for item in sample_notices()}
    return [notices.get(outcome) or sample_announcement(outcome) for outcome in outcomes]


def render_samples(
    channels: list[str],
    language: str | None,
    outcomes: list[Outcome],
    templates_dir: str | None,
    timezone_name: str | None,
    environ: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The sample rendered for each channel, as a check would post it.

    Several outcomes make one grouped message (a digest). When ``environ``
    configures channels, every configured channel is shown with its routing
    filters, language, mentions and keyword; otherwise each built-in kind in
    ``channels``.
    """
    from pathlib import Path

    from .render import Renderer, previews

    renderer = Renderer(Path(templates_dir) if templates_dir else None, timezone_name)
    items = sample_items(outcomes)
    if environ is not None and any(environ.get(name) for name in _CHANNEL_VARIABLES):
        configured = previews(load_settings(environ), items, renderer=renderer)
        found = [p for p in configured if p.channel.partition(":")[0] in channels]
    else:
        found = [
            p
            for p in previews(renderer, items)
            if p.channel in channels
            and p.language == (language or ("zh" if p.channel == "dingtalk" else "en"))
        ]
    return [
        {
            "channel": p.channel,
            "language": p.language,
            "title": p.message.title,
            "text": p.message.text,
            "payload": p.payload,
        }
        for p in found
    ]


def _title_case(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def fc_http_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    host: str,
) -> dict[str, Any]:
    """The event Function Compute 3.0 hands an event handler for this HTTP request."""
    parts = urlsplit(target)
    joined_headers: dict[str, str] = {}
    for name, value in headers:
        key = _title_case(name)
        joined_headers[key] = f"{joined_headers[key]}, {value}" if key in joined_headers else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    now = datetime.now(timezone.utc)
    return {
        "version": "v1",
        "rawPath": parts.path or "/",
        "headers": joined_headers,
        "queryParameters": query,
        "body": text,
        "isBase64Encoded": encoded,
        "requestContext": {
            "accountId": "local",
            "domainName": host,
            "domainPrefix": host.split(".", maxsplit=1)[0],
            "requestId": uuid.uuid4().hex,
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": str(int(now.timestamp() * 1000)),
            "http": {
                "method": method,
                "path": unquote(parts.path or "/"),
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": dict(headers).get("User-Agent", ""),
            },
        },
    }


# Function Compute takes request bodies up to 32 MB; the local server no more.
MAX_BODY = 32 * 1024 * 1024


class BodyError(Exception):
    """A request body the local server cannot read; ``status`` is the answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def read_body(headers: Message, rfile: io.BufferedIOBase) -> bytes:
    """The request body, framed by Content-Length or chunked.

    Raises:
        BodyError: for a malformed, unsupported or too large body.
    """
    transfer_encoding = headers.get("Transfer-Encoding")
    if transfer_encoding is not None:
        if transfer_encoding.strip().lower() != "chunked":
            raise BodyError(f"Transfer-Encoding {transfer_encoding[:40]!r} is not supported", 501)
        return _read_chunked(rfile)
    length = (headers.get("Content-Length") or "0").strip()
    if not (length.isascii() and length.isdigit()):
        raise BodyError(f"Content-Length {length[:40]!r} is not a whole number of bytes")
    if int(length) > MAX_BODY:
        raise BodyError(f"the body is larger than {MAX_BODY} bytes", 413)
    body = rfile.read(int(length)) if int(length) else b""
    if len(body) < int(length):
        raise BodyError("the body is shorter than its Content-Length")
    return body


def _read_chunked(rfile: io.BufferedIOBase) -> bytes:
    body = bytearray()
    while True:
        size_line = rfile.readline(1024).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise BodyError("a chunk of the chunked body has no valid size") from None
        if size < 0 or len(body) + size > MAX_BODY:
            raise BodyError(f"the body is larger than {MAX_BODY} bytes", 413)
        if size == 0:
            # Trailers, up to the empty line that ends the body.
            while rfile.readline(8192).strip():
                pass
            return bytes(body)
        chunk = rfile.read(size)
        if len(chunk) < size or rfile.readline(1024).strip():
            raise BodyError("a chunk of the chunked body is shorter than its size")
        body += chunk


def make_server(host: str, port: int, environ: Mapping[str, str] | None) -> ThreadingHTTPServer:
    """A local HTTP server that hands each request to the handler as Function Compute would."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            try:
                body = read_body(self.headers, self.rfile)
            except BodyError as exc:
                # The framing is unknown, so the connection cannot be reused.
                self.close_connection = True
                data = json.dumps({"error": str(exc)}).encode()
                self.send_response(exc.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                return
            event = fc_http_event(
                self.command,
                self.path,
                list(self.headers.items()),
                body,
                self.client_address[0],
                self.headers.get("Host", host),
            )
            result = handle(json.dumps(event).encode(), None, environ)
            payload = result.get("body", "")
            data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
            self.send_response(int(result.get("statusCode", 500)))
            for name, value in result.get("headers", {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            logging.getLogger("addon_watch.serve").debug(format, *args)

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    return Server((host, port), Handler)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="addon_watch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log internals at DEBUG")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="ask ACK once and send what is owed")
    check.add_argument("--dry-run", action="store_true", help="render, send and record nothing")
    check.add_argument("--targets", help="CLUSTER_ID/COMPONENT,...: a subset of WATCH_TARGETS")
    commands.add_parser("status", help="the last known state of every target, from the store")
    render = commands.add_parser("render", help="preview the messages for a sample upgrade")
    render.add_argument("--channel", choices=CHANNELS, action="append")
    render.add_argument("--language", choices=LANGUAGES)
    render.add_argument(
        "--outcome",
        choices=[o.value for o in Outcome],
        action="append",
        help="success (default), failed, ... or a notice; repeat it to preview a digest",
    )
    render.add_argument("--templates-dir", default=env.get(Env.TEMPLATES_DIR) or None)
    render.add_argument("--timezone", default=env.get(Env.NOTIFY_TIMEZONE) or None)
    serve = commands.add_parser("serve", help="serve the HTTP trigger's routes locally")
    serve.add_argument("--host", default="127.0.0.1", help="loopback unless you mean it")
    serve.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s %(message)s",
    )
    install_log_redaction()
    try:
        if args.command == "check":
            event: dict[str, Any] = {"dry_run": args.dry_run}
            if args.targets:
                event["targets"] = [t.strip() for t in args.targets.split(",") if t.strip()]
            summary = handle(json.dumps(event).encode(), None, env)
            _print(summary)
            return 1 if summary["errors"] else 0
        if args.command == "status":
            _print(status_report(load_settings(env)))
            return 0
        if args.command == "render":
            _print(
                render_samples(
                    args.channel or list(CHANNELS),
                    args.language,
                    [Outcome(outcome) for outcome in args.outcome or ["success"]],
                    args.templates_dir,
                    args.timezone,
                    env,
                )
            )
            return 0
    except AddonWatchError as exc:
        print(f"addon_watch: {type(exc).__name__}: {REDACTOR.scrub(str(exc))}", file=sys.stderr)
        return 2

    if args.host not in LOOPBACK:
        print(
            f"addon_watch: serving on {args.host}, beyond this machine; "
            "anyone who can reach it and holds the token can run checks",
            file=sys.stderr,
        )
    server = make_server(args.host, args.port, env)
    port = server.server_address[1]
    print(f"addon_watch: serving POST /check, GET /status, GET /healthz on {args.host} port {port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
