"""A local DingTalk robot and Slack incoming webhook that record what arrives."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.fakes.loopback import LoopbackServer, Request

DINGTALK_TOKEN = "dt-token-0123456789abcdef0123456789abcdef"
DINGTALK_SECRET = "SEC" + "f" * 61
SLACK_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"


@dataclass
class Received:
    """One message a fake webhook accepted or refused."""

    channel: str
    payload: Any
    status: int
    accepted: bool
    query: list[tuple[str, str]]
    # The robot's access token or the Slack webhook path it arrived at.
    robot: str = ""


DINGTALK_BODY_LIMIT = 20_000


class WebhookReceiver(LoopbackServer):
    """DingTalk at ``/robot/send``, Slack at ``/services/...``, with scripted failures.

    Like DingTalk, it refuses bodies over 20,000 bytes (460101); with
    ``dingtalk_rate_limit`` it refuses a robot's messages past that many a
    minute (130101), and with ``dingtalk_keyword`` messages without it (310000).
    """

    def __init__(
        self,
        *,
        dingtalk_secret: str | None = DINGTALK_SECRET,
        dingtalk_rate_limit: int | None = None,
        dingtalk_keyword: str | None = None,
    ) -> None:
        super().__init__()
        self.dingtalk_secret = dingtalk_secret
        self.dingtalk_rate_limit = dingtalk_rate_limit
        self.dingtalk_keyword = dingtalk_keyword
        self.dingtalk_tokens = {DINGTALK_TOKEN}
        self.slack_paths = {SLACK_PATH}
        self._sent_at: dict[str, list[float]] = {}
        self.received: list[Received] = []
        self.scripted: dict[str, list[tuple[int, str, dict[str, str]]]] = {
            "dingtalk": [],
            "slack": [],
        }
        self.delays: dict[str, list[float]] = {"dingtalk": [], "slack": []}
        self._lock = threading.Lock()

    @property
    def dingtalk_url(self) -> str:
        return f"{self.base_url}/robot/send?access_token={DINGTALK_TOKEN}"

    @property
    def slack_url(self) -> str:
        return f"{self.base_url}{SLACK_PATH}"

    def add_dingtalk_robot(self, token: str) -> str:
        """Accept another robot's token; returns its webhook URL."""
        self.dingtalk_tokens.add(token)
        return f"{self.base_url}/robot/send?access_token={token}"

    def add_slack_webhook(self, path: str) -> str:
        """Accept another Slack webhook path; returns its URL."""
        self.slack_paths.add(path)
        return f"{self.base_url}{path}"

    def script(
        self,
        channel: str,
        status: int,
        body: str | dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next message to this channel with this."""
        self.scripted[channel].append(
            (status, json.dumps(body) if isinstance(body, dict) else body, headers or {})
        )

    def delay(self, channel: str, seconds: float) -> None:
        """Handle the next message to this channel as usual, but answer ``seconds`` later."""
        self.delays[channel].append(seconds)

    def delivered(self, channel: str) -> list[Any]:
        """Payloads this channel accepted, in order."""
        with self._lock:
            return [r.payload for r in self.received if r.channel == channel and r.accepted]

    def respond(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        channel = "dingtalk" if request.raw_path == "/robot/send" else "slack"
        with self._lock:
            delay = self.delays[channel].pop(0) if self.delays[channel] else 0.0
        answer = self._answer(channel, request)
        # Recorded first: like a real webhook, it acts on the message before answering late.
        time.sleep(delay)
        return answer

    def _answer(self, channel: str, request: Request) -> tuple[int, dict[str, str], bytes]:
        try:
            payload = json.loads(request.body)
        except ValueError:
            payload = request.body.decode(errors="replace")
        with self._lock:
            scripted = self.scripted[channel].pop(0) if self.scripted[channel] else None
        if scripted is not None:
            status, body, headers = scripted
            robot = request.query.get("access_token", request.raw_path)
            self._keep(Received(channel, payload, status, False, request.query_pairs, robot))
            kind = "application/json" if body.startswith("{") else "text/plain"
            return status, {"Content-Type": kind, **headers}, body.encode()
        if channel == "dingtalk":
            return self._dingtalk(request, payload)
        return self._slack(request, payload)

    def _keep(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def _dingtalk(self, request: Request, payload: Any) -> tuple[int, dict[str, str], bytes]:
        errcode, errmsg = 0, "ok"
        names = [k for k, _ in request.query_pairs]
        token = request.query.get("access_token", "")
        if token not in self.dingtalk_tokens:
            errcode, errmsg = 300001, "token is not exist"
        elif self._too_fast(token):
            errcode, errmsg = 130101, "send too fast, exceed 20 times per minute"
        elif len(request.body) > DINGTALK_BODY_LIMIT:
            errcode, errmsg = 460101, "message too long, exceed 20000 bytes"
        elif self.dingtalk_secret and (names.count("timestamp") != 1 or names.count("sign") != 1):
            errcode, errmsg = 310000, "sign not match"
        elif self.dingtalk_secret:
            timestamp = request.query["timestamp"]
            digest = hmac.new(
                self.dingtalk_secret.encode(),
                f"{timestamp}\n{self.dingtalk_secret}".encode(),
                hashlib.sha256,
            ).digest()
            if base64.b64encode(digest).decode() != request.query["sign"]:
                errcode, errmsg = 310000, "sign not match"
            elif abs(time.time() * 1000 - int(timestamp)) > 3600_000:
                errcode, errmsg = 310000, "invalid timestamp"
        if errcode == 0 and (
            not isinstance(payload, dict) or payload.get("msgtype") not in ("markdown", "text")
        ):
            errcode, errmsg = 40035, "msgtype missing"
        if (
            errcode == 0
            and self.dingtalk_keyword
            and self.dingtalk_keyword not in json.dumps(payload, ensure_ascii=False)
        ):
            errcode, errmsg = 310000, "keywords not in content"
        self._keep(Received("dingtalk", payload, 200, errcode == 0, request.query_pairs, token))
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"errcode": errcode, "errmsg": errmsg}).encode(),
        )

    def _too_fast(self, token: str) -> bool:
        """Count a message to a robot; true past the rate limit (which throttles it)."""
        if self.dingtalk_rate_limit is None:
            return False
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._sent_at.get(token, []) if now - t < 60] + [now]
            self._sent_at[token] = recent
        return len(recent) > self.dingtalk_rate_limit

    def _slack(self, request: Request, payload: Any) -> tuple[int, dict[str, str], bytes]:
        if request.raw_path not in self.slack_paths:
            self._keep(Received("slack", payload, 404, False, []))
            return 404, {"Content-Type": "text/plain"}, b"no_service"
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("text"), str)
            or not payload["text"]
        ):
            self._keep(Received("slack", payload, 400, False, []))
            return 400, {"Content-Type": "text/plain"}, b"invalid_payload"
        self._keep(Received("slack", payload, 200, True, [], request.raw_path))
        return 200, {"Content-Type": "text/plain"}, b"ok"
