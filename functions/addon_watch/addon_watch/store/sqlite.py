"""The state store in one SQLite file: WAL, a busy timeout, one transaction per step.

Several processes on one machine may share the file: every read-compare-write
runs inside ``BEGIN IMMEDIATE``, which takes the write lock before reading, and
a claim is a compare-and-set ``UPDATE`` whose row count says who won.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..detect import TargetRecord
from ..errors import StateStoreError
from ..model import Announcement, Target
from .base import (
    FORMAT_VERSION,
    READABLE_VERSIONS,
    Channels,
    Claim,
    Decide,
    OutboxItem,
    PendingScan,
    announcement_from_json,
    announcement_to_json,
    channels_of,
    read_record,
    record_to_json,
)

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS targets (
    target TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    announcement_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    announcement TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'expired')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (announcement_key, channel)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS holds (channel TEXT PRIMARY KEY, until TEXT NOT NULL)
"""

# Columns added after the first release; added to an older file when it is opened.
_LATER_COLUMNS = {
    "next_attempt_at": "TEXT",
    "claim_owner": "TEXT",
    "claim_expires_at": "TEXT",
}


def _ts(moment: datetime) -> str:
    """A UTC timestamp of fixed width, so that SQLite can compare them as text."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


class SqliteStore:
    """The store in one SQLite file, safe for several processes on one machine."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._transaction() as db:
                for statement in _SCHEMA.split(";"):
                    db.execute(statement)
                present = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
                for column, kind in _LATER_COLUMNS.items():
                    if column not in present:
                        db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('format_version', ?)",
                    (str(FORMAT_VERSION),),
                )
                (found,) = db.execute(
                    "SELECT value FROM meta WHERE key = 'format_version'"
                ).fetchone()
                if str(found) in map(str, READABLE_VERSIONS) and str(found) != str(FORMAT_VERSION):
                    # Older documents stay readable; what is written from now on is
                    # of this format, which the older release would misread.
                    db.execute(
                        "UPDATE meta SET value = ? WHERE key = 'format_version'",
                        (str(FORMAT_VERSION),),
                    )
                    found = str(FORMAT_VERSION)
        except (sqlite3.Error, OSError) as exc:
            raise StateStoreError(
                f"cannot open the SQLite state store at {path}: {exc}; "
                "check STATE_STORE and that the directory is writable"
            ) from exc
        if str(found) != str(FORMAT_VERSION):
            self._db.close()
            raise StateStoreError(
                f"the SQLite state store at {path} has format {found}, and this release reads "
                f"format {FORMAT_VERSION}: run the release that wrote it, or point STATE_STORE "
                "at a new file"
            )

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self, what: str = "") -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; SQLite errors become ``StateStoreError``."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StateStoreError(
                    f"state store {self.path}: cannot {what or 'open a transaction'}: {exc}"
                ) from exc

    def observe(
        self, target: Target, decide: Decide, channels: Channels, now: datetime
    ) -> list[Announcement]:
        stamp = _ts(now)
        with self._transaction(f"record {target}") as db:
            row = db.execute(
                "SELECT record FROM targets WHERE target = ?", (target.key,)
            ).fetchone()
            previous = read_record(str(row[0]), target, str(self.path)) if row else None
            record, announcements = decide(previous)
            db.execute(
                "INSERT INTO targets (target, record, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (target) DO UPDATE "
                "SET record = excluded.record, updated_at = excluded.updated_at",
                (target.key, record_to_json(record), stamp),
            )
            for announcement in announcements:
                # Keyed by announcement and channel: a second run that saw the same
                # change adds nothing.
                body = announcement_to_json(announcement)
                db.executemany(
                    "INSERT OR IGNORE INTO outbox (announcement_key, channel, announcement, "
                    "state, created_at, updated_at) VALUES (?, ?, ?, 'pending', ?, ?)",
                    [
                        (announcement.key, channel, body, stamp, stamp)
                        for channel in channels_of(channels, announcement)
                    ],
                )
        return announcements

    def get_target(self, target: Target) -> TargetRecord | None:
        with self._transaction(f"read the record of {target}") as db:
            row = db.execute(
                "SELECT record FROM targets WHERE target = ?", (target.key,)
            ).fetchone()
        return read_record(str(row[0]), target, str(self.path)) if row else None

    def pending(self) -> PendingScan:
        scan = PendingScan()
        with self._transaction("list pending messages") as db:
            rows = db.execute(
                "SELECT announcement_key, channel, announcement, attempts, created_at, "
                "next_attempt_at, last_error FROM outbox "
                "WHERE state = 'pending' ORDER BY created_at, rowid"
            ).fetchall()
        for key, channel, body, attempts, created_at, next_attempt_at, last_error in rows:
            try:
                scan.items.append(
                    OutboxItem(
                        announcement_from_json(body),
                        channel,
                        int(attempts),
                        datetime.fromisoformat(created_at),
                        datetime.fromisoformat(next_attempt_at) if next_attempt_at else None,
                        last_error,
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                scan.unreadable.append(f"{key} to {channel}: {exc}")
        return scan

    def claim(self, item: OutboxItem, owner: str, now: datetime, lease: timedelta) -> Claim | None:
        expires_at = now + lease
        with self._transaction(f"claim {item.key}") as db:
            won = db.execute(
                "UPDATE outbox SET claim_owner = ?, claim_expires_at = ?, updated_at = ? "
                "WHERE announcement_key = ? AND channel = ? AND state = 'pending' "
                "AND (claim_expires_at IS NULL OR claim_expires_at <= ?) "
                "AND (next_attempt_at IS NULL OR next_attempt_at <= ?)",
                (
                    owner,
                    _ts(expires_at),
                    _ts(now),
                    item.announcement.key,
                    item.channel,
                    _ts(now),
                    _ts(now),
                ),
            ).rowcount
        return Claim(item, owner, expires_at) if won == 1 else None

    def mark_sent(self, claim: Claim, now: datetime) -> bool:
        return self._settle(claim, now, "state = 'sent', last_error = NULL", ())

    def mark_retry(self, claim: Claim, error: str, retry_at: datetime, now: datetime) -> bool:
        return self._settle(
            claim, now, "last_error = ?, next_attempt_at = ?", (error[:1000], _ts(retry_at))
        )

    def mark_given_up(self, claim: Claim, state: str, error: str, now: datetime) -> bool:
        return self._settle(claim, now, "state = ?, last_error = ?", (state, error[:1000]))

    def hold_channel(self, channel: str, until: datetime) -> None:
        with self._transaction(f"hold {channel}") as db:
            db.execute(
                "INSERT INTO holds (channel, until) VALUES (?, ?) ON CONFLICT (channel) "
                "DO UPDATE SET until = max(until, excluded.until)",
                (channel, _ts(until)),
            )

    def channel_holds(self) -> dict[str, datetime]:
        with self._transaction("read the channel holds") as db:
            rows = db.execute("SELECT channel, until FROM holds").fetchall()
        return {str(channel): datetime.fromisoformat(until) for channel, until in rows}

    def _settle(
        self, claim: Claim, now: datetime, assignments: str, params: tuple[object, ...]
    ) -> bool:
        item = claim.item
        # The assignments are fixed fragments of this module, never data.
        statement = f"UPDATE outbox SET {assignments}, attempts = attempts + 1, "  # noqa: S608
        with self._transaction(f"record the result for {item.key}") as db:
            changed = db.execute(
                statement + "claim_owner = NULL, claim_expires_at = NULL, updated_at = ? "
                "WHERE announcement_key = ? AND channel = ? AND claim_owner = ?",
                (*params, _ts(now), item.announcement.key, item.channel, claim.owner),
            ).rowcount
        return changed == 1
