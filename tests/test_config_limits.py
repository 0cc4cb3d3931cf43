"""Settings at their limits: durations too long, relative paths, missing directories, case."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from addon_watch.config import load_settings
from addon_watch.errors import ConfigError
from addon_watch.handler import handle
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import WebhookReceiver
from tests.invocation import environment, watch

BASE = {
    "WATCH_TARGETS": "c0123456789abcdef/metrics-server",
    "ACK_REGION": "cn-hangzhou",
    "SLACK_WEBHOOK_URL": "https://127.0.0.1:1/services/T0/B0/limits",
}
TIMER = {"triggerTime": "2026-01-02T03:05:00Z", "triggerName": "every-5m", "payload": ""}


@pytest.mark.parametrize(
    ("name", "value", "most"),
    [
        ("DELIVERY_MAX_AGE", "99999999999d", "30d"),
        ("DELIVERY_MAX_AGE", "31d", "30d"),
        ("DELIVERY_MAX_AGE", "9" * 5000, "30d"),
        ("DELIVERY_LEASE", "3000000d", "1d"),
        ("DELIVERY_LEASE", "25h", "1d"),
        ("NOTIFY_STUCK_AFTER", "99999999999999999999d", "30d"),
        ("NOTIFY_STUCK_AFTER", "744h", "30d"),
    ],
)
def test_load_settings_duration_too_long_names_variable_and_limit(
    name: str, value: str, most: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, name: value})

    message = str(caught.value)
    assert message.startswith(f"{name} is ")
    assert f"at most {most}" in message and "e.g." in message


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("DELIVERY_MAX_AGE", "30d", "delivery_max_age", timedelta(days=30)),
        ("DELIVERY_LEASE", "1d", "delivery_lease", timedelta(days=1)),
        ("DELIVERY_LEASE", "86400", "delivery_lease", timedelta(days=1)),
    ],
)
def test_load_settings_duration_at_its_limit_accepted(
    name: str, value: str, field: str, expected: timedelta
) -> None:
    assert getattr(load_settings({**BASE, name: value}), field) == expected


def test_load_settings_stuck_after_at_its_limit_accepted() -> None:
    settings = load_settings({**BASE, "NOTIFY_STUCK_AFTER": "720h"})

    assert settings.notices.stuck_after == timedelta(days=30)


def test_handle_duration_overflow_is_a_config_error_naming_the_variable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ConfigError) as caught:
        handle(json.dumps(TIMER).encode(), None, environ={**BASE, "DELIVERY_MAX_AGE": "9" * 12})

    assert "DELIVERY_MAX_AGE" in str(caught.value)
    assert "unexpected" not in caplog.text and "OverflowError" not in caplog.text


@pytest.mark.parametrize(
    "value", ["sqlite://relative/path.db", "sqlite://./state.db", "sqlite://~/state.db"]
)
def test_load_settings_relative_sqlite_path_refused(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "STATE_STORE": value})

    message = str(caught.value)
    assert message.startswith(f"STATE_STORE is {value!r}") and "relative" in message
    assert "sqlite:///var/lib/ack-addon-watch/state.sqlite3" in message


def test_load_settings_absolute_sqlite_path_accepted(tmp_path: Path) -> None:
    settings = load_settings({**BASE, "STATE_STORE": f"sqlite://{tmp_path}/state.db"})

    assert settings.state_path == tmp_path / "state.db"


@pytest.mark.parametrize("what", ["missing", "file"])
def test_load_settings_templates_dir_not_a_directory_refused(tmp_path: Path, what: str) -> None:
    path = tmp_path / "templates"
    if what == "file":
        path.write_text("not a directory")

    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "TEMPLATES_DIR": str(path)})

    message = str(caught.value)
    assert message.startswith(f"TEMPLATES_DIR is {str(path)!r}")
    assert "dingtalk.zh.j2" in message


def test_load_settings_templates_dir_directory_accepted(tmp_path: Path) -> None:
    assert load_settings({**BASE, "TEMPLATES_DIR": str(tmp_path)}).templates_dir == tmp_path


@pytest.mark.parametrize(("value", "expected"), [("EN", "en"), ("Zh", "zh"), ("en", "en")])
def test_load_settings_notify_language_any_case(value: str, expected: str) -> None:
    assert load_settings({**BASE, "NOTIFY_LANGUAGE": value}).notify_language == expected


def test_load_settings_notify_language_unknown_refused() -> None:
    with pytest.raises(ConfigError, match="NOTIFY_LANGUAGE is 'fr'; expected 'zh' or 'en'"):
        load_settings({**BASE, "NOTIFY_LANGUAGE": "fr"})


def test_handle_timer_payload_null_checks_every_target(
    simulator: AckSimulator,
    webhooks: WebhookReceiver,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch(simulator)
    caplog.set_level(logging.INFO)
    event = {**TIMER, "payload": None}

    summary = handle(
        json.dumps(event).encode(), None, environ=environment(simulator, webhooks, tmp_path)
    )

    assert (summary["targets"], summary["checked"], summary["errors"]) == (2, 2, [])
    assert "NoneType" not in caplog.text


def test_relative_xdg_data_home_is_ignored() -> None:
    from addon_watch.config import default_state_path

    path = default_state_path({"XDG_DATA_HOME": "relative/dir"}, running_in_fc=False)

    assert path.is_absolute()
    assert "relative" not in str(path)
