"""The state store: what each target looked like last time, and an outbox of messages.

Announcements are written to the outbox, one row per channel, in the same
transaction that records the answer they came from; delivery then works
through the outbox. A message is therefore never lost between seeing a change
and sending it, and a failed send is retried on a later tick.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from .detect import TargetRecord
from .errors import StateStoreError
from .model import Announcement, Outcome, Target

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_MAX_AGE = timedelta(hours=24)


@dataclass(frozen=True)
class OutboxItem:
    """One announcement waiting to go to one channel."""

    announcement: Announcement
    channel: str
    attempts: int
    created_at: datetime


class Store(Protocol):
    """What a check needs from a state store."""

    def get_target(self, target: Target) -> TargetRecord | None: ...

    def record(
        self,
        target: Target,
        record: TargetRecord,
        announcement: Announcement | None,
        channels: Iterable[str],
    ) -> None: ...

    def expire_old(self) -> list[tuple[str, str]]: ...

    def pending(self) -> list[OutboxItem]: ...

    def mark_sent(self, item: OutboxItem) -> None: ...

    def mark_failed(self, item: OutboxItem, error: str, *, permanent: bool) -> None: ...


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def announcement_to_json(item: Announcement) -> str:
    return json.dumps(
        {
            "v": FORMAT_VERSION,
            "cluster_id": item.target.cluster_id,
            "component": item.target.component,
            "task_id": item.task_id,
            "outcome": item.outcome.value,
            "version": item.version,
            "status": item.status,
            "created_at": _iso(item.created_at),
            "finished_at": _iso(item.finished_at),
        },
        ensure_ascii=False,
    )


def announcement_from_json(text: str) -> Announcement:
    data = json.loads(text)
    return Announcement(
        target=Target(data["cluster_id"], data["component"]),
        task_id=data["task_id"],
        outcome=Outcome(data["outcome"]),
        version=data["version"],
        status=data["status"],
        created_at=_from_iso(data["created_at"]),
        finished_at=_from_iso(data["finished_at"]),
    )


def _record_to_json(record: TargetRecord) -> str:
    return json.dumps(
        {
            "v": FORMAT_VERSION,
            "task_id": record.task_id,
            "status": record.status,
            "outcome": record.outcome,
            "version": record.version,
            "task_created_at": _iso(record.task_created_at),
        },
        ensure_ascii=False,
    )


def _record_from_json(text: str) -> TargetRecord:
    data = json.loads(text)
    if data.get("v") != FORMAT_VERSION:
        raise ValueError(f"record format {data.get('v')!r}, this release reads {FORMAT_VERSION}")
    return TargetRecord(
        task_id=data["task_id"],
        status=data["status"],
        outcome=data["outcome"],
        version=data["version"],
        task_created_at=_from_iso(data["task_created_at"]),
    )


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
"""


class SqliteStore:
    """The store in one SQLite file (WAL, busy timeout), safe for several processes."""

    def __init__(
        self, path: Path, *, max_age: timedelta = DEFAULT_MAX_AGE, busy_timeout: float = 10.0
    ) -> None:
        self.path = path
        self.max_age = max_age
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
                for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                    db.execute(statement)
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('format_version', ?)",
                    (str(FORMAT_VERSION),),
                )
        except (sqlite3.Error, OSError) as exc:
            raise StateStoreError(
                f"cannot open the SQLite state store at {path}: {exc}; "
                "check STATE_STORE and that the directory is writable"
            ) from exc

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _run(
        self, what: str, statement: str, params: tuple[object, ...] = ()
    ) -> list[tuple[object, ...]]:
        try:
            with self._transaction() as db:
                return db.execute(statement, params).fetchall()
        except sqlite3.Error as exc:
            raise StateStoreError(f"state store {self.path}: cannot {what}: {exc}") from exc

    def get_target(self, target: Target) -> TargetRecord | None:
        rows = self._run(
            "read the target record", "SELECT record FROM targets WHERE target = ?", (target.key,)
        )
        if not rows:
            return None
        try:
            return _record_from_json(str(rows[0][0]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateStoreError(
                f"state store {self.path}: the record of {target} is unreadable ({exc})"
            ) from exc

    def record(
        self,
        target: Target,
        record: TargetRecord,
        announcement: Announcement | None,
        channels: Iterable[str],
    ) -> None:
        now = datetime.now(timezone.utc).isoformat()
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO targets (target, record, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (target) DO UPDATE "
                    "SET record = excluded.record, updated_at = excluded.updated_at",
                    (target.key, _record_to_json(record), now),
                )
                if announcement is not None:
                    body = announcement_to_json(announcement)
                    db.executemany(
                        "INSERT OR IGNORE INTO outbox (announcement_key, channel, announcement, "
                        "state, created_at, updated_at) "
                        "VALUES (?, ?, ?, 'pending', ?, ?)",
                        [(announcement.key, channel, body, now, now) for channel in channels],
                    )
        except sqlite3.Error as exc:
            raise StateStoreError(
                f"state store {self.path}: cannot record {target}: {exc}"
            ) from exc

    def expire_old(self) -> list[tuple[str, str]]:
        """Give up on messages older than ``max_age``; returns their (key, channel) pairs."""
        cutoff = (datetime.now(timezone.utc) - self.max_age).isoformat()
        try:
            with self._transaction() as db:
                # No RETURNING: the SQLite of older runtimes predates it.
                expired = db.execute(
                    "SELECT announcement_key, channel FROM outbox "
                    "WHERE state = 'pending' AND created_at < ?",
                    (cutoff,),
                ).fetchall()
                db.execute(
                    "UPDATE outbox SET state = 'expired', updated_at = ? "
                    "WHERE state = 'pending' AND created_at < ?",
                    (datetime.now(timezone.utc).isoformat(), cutoff),
                )
        except sqlite3.Error as exc:
            raise StateStoreError(
                f"state store {self.path}: cannot expire old messages: {exc}"
            ) from exc
        for key, channel in expired:
            logger.warning(
                "gave up on %s to %s: still undelivered after %s", key, channel, self.max_age
            )
        return [(str(key), str(channel)) for key, channel in expired]

    def pending(self) -> list[OutboxItem]:
        rows = self._run(
            "list pending messages",
            "SELECT announcement, channel, attempts, created_at FROM outbox "
            "WHERE state = 'pending' ORDER BY created_at, rowid",
        )
        items = []
        for body, channel, attempts, created_at in rows:
            try:
                announcement = announcement_from_json(str(body))
            except (ValueError, KeyError, TypeError) as exc:
                logger.error("skipping an unreadable outbox row for %s: %s", channel, exc)
                continue
            items.append(
                OutboxItem(
                    announcement,
                    str(channel),
                    int(str(attempts)),
                    datetime.fromisoformat(str(created_at)),
                )
            )
        return items

    def mark_sent(self, item: OutboxItem) -> None:
        self._run(
            "mark a message sent",
            "UPDATE outbox SET state = 'sent', attempts = attempts + 1, "
            "last_error = NULL, updated_at = ? "
            "WHERE announcement_key = ? AND channel = ?",
            (datetime.now(timezone.utc).isoformat(), item.announcement.key, item.channel),
        )

    def mark_failed(self, item: OutboxItem, error: str, *, permanent: bool) -> None:
        self._run(
            "mark a message failed",
            "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?, updated_at = ? "
            "WHERE announcement_key = ? AND channel = ?",
            (
                "failed" if permanent else "pending",
                error[:1000],
                datetime.now(timezone.utc).isoformat(),
                item.announcement.key,
                item.channel,
            ),
        )
