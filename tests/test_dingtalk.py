"""DingTalk robots: signing, errcode classes, size, mentions, keyword and rate."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from addon_watch.config import load_settings
from addon_watch.errors import DeliveryError
from addon_watch.model import Outcome
from addon_watch.notify import DingTalkNotifier, RateWindow, dingtalk_sign, dingtalk_url
from addon_watch.redaction import Secret
from addon_watch.render import (
    DingTalkOptions,
    Message,
    Renderer,
    body_bytes,
    dingtalk_line_breaks,
    dingtalk_payload,
)
from addon_watch.routing import build_routes
from addon_watch.store import SqliteStore
from tests.delivery_helpers import announcement, deliver, enqueue, many, open_store, states
from tests.fakes.webhooks import DINGTALK_SECRET, DINGTALK_TOKEN, WebhookReceiver

VECTOR_SECRET = "SEC" + "b" * 61
VECTOR_TIMESTAMP = 1767225600123
VECTOR_SIGN = "qiZ6nYy5JGVwVg1RKEmgMrtQDRHslH2e57yFmzMn5e8="


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = open_store(tmp_path)
    yield store
    store.close()


def robot(hooks: WebhookReceiver, **kwargs: object) -> DingTalkNotifier:
    """A notifier for the fake robot with its own rate window (not the instance-wide one)."""
    return DingTalkNotifier(
        Secret(hooks.dingtalk_url),
        Secret(DINGTALK_SECRET),
        window=RateWindow(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_dingtalk_sign_documented_vector_matches() -> None:
    assert dingtalk_sign(VECTOR_SECRET, VECTOR_TIMESTAMP) == VECTOR_SIGN


def test_dingtalk_url_existing_timestamp_and_sign_each_sent_once_encoded_once() -> None:
    stale = "https://robot.example/robot/send?access_token=t&timestamp=1&sign=old"

    url = dingtalk_url(stale, VECTOR_SECRET, VECTOR_TIMESTAMP)

    assert url.endswith(
        f"timestamp={VECTOR_TIMESTAMP}&sign=qiZ6nYy5JGVwVg1RKEmgMrtQDRHslH2e57yFmzMn5e8%3D"
    )
    names = [name for name, _ in parse_qsl(urlsplit(url).query)]
    assert names == ["access_token", "timestamp", "sign"]


def test_dingtalk_five_sends_in_one_warm_instance_sign_each_fresh(
    webhooks: WebhookReceiver,
) -> None:
    ticks = iter(range(5))
    notifier = DingTalkNotifier(
        Secret(webhooks.dingtalk_url),
        Secret(DINGTALK_SECRET),
        clock=lambda: time.time() + next(ticks),
        window=RateWindow(),
    )

    for number in range(5):
        notifier.send(dingtalk_payload(Message("t", f"message {number}")))

    queries = [r.query for r in webhooks.received]
    assert len(queries) == 5 and all(r.accepted for r in webhooks.received)
    for query in queries:
        names = [name for name, _ in query]
        assert names.count("timestamp") == 1 and names.count("sign") == 1
    assert len({dict(q)["timestamp"] for q in queries}) == 5
    assert len({dict(q)["sign"] for q in queries}) == 5


# errcode, errmsg, outbox state after the tick, what the log says
ERRCODES = [
    pytest.param(0, "ok", "sent", None, id="0-delivered"),
    pytest.param(130101, "send too fast", "pending", "deferred: throttled", id="130101-throttled"),
    pytest.param(310000, "sign not match", "failed", "DINGTALK_SECRET", id="310000-sign"),
    pytest.param(310000, "invalid timestamp", "failed", "clock", id="310000-timestamp"),
    pytest.param(
        310000, "keywords not in content", "failed", "DINGTALK_KEYWORD", id="310000-keyword"
    ),
    pytest.param(310000, "ip X not in whitelist", "failed", "IP allowlist", id="310000-ip"),
    pytest.param(300001, "token is not exist", "failed", "access token", id="300001-token"),
    pytest.param(300005, "token is not exist", "failed", "access token", id="300005-token"),
    pytest.param(460101, "message too long", "failed", "too long", id="460101-too-long"),
    pytest.param(101002, "message too long", "failed", "too long", id="101002-too-long"),
    pytest.param(-1, "system busy", "pending", "next after", id="unknown-transient"),
]


@pytest.mark.parametrize(("errcode", "errmsg", "state", "log"), ERRCODES)
def test_dingtalk_errcode_class_decides_retry_defer_or_give_up(
    webhooks: WebhookReceiver,
    store: SqliteStore,
    caplog: pytest.LogCaptureFixture,
    errcode: int,
    errmsg: str,
    state: str,
    log: str | None,
) -> None:
    item = announcement()
    enqueue(store, [item], ["dingtalk"])
    webhooks.script("dingtalk", 200, {"errcode": errcode, "errmsg": errmsg})
    notifier = robot(webhooks)

    with caplog.at_level(logging.ERROR, logger="addon_watch"):
        summary = deliver(store, {"dingtalk": notifier})

    assert states(store) == {f"{item.key}|dingtalk": state}
    assert summary.sent == (state == "sent")
    assert summary.failed == (state == "failed")
    assert summary.pending == (state == "pending")
    if log is None:
        assert not caplog.records
    else:
        line = caplog.records[-1].getMessage()
        assert log in line and str(errcode) in line
        assert line.startswith("gave up") == (state == "failed")
        assert DINGTALK_TOKEN not in line and DINGTALK_SECRET not in line


def test_dingtalk_throttled_message_waits_out_the_hold_on_any_instance(
    webhooks: WebhookReceiver, store: SqliteStore
) -> None:
    enqueue(store, [announcement()], ["dingtalk"])
    webhooks.script("dingtalk", 200, {"errcode": 130101, "errmsg": "send too fast"})
    before = datetime.now(timezone.utc)
    deliver(store, {"dingtalk": robot(webhooks)})

    # Another instance: a notifier of its own, knowing nothing of the first.
    again = deliver(store, {"dingtalk": robot(webhooks)})

    assert len(webhooks.received) == 1
    assert again.pending == 1 and again.sent == 0
    (waiting,) = store.pending().items
    assert waiting.next_attempt_at is not None
    assert waiting.next_attempt_at - before >= timedelta(minutes=10)


def test_dingtalk_unreachable_robot_is_retried_next_tick(store: SqliteStore) -> None:
    enqueue(store, [announcement()], ["dingtalk"])
    closed = "http://127.0.0.1:9/robot/send?access_token=x"
    notifier = DingTalkNotifier(Secret(closed), window=RateWindow())

    summary = deliver(store, {"dingtalk": notifier})

    assert summary.pending == 1 and "could not be reached" in summary.errors[0]
    assert list(states(store).values()) == ["pending"]


@pytest.mark.parametrize("field", ["component", "cluster_id", "version", "status"])
@pytest.mark.parametrize("nasty", ['say "hi"', "two\nlines", 'both "\n" {{ 7*7 }}'])
def test_dingtalk_quote_or_newline_in_a_field_is_delivered_as_typed(
    webhooks: WebhookReceiver, store: SqliteStore, field: str, nasty: str
) -> None:
    item = announcement(**{field: f"x-{nasty}"})
    enqueue(store, [item], ["dingtalk"])

    summary = deliver(store, {"dingtalk": robot(webhooks)}, languages={"dingtalk": "en"})

    assert summary.sent == 1
    (payload,) = webhooks.delivered("dingtalk")
    text = payload["markdown"]["text"]
    assert f"x-{nasty}".replace("\n", " ") in text.replace("\\", "")
    if "{{" in nasty:
        assert "{{ 7" in text and "49" not in text


def test_dingtalk_30000_byte_message_is_cut_under_the_limit_with_a_marker(
    webhooks: WebhookReceiver,
) -> None:
    line = "升级记录 line with some ASCII and 中文字符 to count bytes, not characters.\n\n"
    text = line * (30_000 // len(line.encode()) + 1)
    assert len(text.encode()) > 30_000
    options = DingTalkOptions(at_mobiles=("13800000000",), keyword="ACK")

    payload = dingtalk_payload(Message("big", text, ("failed",), "zh"), options)
    robot(webhooks, options=options).send(payload)

    size = len(body_bytes(payload))
    body = payload["markdown"]["text"]
    assert 19_000 < size < 20_000
    assert "消息过长，以下内容已截断" in body
    assert body.endswith("@13800000000 ACK")
    kept = body.split("……")[0].rstrip()
    assert kept.endswith("bytes, not characters.")
    assert webhooks.delivered("dingtalk") == [payload]


def test_dingtalk_mention_and_keyword_in_the_cut_part_are_written_again() -> None:
    text = "x" * 25_000 + "\n\nACK @13800000000"
    options = DingTalkOptions(at_mobiles=("13800000000",), keyword="ACK")

    payload = dingtalk_payload(Message("t", text), options)

    body = payload["markdown"]["text"]
    assert body.endswith("the message was too long for DingTalk)\n\n@13800000000 ACK")
    assert len(body_bytes(payload)) < 20_000


def test_dingtalk_mention_and_keyword_kept_by_the_cut_are_not_repeated() -> None:
    text = "ACK @13800000000\n\n" + "x" * 25_000
    options = DingTalkOptions(at_mobiles=("13800000000",), keyword="ACK")

    payload = dingtalk_payload(Message("t", text), options)

    body = payload["markdown"]["text"]
    assert body.startswith("ACK @13800000000\n\n") and body.count("@13800000000") == 1
    assert body.count("ACK") == 1


def test_dingtalk_short_message_is_not_cut() -> None:
    payload = dingtalk_payload(Message("t", "short"))

    assert payload["markdown"]["text"] == "short"


def test_dingtalk_mention_missing_from_template_is_written_into_text(
    webhooks: WebhookReceiver, store: SqliteStore, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "dingtalk.en.j2").write_text(
        "{% set title %}{{ component }}{% endset %}\n{{ component }} ended: {{ outcome }}\n"
    )
    options = DingTalkOptions(at_mobiles=("13800000000",), at_user_ids=("manager4711",))
    enqueue(store, [announcement()], ["dingtalk"])

    deliver(
        store,
        {"dingtalk": robot(webhooks, options=options)},
        renderer=Renderer(templates),
        languages={"dingtalk": "en"},
    )

    (payload,) = webhooks.delivered("dingtalk")
    assert payload["markdown"]["text"] == (
        "metrics-server ended: success\n\n@13800000000 @manager4711"
    )
    assert payload["at"] == {
        "atMobiles": ["13800000000"],
        "atUserIds": ["manager4711"],
        "isAtAll": False,
    }


def test_dingtalk_mention_already_in_text_is_not_repeated() -> None:
    options = DingTalkOptions(at_mobiles=("13800000000",))

    payload = dingtalk_payload(Message("t", "ping @13800000000"), options)

    assert payload["markdown"]["text"] == "ping @13800000000"


def test_dingtalk_keyword_is_added_when_the_text_lacks_it() -> None:
    with WebhookReceiver(dingtalk_keyword="ACK告警") as hooks:
        options = DingTalkOptions(keyword="ACK告警")
        notifier = robot(hooks, options=options)

        notifier.send(notifier.build(Message("t", "upgrade done")))

        assert hooks.delivered("dingtalk")[0]["markdown"]["text"] == "upgrade done\n\nACK告警"


def test_dingtalk_keyword_missing_is_reported_with_what_to_set() -> None:
    with WebhookReceiver(dingtalk_keyword="ACK告警") as hooks:
        with pytest.raises(DeliveryError) as caught:
            robot(hooks).send(dingtalk_payload(Message("t", "upgrade done")))

    assert caught.value.permanent and "DINGTALK_KEYWORD" in str(caught.value)


def test_dingtalk_single_newlines_become_markdown_line_breaks() -> None:
    assert dingtalk_line_breaks("a\nb\n\nc  \nd") == "a  \nb\n\nc  \nd"


def test_dingtalk_25_outcomes_in_one_tick_go_out_as_one_message(store: SqliteStore) -> None:
    items = many(25)
    enqueue(store, items, ["dingtalk"])
    with WebhookReceiver(dingtalk_rate_limit=20) as hooks:
        summary = deliver(store, {"dingtalk": robot(hooks)}, languages={"dingtalk": "zh"})

        received = hooks.received

    assert len(received) == 1 and received[0].accepted
    text = received[0].payload["markdown"]["text"]
    assert all(f"**{item.target.component}**" in text for item in items)
    assert "25 个组件升级结束" in text
    assert summary.sent == 25 and summary.pending == summary.failed == 0
    assert set(states(store).values()) == {"sent"}


def test_dingtalk_more_than_20_messages_a_minute_are_deferred_locally() -> None:
    with WebhookReceiver(dingtalk_rate_limit=20) as hooks:
        notifier = robot(hooks)
        for number in range(20):
            notifier.send(dingtalk_payload(Message("t", f"m{number}")))

        with pytest.raises(DeliveryError) as caught:
            notifier.send(dingtalk_payload(Message("t", "one too many")))

        assert len(hooks.received) == 20 and all(r.accepted for r in hooks.received)
    assert caught.value.retry_after is not None and not caught.value.permanent


def test_dingtalk_notifier_repr_and_errors_hide_the_token_and_secret(
    webhooks: WebhookReceiver,
) -> None:
    notifier = robot(webhooks)
    webhooks.script("dingtalk", 200, {"errcode": 300001, "errmsg": "token is not exist"})

    with pytest.raises(DeliveryError) as caught:
        notifier.send(dingtalk_payload(Message("t", "x")))

    shown = repr(notifier) + str(caught.value) + repr(caught.value)
    assert DINGTALK_TOKEN not in shown and DINGTALK_SECRET not in shown


def test_dingtalk_body_is_compact_utf8_json(webhooks: WebhookReceiver) -> None:
    payload = dingtalk_payload(Message("标题", "升级成功"))

    robot(webhooks).send(payload)

    assert webhooks.delivered("dingtalk") == [json.loads(body_bytes(payload))]
    assert "升级成功".encode() in body_bytes(payload)


def test_dingtalk_http_error_from_a_proxy_is_classified(webhooks: WebhookReceiver) -> None:
    webhooks.script("dingtalk", 502, "bad gateway")

    with pytest.raises(DeliveryError) as caught:
        robot(webhooks, session=requests.Session()).send(dingtalk_payload(Message("t", "x")))

    assert not caught.value.permanent and "HTTP 502" in str(caught.value)


def test_dingtalk_failed_outcome_digest_counts(store: SqliteStore) -> None:
    items = [announcement("a", Outcome.FAILED, status="Failed"), announcement("b")]
    enqueue(store, items, ["dingtalk"])
    with WebhookReceiver() as hooks:
        deliver(store, {"dingtalk": robot(hooks)}, languages={"dingtalk": "en"})

        (payload,) = hooks.delivered("dingtalk")
    assert payload["markdown"]["title"].startswith("2 addon upgrades ended: 1 succeeded, 1 failed")


@pytest.mark.parametrize("language", ["zh", "en"])
def test_dingtalk_fullest_digest_with_longest_names_is_not_cut(language: str) -> None:
    longest = "a" * 250
    items = [
        announcement(f"{longest}{i:03d}", version="v" * 64, status="Failed") for i in range(25)
    ]
    names = {items[0].target.cluster_id: "n" * 63}
    renderer = Renderer(cluster_names=lambda: names)

    payload = dingtalk_payload(renderer.render_group("dingtalk", language, items))

    assert len(body_bytes(payload)) < 20_000
    assert all(f"{longest}{i:03d}" in payload["markdown"]["text"] for i in range(25))


def test_dingtalk_throttle_hold_outlives_the_invocation_in_a_warm_instance(
    webhooks: WebhookReceiver, store: SqliteStore, tmp_path: Path
) -> None:
    settings = load_settings(
        {
            "WATCH_TARGETS": "c1/metrics-server",
            "ACK_REGION": "cn-hangzhou",
            "DINGTALK_WEBHOOK_URL": webhooks.dingtalk_url,
            "DINGTALK_SECRET": DINGTALK_SECRET,
            "STATE_STORE": f"sqlite://{tmp_path / 'unused.sqlite3'}",
        }
    )
    enqueue(store, [announcement()], ["dingtalk"])
    webhooks.script("dingtalk", 200, {"errcode": 130101, "errmsg": "send too fast"})
    deliver(store, build_routes(settings))

    # The next invocation builds its notifiers afresh, in the same instance, and
    # has a new outcome for the same robot.
    enqueue(store, [announcement("flexvolume")], ["dingtalk"])
    later = deliver(store, build_routes(settings))

    # The hold is recorded in the store, so the later run does not even claim them.
    assert len(webhooks.received) == 1
    assert later.pending == 2 and later.errors == [] and later.sent == 0
