"""The SQLite store opened on bad files: clear errors, nothing guessed."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import pytest

from addon_watch.detect import observe
from addon_watch.errors import StateStoreError
from addon_watch.model import AddonStatus, Target
from addon_watch.store import SqliteStore

TARGET = Target("c0123456789abcdef", "metrics-server")
NOW = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)


def test_store_get_target_reads_what_observe_wrote(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3")
    status = AddonStatus(TARGET, "v1", False, None)

    store.observe(TARGET, partial(observe, current=status), ["slack"], NOW)

    record = store.get_target(TARGET)
    assert record is not None and record.version == "v1"
    assert store.get_target(Target("c0123456789abcdef", "flexvolume")) is None


def test_store_unreadable_record_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    status = AddonStatus(TARGET, "v1", False, None)
    SqliteStore(path).observe(TARGET, partial(observe, current=status), [], NOW)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE targets SET record = 'not json'")

    with pytest.raises(StateStoreError) as caught:
        SqliteStore(path).get_target(TARGET)

    assert "c0123456789abcdef/metrics-server" in str(caught.value)


def test_store_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is not an SQLite file" * 100)

    with pytest.raises(StateStoreError) as caught:
        SqliteStore(path)

    assert "cannot open the SQLite state store" in str(caught.value)
