"""End to end: the FC handler against the loopback ACK simulator and webhook receiver."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from addon_watch.errors import ConfigError, EventError, StateStoreError
from addon_watch.handler import SUMMARY_EVENT, handle, parse_event
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import DINGTALK_SECRET, DINGTALK_TOKEN, SLACK_PATH, WebhookReceiver

DATA = Path(__file__).parent / "data"
CLUSTER = "c0123456789abcdef"
TIMER = (DATA / "timer_event.json").read_bytes()


@pytest.fixture
def env(simulator: AckSimulator, webhooks: WebhookReceiver, tmp_path: Path) -> dict[str, str]:
    simulator.add_addon(CLUSTER, "metrics-server", "v0.3.9.4")
    simulator.start_task(CLUSTER, "metrics-server", "2026-01-02T03:00:00Z")
    simulator.add_addon(CLUSTER, "flexvolume", "v1.30.1")
    return {
        "WATCH_TARGETS": f"{CLUSTER}/metrics-server,{CLUSTER}/flexvolume",
        "ACK_ENDPOINT": simulator.endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": simulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": simulator.access_key_secret,
        "DINGTALK_WEBHOOK_URL": webhooks.dingtalk_url,
        "DINGTALK_SECRET": DINGTALK_SECRET,
        "SLACK_WEBHOOK_URL": webhooks.slack_url,
        "STATE_STORE": f"sqlite://{tmp_path / 'state.sqlite3'}",
    }


def summary_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    lines = [r.getMessage() for r in caplog.records if SUMMARY_EVENT in r.getMessage()]
    return [json.loads(line) for line in lines]


def test_handler_announces_finished_upgrade_once_on_both_channels(
    simulator: AckSimulator, webhooks: WebhookReceiver, env: dict[str, str]
) -> None:
    first = handle(TIMER, None, environ=env)
    simulator.finish_task(
        CLUSTER, "metrics-server", "Success", "2026-01-02T03:06:30Z", version="v0.3.9.7"
    )
    second = handle(TIMER, None, environ=env)
    third = handle(TIMER, None, environ=env)

    assert (first["changes"], first["sent"]) == (0, 0)
    assert (second["changes"], second["sent"], second["failed"], second["pending"]) == (1, 2, 0, 0)
    assert (third["changes"], third["sent"]) == (0, 0)
    assert webhooks.delivered("dingtalk") == [
        {
            "msgtype": "markdown",
            "markdown": {
                "title": "✅ 升级成功：metrics-server（c0123456789abcdef）",
                "text": "### ✅ 升级成功：metrics-server\n\n"
                "**集群**：cluster-c0123456（c0123456789abcdef）\n\n"
                "**组件**：metrics-server\n\n"
                "**版本**：v0.3.9.7\n\n"
                "**结果**：✅ 升级成功（Success）\n\n"
                "**开始时间**：2026-01-02 03:00:00 UTC\n\n"
                "**结束时间**：2026-01-02 03:06:30 UTC\n\n"
                "**耗时**：6分30秒\n\n"
                "[在 ACK 控制台查看集群](https://cs.console.aliyun.com/#/k8s/cluster/"
                "c0123456789abcdef/v2/info/overview)",
            },
            "at": {"atMobiles": [], "atUserIds": [], "isAtAll": False},
        }
    ]
    slack = webhooks.delivered("slack")
    assert [p["text"] for p in slack] == [
        ":white_check_mark: Upgrade succeeded: metrics-server in c0123456789abcdef"
    ]
    assert "*Duration:* 6m 30s" in slack[0]["attachments"][0]["blocks"][0]["text"]["text"]
    assert all(call.status == 200 for call in simulator.calls)


def test_handler_failed_and_canceled_are_announced(
    simulator: AckSimulator, webhooks: WebhookReceiver, env: dict[str, str]
) -> None:
    simulator.start_task(CLUSTER, "flexvolume", "2026-01-02T03:01:00Z")
    handle(TIMER, None, environ=env)
    simulator.finish_task(CLUSTER, "metrics-server", "Failed", "2026-01-02T03:05:00Z")
    simulator.finish_task(
        CLUSTER, "flexvolume", "Running", "0001-01-01T00:00:00Z", is_canceled=True
    )

    summary = handle(TIMER, None, environ=env)

    # Both outcomes of the tick go to each channel as one grouped message.
    assert summary["sent"] == 4
    (slack,) = webhooks.delivered("slack")
    assert slack["text"] == "2 addon upgrades ended: 0 succeeded, 1 failed, 1 canceled"
    body = slack["attachments"][0]["blocks"][0]["text"]["text"]
    assert ":x: *metrics-server*" in body and ":black_square_for_stop: *flexvolume*" in body


def test_handler_one_channel_failing_does_not_stop_the_other(
    simulator: AckSimulator, webhooks: WebhookReceiver, env: dict[str, str]
) -> None:
    handle(TIMER, None, environ=env)
    simulator.finish_task(CLUSTER, "metrics-server", "Success", "2026-01-02T03:06:30Z")
    webhooks.script("dingtalk", 200, {"errcode": 130101, "errmsg": "send too fast"})

    failing = handle(TIMER, None, environ=env)
    backing_off = handle(TIMER, None, environ=env)

    assert (failing["sent"], failing["pending"]) == (1, 1)
    assert "errcode 130101" in failing["errors"][0]
    # Throttled: the retry waits out its backoff instead of hammering the robot.
    assert (backing_off["sent"], backing_off["pending"]) == (0, 1)
    assert len(webhooks.delivered("dingtalk")) == 0
    assert len(webhooks.delivered("slack")) == 1


def test_handler_permanent_slack_error_is_given_up_not_retried(
    simulator: AckSimulator, webhooks: WebhookReceiver, env: dict[str, str]
) -> None:
    handle(TIMER, None, environ=env)
    simulator.finish_task(CLUSTER, "metrics-server", "Success", "2026-01-02T03:06:30Z")
    webhooks.script("slack", 404, "no_service")

    first = handle(TIMER, None, environ=env)
    second = handle(TIMER, None, environ=env)

    assert (first["sent"], first["failed"], first["pending"]) == (1, 1, 0)
    assert "no_service" in first["errors"][0]
    assert (second["sent"], second["failed"]) == (0, 0)
    assert len([r for r in webhooks.received if r.channel == "slack"]) == 1


def test_handler_api_error_for_one_cluster_spares_the_others(
    simulator: AckSimulator, webhooks: WebhookReceiver, env: dict[str, str]
) -> None:
    env["WATCH_TARGETS"] += ",cdeadbeef000000/metrics-server"

    summary = handle(TIMER, None, environ=env)

    assert (summary["targets"], summary["checked"]) == (3, 2)
    assert len(summary["errors"]) == 1
    assert "ErrorClusterNotFound" in summary["errors"][0]
    assert "cdeadbeef000000" in summary["errors"][0]


def test_handler_logs_one_summary_line_without_secrets(
    simulator: AckSimulator,
    webhooks: WebhookReceiver,
    env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    handle(TIMER, None, environ=env)
    simulator.finish_task(CLUSTER, "metrics-server", "Success", "2026-01-02T03:06:30Z")
    webhooks.script("slack", 500, f"rollup_error {webhooks.slack_url}")
    caplog.clear()

    handle(TIMER, None, environ=env)

    lines = summary_lines(caplog)
    assert len(lines) == 1
    assert {
        k: lines[0][k] for k in ("trigger", "targets", "checked", "changes", "sent", "pending")
    } == {
        "trigger": "timer",
        "targets": 2,
        "checked": 2,
        "changes": 1,
        "sent": 1,
        "pending": 1,
    }
    everything = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for secret in (DINGTALK_TOKEN, DINGTALK_SECRET, SLACK_PATH, simulator.access_key_secret):
        assert secret not in everything


def test_handler_config_error_stops_before_any_call(
    simulator: AckSimulator, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    env["WATCH_TARGETS"] = "not-a-target"

    with pytest.raises(ConfigError) as caught:
        handle(TIMER, None, environ=env)

    assert "WATCH_TARGETS" in str(caught.value)
    assert simulator.calls == []
    assert "ConfigError: WATCH_TARGETS" in str(summary_lines(caplog)[0]["error"])


def test_handler_unwritable_store_fails_loudly(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env["STATE_STORE"] = f"sqlite://{blocker}/state.sqlite3"

    with pytest.raises(StateStoreError) as caught:
        handle(TIMER, None, environ=env)

    assert "check STATE_STORE" in str(caught.value)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (b"{not json", "the event is not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "the event is a JSON list"),
    ],
)
def test_handler_broken_event_is_a_clear_error(
    event: bytes, message: str, env: dict[str, str]
) -> None:
    with pytest.raises(EventError) as caught:
        handle(event, None, environ=env)

    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("event", "trigger"),
    [(b"", "manual"), (b"{}", "manual"), (TIMER, "timer"), (None, "manual")],
)
def test_parse_event_kinds(event: bytes | None, trigger: str) -> None:
    assert parse_event(event)[0] == trigger


def test_handler_http_event_without_token_configured_fails_closed(env: dict[str, str]) -> None:
    event = {"version": "v1", "rawPath": "/check", "requestContext": {"http": {"method": "POST"}}}

    response = handle(json.dumps(event).encode(), None, environ=env)

    assert response["statusCode"] == 401
