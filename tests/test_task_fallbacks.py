"""A task reported without creation or end time keeps one identity; each new task gets its own."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from addon_watch.ack import parse_upgrade_status
from addon_watch.detect import Notices, TargetRecord, observe, record_of
from addon_watch.handler import handle
from addon_watch.model import Outcome, Target
from addon_watch.store import SqliteStore
from addon_watch.store.base import record_from_dict, record_to_dict
from tests.fakes.ack_simulator import ZERO_TIME, AckSimulator
from tests.fakes.webhooks import WebhookReceiver
from tests.invocation import CLUSTER, environment

TARGET = Target(CLUSTER, "metrics-server")
CREATED = "2026-12-04T14:00:00Z"
FINISHED = "2026-12-04T14:06:00Z"
NOW = datetime(2026, 12, 4, 15, 0, tzinfo=timezone.utc)
SEEN_NOW = "seen:2026-12-04T15:00:00Z"
LATER = NOW + timedelta(minutes=5)
SEEN_LATER = "seen:2026-12-04T15:05:00Z"


def answer(status: str, created: str = ZERO_TIME, finished: str = ZERO_TIME) -> Any:
    tasks = {"status": status, "created_at": created, "finished_at": finished}
    return parse_upgrade_status(
        TARGET, {"metrics-server": {"addon_info": {"version": "v2"}, "tasks": tasks}}
    )


def told(found: list[Any]) -> list[tuple[str, Outcome]]:
    return [(item.task_id, item.outcome) for item in found]


# --- a fallback id, then the real one: the same task ----------------------------------


def test_observe_finished_id_then_real_creation_time_not_announced_again() -> None:
    running, _ = observe(None, answer("Running"), now=NOW)
    ended, found = observe(running, answer("Success", "", FINISHED), now=NOW)

    record, again = observe(ended, answer("Success", CREATED, FINISHED), now=LATER)

    assert told(found) == [(f"finished:{FINISHED}", Outcome.SUCCESS)]
    assert again == [] and record.task_id == CREATED


def test_observe_finished_id_stored_by_current_release_matched_by_end_time() -> None:
    # Records of the current release carry no end time: the id says it.
    stored = TargetRecord(f"finished:{FINISHED}", "Success", "success", "v2", None)

    _, found = observe(stored, answer("Success", CREATED, "2026-12-04T22:06:00+08:00"), now=NOW)

    assert found == []


def test_observe_real_id_then_creation_time_lost_not_announced_again() -> None:
    stored = record_of(answer("Success", CREATED, FINISHED))

    record, found = observe(stored, answer("Success", ZERO_TIME, FINISHED), now=NOW)

    assert found == [] and record.task_finished_at is not None


def test_observe_times_lost_for_a_while_kept_in_record() -> None:
    stored = record_of(answer("Success", CREATED, FINISHED))

    record, found = observe(stored, answer("Success"), now=NOW)
    _, again = observe(record, answer("Success", ZERO_TIME, FINISHED), now=LATER)

    assert found == again == [] and record.task_id == CREATED
    assert record.task_created_at == stored.task_created_at
    assert record.task_finished_at == stored.task_finished_at


def test_observe_other_end_time_without_creation_time_is_new_task() -> None:
    stored = record_of(answer("Success", CREATED, FINISHED))

    _, found = observe(stored, answer("Success", ZERO_TIME, "2026-12-05T09:00:00Z"), now=NOW)

    assert told(found) == [("finished:2026-12-05T09:00:00Z", Outcome.SUCCESS)]


def test_observe_same_end_time_but_other_creation_times_is_new_task() -> None:
    stored = record_of(answer("Success", CREATED, FINISHED))

    _, found = observe(stored, answer("Failed", "2026-12-04T14:03:00Z", FINISHED), now=NOW)

    assert told(found) == [("2026-12-04T14:03:00Z", Outcome.FAILED)]


def test_observe_seen_id_then_creation_time_before_first_sight_same_task() -> None:
    first, _ = observe(None, answer("Running"), now=NOW)
    ended, found = observe(first, answer("Success"), now=LATER)

    _, again = observe(ended, answer("Success", CREATED, FINISHED), now=LATER)

    assert told(found) == [(SEEN_NOW, Outcome.SUCCESS)] and again == []


# --- no time at all: an identity carried from the record -------------------------------


def rec(task_id: str | None, status: str, outcome: str | None = None) -> TargetRecord:
    return TargetRecord(task_id, status, outcome, "v2", None)


@pytest.mark.parametrize(
    ("previous", "status", "record_id", "expected"),
    [
        pytest.param(None, "Running", SEEN_NOW, [], id="first-sight-running"),
        pytest.param(None, "Success", SEEN_NOW, [], id="first-sight-ended-silent"),
        pytest.param(rec(None, ""), "Running", SEEN_NOW, [], id="first-task-running"),
        pytest.param(
            rec(None, ""), "Failed", SEEN_NOW, [(SEEN_NOW, Outcome.FAILED)], id="first-task-ended"
        ),
        pytest.param(rec("seen:X", "Running"), "Running", "seen:X", [], id="still-running"),
        pytest.param(
            rec("seen:X", "Running"),
            "Success",
            "seen:X",
            [("seen:X", Outcome.SUCCESS)],
            id="running-ended",
        ),
        pytest.param(
            rec("seen:X", "Success", "success"), "Running", SEEN_NOW, [], id="ended-then-new-task"
        ),
        pytest.param(
            rec("seen:X", "Success", "success"), "Success", "seen:X", [], id="same-old-task"
        ),
        pytest.param(
            rec("seen:X", "Success", "success"),
            "Failed",
            "seen:X",
            [("seen:X", Outcome.FAILED)],
            id="other-outcome-of-stored-task",
        ),
        pytest.param(
            rec(f"finished:{FINISHED}", "Success", "success"),
            "Success",
            f"finished:{FINISHED}",
            [],
            id="end-time-lost",
        ),
        pytest.param(
            rec(CREATED, "Running"), "Failed", CREATED, [(CREATED, Outcome.FAILED)], id="real-id"
        ),
        # Records of the current release kept such tasks under the empty id.
        pytest.param(rec("", "Success", "success"), "Success", "", [], id="legacy-same-old-task"),
        pytest.param(
            rec("", "Running"),
            "Success",
            SEEN_NOW,
            [(SEEN_NOW, Outcome.SUCCESS)],
            id="legacy-running-ended",
        ),
        pytest.param(rec("", "Running"), "Running", SEEN_NOW, [], id="legacy-still-running"),
        pytest.param(
            rec("", "Success", "success"), "Running", SEEN_NOW, [], id="legacy-ended-then-new-task"
        ),
    ],
)
def test_observe_task_without_times_identity_table(
    previous: TargetRecord | None,
    status: str,
    record_id: str,
    expected: list[tuple[str, Outcome]],
) -> None:
    record, found = observe(previous, answer(status), now=NOW)

    assert told(found) == expected
    assert record.task_id == record_id


def test_observe_legacy_empty_id_record_read_from_store_not_announced_again(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3")
    legacy = {
        "v": 2,
        "task_id": "",
        "status": "Success",
        "outcome": "success",
        "version": "v2",
        "task_created_at": None,
        "paused_notified": False,
        "stuck_notified": False,
        "ready_to_upgrade": False,
    }
    store.observe(TARGET, lambda _: (record_from_dict(legacy), []), ["slack"], NOW)

    found = store.observe(
        TARGET, lambda previous: observe(previous, answer("Success"), now=LATER), ["slack"], LATER
    )
    store.close()

    assert found == []


def test_observe_new_task_in_the_same_second_gets_a_later_id() -> None:
    stored = rec(SEEN_NOW, "Success", "success")

    record, _ = observe(stored, answer("Running"), now=NOW + timedelta(milliseconds=300))

    assert record.task_id == "seen:2026-12-04T15:00:01Z"


def test_observe_paused_notice_not_repeated_when_legacy_id_replaced() -> None:
    stored = TargetRecord("", "Paused", None, "v2", None, paused_notified=True)

    record, found = observe(stored, answer("Paused"), Notices(paused=True), now=NOW)

    assert found == [] and record.paused_notified and record.task_id == SEEN_NOW


def test_record_end_time_stored_and_read_back() -> None:
    record = record_of(answer("Success", CREATED, FINISHED))
    stored = record_to_dict(record)
    older = {key: value for key, value in stored.items() if key != "task_finished_at"}

    assert record_from_dict(stored) == record
    assert record_from_dict(older).task_finished_at is None


# --- end to end: real store, real webhooks --------------------------------------------


def test_check_tasks_without_any_time_each_outcome_delivered_once(
    simulator: AckSimulator, webhooks: WebhookReceiver, tmp_path: Path
) -> None:
    simulator.add_addon(CLUSTER, "metrics-server", "v2")
    env = {**environment(simulator, webhooks, tmp_path), "WATCH_TARGETS": str(TARGET)}
    event = json.dumps({"triggerTime": NOW.isoformat(), "triggerName": "t", "payload": ""})

    changes = []
    for outcome in ("Success", "Success", "Failed", "Failed"):
        simulator.start_task(CLUSTER, "metrics-server", ZERO_TIME)
        changes.append(handle(event.encode(), None, environ=env)["changes"])
        simulator.finish_task(CLUSTER, "metrics-server", outcome, ZERO_TIME)
        changes.append(handle(event.encode(), None, environ=env)["changes"])
    changes.append(handle(event.encode(), None, environ=env)["changes"])

    assert changes == [0, 1, 0, 1, 0, 1, 0, 1, 0]
    slack = [
        payload["text"].split(": metrics-server")[0] for payload in webhooks.delivered("slack")
    ]
    assert slack == [":white_check_mark: Upgrade succeeded"] * 2 + [":x: Upgrade failed"] * 2
    assert len(webhooks.delivered("dingtalk")) == 4
