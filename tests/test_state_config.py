"""Choosing the state store: SQLite, OSS, and what Function Compute allows."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from addon_watch.config import OssLocation, load_settings
from addon_watch.errors import ConfigError
from addon_watch.handler import handle
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.ticks import environment
from tests.fakes.webhooks import WebhookReceiver

BASE = {
    "WATCH_TARGETS": "c0123456789abcdef/metrics-server",
    "ACK_REGION": "cn-hangzhou",
    "SLACK_WEBHOOK_URL": "https://hooks.example.invalid/services/T0/B0/x",
}
IN_FC = {**BASE, "FC_FUNCTION_NAME": "ack-addon-watch", "FC_REGION": "cn-hangzhou"}


def test_state_store_in_fc_without_setting_refuses_and_names_oss() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(IN_FC)

    message = str(raised.value)
    assert "/tmp/ack-addon-watch/state.sqlite3" in message
    assert "set STATE_STORE=oss://BUCKET/PREFIX" in message
    assert "ALLOW_EPHEMERAL_STATE=true" in message


def test_state_store_in_fc_sqlite_under_tmp_refused_unless_allowed() -> None:
    env = {**IN_FC, "STATE_STORE": "sqlite:///tmp/state.sqlite3"}
    with pytest.raises(ConfigError, match="discards with the instance"):
        load_settings(env)

    allowed = load_settings({**env, "ALLOW_EPHEMERAL_STATE": "true"})

    assert (allowed.state_path, allowed.oss_store) == (Path("/tmp/state.sqlite3"), None)
    assert allowed.allow_ephemeral_state


def test_state_store_in_fc_oss_uses_the_internal_endpoint_of_the_function_region() -> None:
    env = {**IN_FC, "ACK_REGION": "cn-beijing", "STATE_STORE": "oss://watch-state/ack/prod/"}

    settings = load_settings(env)

    assert settings.state_path is None
    assert settings.oss_store == OssLocation(
        "watch-state", "ack/prod", "https://oss-cn-hangzhou-internal.aliyuncs.com", "cn-hangzhou"
    )
    assert settings.ack_endpoint == "https://cs.cn-beijing.aliyuncs.com"


@pytest.mark.parametrize(
    ("extra", "endpoint", "region"),
    [
        ({}, "https://oss-cn-hangzhou.aliyuncs.com", "cn-hangzhou"),
        (
            {"OSS_ENDPOINT": "https://oss-cn-shanghai-internal.aliyuncs.com"},
            "https://oss-cn-shanghai-internal.aliyuncs.com",
            "cn-shanghai",
        ),
        (
            {"OSS_ENDPOINT": "http://127.0.0.1:9000"},
            "http://127.0.0.1:9000",
            "cn-hangzhou",
        ),
    ],
    ids=["public-outside-fc", "override-names-region", "override-keeps-ack-region"],
)
def test_state_store_oss_endpoint_outside_fc(
    extra: dict[str, str], endpoint: str, region: str
) -> None:
    settings = load_settings({**BASE, "STATE_STORE": "oss://watch-state", **extra})

    assert settings.oss_store == OssLocation("watch-state", "", endpoint, region)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("STATE_STORE", "oss://Bad_Bucket/x", "bucket name is not valid"),
        ("STATE_STORE", "s3://bucket/x", "expected sqlite:///ABSOLUTE/PATH"),
        ("OSS_ENDPOINT", "oss-cn-hangzhou.aliyuncs.com", "OSS_ENDPOINT is not a valid http(s) URL"),
        ("ALLOW_EPHEMERAL_STATE", "maybe", "expected 'true' or 'false'"),
        ("DELIVERY_MAX_AGE", "a day", "DELIVERY_MAX_AGE is 'a day'; expected a positive duration"),
        ("DELIVERY_LEASE", "0", "DELIVERY_LEASE is '0'; expected a positive duration"),
    ],
)
def test_state_store_settings_malformed_name_the_variable(
    name: str, value: str, expected: str
) -> None:
    env = {**BASE, "STATE_STORE": "oss://watch-state/x", name: value}
    with pytest.raises(ConfigError) as raised:
        load_settings(env)

    assert expected in str(raised.value)


def test_state_store_delivery_durations_parse_units() -> None:
    settings = load_settings({**BASE, "DELIVERY_MAX_AGE": "2d", "DELIVERY_LEASE": "150"})
    default = load_settings(BASE)

    assert (settings.delivery_max_age, settings.delivery_lease) == (
        timedelta(days=2),
        timedelta(seconds=150),
    )
    assert (default.delivery_max_age, default.delivery_lease) == (
        timedelta(hours=24),
        timedelta(minutes=10),
    )


def test_state_store_ephemeral_allowed_warns_on_every_run(
    simulator: AckSimulator,
    webhooks: WebhookReceiver,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert tmp_path.is_relative_to("/tmp"), "pytest's tmp_path stands in for FC's /tmp"
    simulator.add_addon("c0123456789abcdef", "metrics-server")
    env = {
        **environment(simulator, webhooks, f"sqlite://{tmp_path / 'state.sqlite3'}"),
        "WATCH_TARGETS": "c0123456789abcdef/metrics-server",
        "FC_FUNCTION_NAME": "ack-addon-watch",
        "ALLOW_EPHEMERAL_STATE": "true",
    }

    handle(b"", None, environ=env)
    handle(b"", None, environ=env)

    warnings = [r.getMessage() for r in caplog.records if "EPHEMERAL STATE" in r.getMessage()]
    assert len(warnings) == 2
    assert "set STATE_STORE=oss://BUCKET/PREFIX for durable state" in warnings[0]
