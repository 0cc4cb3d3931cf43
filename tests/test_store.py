"""The SQLite store: records, an idempotent outbox, retries and expiry."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from addon_watch.detect import TargetRecord
from addon_watch.errors import StateStoreError
from addon_watch.model import Announcement, Outcome, Target
from addon_watch.store import SqliteStore

TARGET = Target("c0123456789abcdef", "metrics-server")
CREATED = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)
RECORD = TargetRecord("2026-01-02T03:04:00Z", "Success", "success", "v1", CREATED)
NEWS = Announcement(TARGET, "2026-01-02T03:04:00Z", Outcome.SUCCESS, "v1", "Success", CREATED, None)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "state.sqlite3")


def test_store_record_round_trips(store: SqliteStore) -> None:
    store.record(TARGET, RECORD, None, ["dingtalk"])

    assert store.get_target(TARGET) == RECORD
    assert store.get_target(Target("c0123456789abcdef", "flexvolume")) is None


def test_store_outbox_is_idempotent_per_announcement_and_channel(store: SqliteStore) -> None:
    store.record(TARGET, RECORD, NEWS, ["dingtalk", "slack"])
    store.record(TARGET, RECORD, NEWS, ["dingtalk", "slack"])

    pending = store.pending()

    assert [(i.channel, i.announcement) for i in pending] == [("dingtalk", NEWS), ("slack", NEWS)]


def test_store_sent_and_permanent_failures_leave_the_outbox(store: SqliteStore) -> None:
    store.record(TARGET, RECORD, NEWS, ["dingtalk", "slack"])
    dingtalk, slack = store.pending()

    store.mark_sent(dingtalk)
    store.mark_failed(slack, "revoked", permanent=True)

    assert store.pending() == []


def test_store_transient_failure_stays_pending_with_attempts(store: SqliteStore) -> None:
    store.record(TARGET, RECORD, NEWS, ["slack"])

    store.mark_failed(store.pending()[0], "HTTP 500", permanent=False)

    assert [i.attempts for i in store.pending()] == [1]


def test_store_expires_messages_older_than_max_age(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3", max_age=timedelta(0))
    store.record(TARGET, RECORD, NEWS, ["slack"])

    expired = store.expire_old()

    assert expired == [(NEWS.key, "slack")]
    assert store.pending() == []


def test_store_unreadable_record_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    SqliteStore(path).record(TARGET, RECORD, None, [])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE targets SET record = '{\"v\": 99}'")

    with pytest.raises(StateStoreError) as caught:
        SqliteStore(path).get_target(TARGET)

    assert "record of c0123456789abcdef/metrics-server is unreadable" in str(caught.value)


def test_store_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is not an SQLite file" * 100)

    with pytest.raises(StateStoreError) as caught:
        SqliteStore(path)

    assert "cannot open the SQLite state store" in str(caught.value)
