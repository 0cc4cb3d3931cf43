"""Opt-in notices: a paused task, a task running too long, an upgrade available.

Truth tables for each notice (off by default, once per task or state, never on
the first sight of a target), a tick through the handler against the loopback
simulator and receiver for each, and a store written by the release before
the notices read by this one.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import responses

from addon_watch.__main__ import main
from addon_watch.config import ConfigError, load_settings, parse_notices
from addon_watch.credentials import Credentials
from addon_watch.detect import Notices, TargetRecord, observe, record_of
from addon_watch.model import AddonStatus, Announcement, Outcome, Target, Task
from addon_watch.redaction import Secret
from addon_watch.render import Message, Renderer, sample_notices, slack_payload
from addon_watch.routing import RouteFilter, parse_routes
from addon_watch.store import FORMAT_VERSION, SqliteStore
from addon_watch.store.oss import OssStore
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.oss import ENDPOINT, REGION, FakeOss
from tests.fakes.webhooks import WebhookReceiver
from tests.invocation import CLUSTER, environment, tick, watch

TARGET = Target("c0123456789abcdef", "metrics-server")
T1 = "2026-01-02T03:00:00Z"
T2 = "2026-01-02T06:00:00Z"
STARTED = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
NOW = STARTED + timedelta(minutes=30)
LATER = STARTED + timedelta(hours=2, minutes=5)

PAUSED = Notices(paused=True)
STUCK = Notices(stuck_after=timedelta(hours=2))
AVAILABLE = Notices(available=True)
ALL = Notices(paused=True, stuck_after=timedelta(hours=2), available=True)


def status(
    task_id: str | None,
    state: str = "",
    *,
    version: str = "v1",
    ready: bool = False,
    finished: datetime | None = None,
) -> AddonStatus:
    task = None
    if task_id is not None:
        created = datetime.fromisoformat(task_id.replace("Z", "+00:00"))
        task = Task(task_id, state, created, finished, False)
    return AddonStatus(TARGET, version, ready, task)


def seen(task_id: str | None, state: str = "", **extra: Any) -> TargetRecord:
    return record_of(status(task_id, state, **extra))


def kinds(
    previous: TargetRecord | None,
    current: AddonStatus,
    notices: Notices,
    now: datetime = NOW,
) -> list[str]:
    _, found = observe(previous, current, notices, now)
    return [item.outcome.value for item in found]


# --- truth tables ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "current", "notices", "expected"),
    [
        pytest.param(seen(T1, "Running"), status(T1, "Paused"), Notices(), [], id="off-by-default"),
        pytest.param(seen(T1, "Running"), status(T1, "Paused"), PAUSED, ["paused"], id="paused"),
        pytest.param(seen(T1, "Running"), status(T1, "PAUSED"), PAUSED, ["paused"], id="any-case"),
        pytest.param(None, status(T1, "Paused"), PAUSED, [], id="not-on-first-sight"),
        pytest.param(seen(None), status(T1, "Paused"), PAUSED, ["paused"], id="new-task-paused"),
        pytest.param(seen(T1, "Running"), status(T1, "Running"), PAUSED, [], id="running"),
        pytest.param(
            seen(T1, "Paused"), status(T1, "Canceled"), PAUSED, ["canceled"], id="ended-not-paused"
        ),
    ],
)
def test_paused_truth_table(
    previous: TargetRecord | None, current: AddonStatus, notices: Notices, expected: list[str]
) -> None:
    assert kinds(previous, current, notices) == expected


def test_paused_is_told_once_per_task() -> None:
    record, first = observe(seen(T1, "Running"), status(T1, "Paused"), PAUSED, NOW)
    record, again = observe(record, status(T1, "Paused"), PAUSED, NOW)
    record, resumed = observe(record, status(T1, "Running"), PAUSED, NOW)
    record, paused_again = observe(record, status(T1, "Paused"), PAUSED, NOW)
    _, next_task = observe(record, status(T2, "Paused"), PAUSED, NOW)

    assert [len(first), len(again), len(resumed), len(paused_again)] == [1, 0, 0, 0]
    assert [item.outcome for item in next_task] == [Outcome.PAUSED]
    assert first[0].key == f"{TARGET.key}|{T1}|paused"
    assert (first[0].status, first[0].finished_at, first[0].seen_at) == ("Paused", None, NOW)


def test_paused_on_first_sight_is_recorded_not_told() -> None:
    record, found = observe(None, status(T1, "Paused"), PAUSED, NOW)
    _, later = observe(record, status(T1, "Paused"), PAUSED, NOW)

    assert (found, later, record.paused_notified) == ([], [], True)


@pytest.mark.parametrize(
    ("previous", "current", "notices", "now", "expected"),
    [
        pytest.param(seen(T1, "Running"), status(T1, "Running"), Notices(), LATER, [], id="off"),
        pytest.param(
            seen(T1, "Running"), status(T1, "Running"), STUCK, LATER, ["stuck"], id="running-long"
        ),
        pytest.param(
            seen(T1, "Running"), status(T1, "Upgrading"), STUCK, LATER, ["stuck"], id="upgrading"
        ),
        pytest.param(
            seen(T1, "Paused"), status(T1, "Paused"), STUCK, LATER, ["stuck"], id="paused-long"
        ),
        pytest.param(seen(T1, "Running"), status(T1, "Running"), STUCK, NOW, [], id="not-yet"),
        pytest.param(
            seen(T1, "Running"),
            status(T1, "Running"),
            STUCK,
            STARTED + timedelta(hours=2),
            ["stuck"],
            id="exactly-at-the-limit",
        ),
        pytest.param(None, status(T1, "Running"), STUCK, LATER, [], id="not-on-first-sight"),
        pytest.param(
            seen(T1, "Running"), status(T1, "Success"), STUCK, LATER, ["success"], id="ended"
        ),
    ],
)
def test_stuck_truth_table(
    previous: TargetRecord | None,
    current: AddonStatus,
    notices: Notices,
    now: datetime,
    expected: list[str],
) -> None:
    assert kinds(previous, current, notices, now) == expected


def test_stuck_is_told_once_per_task_and_says_how_long() -> None:
    record, first = observe(seen(T1, "Running"), status(T1, "Running"), STUCK, LATER)
    record, again = observe(record, status(T1, "Upgrading"), STUCK, LATER + timedelta(hours=5))
    _, ended = observe(record, status(T1, "Success"), STUCK, LATER + timedelta(hours=6))

    assert [item.outcome for item in first] == [Outcome.STUCK]
    assert again == []
    assert [item.outcome for item in ended] == [Outcome.SUCCESS]
    context = Renderer().context(first[0], "en")
    assert context["running_seconds"] == 2 * 3600 + 5 * 60


def test_paused_and_stuck_together_are_two_announcements() -> None:
    _, found = observe(seen(T1, "Running"), status(T1, "Paused"), ALL, LATER)

    assert [item.key for item in found] == [
        f"{TARGET.key}|{T1}|paused",
        f"{TARGET.key}|{T1}|stuck",
    ]


@pytest.mark.parametrize(
    ("previous", "current", "notices", "expected"),
    [
        pytest.param(seen(None), status(None, ready=True), Notices(), [], id="off"),
        pytest.param(seen(None), status(None, ready=True), AVAILABLE, [">v1"], id="turns-ready"),
        pytest.param(
            seen(None, ready=True), status(None, ready=True), AVAILABLE, [], id="still-ready"
        ),
        pytest.param(
            seen(None, ready=True),
            status(None, ready=True, version="v2"),
            AVAILABLE,
            [">v2", "v1>v2"],
            id="ready-at-a-new-version",
        ),
        pytest.param(None, status(None, ready=True), AVAILABLE, [], id="not-on-first-sight"),
        pytest.param(
            seen(None), status(None, version="v2"), AVAILABLE, ["v1>v2"], id="version-moved"
        ),
        pytest.param(
            seen(T1, "Running"),
            status(T1, "Running", version="v2"),
            AVAILABLE,
            [],
            id="moved-during-a-task",
        ),
        pytest.param(
            seen(T1, "Running"),
            status(T1, "Success", version="v2", finished=NOW),
            AVAILABLE,
            [],
            id="moved-by-the-announced-task",
        ),
        pytest.param(
            seen(T1, "Success", finished=NOW),
            status(T1, "Success", version="v2", finished=NOW),
            AVAILABLE,
            [],
            id="moved-a-tick-after-the-task",
        ),
        pytest.param(
            seen(T1, "Success", finished=STARTED),
            status(T1, "Success", version="v2", finished=STARTED - timedelta(days=3)),
            AVAILABLE,
            ["v1>v2"],
            id="moved-long-after-the-task",
        ),
        pytest.param(
            seen(T1, "Failed"),
            status(T1, "Failed", version="v2"),
            AVAILABLE,
            ["v1>v2"],
            id="moved-after-a-failed-task",
        ),
        pytest.param(seen(None), status(None, version=""), AVAILABLE, [], id="version-vanished"),
    ],
)
def test_available_truth_table(
    previous: TargetRecord | None, current: AddonStatus, notices: Notices, expected: list[str]
) -> None:
    _, found = observe(previous, current, notices, NOW)

    notices_found = [item for item in found if item.outcome is Outcome.AVAILABLE]
    assert [item.key.split("|")[1] for item in notices_found] == expected


def test_available_is_told_once_per_state() -> None:
    record, first = observe(seen(None), status(None, ready=True), AVAILABLE, NOW)
    record, again = observe(record, status(None, ready=True), AVAILABLE, NOW)
    record, _ = observe(record, status(None), AVAILABLE, NOW)
    _, flapped = observe(record, status(None, ready=True), AVAILABLE, NOW)

    assert [len(first), len(again)] == [1, 0]
    # Ready again at the same version: the same key, which the outbox holds once.
    assert [item.key for item in flapped] == [first[0].key]


# --- through the store and the handler ---------------------------------------------------------


def test_store_enqueues_each_announcement_for_the_channels_that_take_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3")
    decide = partial(observe, current=status(T1, "Paused"), notices=ALL, now=LATER)
    store.observe(TARGET, partial(observe, current=status(T1, "Running")), ["slack"], NOW)

    def route(item: Announcement) -> list[str]:
        return ["slack", "dingtalk"] if item.outcome is Outcome.STUCK else ["slack"]

    found = store.observe(TARGET, decide, route, LATER)

    rows = store._db.execute("SELECT announcement_key, channel FROM outbox ORDER BY 1, 2")
    assert [item.outcome for item in found] == [Outcome.PAUSED, Outcome.STUCK]
    assert rows.fetchall() == [
        (f"{TARGET.key}|{T1}|paused", "slack"),
        (f"{TARGET.key}|{T1}|stuck", "dingtalk"),
        (f"{TARGET.key}|{T1}|stuck", "slack"),
    ]
    record = store.get_target(TARGET)
    assert record is not None and (record.paused_notified, record.stuck_notified) == (True, True)


def pause(simulator: AckSimulator) -> None:
    task = simulator.clusters[CLUSTER]["metrics-server"].task
    assert task is not None
    task["status"] = "Paused"


def _titles(webhooks: WebhookReceiver) -> list[str]:
    return [payload["text"] for payload in webhooks.delivered("slack")]


@pytest.fixture
def env(simulator: AckSimulator, webhooks: WebhookReceiver, tmp_path: Path) -> dict[str, str]:
    watch(simulator)
    return environment(simulator, webhooks, tmp_path)


def test_handler_paused_notice_end_to_end(
    env: dict[str, str], simulator: AckSimulator, webhooks: WebhookReceiver
) -> None:
    tick({**env, "NOTIFY_PAUSED": "true"})
    pause(simulator)

    quiet = tick(env)
    summary = tick({**env, "NOTIFY_PAUSED": "true"})
    again = tick({**env, "NOTIFY_PAUSED": "true"})

    assert (quiet["changes"], summary["changes"], again["changes"]) == (0, 1, 0)
    assert summary["sent"] == 2
    assert _titles(webhooks) == [
        f":double_vertical_bar: Upgrade paused: metrics-server in {CLUSTER}"
    ]
    (dingtalk,) = webhooks.delivered("dingtalk")
    assert dingtalk["markdown"]["title"].startswith("⏸ 升级已暂停：metrics-server")
    assert webhooks.delivered("slack")[0]["attachments"][0]["color"] == "#f2c744"


def test_handler_stuck_notice_end_to_end(
    env: dict[str, str], simulator: AckSimulator, webhooks: WebhookReceiver
) -> None:
    on = {**env, "NOTIFY_STUCK_AFTER": "2h"}
    simulator.clusters[CLUSTER]["metrics-server"].task = None
    tick(on)
    # The handler runs on the real clock: a task created three hours ago.
    created = datetime.now(timezone.utc) - timedelta(hours=3)
    simulator.start_task(CLUSTER, "metrics-server", created.strftime("%Y-%m-%dT%H:%M:%SZ"))

    summary = tick(on)
    again = tick(on)

    assert (summary["changes"], summary["sent"], again["changes"]) == (1, 2, 0)
    (title,) = _titles(webhooks)
    assert title.startswith(":hourglass_flowing_sand: Upgrade running for 3h")
    assert webhooks.delivered("slack")[0]["attachments"][0]["color"] == "#e8912d"
    assert "已持续 3小时" in webhooks.delivered("dingtalk")[0]["markdown"]["title"]


def test_handler_available_notice_end_to_end(
    env: dict[str, str], simulator: AckSimulator, webhooks: WebhookReceiver
) -> None:
    on = {**env, "NOTIFY_UPGRADE_AVAILABLE": "true"}
    tick(on)
    simulator.clusters[CLUSTER]["flexvolume"].ready_to_upgrade = True

    summary = tick(on)
    again = tick(on)
    simulator.clusters[CLUSTER]["flexvolume"].version = "v1.31.0"
    moved = tick(on)

    assert (summary["changes"], again["changes"], moved["changes"]) == (1, 0, 2)
    assert _titles(webhooks) == [
        f":arrow_up: Upgrade available: flexvolume in {CLUSTER}",
        "2 addon upgrade updates: 0 succeeded, 0 failed, 0 canceled; "
        "0 paused, 0 running long, 2 available",
    ]
    digest = webhooks.delivered("dingtalk")[1]["markdown"]["text"]
    assert "v1.30.1 → v1.31.0" in digest


def test_handler_sends_no_notice_when_the_switches_are_off(
    env: dict[str, str], simulator: AckSimulator, webhooks: WebhookReceiver
) -> None:
    tick(env)
    pause(simulator)
    simulator.clusters[CLUSTER]["metrics-server"].ready_to_upgrade = True
    simulator.clusters[CLUSTER]["flexvolume"].version = "v9"

    summary = tick(env)

    assert (summary["changes"], summary["sent"], webhooks.received) == (0, 0, [])


# --- a store written by the release before the notices ----------------------------------------

V1_RECORD = {
    "v": 1,
    "task_id": T1,
    "status": "Running",
    "outcome": None,
    "version": "v1",
    "task_created_at": "2026-01-02T03:00:00+00:00",
}
V1_ANNOUNCEMENT = {
    "v": 1,
    "cluster_id": TARGET.cluster_id,
    "component": TARGET.component,
    "task_id": "2026-01-01T00:00:00Z",
    "outcome": "failed",
    "version": "v0",
    "status": "Failed",
    "created_at": "2026-01-01T00:00:00+00:00",
    "finished_at": "2026-01-01T00:05:00+00:00",
}


def v1_store(path: Path) -> None:
    """A SQLite file as the release before the notices left it: a record and a pending message."""
    SqliteStore(path).close()
    old_key = f"{TARGET.key}|2026-01-01T00:00:00Z|failed"
    # Written now: the message is still young enough to be sent.
    stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
        db.execute(
            "INSERT INTO targets (target, record, updated_at) VALUES (?, ?, ?)",
            (TARGET.key, json.dumps(V1_RECORD), stamp),
        )
        db.execute(
            "INSERT INTO outbox (announcement_key, channel, announcement, state, created_at, "
            "updated_at) VALUES (?, 'slack', ?, 'pending', ?, ?)",
            (old_key, json.dumps(V1_ANNOUNCEMENT), stamp, stamp),
        )


def test_v1_store_is_read_by_this_release(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    v1_store(path)

    store = SqliteStore(path)
    record = store.get_target(TARGET)
    (waiting,) = store.pending().items
    found = store.observe(
        TARGET, partial(observe, current=status(T1, "Paused"), notices=ALL, now=LATER), [], LATER
    )

    assert record == TargetRecord(T1, "Running", None, "v1", STARTED)
    assert (record.paused_notified, record.stuck_notified, record.ready_to_upgrade) == (
        False,
        False,
        None,
    )
    # The key of an in-flight message is the one the older release wrote.
    assert waiting.key == f"{TARGET.key}|2026-01-01T00:00:00Z|failed|slack"
    assert (waiting.announcement.previous_version, waiting.announcement.seen_at) == (None, None)
    assert [item.outcome for item in found] == [Outcome.PAUSED, Outcome.STUCK]
    with closing(sqlite3.connect(path)) as db:
        (meta,) = db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        (text,) = db.execute("SELECT record FROM targets").fetchone()
    assert meta == str(FORMAT_VERSION) == "2"
    assert json.loads(text)["v"] == 2 and json.loads(text)["paused_notified"] is True


def test_v1_store_through_the_handler_delivers_the_waiting_message(
    env: dict[str, str], webhooks: WebhookReceiver, tmp_path: Path
) -> None:
    path = tmp_path / "state.sqlite3"
    v1_store(path)

    summary = tick({**env, "NOTIFY_UPGRADE_AVAILABLE": "true", "NOTIFY_PAUSED": "true"})

    assert (summary["errors"], summary["changes"]) == ([], 0)
    assert {"channel": "slack", "announcement": f"{TARGET.key}|2026-01-01T00:00:00Z|failed"} in (
        summary["delivered"]
    )


def test_v1_record_unknown_readiness_is_not_taken_for_a_change() -> None:
    previous = TargetRecord(None, "", None, "v1")

    assert kinds(previous, status(None, ready=True), AVAILABLE) == []


# --- settings, routing, rendering, the render command ------------------------------------------


def test_settings_switches_are_off_by_default_and_named_when_wrong() -> None:
    assert parse_notices({}) == Notices()
    assert parse_notices(
        {"NOTIFY_PAUSED": "yes", "NOTIFY_STUCK_AFTER": "90m", "NOTIFY_UPGRADE_AVAILABLE": "1"}
    ) == Notices(True, timedelta(minutes=90), True)
    base = {"WATCH_TARGETS": f"{CLUSTER}/metrics-server", "ACK_REGION": "cn-hangzhou"}
    base["SLACK_WEBHOOK_URL"] = "http://127.0.0.1:9/services/T/B/x"
    assert load_settings(base).notices == Notices()
    with pytest.raises(ConfigError, match="NOTIFY_STUCK_AFTER is '2 hours'"):
        parse_notices({"NOTIFY_STUCK_AFTER": "2 hours"})
    with pytest.raises(ConfigError, match="NOTIFY_PAUSED is 'maybe'"):
        parse_notices({"NOTIFY_PAUSED": "maybe"})


def test_routing_filters_take_the_notice_kinds() -> None:
    (spec,) = parse_routes(
        "channels:\n  - {name: ops, type: slack, webhook_url: 'http://127.0.0.1:9/s',"
        " filters: {outcomes: [failed, paused, stuck, available]}}\n",
        "test.yaml",
        {},
    )
    paused, stuck, available = sample_notices()

    assert spec.filter == RouteFilter(
        outcomes=frozenset({"failed", "paused", "stuck", "available"})
    )
    assert [spec.filter.accepts(item) for item in (paused, stuck, available)] == [True] * 3
    assert not RouteFilter(outcomes=frozenset({"failed"})).accepts(paused)


@pytest.mark.parametrize("channel", ["dingtalk", "slack"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_render_every_notice_in_every_builtin(channel: str, language: str) -> None:
    renderer = Renderer()
    paused, stuck, available = sample_notices()
    texts = {
        item.outcome: renderer.render(channel, language, item).text
        for item in (paused, stuck, available)
    }
    digest = renderer.render_group(channel, language, [paused, stuck, available])

    assert ("2小时5分" if language == "zh" else "2h 5m") in texts[Outcome.STUCK]
    assert "Paused" in texts[Outcome.PAUSED]
    assert "v2.8.0 → v2.9.1" in texts[Outcome.AVAILABLE]
    assert "v2.8.0 → v2.9.1" in digest.text
    assert digest.outcomes == ("paused", "stuck", "available")


def test_render_ready_notice_names_the_current_version() -> None:
    item = Announcement(TARGET, "", Outcome.AVAILABLE, "v1.2.3", "", None, None, seen_at=NOW)

    message = Renderer().render("dingtalk", "en", item)

    assert message.title == f"⬆ Upgrade available: metrics-server ({TARGET.cluster_id})"
    assert "**Version**: v1.2.3, ready to upgrade" in message.text


@pytest.mark.parametrize(
    ("kinds_in_message", "colour"),
    [
        (("paused",), "#f2c744"),
        (("stuck",), "#e8912d"),
        (("available",), "#1d9bd1"),
        (("success", "available"), "#2eb886"),
        (("paused", "stuck"), "#e8912d"),
        (("failed", "stuck"), "#e01e5a"),
    ],
)
def test_slack_colour_per_kind(kinds_in_message: tuple[str, ...], colour: str) -> None:
    payload = slack_payload(Message("t", "x", kinds_in_message))

    assert payload["attachments"][0]["color"] == colour


def test_cli_render_digest_of_an_outcome_and_a_notice(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", "--outcome", "failed", "--outcome", "paused", "--channel", "slack"], {})

    (preview,) = json.loads(capsys.readouterr().out)
    assert code == 0
    assert preview["title"].startswith("2 addon upgrade updates: 0 succeeded, 1 failed")
    assert preview["payload"]["attachments"][0]["color"] == "#e01e5a"


def test_cli_render_shows_the_configured_channels_routed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "channels:\n"
        "  - {name: ops, type: dingtalk, webhook_url: 'http://127.0.0.1:9/robot/send?access_token=t',"
        " keyword: ADDON-WATCH, filters: {outcomes: [stuck]}}\n"
        "  - {name: all, type: slack, webhook_url: 'http://127.0.0.1:9/services/T/B/x'}\n"
    )
    env = {
        "WATCH_TARGETS": f"{CLUSTER}/metrics-server",
        "ACK_REGION": "cn-hangzhou",
        "ADDON_WATCH_CONFIG": str(routes),
        "STATE_STORE": f"sqlite://{tmp_path / 'state.sqlite3'}",
    }

    code = main(["render", "--outcome", "success", "--outcome", "stuck"], env)

    previews = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(p["channel"], p["language"]) for p in previews] == [
        ("dingtalk:ops", "zh"),
        ("slack:all", "en"),
    ]
    # The filtered robot gets the stuck notice alone, with its keyword; the other a digest.
    assert previews[0]["title"].startswith("⏳ 升级已持续 2小时5分")
    assert previews[0]["payload"]["markdown"]["text"].endswith("ADDON-WATCH")
    assert previews[1]["title"].startswith("2 addon upgrade updates")


def test_v1_objects_in_oss_are_read_by_this_release() -> None:
    fake = FakeOss()
    prefix = "ack-addon-watch"
    old_item = {
        "v": 1,
        "announcement": V1_ANNOUNCEMENT,
        "channel": "slack",
        "state": "pending",
        "attempts": 0,
        "created_at": "2026-01-02T02:00:00+00:00",
        "next_attempt_at": None,
        "last_error": None,
        "generation": 0,
    }
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.install(rsps)
        fake.put_raw(
            f"{prefix}/targets/{TARGET.cluster_id}/{TARGET.component}.json",
            json.dumps(V1_RECORD).encode(),
        )
        fake.put_raw(f"{prefix}/outbox/old.json", json.dumps(old_item).encode())
        fake.put_raw(f"{prefix}/pending/old", b'{"v": 1}')
        store = OssStore.connect(
            endpoint=ENDPOINT,
            region=REGION,
            bucket=fake.bucket,
            prefix=prefix,
            credentials=lambda: Credentials("oss-test-key-id", Secret("oss-test-secret")),
        )

        (waiting,) = store.pending().items
        decide = partial(observe, current=status(T1, "Paused"), notices=ALL, now=LATER)
        found = store.observe(TARGET, decide, lambda item: ["slack"], LATER)
        record = json.loads(
            fake.text(f"{prefix}/targets/{TARGET.cluster_id}/{TARGET.component}.json")
        )

    assert waiting.key == f"{TARGET.key}|2026-01-01T00:00:00Z|failed|slack"
    assert [item.outcome for item in found] == [Outcome.PAUSED, Outcome.STUCK]
    assert (record["v"], record["paused_notified"], record["stuck_notified"]) == (2, True, True)
    assert len(fake.keys(f"{prefix}/outbox/")) == 3
