"""Rendering: every language and channel, hostile text shown as typed and never evaluated."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from addon_watch.model import Announcement, Outcome, Target
from addon_watch.render import (
    PAYLOAD_BUILDERS,
    Renderer,
    escape_dingtalk,
    escape_slack,
    format_duration,
)

HOSTILE = 'evil"\n<b>&amp;</b> {{ 7*7 }} {% raw %}*_[x](y)#'


def announcement(
    outcome: Outcome = Outcome.SUCCESS,
    cluster: str = "c0123456789abcdef",
    component: str = "metrics-server",
    **extra: str,
) -> Announcement:
    return Announcement(
        target=Target(cluster, component),
        task_id="2026-01-02T03:04:00Z",
        outcome=outcome,
        version=extra.get("version", "v0.3.9.7"),
        status=extra.get("status", outcome.value.capitalize()),
        created_at=datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc),
        finished_at=datetime(2026, 1, 2, 3, 10, 30, tzinfo=timezone.utc),
    )


@pytest.mark.parametrize("channel", ["dingtalk", "slack"])
@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("outcome", [outcome for outcome in Outcome if outcome.ended])
def test_render_every_builtin_names_cluster_addon_version_outcome_times(
    channel: str, language: str, outcome: Outcome
) -> None:
    message = Renderer().render(channel, language, announcement(outcome))

    for part in ("c0123456789abcdef", "metrics-server", "v0.3.9.7", outcome.value.capitalize()):
        assert part in message.text
    assert "2026-01-02 03:04:00 UTC" in message.text
    assert "2026-01-02 03:10:30 UTC" in message.text
    assert ("6分30秒" if language == "zh" else "6m 30s") in message.text
    assert "metrics-server" in message.title


def test_render_dingtalk_zh_exact_text() -> None:
    message = Renderer(timezone_name="Asia/Shanghai").render(
        "dingtalk", "zh", announcement(Outcome.FAILED)
    )

    assert message.title == "❌ 升级失败：metrics-server（c0123456789abcdef）"
    assert message.text == (
        "### ❌ 升级失败：metrics-server\n\n"
        "**集群**：c0123456789abcdef\n\n"
        "**组件**：metrics-server\n\n"
        "**版本**：v0.3.9.7\n\n"
        "**结果**：❌ 升级失败（Failed）\n\n"
        "**开始时间**：2026-01-02 11:04:00 UTC+08:00\n\n"
        "**结束时间**：2026-01-02 11:10:30 UTC+08:00\n\n"
        "**耗时**：6分30秒\n\n"
        "[在 ACK 控制台查看集群](https://cs.console.aliyun.com/#/k8s/cluster/"
        "c0123456789abcdef/v2/info/overview)"
    )


@pytest.mark.parametrize("channel", ["dingtalk", "slack"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_render_hostile_text_is_escaped_not_evaluated(channel: str, language: str) -> None:
    item = announcement(Outcome.FAILED, component=HOSTILE, version=HOSTILE, status=HOSTILE)

    payload = PAYLOAD_BUILDERS[channel](Renderer().render(channel, language, item))
    text = json.dumps(payload, ensure_ascii=False)

    assert json.loads(text) == payload
    assert "49" not in text
    assert "7*7" in text or "7\\\\*7" in text
    assert "\\n<b>" not in text
    if channel == "slack":
        assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in text
        assert "<b>" not in text
    else:
        assert "\\\\<b\\\\>" in text


def test_render_missing_time_shows_unknown_not_none() -> None:
    item = announcement()
    item = Announcement(item.target, item.task_id, item.outcome, "", item.status, None, None)

    message = Renderer().render("slack", "en", item)

    assert "None" not in message.text
    assert "*Started:* unknown" in message.text
    assert "*Duration:* —" in message.text


def test_render_user_template_overrides_builtin(tmp_path: Path) -> None:
    (tmp_path / "slack.en.j2").write_text(
        "{% set title %}done {{ component }}{% endset %}body {{ cluster_id }}"
    )

    message = Renderer(templates_dir=tmp_path).render("slack", "en", announcement())

    assert message == type(message)("done metrics-server", "body c0123456789abcdef")


def test_render_undefined_variable_names_template_and_line(tmp_path: Path) -> None:
    (tmp_path / "slack.en.j2").write_text(
        "{% set title %}x{% endset %}\nline two {{ no_such_field }}\n"
    )
    renderer = Renderer(templates_dir=tmp_path)

    message = renderer.render("slack", "en", announcement())

    # Reported with file and line; the built-in template still renders the message.
    assert "slack.en.j2:2" in renderer.problems[0]
    assert "no_such_field" in renderer.problems[0]
    assert message.title.startswith(":white_check_mark: Upgrade succeeded")


def test_render_sandbox_blocks_attribute_escape(tmp_path: Path) -> None:
    (tmp_path / "slack.en.j2").write_text(
        "{% set title %}x{% endset %}{{ cluster_id.__class__.__mro__ }}"
    )

    renderer = Renderer(templates_dir=tmp_path)

    message = renderer.render("slack", "en", announcement())

    assert "SecurityError" in renderer.problems[0]
    assert "__mro__" not in message.text and "object" not in message.text


def test_slack_payload_cuts_long_section_to_limit() -> None:
    item = announcement(component="x" * 5000)

    payload = PAYLOAD_BUILDERS["slack"](Renderer().render("slack", "en", item))

    sections = payload["attachments"][0]["blocks"]
    assert max(len(block["text"]["text"]) for block in sections) == 3000
    assert len(payload["text"]) <= 150
    assert len(payload["blocks"][0]["text"]["text"]) <= 150


def test_escapers_keep_names_readable() -> None:
    assert (
        escape_dingtalk("nginx-ingress-controller v1.9.3-aliyun.1")
        == "nginx-ingress-controller v1.9.3-aliyun.1"
    )
    assert escape_slack("a & <b>\nc") == "a &amp; &lt;b&gt; c"
    assert format_duration(3723, "en") == "1h 2m 3s"
    assert format_duration(3723, "zh") == "1小时2分3秒"
    assert format_duration(0, "en") == "0s"
    assert format_duration(None, "zh") == "—"
