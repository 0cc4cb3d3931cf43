"""Helpers for the notifier tests: fill a real outbox and run the real delivery."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from addon_watch.ack import AckClient
from addon_watch.credentials import Credentials
from addon_watch.detect import TargetRecord
from addon_watch.model import Announcement, Outcome, Target
from addon_watch.notify import Notifier
from addon_watch.render import Renderer
from addon_watch.store import SqliteStore
from addon_watch.watcher import Summary, run_check

CLUSTER = "c0123456789abcdef0123456789abcdef"
FINISHED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def announcement(
    component: str = "metrics-server",
    outcome: Outcome = Outcome.SUCCESS,
    *,
    cluster_id: str = CLUSTER,
    version: str = "v0.3.9.7-9a1b2c3-aliyun",
    status: str = "Success",
    task_id: str = "2026-01-02T02:58:00Z",
) -> Announcement:
    return Announcement(
        target=Target(cluster_id, component),
        task_id=task_id,
        outcome=outcome,
        version=version,
        status=status,
        created_at=FINISHED - timedelta(minutes=6),
        finished_at=FINISHED,
    )


def many(count: int) -> list[Announcement]:
    outcomes = (Outcome.SUCCESS, Outcome.FAILED, Outcome.CANCELED)
    return [
        announcement(f"addon-{i:02d}", outcomes[i % 3], status=outcomes[i % 3].value.capitalize())
        for i in range(count)
    ]


def enqueue(store: SqliteStore, items: Sequence[Announcement], channels: Sequence[str]) -> None:
    for item in items:
        record = TargetRecord(item.task_id, item.status, item.outcome.value, item.version)
        store.observe(
            item.target,
            lambda _previous, r=record, a=item: (r, [a]),
            channels,
            datetime.now(timezone.utc),
        )


def states(store: SqliteStore) -> dict[str, str]:
    """``announcement_key|channel`` -> outbox state."""
    rows = store._db.execute("SELECT announcement_key, channel, state FROM outbox").fetchall()
    return {f"{key}|{channel}": state for key, channel, state in rows}


def _no_credentials() -> Credentials:
    raise AssertionError("delivery must not ask for credentials")


def deliver(
    store: SqliteStore,
    notifiers: Mapping[str, Notifier],
    *,
    renderer: Renderer | None = None,
    languages: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Summary:
    """One tick with nothing to ask ACK: only the outbox is worked through."""
    moment = {"clock": clock} if clock is not None else {}
    return run_check(
        targets=(),
        client=AckClient("http://127.0.0.1:9", _no_credentials),
        store=store,
        notifiers=notifiers,
        renderer=renderer or Renderer(),
        languages=languages or dict.fromkeys(notifiers, "en"),
        trigger="test",
        **moment,
    )


def open_store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "state.sqlite3")
