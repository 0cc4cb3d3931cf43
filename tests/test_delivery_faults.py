"""Delivery under hostile answers: garbage Retry-After, endless 429s, late answers, throttling.

The channels are real notifiers posting to the loopback webhook receiver (and
one deliberately broken one), every outbox a real store; waits are recorded by
an injected ``sleep``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from addon_watch.ack import _retry_after as ack_retry_after
from addon_watch.config import load_settings
from addon_watch.credentials import Credentials
from addon_watch.errors import ConfigError, DeliveryError
from addon_watch.handler import handle
from addon_watch.notify import SLACK_MAX_WAIT, DingTalkNotifier, RateWindow, SlackNotifier
from addon_watch.redaction import Secret
from addon_watch.render import Message
from addon_watch.store import SqliteStore
from addon_watch.store.oss import OssStore
from addon_watch.waits import parse_retry_after
from addon_watch.watcher import MAYBE_DELIVERED_REASON
from tests.delivery_helpers import announcement, deliver, enqueue, open_store, states
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.oss import ENDPOINT, REGION, serving
from tests.fakes.ticks import Clock
from tests.fakes.webhooks import DINGTALK_SECRET, SLACK_PATH, WebhookReceiver

# Far below the receiver's scripted delay: the answer comes after the read timeout.
QUICK = (2.0, 0.2)
LATE = 1.0
NOW = 1_800_000_000.0  # Fri, 15 Jan 2027 08:00:00 GMT


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = open_store(tmp_path)
    yield store
    store.close()


class Sleeps:
    """An injected ``sleep`` that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class BrokenNotifier:
    """A channel whose notifier has a bug: every send raises something unexpected."""

    channel = "slack"

    def build(self, message: Message) -> dict[str, Any]:
        return {"text": message.text}

    def send(self, payload: dict[str, Any]) -> None:
        raise RuntimeError("boom")


def slack(
    hooks: WebhookReceiver,
    sleeps: Sleeps | None = None,
    *,
    time_left: Callable[[], float] | None = None,
    timeouts: tuple[float, float] = (5.0, 10.0),
) -> SlackNotifier:
    return SlackNotifier(
        Secret(hooks.slack_url), sleep=sleeps or Sleeps(), time_left=time_left, timeouts=timeouts
    )


def fresh_dingtalk(hooks: WebhookReceiver) -> DingTalkNotifier:
    """The robot's notifier as a newly started process builds it: its own rate window."""
    return DingTalkNotifier(
        Secret(hooks.dingtalk_url), Secret(DINGTALK_SECRET), window=RateWindow()
    )


def posts(hooks: WebhookReceiver, channel: str) -> int:
    return sum(1 for item in hooks.received if item.channel == channel)


def throttle_slack(hooks: WebhookReceiver, retry_after: str, times: int = 3) -> None:
    for _ in range(times):
        hooks.script("slack", 429, "rate_limited", {"Retry-After": retry_after})


# --- Retry-After, parsed robustly ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2.5", 2.5),
        ("120", 120.0),
        ("0", 1.0),
        ("-5", 1.0),
        ("nan", 7.0),
        ("inf", 7.0),
        ("-inf", 7.0),
        ("1e12", 3600.0),
        ("soon", 7.0),
        ("", 7.0),
        (None, 7.0),
        ("Fri, 15 Jan 2027 08:01:30 GMT", 90.0),
        ("Fri, 15 Jan 2027 07:00:00 GMT", 1.0),
        ("Fri, 45 Foo 2027 08:01:30 GMT", 7.0),
    ],
)
def test_parse_retry_after_any_header_gives_a_finite_clamped_wait(
    value: str | None, expected: float
) -> None:
    assert parse_retry_after(value, default=7.0, now=lambda: NOW) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-acs-retry-after": "1500"}, 1.5),
        ({"x-acs-retry-after": "nan"}, None),
        ({"x-acs-retry-after": "inf"}, None),
        ({"x-acs-retry-after": "1e12"}, 3600.0),
        ({"x-acs-retry-after": "-inf", "retry-after": "2"}, 2.0),
        ({"retry-after": "-3"}, None),
        ({}, None),
    ],
)
def test_ack_retry_after_garbage_is_no_wait_and_long_is_an_hour(
    headers: dict[str, str], expected: float | None
) -> None:
    assert ack_retry_after(headers) == expected


# --- one channel's failure never stops the others ------------------------------


@pytest.mark.parametrize("retry_after", ["nan", "inf", "1e12", "-inf", "garbage"])
def test_slack_429_with_garbage_retry_after_defers_slack_and_still_delivers_dingtalk(
    webhooks: WebhookReceiver, store: SqliteStore, retry_after: str
) -> None:
    enqueue(store, [announcement()], ["slack", "dingtalk"])
    throttle_slack(webhooks, retry_after)

    summary = deliver(store, {"slack": slack(webhooks), "dingtalk": fresh_dingtalk(webhooks)})

    assert len(webhooks.delivered("dingtalk")) == 1
    assert (summary.sent, summary.pending, summary.failed) == (1, 1, 0)
    assert [e for e in summary.errors if e.startswith("slack: Slack answered HTTP 429")]
    assert sorted(states(store).values()) == ["pending", "sent"]


def test_notifier_raising_unexpectedly_fails_its_own_messages_only(
    webhooks: WebhookReceiver, store: SqliteStore
) -> None:
    enqueue(store, [announcement()], ["slack", "dingtalk"])

    summary = deliver(store, {"slack": BrokenNotifier(), "dingtalk": fresh_dingtalk(webhooks)})

    assert len(webhooks.delivered("dingtalk")) == 1
    assert (summary.sent, summary.pending) == (1, 1)
    assert summary.errors == ["slack: sending failed with an unexpected RuntimeError: boom"]
    key = f"{announcement().key}|slack"
    assert states(store)[key] == "pending"


# --- Slack 429: a bounded number of waits, within the invocation ---------------


@pytest.mark.parametrize("retry_after", ["0", "-1", "0.0001"])
def test_slack_429_with_zero_retry_after_asks_three_times_waiting_a_second(
    webhooks: WebhookReceiver, retry_after: str
) -> None:
    throttle_slack(webhooks, retry_after, times=10)
    sleeps = Sleeps()

    with pytest.raises(DeliveryError) as raised:
        slack(webhooks, sleeps).send({"text": "hello"})

    assert posts(webhooks, "slack") == 3
    assert sleeps.waits == [1.0, 1.0]
    assert raised.value.retry_after == 1.0 and not raised.value.permanent


def test_slack_429_waits_at_most_the_slack_budget_in_all(webhooks: WebhookReceiver) -> None:
    throttle_slack(webhooks, "20")
    sleeps = Sleeps()

    with pytest.raises(DeliveryError) as raised:
        slack(webhooks, sleeps).send({"text": "hello"})

    assert posts(webhooks, "slack") == 2
    assert sleeps.waits == [20.0] and sum(sleeps.waits) <= SLACK_MAX_WAIT
    assert "deferred" in str(raised.value)


def test_slack_429_is_not_waited_out_past_the_invocation_deadline(
    webhooks: WebhookReceiver,
) -> None:
    throttle_slack(webhooks, "10", times=1)
    sleeps = Sleeps()

    with pytest.raises(DeliveryError):
        slack(webhooks, sleeps, time_left=lambda: 20.0).send({"text": "hello"})

    assert (posts(webhooks, "slack"), sleeps.waits) == (1, [])


def test_handler_gives_slack_the_invocation_deadline(
    simulator: AckSimulator, webhooks: WebhookReceiver, tmp_path: Path
) -> None:
    simulator.add_addon("c0123456789abcdef", "metrics-server")
    path = tmp_path / "state.sqlite3"
    store = SqliteStore(path)
    enqueue(store, [announcement()], ["slack"])
    store.close()
    throttle_slack(webhooks, "2", times=1)
    env = {
        "WATCH_TARGETS": "c0123456789abcdef/metrics-server",
        "ACK_ENDPOINT": simulator.endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": simulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": simulator.access_key_secret,
        "SLACK_WEBHOOK_URL": webhooks.slack_url,
        "STATE_STORE": f"sqlite://{path}",
        # Leaves the run about 8 s: too little to wait 2 s and send again within it.
        "FUNCTION_TIMEOUT": "20",
    }

    summary = handle(b"", None, environ=env)

    assert posts(webhooks, "slack") == 1
    assert (summary["sent"], summary["pending"]) == (0, 1)


# --- a late answer: sent again once at most --------------------------------------


def test_webhook_answering_after_the_read_timeout_gets_one_more_attempt_then_is_given_up(
    webhooks: WebhookReceiver, any_store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = any_store
    enqueue(store, [announcement()], ["slack"])
    clock = Clock()
    summaries = []
    for minutes in (0, 2, 10):
        clock.advance(minutes=minutes)
        webhooks.delay("slack", LATE)
        notifiers = {"slack": slack(webhooks, timeouts=QUICK)}
        summaries.append(deliver(store, notifiers, clock=clock))
    first, second, third = summaries

    # Each attempt reached the webhook: one duplicate, never a third copy.
    assert len(webhooks.delivered("slack")) == 2
    assert (first.pending, first.failed) == (1, 0)
    assert "it may have arrived" in first.errors[0]
    assert (second.pending, second.failed) == (0, 1)
    assert second.given_up[0]["reason"].startswith(MAYBE_DELIVERED_REASON)
    assert (third.sent, third.pending, third.failed) == (0, 0, 0)
    assert store.pending().items == []
    assert any(MAYBE_DELIVERED_REASON in r.getMessage() for r in caplog.records)


def test_connection_dropped_after_sending_is_ambiguous_and_refused_is_not(
    webhooks: WebhookReceiver,
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def drop_after_reading() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)

        threading.Thread(target=drop_after_reading, daemon=True).start()
        dropped = SlackNotifier(Secret(f"http://127.0.0.1:{port}{SLACK_PATH}"))
        with pytest.raises(DeliveryError) as after_sending:
            dropped.send({"text": "hello"})
    # The listener is closed now: nothing accepts on that port.
    refused = SlackNotifier(Secret(f"http://127.0.0.1:{port}{SLACK_PATH}"))
    with pytest.raises(DeliveryError) as before_sending:
        refused.send({"text": "hello"})
    webhooks.delay("slack", LATE)
    with pytest.raises(DeliveryError) as read_timeout:
        slack(webhooks, timeouts=QUICK).send({"text": "hello"})

    assert after_sending.value.ambiguous and read_timeout.value.ambiguous
    assert not before_sending.value.ambiguous
    assert "could not be reached (ConnectionError)" in str(before_sending.value)
    assert "ReadTimeout" in str(read_timeout.value)


# --- a throttled robot is held for every run ---------------------------------------


@pytest.fixture(params=["sqlite", "oss"])
def any_store(
    request: pytest.FixtureRequest, webhooks: WebhookReceiver, tmp_path: Path
) -> Iterator[SqliteStore | OssStore]:
    if request.param == "sqlite":
        sqlite = open_store(tmp_path)
        yield sqlite
        sqlite.close()
        return
    with serving(webhooks.base_url) as bucket:
        yield OssStore.connect(
            endpoint=ENDPOINT,
            region=REGION,
            bucket=bucket.bucket,
            prefix="holds-test",
            credentials=lambda: Credentials("oss-test-key-id", Secret("oss-test-secret-0123")),
        )


def test_dingtalk_130101_holds_the_robot_for_a_new_process_too(
    webhooks: WebhookReceiver, any_store: SqliteStore
) -> None:
    clock = Clock()
    enqueue(any_store, [announcement()], ["dingtalk"])
    webhooks.script("dingtalk", 200, {"errcode": 130101, "errmsg": "send too fast"})
    deliver(any_store, {"dingtalk": fresh_dingtalk(webhooks)}, clock=clock)

    # Seconds later a new process, with no memory of the throttling, has a new outcome.
    clock.advance(seconds=20)
    enqueue(any_store, [announcement("flexvolume")], ["dingtalk"])
    held = deliver(any_store, {"dingtalk": fresh_dingtalk(webhooks)}, clock=clock)
    clock.advance(minutes=10)
    after = deliver(any_store, {"dingtalk": fresh_dingtalk(webhooks)}, clock=clock)

    assert (held.sent, held.pending, held.errors) == (0, 2, [])
    assert after.sent == 2
    # The first refused message, then one message with both after the hold.
    assert (posts(webhooks, "dingtalk"), len(webhooks.delivered("dingtalk"))) == (2, 1)


def test_slack_429_holds_the_channel_for_new_messages_until_retry_after(
    webhooks: WebhookReceiver, store: SqliteStore
) -> None:
    clock = Clock()
    enqueue(store, [announcement()], ["slack"])
    throttle_slack(webhooks, "1800", times=1)
    deliver(store, {"slack": slack(webhooks)}, clock=clock)

    clock.advance(minutes=5)
    enqueue(store, [announcement("flexvolume")], ["slack"])
    held = deliver(store, {"slack": slack(webhooks)}, clock=clock)
    clock.advance(minutes=26)
    after = deliver(store, {"slack": slack(webhooks)}, clock=clock)

    assert (held.sent, held.pending) == (0, 2)
    assert after.sent == 2 and len(webhooks.delivered("slack")) == 1


# --- a lease must outlast a send and a run ------------------------------------------


def lease_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "WATCH_TARGETS": "c0123456789abcdef/metrics-server",
        "ACK_REGION": "cn-hangzhou",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x",
        "STATE_STORE": f"sqlite://{tmp_path / 'state.sqlite3'}",
        **extra,
    }


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"DELIVERY_LEASE": "1s"}, "DELIVERY_LEASE is '1s', shorter than the time one delivery"),
        ({"DELIVERY_LEASE": "59"}, "set it to at least '120s'"),
        (
            {"DELIVERY_LEASE": "5m", "FUNCTION_TIMEOUT": "600"},
            "shorter than FUNCTION_TIMEOUT (600 s)",
        ),
        ({"DELIVERY_LEASE": "5m", "FUNCTION_TIMEOUT": "600"}, "at least '600s'"),
    ],
)
def test_delivery_lease_shorter_than_a_send_or_the_function_is_refused(
    tmp_path: Path, extra: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(lease_env(tmp_path, **extra))

    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("extra", "lease"),
    [
        ({"DELIVERY_LEASE": "2m"}, timedelta(minutes=2)),
        ({"DELIVERY_LEASE": "10m", "FUNCTION_TIMEOUT": "600"}, timedelta(minutes=10)),
        ({"FUNCTION_TIMEOUT": "120"}, timedelta(minutes=10)),
        # Unset, the lease stretches to a function that may run longer than its default.
        ({"FUNCTION_TIMEOUT": "900"}, timedelta(minutes=15)),
    ],
)
def test_delivery_lease_long_enough_is_accepted(
    tmp_path: Path, extra: dict[str, str], lease: timedelta
) -> None:
    assert load_settings(lease_env(tmp_path, **extra)).delivery_lease == lease
