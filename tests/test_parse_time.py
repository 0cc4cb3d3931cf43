"""ACK timestamps read the same on every Python: the project's own parser, not fromisoformat."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from addon_watch.ack import parse_time, parse_upgrade_status
from addon_watch.handler import handle
from addon_watch.model import Target
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import WebhookReceiver
from tests.invocation import CLUSTER, environment

UTC = timezone.utc
AT = datetime(2026, 1, 2, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Separator, seconds and fraction.
        ("2026-01-02T02:00:00Z", AT),
        ("2026-01-02 02:00:00Z", AT),
        ("2026-01-02T02:00Z", AT),
        ("2026-01-02t02:00:00z", AT),
        ("  2026-01-02T02:00:00Z  ", AT),
        ("2026-01-02T02:00:00.1Z", AT + timedelta(microseconds=100000)),
        ("2026-01-02T02:00:00.12Z", AT + timedelta(microseconds=120000)),
        ("2026-01-02T02:00:00.123Z", AT + timedelta(microseconds=123000)),
        ("2026-01-02T02:00:00.1234Z", AT + timedelta(microseconds=123400)),
        ("2026-01-02T02:00:00.12345Z", AT + timedelta(microseconds=123450)),
        ("2026-01-02T02:00:00.123456Z", AT + timedelta(microseconds=123456)),
        ("2026-01-02T02:00:00.123456789Z", AT + timedelta(microseconds=123456)),
        # Zones; none means UTC.
        ("2026-01-02T02:00:00", AT),
        ("2026-01-02T10:00:00+08:00", AT),
        ("2026-01-02T10:00:00+0800", AT),
        ("2026-01-02T10:00:00+08", AT),
        ("2026-01-01T20:30:00-05:30", AT),
        ("2026-01-01T20:30:00-0530", AT),
        ("2026-01-02T02:00:00+00:00", AT),
        ("2026-01-02T10:00:00.5+0800", AT + timedelta(microseconds=500000)),
        # Compact form.
        ("20260102T020000Z", AT),
        ("20260102T100000+0800", AT),
        ("20260102T020000", AT),
        # Unix epoch as a JSON number: seconds, or milliseconds past 1e11.
        (1767319200, AT),
        (1767319200.25, AT + timedelta(microseconds=250000)),
        (1767319200000, AT),
        (1767319200123, AT + timedelta(microseconds=123000)),
        # Not set.
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        ("   ", None),
        (None, None),
        (0, None),
        # Unreadable.
        ("yesterday", None),
        ("2026-13-02T02:00:00Z", None),
        ("2026-01-32T02:00:00Z", None),
        ("2026-01-02T24:00:00Z", None),
        ("2026-01-02T02:00:00+24:00", None),
        ("2026-01-02T02:00:00.1234567890Z", None),
        ("2026-01-02T02:00:00ZZ", None),
        ("2026-01-02", None),
        ("1767319200", None),
        (True, None),
        (float("nan"), None),
        (float("inf"), None),
        (10**30, None),
        (10**400, None),
        (-5, None),
        ({"at": "2026-01-02T02:00:00Z"}, None),
    ],
)
def test_parse_time_table(value: object, expected: datetime | None) -> None:
    moment = parse_time(value)

    assert moment == expected
    assert moment is None or moment.tzinfo is not None


def test_parse_time_unreadable_logged_once_truncated(caplog: pytest.LogCaptureFixture) -> None:
    # Not letters: the fakes' secrets are masked in any case, and "xxxx…" is one of them.
    value = "not a time " + "~" * 500

    with caplog.at_level(logging.WARNING, logger="addon_watch.ack"):
        first, second = parse_time(value), parse_time(value)

    assert first is None and second is None
    (message,) = [r.getMessage() for r in caplog.records if "unreadable timestamp" in r.message]
    assert "not a time ~~~" in message and "~" * 100 not in message


@pytest.mark.parametrize("created", [0, float("nan"), -1])
def test_parse_upgrade_status_unset_number_falls_back_to_end_time(created: object) -> None:
    body = {
        "metrics-server": {
            "tasks": {"status": "Failed", "created_at": created, "finished_at": 1767319200},
        }
    }

    task = parse_upgrade_status(Target("c1", "metrics-server"), body).task

    assert task is not None and task.task_id == "finished:2026-01-02T02:00:00Z"


@pytest.mark.parametrize(
    "created",
    ["2026-01-02T02:00:00.12Z", "2026-01-02T10:00:00+0800", "20260102T020000Z", 1767319200000],
)
def test_parse_upgrade_status_other_time_forms_same_task_id(created: object) -> None:
    target = Target("c1", "metrics-server")
    body = {
        "metrics-server": {
            "addon_info": {"version": "v1"},
            "tasks": {"status": "Running", "created_at": created, "finished_at": ""},
        }
    }

    task = parse_upgrade_status(target, body).task

    assert task is not None and task.task_id == "2026-01-02T02:00:00Z"
    assert task.created_at is not None
    assert task.created_at.replace(microsecond=0) == datetime(2026, 1, 2, 2, 0, tzinfo=UTC)


def test_check_created_at_in_3_10_unreadable_forms_one_delivery(
    simulator: AckSimulator, webhooks: WebhookReceiver, tmp_path: Path
) -> None:
    simulator.add_addon(CLUSTER, "metrics-server", "v1")
    env = {
        **environment(simulator, webhooks, tmp_path),
        "WATCH_TARGETS": f"{CLUSTER}/metrics-server",
    }
    event = {"triggerTime": "2026-01-02T03:00:00Z", "triggerName": "every-5m", "payload": ""}
    simulator.start_task(CLUSTER, "metrics-server", "2026-01-02T02:00:00Z")
    handle(json.dumps(event).encode(), None, environ=env)
    simulator.finish_task(CLUSTER, "metrics-server", "Success", "2026-01-02T02:06:00.5Z")
    task: Any = simulator.clusters[CLUSTER]["metrics-server"].task

    changes = []
    for form in ("2026-01-02T02:00:00.12Z", "2026-01-02T10:00:00+0800", "20260102T020000Z"):
        task["created_at"] = form
        changes.append(handle(json.dumps(event).encode(), None, environ=env)["changes"])

    assert changes == [1, 0, 0]
    assert len(webhooks.delivered("dingtalk")) == len(webhooks.delivered("slack")) == 1
