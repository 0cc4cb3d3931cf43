"""An addon state that comes back is told again: version notices are numbered per target."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from addon_watch.detect import Notices, TargetRecord, observe
from addon_watch.model import AddonStatus, Announcement, Outcome, Target
from addon_watch.store import SqliteStore
from addon_watch.store.base import (
    announcement_from_dict,
    announcement_to_dict,
    record_from_dict,
    record_to_dict,
)

TARGET = Target("c0123456789abcdef", "metrics-server")
NOW = datetime(2026, 12, 4, 15, 0, tzinfo=timezone.utc)
AVAILABLE = Notices(available=True)


def addon(version: str, ready: bool = False) -> AddonStatus:
    return AddonStatus(TARGET, version, ready, None)


def test_observe_version_back_and_forth_each_change_told() -> None:
    record = TargetRecord(None, "", None, "v1", ready_to_upgrade=False)
    keys = []

    for step, version in enumerate(["v2", "v1", "v2", "v2"]):
        record, found = observe(record, addon(version), AVAILABLE, NOW + timedelta(hours=step))
        keys += [item.key for item in found]

    assert len(keys) == len(set(keys)) == 3
    assert [key.split("|")[1] for key in keys] == ["v1>v2", "v2>v1#2", "v1>v2#3"]


def test_observe_ready_notice_not_numbered() -> None:
    record = TargetRecord(None, "", None, "v1", ready_to_upgrade=False, notices_told=5)

    record, found = observe(record, addon("v1", True), AVAILABLE, NOW)

    assert [item.key for item in found] == [f"{TARGET}|>v1|available"]
    assert record.notices_told == 5


def test_observe_same_change_seen_by_two_runs_same_key() -> None:
    # Two runs that read the same record (a store without compare-and-set) agree.
    record = TargetRecord(None, "", None, "v1", ready_to_upgrade=False)

    _, first = observe(record, addon("v2"), AVAILABLE, NOW)
    _, second = observe(record, addon("v2"), AVAILABLE, NOW + timedelta(seconds=7))

    assert [item.key for item in first] == [item.key for item in second]


def test_store_third_change_to_a_state_enqueued(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3")
    enqueued = []

    for step, version in enumerate(["v1", "v2", "v1", "v2"]):
        now = NOW + timedelta(hours=step)
        enqueued += store.observe(
            TARGET,
            lambda previous, v=version, at=now: observe(previous, addon(v), AVAILABLE, at),
            ["slack"],
            now,
        )
    pending = store.pending().items
    store.close()

    assert [item.previous_version for item in enqueued] == ["v1", "v2", "v1"]
    assert len(pending) == 3


def test_notice_number_stored_and_old_documents_read() -> None:
    notice = Announcement(
        TARGET, "", Outcome.AVAILABLE, "v2", "", None, None, "v1", NOW, sequence=4
    )
    record = TargetRecord(None, "", None, "v2", notices_told=4)
    old_notice = {k: v for k, v in announcement_to_dict(notice).items() if k != "sequence"}
    old_record = {k: v for k, v in record_to_dict(record).items() if k != "notices_told"}

    assert announcement_from_dict(announcement_to_dict(notice)) == notice
    # Releases before the numbering would drop the number from the key: they must refuse it.
    assert announcement_to_dict(notice)["v"] == 3
    assert (
        record_to_dict(record)["v"] == announcement_to_dict(replace(notice, sequence=0))["v"] == 2
    )
    assert record_from_dict(record_to_dict(record)) == record
    # Written by the current release: the same keys and count as before.
    assert announcement_from_dict(old_notice).key == f"{TARGET}|v1>v2|available"
    assert record_from_dict(old_record).notices_told == 0
