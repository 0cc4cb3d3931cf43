"""When a task counts as news: the compare step's truth table."""

from __future__ import annotations

from datetime import datetime

import pytest

from addon_watch.detect import TargetRecord, observe, record_of
from addon_watch.model import AddonStatus, Outcome, Target, Task

TARGET = Target("c0123456789abcdef", "metrics-server")
T1 = "2026-01-02T03:00:00Z"
T2 = "2026-01-02T04:00:00Z"


def status(
    task_id: str | None, state: str = "", canceled: bool = False, version: str = "v1"
) -> AddonStatus:
    task = None
    if task_id is not None:
        created = datetime.fromisoformat(task_id.replace("Z", "+00:00")) if task_id else None
        task = Task(task_id, state, created, None, canceled)
    return AddonStatus(TARGET, version, False, task)


def seen(task_id: str | None, state: str = "", canceled: bool = False) -> TargetRecord:
    return record_of(status(task_id, state, canceled))


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        pytest.param(None, status(T1, "Running"), None, id="first-sight-running"),
        pytest.param(None, status(T1, "Success"), None, id="first-sight-finished-is-silent"),
        pytest.param(None, status(None), None, id="first-sight-no-task"),
        pytest.param(seen(T1, "Running"), status(T1, "Running"), None, id="still-running"),
        pytest.param(
            seen(T1, "Running"), status(T1, "Success"), Outcome.SUCCESS, id="running-to-success"
        ),
        pytest.param(
            seen(T1, "Upgrading"), status(T1, "Failed"), Outcome.FAILED, id="upgrading-to-failed"
        ),
        pytest.param(
            seen(T1, "Paused"), status(T1, "Canceled"), Outcome.CANCELED, id="paused-to-canceled"
        ),
        pytest.param(
            seen(T1, "Running"),
            status(T1, "Running", canceled=True),
            Outcome.CANCELED,
            id="is-canceled",
        ),
        pytest.param(seen(T1, "Success"), status(T1, "Success"), None, id="announced-not-again"),
        pytest.param(seen(T1, "SUCCESS"), status(T1, "success"), None, id="case-changes-not-news"),
        pytest.param(seen(T1, "Success"), status(T2, "Running"), None, id="new-task-running"),
        pytest.param(
            seen(T1, "Success"), status(T2, "Success"), Outcome.SUCCESS, id="new-task-between-ticks"
        ),
        pytest.param(
            seen(None), status(T1, "Failed"), Outcome.FAILED, id="first-task-between-ticks"
        ),
        pytest.param(seen(T2, "Running"), status(T1, "Success"), None, id="older-task-ignored"),
        pytest.param(
            seen(T1, "Running"), status(T1, "Bogus"), None, id="unknown-status-not-finished"
        ),
        pytest.param(
            seen(T1, "Failed"),
            status(T1, "Canceled", canceled=True),
            Outcome.CANCELED,
            id="new-outcome",
        ),
    ],
)
def test_observe_announces_each_finished_task_once(
    previous: TargetRecord | None, current: AddonStatus, expected: Outcome | None
) -> None:
    _, announcements = observe(previous, current)

    assert [item.outcome for item in announcements] == ([expected] if expected else [])


def test_observe_older_task_keeps_the_newer_record() -> None:
    newer = seen(T2, "Running")

    record, _ = observe(newer, status(T1, "Success"))

    assert record == newer


def test_observe_answer_without_task_keeps_task_identity() -> None:
    record, _ = observe(seen(T1, "Success"), status(None, version="v2"))
    _, again = observe(record, status(T1, "Success", version="v2"))

    assert record.task_id == T1
    assert record.version == "v2"
    assert again == []


def test_observe_announcement_identity_is_task_and_outcome() -> None:
    _, (announcement,) = observe(seen(T1, "Running"), status(T1, "Failed", version="v1.2"))

    assert announcement.key == f"{TARGET.key}|{T1}|failed"
    assert announcement.version == "v1.2"
