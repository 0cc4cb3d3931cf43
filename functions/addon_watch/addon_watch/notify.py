"""Sending payloads to DingTalk robots and Slack incoming webhooks.

A send either returns (delivered) or raises ``DeliveryError``: ``permanent``
says that sending again cannot help until the configuration changes, and
``retry_after`` that the destination throttles and nothing may be sent to it
sooner. No message built here contains the webhook URL, its token or the
signing secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import requests

from .errors import DeliveryError
from .redaction import REDACTOR, Secret
from .render import DingTalkOptions, Message, body_bytes, dingtalk_payload, slack_payload

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
_SNIPPET = 200

DINGTALK_RATE = 20  # messages a minute per robot
DINGTALK_RATE_PERIOD = 60.0
# After a 130101 DingTalk throttles the robot for about ten minutes.
DINGTALK_THROTTLE_HOLD = 600.0
# Longest a Slack 429 is waited out inside one invocation; longer is deferred.
SLACK_MAX_WAIT = 30.0

_TOKEN_HINT = "check the access_token in the robot's webhook URL (DINGTALK_WEBHOOK_URL)"
_TOO_LONG = "the message is too long for DingTalk; this is a bug: messages are cut to fit"

_SECURITY = "the robot's security settings refused the message"

# DingTalk errcodes: what went wrong and whether sending again can help.
DINGTALK_ERRORS: dict[int, tuple[str, bool]] = {
    130101: ("the robot is sending too fast (limit 20 messages a minute); throttled", False),
    310000: (
        f"{_SECURITY}: check DINGTALK_SECRET (signing), "
        "DINGTALK_KEYWORD (custom keyword) and the IP allowlist",
        True,
    ),
    300001: (f"the access token does not exist: {_TOKEN_HINT}", True),
    300005: (f"the access token does not exist: {_TOKEN_HINT}", True),
    400101: (f"the access token does not exist: {_TOKEN_HINT}", True),
    460101: (_TOO_LONG, True),
    101002: (_TOO_LONG, True),
}

# 310000 covers four settings; the errmsg says which (its wording has changed over time).
DINGTALK_SECURITY_REASONS = (
    (
        re.compile(r"\bsign", re.IGNORECASE),
        f"{_SECURITY}: the signature does not match; "
        "check DINGTALK_SECRET is the robot's 'SEC...' secret",
    ),
    (
        re.compile(r"\btimestamp", re.IGNORECASE),
        f"{_SECURITY}: the timestamp was refused; "
        "check this machine's clock (DingTalk allows one hour)",
    ),
    (
        re.compile(r"\bkeyword", re.IGNORECASE),
        f"{_SECURITY}: the message lacks the robot's custom keyword; "
        "set DINGTALK_KEYWORD to one of them",
    ),
    (
        re.compile(r"\bip\b|whitelist|allowlist", re.IGNORECASE),
        f"{_SECURITY}: this function's outbound IP is not in the robot's IP allowlist",
    ),
)

SLACK_PERMANENT = {
    "invalid_payload": "Slack rejected the payload",
    "invalid_blocks": "Slack rejected the blocks",
    "missing_text_or_fallback_or_attachments": "Slack found no text in the payload",
    "action_prohibited": "the webhook may not post (workspace restriction)",
    "invalid_token": "the webhook's token is invalid: check SLACK_WEBHOOK_URL",
    "no_service": "the webhook was revoked or never existed: check SLACK_WEBHOOK_URL",
    "channel_not_found": "the webhook's channel no longer exists",
    "channel_is_archived": "the webhook's channel is archived",
}


class Notifier(Protocol):
    """One chat destination: builds its payload from a message and sends it."""

    channel: str

    def build(self, message: Message) -> dict[str, Any]: ...

    def send(self, payload: dict[str, Any]) -> None: ...


class RateWindow:
    """At most ``limit`` sends in any ``period`` seconds, plus holds after throttling."""

    def __init__(
        self,
        limit: int = DINGTALK_RATE,
        period: float = DINGTALK_RATE_PERIOD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._sent: deque[float] = deque()
        self._held_until = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Seconds until the next send is allowed; 0 when it is."""
        with self._lock:
            now = self._clock()
            while self._sent and now - self._sent[0] >= self.period:
                self._sent.popleft()
            full = self._sent[0] + self.period - now if len(self._sent) >= self.limit else 0.0
            return max(full, self._held_until - now, 0.0)

    def note(self) -> None:
        """Count a send."""
        with self._lock:
            self._sent.append(self._clock())

    def hold(self, seconds: float) -> None:
        """Allow nothing for ``seconds``."""
        with self._lock:
            self._held_until = max(self._held_until, self._clock() + seconds)


# One window per robot for the life of the instance: a warm instance remembers
# what it sent in earlier invocations, and a 130101 hold outlives the invocation.
_WINDOWS: dict[str, RateWindow] = {}
_WINDOWS_LOCK = threading.Lock()


def robot_window(webhook_url: str) -> RateWindow:
    """The shared rate window of the robot behind a webhook URL."""
    key = hashlib.sha256(webhook_url.encode()).hexdigest()
    with _WINDOWS_LOCK:
        return _WINDOWS.setdefault(key, RateWindow())


def _snippet(text: str) -> str:
    # Scrubbed before it is cut: a secret cut in half would no longer be recognised.
    flat = REDACTOR.scrub(" ".join(text.split()))
    return flat[:_SNIPPET] + ("…" if len(flat) > _SNIPPET else "")


def _post(
    session: requests.Session, url: str, payload: dict[str, Any], channel: str, what: str
) -> requests.Response:
    try:
        # Sent as compact UTF-8 JSON: the very bytes the size limits were measured on.
        return session.post(
            url,
            data=body_bytes(payload),
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
    except requests.Timeout as exc:
        # NOTE: a read timeout is ambiguous: the message may have arrived. Retrying
        # risks a duplicate, giving up risks a loss; it is retried, as losing is worse.
        raise DeliveryError(
            f"{what} did not answer in time ({type(exc).__name__})", channel=channel
        ) from None
    except requests.RequestException as exc:
        raise DeliveryError(
            f"{what} could not be reached ({type(exc).__name__})", channel=channel
        ) from None


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The base64 HMAC-SHA256 of ``"{timestamp}\\n{secret}"``, not yet URL-encoded."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def dingtalk_url(webhook_url: str, secret: str | None, timestamp_ms: int) -> str:
    """The webhook URL with a fresh ``timestamp`` and ``sign``, each exactly once."""
    parts = urlsplit(webhook_url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("timestamp", "sign")
    ]
    if secret:
        query += [("timestamp", str(timestamp_ms)), ("sign", dingtalk_sign(secret, timestamp_ms))]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def dingtalk_reason(errcode: int, errmsg: str) -> tuple[str, bool]:
    """What an errcode means and whether it is permanent; 310000 refined by its errmsg."""
    if errcode == 310000:
        for pattern, reason in DINGTALK_SECURITY_REASONS:
            if pattern.search(errmsg):
                return reason, True
    return DINGTALK_ERRORS.get(errcode, ("DingTalk refused the message", False))


class DingTalkNotifier:
    """A DingTalk custom robot; signs every request when a secret is set."""

    def __init__(
        self,
        webhook_url: Secret,
        secret: Secret | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        *,
        channel: str = "dingtalk",
        options: DingTalkOptions | None = None,
        window: RateWindow | None = None,
    ) -> None:
        self.channel = channel
        self.options = options or DingTalkOptions()
        self._url = webhook_url
        self._secret = secret
        self._session = session or requests.Session()
        self._clock = clock
        # Its own window unless given the robot's shared one (see robot_window).
        self._window = window or RateWindow()

    def __repr__(self) -> str:
        return f"DingTalkNotifier(channel={self.channel!r}, signed={bool(self._secret)})"

    def build(self, message: Message) -> dict[str, Any]:
        return dingtalk_payload(message, self.options)

    def send(self, payload: dict[str, Any]) -> None:
        # Never hot-retry a throttled robot: a send within the hold only lengthens it.
        wait = self._window.wait()
        if wait > 0:
            raise DeliveryError(
                f"not sent to the DingTalk robot: it may take {self._window.limit} messages a "
                f"minute and is held for another {wait:.0f} s; deferred",
                channel=self.channel,
                retry_after=wait,
            )

        # A fresh timestamp for every request: DingTalk refuses one older than an hour.
        timestamp_ms = int(self._clock() * 1000)
        secret = self._secret.reveal() if self._secret else None
        url = dingtalk_url(self._url.reveal(), secret, timestamp_ms)
        self._window.note()
        response = _post(self._session, url, payload, self.channel, "the DingTalk robot")

        if response.status_code != 200:
            raise DeliveryError(
                f"the DingTalk robot answered HTTP {response.status_code}: "
                f"{_snippet(response.text)}",
                channel=self.channel,
                permanent=400 <= response.status_code < 500 and response.status_code != 429,
            )
        try:
            body = response.json()
            errcode = int(body.get("errcode", -1))
        except (ValueError, TypeError, AttributeError):
            raise DeliveryError(
                "the DingTalk robot answered HTTP 200 with an unexpected body: "
                f"{_snippet(response.text)}",
                channel=self.channel,
            ) from None
        if errcode == 0:
            return
        errmsg = _snippet(str(body.get("errmsg", "")))
        reason, permanent = dingtalk_reason(errcode, errmsg)
        retry_after = None
        if errcode == 130101:
            self._window.hold(DINGTALK_THROTTLE_HOLD)
            retry_after = DINGTALK_THROTTLE_HOLD
        raise DeliveryError(
            f"DingTalk errcode {errcode} ({errmsg}): {reason}",
            channel=self.channel,
            permanent=permanent,
            retry_after=retry_after,
        )


class SlackNotifier:
    """A Slack incoming webhook; waits out a short ``Retry-After`` when time allows."""

    def __init__(
        self,
        webhook_url: Secret,
        session: requests.Session | None = None,
        *,
        channel: str = "slack",
        time_left: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.channel = channel
        self._url = webhook_url
        self._session = session or requests.Session()
        # NOTE: without the invocation's deadline, a fixed budget per instance of
        # the notifier bounds the waiting; pass time_left to use the real one.
        self._budget = SLACK_MAX_WAIT
        self._time_left = time_left
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"SlackNotifier(channel={self.channel!r})"

    def build(self, message: Message) -> dict[str, Any]:
        return slack_payload(message)

    def send(self, payload: dict[str, Any]) -> None:
        while True:
            response = _post(
                self._session, self._url.reveal(), payload, self.channel, "the Slack webhook"
            )
            body = response.text.strip()
            if response.status_code == 200 and body == "ok":
                return
            if response.status_code != 429:
                break
            wait = _retry_after(response.headers.get("Retry-After"))
            if not self._may_wait(wait):
                raise DeliveryError(
                    f"Slack answered HTTP 429 rate_limited: retry after {wait:g} s, more "
                    "than this invocation can wait; deferred",
                    channel=self.channel,
                    retry_after=wait,
                )
            logger.warning(
                "Slack answered 429 rate_limited for %s; waiting %g s as asked", self.channel, wait
            )
            self._budget -= wait
            self._sleep(wait)

        code = body if body.replace("_", "").isalnum() else ""
        if code in SLACK_PERMANENT:
            raise DeliveryError(
                f"Slack answered HTTP {response.status_code} {code}: {SLACK_PERMANENT[code]}",
                channel=self.channel,
                permanent=True,
            )
        raise DeliveryError(
            f"Slack answered HTTP {response.status_code}: {_snippet(body)}",
            channel=self.channel,
            permanent=400 <= response.status_code < 500,
        )

    def _may_wait(self, seconds: float) -> bool:
        left = self._time_left() if self._time_left else self._budget
        # Keep a margin for the request itself after the wait.
        return seconds <= min(self._budget, left - READ_TIMEOUT - CONNECT_TIMEOUT)


def _retry_after(value: str | None) -> float:
    try:
        return max(float(value or 1), 0.0)
    except ValueError:
        return 1.0
