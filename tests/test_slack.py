"""Slack incoming webhooks: payload shape and limits, escaping, error classes, 429."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from addon_watch.errors import DeliveryError
from addon_watch.model import Outcome
from addon_watch.notify import SlackNotifier
from addon_watch.redaction import Secret
from addon_watch.render import Message, Renderer, slack_color, slack_payload
from addon_watch.store import SqliteStore
from tests.delivery_helpers import announcement, deliver, enqueue, many, open_store, states
from tests.fakes.webhooks import SLACK_PATH, WebhookReceiver


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = open_store(tmp_path)
    yield store
    store.close()


def all_blocks(payload: dict) -> list[dict]:
    return payload["blocks"] + [b for a in payload.get("attachments", []) for b in a["blocks"]]


def check_limits(payload: dict) -> None:
    blocks = all_blocks(payload)
    assert isinstance(payload["text"], str) and payload["text"]
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
            assert len(block.get("fields", [])) <= 10


@pytest.mark.parametrize(
    ("outcomes", "color"),
    [
        (("success",), "#2eb886"),
        (("failed",), "#e01e5a"),
        (("canceled",), "#9e9e9e"),
        (("success", "canceled", "failed"), "#e01e5a"),
        (("success", "canceled"), "#9e9e9e"),
    ],
)
def test_slack_color_follows_the_worst_outcome(outcomes: tuple[str, ...], color: str) -> None:
    assert slack_color(outcomes) == color
    assert slack_payload(Message("t", "x", outcomes))["attachments"][0]["color"] == color


def test_slack_single_outcome_has_fallback_header_and_coloured_body() -> None:
    message = Renderer().render("slack", "en", announcement(outcome=Outcome.FAILED))

    payload = slack_payload(message)

    assert (
        payload["text"] == ":x: Upgrade failed: metrics-server in c0123456789abcdef0123456789abcdef"
    )
    assert payload["blocks"][0]["type"] == "header"
    body = payload["attachments"][0]["blocks"][0]["text"]["text"]
    assert body.startswith("*:x: Upgrade failed: metrics-server*\n*Cluster:*")
    check_limits(payload)


def test_slack_data_is_mrkdwn_escaped() -> None:
    item = announcement("<!channel> & <http://evil|click>")

    message = Renderer().render("slack", "en", item)

    assert "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;" in message.text
    assert "<!channel>" not in message.text


@pytest.mark.parametrize("count", [2, 25, 200, 400])
def test_slack_digest_respects_block_limits(count: int) -> None:
    message = Renderer().render_group("slack", "en", many(count))

    payload = slack_payload(message)

    check_limits(payload)
    shown = "\n".join(b["text"]["text"] for b in all_blocks(payload) if b["type"] == "section")
    if count <= 200:
        assert all(f"*addon-{i:02d}*" in shown for i in range(count))


def test_slack_overlong_title_and_section_are_cut() -> None:
    payload = slack_payload(Message("T" * 400, "word " * 2000, ("success",)))

    check_limits(payload)
    assert payload["blocks"][0]["text"]["text"].endswith("…")


# status, body, outbox state after the tick, what the log says
SLACK_ERRORS = [
    pytest.param(400, "invalid_payload", "failed", "rejected the payload", id="invalid_payload"),
    pytest.param(404, "no_service", "failed", "revoked", id="no_service"),
    pytest.param(404, "channel_not_found", "failed", "no longer exists", id="channel_not_found"),
    pytest.param(410, "channel_is_archived", "failed", "archived", id="channel_is_archived"),
    pytest.param(403, "action_prohibited", "failed", "may not post", id="action_prohibited"),
    pytest.param(403, "invalid_token", "failed", "token is invalid", id="invalid_token"),
    pytest.param(500, "rollup_error", "pending", "next after", id="500-transient"),
    pytest.param(503, "", "pending", "next after", id="503-transient"),
]


@pytest.mark.parametrize(("status", "body", "state", "log"), SLACK_ERRORS)
def test_slack_error_class_decides_retry_or_give_up(
    webhooks: WebhookReceiver,
    store: SqliteStore,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: str,
    state: str,
    log: str,
) -> None:
    item = announcement()
    enqueue(store, [item], ["slack"])
    webhooks.script("slack", status, body)

    with caplog.at_level(logging.ERROR, logger="addon_watch"):
        summary = deliver(store, {"slack": SlackNotifier(Secret(webhooks.slack_url))})

    assert states(store) == {f"{item.key}|slack": state}
    assert (summary.failed, summary.pending) == ((1, 0) if state == "failed" else (0, 1))
    line = caplog.records[-1].getMessage()
    assert log in line and f"HTTP {status}" in line
    assert line.startswith("gave up") == (state == "failed")
    assert SLACK_PATH not in line


def test_slack_unreachable_webhook_is_retried_next_tick(store: SqliteStore) -> None:
    enqueue(store, [announcement()], ["slack"])

    summary = deliver(store, {"slack": SlackNotifier(Secret("http://127.0.0.1:9/services/x"))})

    assert summary.pending == 1 and "could not be reached" in summary.errors[0]


def test_slack_429_is_waited_out_when_the_invocation_has_time(
    webhooks: WebhookReceiver, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    item = announcement()
    enqueue(store, [item], ["slack"])
    webhooks.script("slack", 429, "rate_limited")
    waits: list[float] = []
    notifier = SlackNotifier(
        Secret(webhooks.slack_url), time_left=lambda: 300.0, sleep=waits.append
    )

    with caplog.at_level(logging.WARNING, logger="addon_watch"):
        summary = deliver(store, {"slack": notifier})

    assert waits == [1.0]
    assert summary.sent == 1 and len(webhooks.received) == 2
    assert states(store) == {f"{item.key}|slack": "sent"}
    assert "waiting 1 s as asked" in caplog.records[0].getMessage()


def test_slack_429_longer_than_the_time_left_is_deferred(
    webhooks: WebhookReceiver, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    item = announcement()
    enqueue(store, [item], ["slack"])
    webhooks.script("slack", 429, "rate_limited", {"Retry-After": "30"})
    waits: list[float] = []
    notifier = SlackNotifier(Secret(webhooks.slack_url), time_left=lambda: 20.0, sleep=waits.append)

    with caplog.at_level(logging.ERROR, logger="addon_watch"):
        summary = deliver(store, {"slack": notifier})

    assert len(webhooks.received) == 1
    assert waits == [] and summary.pending == 1
    assert states(store) == {f"{item.key}|slack": "pending"}
    line = caplog.records[-1].getMessage()
    assert "retry after 30 s" in line and "deferred: throttled" in line


def test_slack_429_without_time_left_raises_with_retry_after(webhooks: WebhookReceiver) -> None:
    webhooks.script("slack", 429, "rate_limited", {"Retry-After": "7"})
    waits: list[float] = []
    notifier = SlackNotifier(Secret(webhooks.slack_url), time_left=lambda: 10.0, sleep=waits.append)

    with pytest.raises(DeliveryError) as caught:
        notifier.send(slack_payload(Message("t", "x")))

    assert caught.value.retry_after == 7.0 and not caught.value.permanent
    assert waits == []


def test_slack_notifier_repr_and_errors_hide_the_webhook(webhooks: WebhookReceiver) -> None:
    webhooks.script("slack", 404, "no_service")
    notifier = SlackNotifier(Secret(webhooks.slack_url))

    with pytest.raises(DeliveryError) as caught:
        notifier.send(slack_payload(Message("t", "x")))

    shown = repr(notifier) + str(caught.value)
    assert SLACK_PATH not in shown and "T00000000" not in shown
    assert caught.value.permanent


def test_slack_25_outcomes_in_one_tick_are_one_message(
    webhooks: WebhookReceiver, store: SqliteStore
) -> None:
    enqueue(store, many(25), ["slack"])

    summary = deliver(store, {"slack": SlackNotifier(Secret(webhooks.slack_url))})

    assert len(webhooks.received) == 1 and summary.sent == 25
    check_limits(webhooks.delivered("slack")[0])


def test_slack_cut_never_splits_an_escaped_character() -> None:
    payload = slack_payload(Message("&amp;" * 100, "&amp;" * 1000, ("success",)))

    check_limits(payload)
    texts = [payload["blocks"][0]["text"]["text"]] + [
        b["text"]["text"] for b in payload["attachments"][0]["blocks"]
    ]
    for text in texts:
        assert text.rstrip("…").replace("&amp;", "") == ""
