"""Which task an answer is about: one id per task whatever the time format, and unknown states."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from addon_watch.ack import parse_upgrade_status
from addon_watch.detect import TargetRecord, observe, record_of
from addon_watch.handler import handle
from addon_watch.model import Outcome, Target, Task
from tests.fakes.ack_simulator import ZERO_TIME, AckSimulator
from tests.fakes.webhooks import WebhookReceiver
from tests.invocation import CLUSTER, environment

TARGET = Target(CLUSTER, "metrics-server")
CANONICAL = "2026-12-04T14:00:00Z"
CREATED = datetime(2026, 12, 4, 14, 0, tzinfo=timezone.utc)
TIMER = {"triggerTime": "2026-12-04T15:00:00Z", "triggerName": "every-5m", "payload": ""}


def answer(created: str, status: str = "Success", finished: str = "2026-12-04T14:06:00Z") -> Any:
    return {
        "metrics-server": {
            "addon_info": {"version": "v0.3.9.7"},
            "tasks": {
                "status": status,
                "created_at": created,
                "finished_at": finished,
                "is_canceled": False,
            },
        }
    }


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ("2026-12-04T14:00:00Z", CANONICAL),
        ("2026-12-04T14:00:00.000Z", CANONICAL),
        ("2026-12-04T14:00:00.123456789Z", CANONICAL),
        ("2026-12-04T22:00:00+08:00", CANONICAL),
        ("2026-12-04 14:00:00", CANONICAL),
        ("yesterday at two", "yesterday at two"),
    ],
)
def test_parse_upgrade_status_task_id_one_form_per_instant(created: str, expected: str) -> None:
    task = parse_upgrade_status(TARGET, answer(created)).task

    assert task is not None and task.task_id == expected


@pytest.mark.parametrize(
    ("created", "status", "finished", "expected"),
    [
        (ZERO_TIME, "Success", "2026-12-04T22:06:00+08:00", "finished:2026-12-04T14:06:00Z"),
        ("", "Failed", "2026-12-04T14:06:00.000Z", "finished:2026-12-04T14:06:00Z"),
        (ZERO_TIME, "Running", ZERO_TIME, ""),
        (ZERO_TIME, "Success", ZERO_TIME, ""),
    ],
)
def test_parse_upgrade_status_without_creation_time_finished_time_is_identity(
    created: str, status: str, finished: str, expected: str
) -> None:
    task = parse_upgrade_status(TARGET, answer(created, status, finished)).task

    assert task is not None and task.task_id == expected


def test_observe_record_stored_with_raw_id_still_recognised() -> None:
    stored = TargetRecord("2026-12-04T14:00:00Z", "Success", "success", "v0.3.9.7", CREATED)

    record, found = observe(
        stored, parse_upgrade_status(TARGET, answer("2026-12-04T14:00:00.000Z"))
    )

    assert found == []
    assert record.task_id == CANONICAL


def test_observe_record_stored_with_offset_id_recognised_by_creation_time() -> None:
    stored = TargetRecord("2026-12-04T22:00:00+08:00", "Success", "success", "v0.3.9.7", CREATED)

    _, found = observe(stored, parse_upgrade_status(TARGET, answer(CANONICAL)))

    assert found == []


def test_observe_zero_creation_times_second_task_announced_once() -> None:
    first = parse_upgrade_status(TARGET, answer(ZERO_TIME, "Success", "2026-12-04T14:06:00Z"))
    second = parse_upgrade_status(TARGET, answer(ZERO_TIME, "Success", "2026-12-05T09:30:00Z"))

    record, found_first = observe(record_of(first), second)
    _, found_again = observe(record, second)

    assert [(a.outcome, a.task_id) for a in found_first] == [
        (Outcome.SUCCESS, "finished:2026-12-05T09:30:00Z")
    ]
    assert found_again == []


def test_observe_zero_times_running_then_finished_announced_once() -> None:
    running = parse_upgrade_status(TARGET, answer(ZERO_TIME, "Running", ZERO_TIME))
    done = parse_upgrade_status(TARGET, answer(ZERO_TIME, "Failed", "2026-12-05T09:30:00Z"))

    record, found = observe(record_of(running), done)
    _, again = observe(record, done)

    assert [a.outcome for a in found] == [Outcome.FAILED] and again == []


def test_observe_record_of_zero_time_task_by_earlier_release_not_announced_again() -> None:
    # The earlier release kept such a task under the empty id.
    stored = TargetRecord("", "Success", "success", "v0.3.9.7", None)
    current = parse_upgrade_status(TARGET, answer(ZERO_TIME, "Success", "2026-12-04T14:06:00Z"))

    record, found = observe(stored, current)

    assert found == [] and record.task_id == "finished:2026-12-04T14:06:00Z"


@pytest.mark.parametrize("status", ["Cancelled", "CANCELLED", "canceled"])
def test_task_cancelled_spelling_is_canceled(status: str) -> None:
    task = Task("t", status, None, None, False)

    assert task.outcome is Outcome.CANCELED and task.status_known


# --- end to end: real store, real webhooks --------------------------------------------


def tick(env: dict[str, str]) -> dict[str, Any]:
    return handle(json.dumps(TIMER).encode(), None, environ=env)


@pytest.fixture
def env(simulator: AckSimulator, webhooks: WebhookReceiver, tmp_path: Path) -> dict[str, str]:
    simulator.add_addon(CLUSTER, "metrics-server", "v0.3.9.6")
    return {**environment(simulator, webhooks, tmp_path), "WATCH_TARGETS": str(TARGET)}


def test_check_created_at_format_changes_one_delivery(
    env: dict[str, str], simulator: AckSimulator, webhooks: WebhookReceiver
) -> None:
    task = {"status": "Running", "created_at": CANONICAL, "finished_at": ZERO_TIME}
    simulator.clusters[CLUSTER]["metrics-server"].task = {**task, "is_canceled": False}
    tick(env)
    simulator.finish_task(CLUSTER, "metrics-server", "Success", "2026-12-04T14:06:00Z")

    changes = [tick(env)["changes"]]
    for form in ("2026-12-04T14:00:00.000Z", "2026-12-04T22:00:00+08:00"):
        simulator.clusters[CLUSTER]["metrics-server"].task["created_at"] = form
        changes.append(tick(env)["changes"])

    assert changes == [1, 0, 0]
    assert len(webhooks.delivered("dingtalk")) == len(webhooks.delivered("slack")) == 1


def test_check_zero_creation_times_each_upgrade_delivered(
    env: dict[str, str], simulator: AckSimulator, webhooks: WebhookReceiver
) -> None:
    simulator.start_task(CLUSTER, "metrics-server", ZERO_TIME)
    tick(env)
    simulator.finish_task(CLUSTER, "metrics-server", "Success", "2026-12-04T14:06:00Z")
    first = tick(env)
    simulator.start_task(CLUSTER, "metrics-server", ZERO_TIME)
    tick(env)
    simulator.finish_task(CLUSTER, "metrics-server", "Success", "2026-12-05T09:30:00Z")
    second = tick(env)
    last = tick(env)

    assert (first["changes"], second["changes"], last["changes"]) == (1, 1, 0)
    assert (first["sent"], second["sent"]) == (2, 2)
    assert len(webhooks.delivered("dingtalk")) == len(webhooks.delivered("slack")) == 2


def test_check_unknown_task_status_reported_in_summary_errors(
    env: dict[str, str], simulator: AckSimulator
) -> None:
    simulator.start_task(CLUSTER, "metrics-server", CANONICAL, status="Exploded")

    summaries = [tick(env), tick(env)]

    for summary in summaries:
        (error,) = summary["errors"]
        assert error.startswith(
            f"{TARGET} reports an unknown task status 'Exploded'; treated as not finished; check"
        )
