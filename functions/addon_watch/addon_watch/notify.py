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
import urllib3

from .errors import DeliveryError
from .httpio import BodyError, exchange, watch
from .redaction import REDACTOR, Secret
from .render import DingTalkOptions, Message, body_bytes, dingtalk_payload, slack_payload
from .waits import SHORTEST_WAIT, parse_retry_after

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
_SNIPPET = 200

DINGTALK_RATE = 20  # messages a minute per robot
DINGTALK_RATE_PERIOD = 60.0
# After a 130101 DingTalk throttles the robot for about ten minutes.
DINGTALK_THROTTLE_HOLD = 600.0
# Longest that one Slack send waits out 429s in all, and how many times it asks
# again; a longer wait, or a third 429, is deferred to a later tick.
SLACK_MAX_WAIT = 30.0
SLACK_RETRIES = 2
# A 429 from DingTalk without a usable Retry-After.
DINGTALK_DEFAULT_WAIT = 60.0

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


# A webhook's answer is a few bytes; one that trickles (longer than one and a half
# read timeouts in all) or grows past this is cut off.
WEBHOOK_BODY_BYTES = 1024 * 1024


def _post(
    session: requests.Session,
    url: str,
    payload: dict[str, Any],
    channel: str,
    what: str,
    timeouts: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
) -> requests.Response:
    # The whole exchange: a connect timeout, then one and a half read timeouts for the
    # answer, headers included, however slowly the webhook sends it.
    total = timeouts[0] + timeouts[1] * 1.5
    try:
        return exchange(
            # Sent as compact UTF-8 JSON: the very bytes the size limits were measured on.
            lambda: watch(session).post(
                url,
                data=body_bytes(payload),
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=timeouts,
                stream=True,
            ),
            seconds=total,
            max_bytes=WEBHOOK_BODY_BYTES,
        )
    except BodyError as exc:
        raise DeliveryError(
            f"{what} did not finish answering after the message was sent ({exc}): "
            "it may have arrived",
            channel=channel,
            ambiguous=True,
        ) from None
    except requests.RequestException as exc:
        if _maybe_sent(exc):
            raise DeliveryError(
                f"{what} did not answer after the message was sent ({type(exc).__name__}): "
                "it may have arrived",
                channel=channel,
                ambiguous=True,
            ) from None
        raise DeliveryError(
            f"{what} could not be reached ({type(exc).__name__})", channel=channel
        ) from None


def _maybe_sent(exc: requests.RequestException) -> bool:
    """True when the request may have reached the webhook: it was sent, and no answer came.

    A connect timeout, a refused connection, a name that does not resolve or a
    failed TLS handshake happen before anything is sent; a read timeout, or a
    connection dropped while waiting for the answer, happen after.
    """
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError)):
        return False
    if isinstance(exc, (requests.ReadTimeout, requests.exceptions.ChunkedEncodingError)):
        return True
    if isinstance(exc, requests.ConnectionError):
        # urllib3 wraps a failure to connect in MaxRetryError(reason=NewConnectionError);
        # a connection dropped after sending arrives as ProtocolError("Connection aborted").
        cause = exc.args[0] if exc.args else None
        cause = getattr(cause, "reason", None) or cause
        return isinstance(cause, urllib3.exceptions.ProtocolError)
    return False


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
        timeouts: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    ) -> None:
        self.channel = channel
        self.options = options or DingTalkOptions()
        self._url = webhook_url
        self._secret = secret
        self._session = session or requests.Session()
        self._clock = clock
        # Its own window unless given the robot's shared one (see robot_window).
        self._window = window or RateWindow()
        self._timeouts = timeouts

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
        response = _post(
            self._session, url, payload, self.channel, "the DingTalk robot", self._timeouts
        )

        if response.status_code != 200:
            throttled = response.status_code == 429
            asked: float | None = None
            if throttled:
                asked = parse_retry_after(
                    response.headers.get("Retry-After"), default=DINGTALK_DEFAULT_WAIT
                )
                self._window.hold(asked)
            raise DeliveryError(
                f"the DingTalk robot answered HTTP {response.status_code}: "
                f"{_snippet(response.text)}",
                channel=self.channel,
                permanent=400 <= response.status_code < 500 and not throttled,
                retry_after=asked,
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
        timeouts: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    ) -> None:
        self.channel = channel
        self._url = webhook_url
        self._session = session or requests.Session()
        # Seconds left in the invocation; without it, SLACK_MAX_WAIT alone bounds the waits.
        self._time_left = time_left
        self._sleep = sleep
        self._timeouts = timeouts

    def __repr__(self) -> str:
        return f"SlackNotifier(channel={self.channel!r})"

    def build(self, message: Message) -> dict[str, Any]:
        return slack_payload(message)

    def send(self, payload: dict[str, Any]) -> None:
        waited = 0.0
        for retry in range(SLACK_RETRIES + 1):
            url = self._url.reveal()
            response = _post(
                self._session, url, payload, self.channel, "the Slack webhook", self._timeouts
            )
            body = response.text.strip()
            if response.status_code == 200 and body == "ok":
                return
            if response.status_code != 429:
                break

            # A header of 0, a negative number or garbage still waits a second:
            # asking again at once is what the 429 asked us not to do.
            wait = parse_retry_after(response.headers.get("Retry-After"), default=SHORTEST_WAIT)
            if retry == SLACK_RETRIES or not self._may_wait(waited + wait, wait):
                raise DeliveryError(
                    f"Slack answered HTTP 429 rate_limited: retry after {wait:g} s "
                    f"(asked {retry + 1} time(s), waited {waited:g} s in this run); deferred",
                    channel=self.channel,
                    retry_after=wait,
                )
            logger.warning(
                "Slack answered 429 rate_limited for %s; waiting %g s as asked", self.channel, wait
            )
            waited += wait
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

    def _may_wait(self, total: float, wait: float) -> bool:
        if total > SLACK_MAX_WAIT:
            return False
        # Keep a margin for the request itself after the wait.
        return self._time_left is None or wait <= self._time_left() - sum(self._timeouts)
