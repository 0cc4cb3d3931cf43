"""Settings: validated once, with messages that name the variable and show a valid value."""

from __future__ import annotations

from pathlib import Path

import pytest

from addon_watch.config import load_settings
from addon_watch.errors import ConfigError
from addon_watch.model import Target

DINGTALK = "https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef0123456789abcdef"
SLACK = "https://hooks.slack.com/services/T0000/B0000/abcdefghijklmnopqrstuvwx"
BASE = {
    "WATCH_TARGETS": "c0123456789abcdef/metrics-server, c0123456789abcdef/flexvolume,",
    "ACK_REGION": "cn-hangzhou",
    "DINGTALK_WEBHOOK_URL": DINGTALK,
    "DINGTALK_SECRET": "SEC0123456789abcdef",
    "SLACK_WEBHOOK_URL": SLACK,
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tExampleKeyId",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "ExampleSecret0123456789",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "CAIS-example-sts-token",
    "XDG_DATA_HOME": "/var/lib/example",
}


def test_load_settings_reads_a_full_environment() -> None:
    settings = load_settings(BASE)

    assert settings.targets == (
        Target("c0123456789abcdef", "metrics-server"),
        Target("c0123456789abcdef", "flexvolume"),
    )
    assert settings.ack_endpoint == "https://cs.cn-hangzhou.aliyuncs.com"
    assert settings.channels == ("dingtalk", "slack")
    assert settings.language_for("dingtalk") == "zh"
    assert settings.language_for("slack") == "en"
    assert settings.state_path == Path("/var/lib/example/ack-addon-watch/state.sqlite3")


def test_load_settings_repr_shows_no_secret() -> None:
    text = repr(load_settings(BASE)) + str(load_settings(BASE))

    for name in ("DINGTALK_WEBHOOK_URL", "DINGTALK_SECRET", "SLACK_WEBHOOK_URL"):
        assert BASE[name] not in text
    assert "ExampleSecret0123456789" not in text
    assert "CAIS-example-sts-token" not in text
    assert "0123456789abcdef0123456789abcdef" not in text


def test_load_settings_fc_region_endpoint_and_state_in_fc() -> None:
    env = {k: v for k, v in BASE.items() if k != "ACK_REGION"}
    env.update(
        FC_REGION="cn-shanghai", FC_FUNCTION_NAME="addon-watch", ALLOW_EPHEMERAL_STATE="true"
    )

    settings = load_settings(env)

    assert settings.ack_endpoint == "https://cs.cn-shanghai.aliyuncs.com"
    assert settings.state_path == Path("/tmp/ack-addon-watch/state.sqlite3")
    assert settings.running_in_fc


def test_load_settings_endpoint_override_and_sqlite_path() -> None:
    env = {
        **BASE,
        "ACK_ENDPOINT": "http://127.0.0.1:8080/",
        "STATE_STORE": "sqlite:///srv/watch/state.db",
    }

    settings = load_settings(env)

    assert settings.ack_endpoint == "http://127.0.0.1:8080"
    assert settings.state_path == Path("/srv/watch/state.db")


def test_load_settings_language_forced_for_both_channels() -> None:
    settings = load_settings({**BASE, "NOTIFY_LANGUAGE": "en"})

    assert settings.language_for("dingtalk") == "en"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"WATCH_TARGETS": ""}, "WATCH_TARGETS is not set"),
        ({"WATCH_TARGETS": " , "}, "WATCH_TARGETS lists no target"),
        (
            {"WATCH_TARGETS": "c0123/"},
            "WATCH_TARGETS has 'c0123/', which is not CLUSTER_ID/COMPONENT",
        ),
        ({"WATCH_TARGETS": "metrics-server"}, "which is not CLUSTER_ID/COMPONENT"),
        ({"WATCH_TARGETS": "c1/a b"}, "which is not CLUSTER_ID/COMPONENT"),
        ({"ACK_REGION": ""}, "ACK_REGION is not set"),
        ({"ACK_REGION": "Hangzhou"}, "expected something like 'cn-hangzhou'"),
        (
            {"ACK_ENDPOINT": "cs.cn-hangzhou.aliyuncs.com"},
            "ACK_ENDPOINT is not a valid http(s) URL",
        ),
        ({"ACK_ENDPOINT": "https://host:notaport"}, "ACK_ENDPOINT is not a valid http(s) URL"),
        ({"DINGTALK_WEBHOOK_URL": "", "SLACK_WEBHOOK_URL": ""}, "no channel is configured"),
        ({"DINGTALK_WEBHOOK_URL": ""}, "DINGTALK_SECRET is set but DINGTALK_WEBHOOK_URL is not"),
        (
            {"SLACK_WEBHOOK_URL": "hooks.slack.com/services/x"},
            "SLACK_WEBHOOK_URL is not a valid http(s) URL",
        ),
        ({"ALIBABA_CLOUD_ACCESS_KEY_SECRET": ""}, "ALIBABA_CLOUD_ACCESS_KEY_SECRET is not set"),
        (
            {"ALIBABA_CLOUD_ACCESS_KEY_ID": "", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ""},
            "STS token needs its AccessKey pair",
        ),
        ({"STATE_STORE": "/tmp/state.db"}, "expected sqlite:///ABSOLUTE/PATH"),
        ({"STATE_STORE": "sqlite://"}, "expected sqlite:///ABSOLUTE/PATH"),
        ({"NOTIFY_LANGUAGE": "fr"}, "expected 'zh' or 'en'"),
        ({"NOTIFY_TIMEZONE": "Mars/Olympus"}, "not a known time zone"),
    ],
)
def test_load_settings_bad_value_names_variable(change: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, **change})

    assert message in str(caught.value)
    for secret in (DINGTALK, SLACK, "ExampleSecret0123456789", "CAIS-example-sts-token"):
        assert secret not in str(caught.value)


def test_load_settings_malformed_webhook_message_does_not_echo_it() -> None:
    bad = "https://hooks.slack.com/services/T0/B0/secret part with spaces"

    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "SLACK_WEBHOOK_URL": bad})

    assert "secret part" not in str(caught.value)
