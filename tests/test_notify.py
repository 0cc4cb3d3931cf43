"""DingTalk and Slack senders: signing, error classes, and no secret in any error."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses

from addon_watch.errors import DeliveryError
from addon_watch.notify import DingTalkNotifier, SlackNotifier, dingtalk_sign, dingtalk_url
from addon_watch.redaction import Secret

TOKEN = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
DINGTALK = f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}"
SLACK = "https://hooks.slack.com/services/T0000/B0000/abcdefghijklmnopqrstuvwx"
SIGNING = "SEC" + "b" * 61
PAYLOAD = {"msgtype": "markdown", "markdown": {"title": "t", "text": "x"}}


def test_dingtalk_sign_matches_documented_vector() -> None:
    url = dingtalk_url(DINGTALK, SIGNING, 1767225600123)

    assert dingtalk_sign(SIGNING, 1767225600123) == "qiZ6nYy5JGVwVg1RKEmgMrtQDRHslH2e57yFmzMn5e8="
    assert url.endswith(
        "&timestamp=1767225600123&sign=qiZ6nYy5JGVwVg1RKEmgMrtQDRHslH2e57yFmzMn5e8%3D"
    )


def test_dingtalk_url_replaces_stale_timestamp_and_sign() -> None:
    stale = DINGTALK + "&timestamp=1&sign=old"

    query = parse_qsl(urlsplit(dingtalk_url(stale, SIGNING, 1767225600123)).query)

    assert [k for k, _ in query] == ["access_token", "timestamp", "sign"]
    assert dict(query)["timestamp"] == "1767225600123"


def test_dingtalk_url_without_secret_is_unsigned() -> None:
    assert dingtalk_url(DINGTALK, None, 1767225600123) == DINGTALK


@responses.activate
def test_dingtalk_send_fresh_signature_per_request() -> None:
    responses.post("https://oapi.dingtalk.com/robot/send", json={"errcode": 0, "errmsg": "ok"})
    clock = iter([1767225600.123, 1767225660.456])
    notifier = DingTalkNotifier(Secret(DINGTALK), Secret(SIGNING), clock=lambda: next(clock))

    notifier.send(PAYLOAD)
    notifier.send(PAYLOAD)

    sent = [dict(parse_qsl(urlsplit(c.request.url or "").query)) for c in responses.calls]
    assert [q["timestamp"] for q in sent] == ["1767225600123", "1767225660456"]
    assert sent[0]["sign"] != sent[1]["sign"]
    assert json.loads(responses.calls[0].request.body or b"") == PAYLOAD


@pytest.mark.parametrize(
    ("errcode", "permanent", "phrase"),
    [
        (130101, False, "sending too fast"),
        (310000, True, "security settings"),
        (300001, True, "access token does not exist"),
        (300005, True, "access token does not exist"),
        (460101, True, "too long"),
        (101002, True, "too long"),
        (999999, False, "DingTalk refused the message"),
    ],
)
@responses.activate
def test_dingtalk_errcode_classified(errcode: int, permanent: bool, phrase: str) -> None:
    responses.post(
        "https://oapi.dingtalk.com/robot/send", json={"errcode": errcode, "errmsg": f"boom {TOKEN}"}
    )
    notifier = DingTalkNotifier(Secret(DINGTALK), Secret(SIGNING))

    with pytest.raises(DeliveryError) as caught:
        notifier.send(PAYLOAD)

    assert caught.value.permanent is permanent
    assert f"errcode {errcode}" in str(caught.value)
    assert phrase in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert SIGNING not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "permanent"),
    [(502, "bad gateway", False), (429, "slow down", False), (404, "not found", True)],
)
@responses.activate
def test_dingtalk_http_errors_classified(status: int, body: str, permanent: bool) -> None:
    responses.post("https://oapi.dingtalk.com/robot/send", body=body, status=status)

    with pytest.raises(DeliveryError) as caught:
        DingTalkNotifier(Secret(DINGTALK)).send(PAYLOAD)

    assert caught.value.permanent is permanent
    assert f"HTTP {status}" in str(caught.value)


@responses.activate
def test_dingtalk_connection_error_hides_url() -> None:
    responses.post(
        "https://oapi.dingtalk.com/robot/send", body=requests.ConnectionError(f"failed {DINGTALK}")
    )

    with pytest.raises(DeliveryError) as caught:
        DingTalkNotifier(Secret(DINGTALK), Secret(SIGNING)).send(PAYLOAD)

    assert str(caught.value) == "the DingTalk robot could not be reached (ConnectionError)"
    assert caught.value.permanent is False


@responses.activate
def test_slack_ok_body_is_success() -> None:
    responses.post(SLACK, body="ok")

    SlackNotifier(Secret(SLACK)).send({"text": "hi"})

    assert json.loads(responses.calls[0].request.body or b"") == {"text": "hi"}


@pytest.mark.parametrize(
    ("status", "body", "permanent", "phrase"),
    [
        (400, "invalid_payload", True, "rejected the payload"),
        (400, "invalid_blocks", True, "rejected the blocks"),
        (403, "action_prohibited", True, "may not post"),
        (403, "invalid_token", True, "token is invalid"),
        (404, "no_service", True, "revoked"),
        (404, "channel_not_found", True, "no longer exists"),
        (410, "channel_is_archived", True, "archived"),
        (429, "rate_limited", False, "retry after 30 s"),
        (500, "rollup_error", False, "HTTP 500"),
        (200, "not ok at all", False, "HTTP 200"),
    ],
)
@responses.activate
def test_slack_errors_classified(status: int, body: str, permanent: bool, phrase: str) -> None:
    responses.post(SLACK, body=body, status=status, headers={"Retry-After": "30"})

    with pytest.raises(DeliveryError) as caught:
        SlackNotifier(Secret(SLACK)).send({"text": "hi"})

    assert caught.value.permanent is permanent
    assert phrase in str(caught.value)
    assert "abcdefghijklmnopqrstuvwx" not in str(caught.value)


def test_notifier_repr_shows_no_secret() -> None:
    text = repr(DingTalkNotifier(Secret(DINGTALK), Secret(SIGNING))) + repr(
        SlackNotifier(Secret(SLACK))
    )

    assert TOKEN not in text
    assert SIGNING not in text
    assert "abcdefghijklmnopqrstuvwx" not in text
