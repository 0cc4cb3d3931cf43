"""Sending payloads to DingTalk robots and Slack incoming webhooks.

A send either returns (delivered) or raises ``DeliveryError`` whose
``permanent`` flag says whether trying again can help. No message built here
contains the webhook URL, its token or the signing secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import requests

from .errors import DeliveryError
from .redaction import REDACTOR, Secret

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
_SNIPPET = 200

# DingTalk errcodes: what went wrong and whether sending again can help.
DINGTALK_ERRORS: dict[int, tuple[str, bool]] = {
    130101: (
        "the robot is sending too fast (limit 20 messages a minute); it is throttled for a while",
        False,
    ),
    310000: (
        "the robot's security settings refused the message: check DINGTALK_SECRET (signing), "
        "the custom keyword and the IP allowlist",
        True,
    ),
    300001: ("the access token does not exist: check DINGTALK_WEBHOOK_URL", True),
    300005: ("the access token does not exist: check DINGTALK_WEBHOOK_URL", True),
    400101: ("the access token does not exist: check DINGTALK_WEBHOOK_URL", True),
    460101: ("the message is too long for DingTalk", True),
    101002: ("the message is too long for DingTalk", True),
}

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
    """One chat destination."""

    channel: str

    def send(self, payload: dict[str, Any]) -> None: ...


def _snippet(text: str) -> str:
    # Scrubbed before it is cut: a secret cut in half would no longer be recognised.
    flat = REDACTOR.scrub(" ".join(text.split()))
    return flat[:_SNIPPET] + ("…" if len(flat) > _SNIPPET else "")


def _post(
    session: requests.Session, url: str, payload: dict[str, Any], channel: str, what: str
) -> requests.Response:
    try:
        return session.post(url, json=payload, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
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


class DingTalkNotifier:
    """A DingTalk custom robot; signs every request when a secret is set."""

    channel = "dingtalk"

    def __init__(
        self,
        webhook_url: Secret,
        secret: Secret | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = webhook_url
        self._secret = secret
        self._session = session or requests.Session()
        self._clock = clock

    def __repr__(self) -> str:
        return f"DingTalkNotifier(signed={bool(self._secret)})"

    def send(self, payload: dict[str, Any]) -> None:
        # A fresh timestamp for every request: DingTalk refuses one older than an hour.
        timestamp_ms = int(self._clock() * 1000)
        secret = self._secret.reveal() if self._secret else None
        url = dingtalk_url(self._url.reveal(), secret, timestamp_ms)
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
        reason, permanent = DINGTALK_ERRORS.get(errcode, ("DingTalk refused the message", False))
        raise DeliveryError(
            f"DingTalk errcode {errcode} ({errmsg}): {reason}",
            channel=self.channel,
            permanent=permanent,
        )


class SlackNotifier:
    """A Slack incoming webhook."""

    channel = "slack"

    def __init__(self, webhook_url: Secret, session: requests.Session | None = None) -> None:
        self._url = webhook_url
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return "SlackNotifier()"

    def send(self, payload: dict[str, Any]) -> None:
        response = _post(
            self._session, self._url.reveal(), payload, self.channel, "the Slack webhook"
        )
        body = response.text.strip()
        if response.status_code == 200 and body == "ok":
            return

        code = body if body.replace("_", "").isalnum() else ""
        if code in SLACK_PERMANENT:
            raise DeliveryError(
                f"Slack answered HTTP {response.status_code} {code}: {SLACK_PERMANENT[code]}",
                channel=self.channel,
                permanent=True,
            )
        detail = (
            f"; retry after {response.headers.get('Retry-After')} s"
            if response.status_code == 429
            else ""
        )
        raise DeliveryError(
            f"Slack answered HTTP {response.status_code}: {_snippet(body)}{detail}",
            channel=self.channel,
            permanent=response.status_code in (400, 403, 404, 410),
        )
