"""Durable delivery on SQLite: outages, overlapping runs, crashes and give-ups.

Every test runs the real check against the local ACK simulator and the local
DingTalk/Slack receiver, and counts what the receiver got.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from addon_watch.errors import StateStoreError
from addon_watch.handler import handle
from addon_watch.store import Claim, OutboxItem, SqliteStore
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.ticks import (
    ADDON,
    CLUSTER,
    OTHER,
    Ticks,
    environment,
)
from tests.fakes.webhooks import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite3"


@pytest.fixture
def ticks(simulator: AckSimulator, webhooks: WebhookReceiver, path: Path) -> Ticks:
    return Ticks(simulator, webhooks, f"sqlite://{path}")


@pytest.fixture
def store(path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(path)
    yield opened
    opened.close()


class FlakyStore(SqliteStore):
    """A SQLite store whose chosen operation fails, the next ``times`` times it is called."""

    def __init__(self, path: Path, fail: str, times: int = 1) -> None:
        super().__init__(path)
        self.fail, self.times = fail, times

    def _maybe_fail(self, name: str) -> None:
        if self.fail == name and self.times > 0:
            self.times -= 1
            raise StateStoreError(f"state store: cannot {name}: disk I/O error (injected)")

    def claim(self, item: OutboxItem, owner: str, now: datetime, lease: timedelta) -> Claim | None:
        self._maybe_fail("claim")
        return super().claim(item, owner, now, lease)

    def mark_sent(self, claim: Claim, now: datetime) -> bool:
        self._maybe_fail("mark_sent")
        return super().mark_sent(claim, now)


def test_delivery_webhooks_down_for_several_ticks_then_up_sends_one_message_per_channel(
    ticks: Ticks, webhooks: WebhookReceiver, store: SqliteStore
) -> None:
    ticks.seen_then_finished(store)
    for _ in range(3):
        webhooks.script("dingtalk", 503, "upstream unavailable")
        webhooks.script("slack", 503, "service unavailable")

    outage = ticks.tick(store)
    assert (outage.changes, outage.sent, outage.pending, outage.failed) == (1, 0, 2, 0)

    # Half a minute later the backoff (one minute after a first failure) holds both back.
    ticks.clock.advance(seconds=30)
    held = ticks.tick(store)
    assert (held.sent, held.pending) == (0, 2)
    assert (ticks.attempts("dingtalk"), ticks.attempts("slack")) == (1, 1)

    sent = []
    for _ in range(5):
        ticks.clock.advance(minutes=5)
        sent.append(ticks.tick(store).sent)

    assert sent == [0, 0, 2, 0, 0]
    assert ticks.delivered() == {"dingtalk": 1, "slack": 1}
    assert (ticks.attempts("dingtalk"), ticks.attempts("slack")) == (4, 4)


def test_delivery_three_handler_processes_at_once_send_one_message_per_channel(
    simulator: AckSimulator, webhooks: WebhookReceiver, path: Path
) -> None:
    ticks = Ticks(simulator, webhooks, f"sqlite://{path}")
    ticks.start_upgrade()
    env = environment(simulator, webhooks, f"sqlite://{path}")
    first = handle(b"", None, environ=env)
    assert (first["checked"], first["sent"]) == (2, 0)
    ticks.finish_upgrade()
    # Slow answers keep the three runs inside the same moment.
    simulator.latency = 0.2

    child_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")},
        **env,
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        "PYTHONPATH": f"{ROOT / 'functions' / 'addon_watch'}{os.pathsep}{ROOT}",
        "START_AT": str(time.time() + 3.0),
    }
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.handler_process"],
            cwd=ROOT,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    summaries = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        summaries.append(json.loads(out))

    assert ticks.delivered() == {"dingtalk": 1, "slack": 1}
    # Exactly one run saw the change: read, compare and write are one transaction.
    assert sum(s["changes"] for s in summaries) == 1
    assert sum(s["sent"] for s in summaries) == 2
    assert all(s["checked"] == 2 and not s["errors"] for s in summaries)


def test_delivery_crash_between_claim_and_send_is_delivered_once_after_the_lease(
    ticks: Ticks, store: SqliteStore
) -> None:
    ticks.seen_then_finished(store)

    during_lease, after_lease, later = ticks.crash_between_claim_and_send(store)

    assert (during_lease.sent, during_lease.busy) == (0, 2)
    assert (after_lease.sent, after_lease.busy) == (2, 0)
    assert later.sent == 0
    assert ticks.delivered() == {"dingtalk": 1, "slack": 1}


def test_delivery_crash_after_send_before_record_duplicates_at_most_once(
    ticks: Ticks, store: SqliteStore, path: Path
) -> None:
    ticks.seen_then_finished(store)

    # DingTalk goes first: it is posted, then recording it fails and the run stops
    # before Slack is sent.
    with pytest.raises(StateStoreError, match="injected"):
        ticks.tick(FlakyStore(path, fail="mark_sent"))
    assert ticks.delivered() == {"dingtalk": 1, "slack": 0}

    ticks.clock.advance(minutes=5)
    during_lease = ticks.tick(store)
    for _ in range(3):
        ticks.clock.advance(minutes=10)
        ticks.tick(store)

    assert (during_lease.sent, during_lease.busy) == (0, 2)
    assert ticks.delivered() == {"dingtalk": 2, "slack": 1}


def test_delivery_store_failure_before_send_sends_nothing_and_next_tick_recovers(
    ticks: Ticks, store: SqliteStore, path: Path
) -> None:
    ticks.seen_then_finished(store)

    with pytest.raises(StateStoreError, match="injected"):
        ticks.tick(FlakyStore(path, fail="claim"))
    assert ticks.delivered() == {"dingtalk": 0, "slack": 0}

    ticks.clock.advance(minutes=5)
    recovered = ticks.tick(store)

    assert (recovered.changes, recovered.sent) == (0, 2)
    assert ticks.delivered() == {"dingtalk": 1, "slack": 1}


def test_delivery_permanent_slack_error_gives_slack_up_and_still_delivers_dingtalk(
    ticks: Ticks, webhooks: WebhookReceiver, store: SqliteStore
) -> None:
    ticks.seen_then_finished(store)
    webhooks.script("slack", 404, "no_service")

    summary = ticks.tick(store)
    later = []
    for _ in range(3):
        ticks.clock.advance(hours=1)
        later.append(ticks.tick(store).as_dict())

    assert (summary.sent, summary.failed, summary.pending) == (1, 1, 0)
    assert summary.given_up == [
        {
            "channel": "slack",
            "announcement": summary.delivered[0]["announcement"],
            "state": "failed",
            "reason": "Slack answered HTTP 404 no_service: the webhook was revoked or never "
            "existed: check SLACK_WEBHOOK_URL",
        }
    ]
    assert summary.delivered[0]["announcement"].endswith("|success")
    assert ticks.delivered() == {"dingtalk": 1, "slack": 0}
    assert ticks.attempts("slack") == 1
    assert [(s["sent"], s["failed"], s["pending"], s["given_up"]) for s in later] == [
        (0, 0, 0, [])
    ] * 3


def test_delivery_message_older_than_max_age_is_given_up_and_reported(
    ticks: Ticks, webhooks: WebhookReceiver, store: SqliteStore
) -> None:
    ticks.seen_then_finished(store)
    webhooks.script("dingtalk", 503, "down")
    webhooks.script("slack", 503, "down")
    ticks.tick(store, max_age=timedelta(hours=2))

    ticks.clock.advance(hours=2, minutes=1)
    expired = ticks.tick(store, max_age=timedelta(hours=2))
    ticks.clock.advance(hours=1)
    after = ticks.tick(store, max_age=timedelta(hours=2))

    assert (expired.sent, expired.expired, expired.pending) == (0, 2, 0)
    assert sorted((g["channel"], g["state"]) for g in expired.given_up) == [
        ("dingtalk", "expired"),
        ("slack", "expired"),
    ]
    assert (after.sent, after.expired, after.given_up) == (0, 0, [])
    assert ticks.delivered() == {"dingtalk": 0, "slack": 0}


def test_delivery_corrupt_record_fails_that_target_only(
    ticks: Ticks, store: SqliteStore, path: Path
) -> None:
    ticks.seen_then_finished(store)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "UPDATE targets SET record = ? WHERE target = ?",
            ('{"v": 1, "task_id": ', f"{CLUSTER}/{OTHER}"),
        )

    summary = ticks.tick(store)

    assert (summary.checked, summary.changes, summary.sent) == (2, 1, 2)
    assert len(summary.errors) == 1
    assert f"the record of {CLUSTER}/{OTHER} is unreadable" in summary.errors[0]
    assert ticks.delivered() == {"dingtalk": 1, "slack": 1}


def test_delivery_record_of_a_later_format_is_refused_for_that_target_only(
    ticks: Ticks, store: SqliteStore, path: Path
) -> None:
    ticks.seen_then_finished(store)
    with closing(sqlite3.connect(path)) as db, db:
        (record,) = db.execute(
            "SELECT record FROM targets WHERE target = ?", (f"{CLUSTER}/{ADDON}",)
        ).fetchone()
        db.execute(
            "UPDATE targets SET record = ? WHERE target = ?",
            (json.dumps({**json.loads(record), "v": 3}), f"{CLUSTER}/{ADDON}"),
        )

    summary = ticks.tick(store)

    assert (summary.checked, summary.changes, summary.sent) == (2, 0, 0)
    assert summary.errors == [
        f"{path}: the record of {CLUSTER}/{ADDON} is unreadable (the record has format 3; "
        "this release reads formats 1, 2); this target is skipped until the record is fixed or "
        "deleted (deleting it makes the next check record the target afresh, silently)"
    ]


def test_delivery_store_written_by_a_later_release_is_refused(path: Path) -> None:
    SqliteStore(path).close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = '3' WHERE key = 'format_version'")

    with pytest.raises(StateStoreError) as raised:
        SqliteStore(path)

    assert str(raised.value) == (
        f"the SQLite state store at {path} has format 3, and this release reads format 2: "
        "run the release that wrote it, or point STATE_STORE at a new file"
    )


def test_delivery_given_up_message_is_in_the_summary_log_line(
    simulator: AckSimulator,
    webhooks: WebhookReceiver,
    path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = environment(simulator, webhooks, f"sqlite://{path}")
    ticks = Ticks(simulator, webhooks, f"sqlite://{path}")
    ticks.start_upgrade()
    handle(b"", None, environ=env)
    ticks.finish_upgrade()
    webhooks.script("slack", 410, "channel_is_archived")
    caplog.set_level("INFO", logger="addon_watch")

    handle(b"", None, environ=env)
    handle(b"", None, environ=env)

    lines = [
        json.loads(r.getMessage())
        for r in caplog.records
        if '"event": "addon_watch.summary"' in r.getMessage()
    ]
    assert [(line["sent"], line["failed"], len(line["given_up"])) for line in lines] == [
        (1, 1, 1),
        (0, 0, 0),
    ]
    (given_up,) = lines[0]["given_up"]
    assert given_up["channel"] == "slack"
    assert given_up["state"] == "failed"
    assert given_up["reason"] == (
        "Slack answered HTTP 410 channel_is_archived: the webhook's channel is archived"
    )
    assert ticks.delivered() == {"dingtalk": 1, "slack": 0}
    assert ticks.attempts("slack") == 1
