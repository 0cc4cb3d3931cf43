"""The OSS store through the real OSS SDK client against an in-memory bucket.

``responses`` serves the bucket on a host name that cannot resolve and refuses
every other URL; only the local ACK simulator and webhook receiver (loopback)
are let through.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from addon_watch.credentials import Credentials
from addon_watch.errors import StateStoreError
from addon_watch.redaction import Secret
from addon_watch.store import FORMAT_VERSION, OutboxItem
from addon_watch.store.oss import OssStore
from addon_watch.watcher import Summary
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.oss import ENDPOINT, REGION, SETTINGS, FakeOss, serving
from tests.fakes.ticks import ADDON, CLUSTER, OTHER, Crash, Ticks, crashing_notifiers
from tests.fakes.webhooks import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "ack-addon-watch/prod"
OSS_SECRET = "oss-test-access-key-secret-0123456789"


@pytest.fixture
def bucket(simulator: AckSimulator, webhooks: WebhookReceiver) -> Iterator[FakeOss]:
    with serving(simulator.base_url, webhooks.base_url) as fake:
        yield fake


@pytest.fixture
def ticks(simulator: AckSimulator, webhooks: WebhookReceiver, bucket: FakeOss) -> Ticks:
    return Ticks(simulator, webhooks, bucket.location(PREFIX), **SETTINGS)


def connect(bucket: FakeOss, name: str | None = None) -> OssStore:
    """A store on the fake bucket, or on ``name``, which nothing serves."""
    return OssStore.connect(
        endpoint=ENDPOINT,
        region=REGION,
        bucket=name or bucket.bucket,
        prefix=PREFIX,
        credentials=lambda: Credentials("oss-test-key-id", Secret(OSS_SECRET)),
    )


def enqueue_only(ticks: Ticks, store: OssStore) -> list[OutboxItem]:
    """Record the change and its outbox entries without sending (the run dies at once)."""
    with pytest.raises(Crash):
        ticks.tick(store, notifiers=crashing_notifiers(), lease=timedelta(0))
    return store.pending().items


def test_oss_store_records_targets_and_outbox_as_versioned_objects(
    ticks: Ticks, bucket: FakeOss
) -> None:
    store = connect(bucket)
    ticks.seen_then_finished(store)

    summary = ticks.tick(store)

    assert (summary.changes, summary.sent) == (1, 2)
    assert ticks.delivered() == {"dingtalk": 1, "slack": 1}
    record = json.loads(bucket.text(f"{PREFIX}/targets/{CLUSTER}/{ADDON}.json"))
    assert (record["v"], record["status"], record["outcome"]) == (
        FORMAT_VERSION,
        "Success",
        "success",
    )
    entries = [json.loads(bucket.text(k)) for k in bucket.keys(f"{PREFIX}/outbox/")]
    assert sorted((e["v"], e["channel"], e["state"], e["attempts"]) for e in entries) == [
        (FORMAT_VERSION, "dingtalk", "sent", 1),
        (FORMAT_VERSION, "slack", "sent", 1),
    ]
    # Settled entries leave no pending marker and no claim behind.
    assert bucket.keys(f"{PREFIX}/pending/") == []
    assert bucket.keys(f"{PREFIX}/claims/") == []


def test_oss_store_concurrent_runs_send_one_message_per_channel(
    ticks: Ticks, bucket: FakeOss
) -> None:
    ticks.seen_then_finished(connect(bucket))
    # Every bucket request takes a little while, so the runs interleave.
    bucket.delay = 0.01
    start = threading.Barrier(4)
    summaries: list[Summary] = []
    failures: list[BaseException] = []

    def run() -> None:
        store = connect(bucket)
        start.wait()
        try:
            summaries.append(ticks.tick(store))
        except BaseException as exc:
            failures.append(exc)

    runners = [threading.Thread(target=run) for _ in range(4)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=60)

    assert failures == []
    assert ticks.delivered() == {"dingtalk": 1, "slack": 1}
    assert sum(s.sent for s in summaries) == 2
    # Only one outbox entry per channel exists, however many runs saw the change.
    assert len(bucket.keys(f"{PREFIX}/outbox/")) == 2


def test_oss_store_claim_is_exclusive_until_the_lease_runs_out(
    ticks: Ticks, bucket: FakeOss
) -> None:
    store = connect(bucket)
    ticks.seen_then_finished(store)
    (item, *_) = enqueue_only(ticks, store)
    now = ticks.clock()

    first = store.claim(item, "run-a", now, timedelta(minutes=10))
    second = store.claim(item, "run-b", now + timedelta(minutes=9), timedelta(minutes=10))
    taken_over = store.claim(item, "run-c", now + timedelta(minutes=11), timedelta(minutes=10))

    assert first is not None and first.owner == "run-a"
    assert second is None
    assert taken_over is not None and taken_over.generation == first.generation + 1
    assert store.mark_sent(taken_over, now)
    # The first run's late result is not recorded over the delivery.
    assert not store.mark_sent(first, now)
    assert store.claim(item, "run-d", now + timedelta(hours=1), timedelta(minutes=10)) is None
    assert [p.channel for p in store.pending().items] == [
        c for c in ("dingtalk", "slack") if c != item.channel
    ]


def test_oss_store_crash_between_claim_and_send_is_delivered_once_after_the_lease(
    ticks: Ticks, bucket: FakeOss
) -> None:
    store = connect(bucket)
    ticks.seen_then_finished(store)

    during_lease, after_lease, later = ticks.crash_between_claim_and_send(store)

    assert (during_lease.sent, during_lease.busy) == (0, 2)
    assert (after_lease.sent, after_lease.busy) == (2, 0)
    assert later.sent == 0
    assert ticks.delivered() == {"dingtalk": 1, "slack": 1}


def test_oss_store_unreachable_fails_the_run_and_sends_nothing(
    ticks: Ticks, bucket: FakeOss
) -> None:
    store = connect(bucket)
    ticks.seen_then_finished(store)
    bucket.faults.append(503)

    with pytest.raises(StateStoreError) as raised:
        ticks.tick(store)
    ticks.clock.advance(minutes=5)
    recovered = ticks.tick(store)

    message = str(raised.value)
    assert message.startswith(
        f"state store oss://{bucket.bucket}/{PREFIX}/: cannot read the record"
    )
    assert "HTTP 503 InternalError: injected fault" in message
    assert OSS_SECRET not in message
    assert (recovered.changes, recovered.sent) == (1, 2)
    assert ticks.delivered() == {"dingtalk": 1, "slack": 1}


def test_oss_store_corrupt_record_fails_that_target_only(ticks: Ticks, bucket: FakeOss) -> None:
    store = connect(bucket)
    ticks.seen_then_finished(store)
    bucket.put_raw(f"{PREFIX}/targets/{CLUSTER}/{OTHER}.json", b"\x00garbage")

    summary = ticks.tick(store)

    assert (summary.checked, summary.changes, summary.sent) == (2, 1, 2)
    assert len(summary.errors) == 1
    assert f"the record of {CLUSTER}/{OTHER} is unreadable" in summary.errors[0]
    assert ticks.delivered() == {"dingtalk": 1, "slack": 1}


def test_oss_store_sdk_is_not_imported_by_the_handler() -> None:
    sdk = ("alibabacloud_oss_v2", "Crypto", "crcmod")
    code = f"import sys, addon_watch.handler; print([m for m in {sdk!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            "PYTHONPATH": str(ROOT / "functions" / "addon_watch"),
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_oss_store_unreachable_endpoint_fails_the_run_naming_the_cause(
    ticks: Ticks, bucket: FakeOss
) -> None:
    # No fake serves this bucket: responses refuses the connection, as a network would.
    store = connect(bucket, name="elsewhere")
    ticks.start_upgrade()

    with pytest.raises(StateStoreError) as raised:
        ticks.tick(store)

    assert str(raised.value) == (
        f"state store oss://elsewhere/{PREFIX}/: cannot read the record of {CLUSTER}/{ADDON}: "
        "ConnectionError; check the bucket, OSS_ENDPOINT and that the function's role may "
        "read and write the prefix"
    )
    assert ticks.delivered() == {"dingtalk": 0, "slack": 0}
