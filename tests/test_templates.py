"""Templates: sandbox, strict variables, user overrides, broken templates, previews."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from addon_watch.config import load_settings
from addon_watch.errors import AckApiError, TemplateError
from addon_watch.model import Outcome
from addon_watch.render import (
    Renderer,
    builtin_templates_dir,
    console_url,
    preview,
    sample_announcements,
)
from tests import readme_samples
from tests.delivery_helpers import CLUSTER, announcement, many

KINDS = ("dingtalk", "slack")
LANGUAGES = ("zh", "en")


def user_dir(tmp_path: Path, name: str, text: str) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / name).write_text(text)
    return directory


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("outcome", list(Outcome))
def test_builtin_template_renders_every_outcome(kind: str, language: str, outcome: Outcome) -> None:
    message = Renderer().render(kind, language, announcement(outcome=outcome))

    assert message.title and message.text
    assert "\n\n\n" not in message.text
    assert message.outcomes == (outcome.value,)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_builtin_digest_lists_every_outcome(kind: str, language: str) -> None:
    items = many(7)

    message = Renderer().render_group(kind, language, items)

    assert all(item.target.component in message.text for item in items)
    assert message.title.startswith("7")
    assert "\n\n\n" not in message.text


def test_builtin_templates_all_exist() -> None:
    names = sorted(p.name for p in builtin_templates_dir().glob("*.j2"))

    assert names == sorted(
        f"{kind}{suffix}.{language}.j2"
        for kind in KINDS
        for suffix in ("", "-digest")
        for language in LANGUAGES
    )


def test_user_template_overrides_the_builtin(tmp_path: Path) -> None:
    directory = user_dir(
        tmp_path,
        "slack.en.j2",
        "{% set title %}T {{ component }}{% endset %}\n"
        "{% if version %}\nv={{ version }}\n{% endif %}\nend\n",
    )

    message = Renderer(directory).render("slack", "en", announcement())

    assert message.title == "T metrics-server"
    # Trimmed blocks: the {% if %} lines leave no blank lines behind.
    assert message.text == "v=v0.3.9.7-9a1b2c3-aliyun\nend"


def test_user_template_syntax_error_is_reported_at_load_and_builtin_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = user_dir(
        tmp_path,
        "dingtalk.zh.j2",
        "{% set title %}x{% endset %}\nline two\n{% if %}\n",
    )

    with caplog.at_level(logging.ERROR, logger="addon_watch"):
        renderer = Renderer(directory)
    message = renderer.render("dingtalk", "zh", announcement())

    (problem,) = renderer.problems
    assert f"{directory / 'dingtalk.zh.j2'}:3" in problem
    assert "TemplateSyntaxError" in problem and "built-in template is used" in problem
    assert caplog.records[0].getMessage() == problem
    assert message.title.startswith("✅ 升级成功")


@pytest.mark.parametrize(
    ("source", "error", "line"),
    [
        ("{% set title %}x{% endset %}\nfine\n{{ no_such_field }}\n", "UndefinedError", 3),
        (
            "{% set title %}x{% endset %}\n\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n",
            "SecurityError",
            3,
        ),
        ("{% set titel %}x{% endset %}\nbody\n", "empty title", None),
    ],
)
def test_user_template_failing_at_render_is_reported_and_builtin_used(
    tmp_path: Path, source: str, error: str, line: int | None
) -> None:
    directory = user_dir(tmp_path, "slack.en.j2", source)
    renderer = Renderer(directory)

    message = renderer.render("slack", "en", announcement())

    (problem,) = renderer.problems
    where = f"{directory / 'slack.en.j2'}" + (f":{line}" if line else "")
    assert where in problem and error in problem and "built-in template is used" in problem
    assert message.title.startswith(":white_check_mark: Upgrade succeeded")
    assert "subclasses" not in message.text


def test_builtin_template_failure_is_a_template_error(tmp_path: Path) -> None:
    renderer = Renderer()

    with pytest.raises(TemplateError) as caught:
        renderer.render("dingtalk", "fr", announcement())

    assert "dingtalk.fr.j2" in str(caught.value)


def test_missing_templates_dir_is_reported_and_builtins_used(tmp_path: Path) -> None:
    renderer = Renderer(tmp_path / "nope")

    message = renderer.render("slack", "en", announcement())

    assert "is not a directory" in renderer.problems[0]
    assert message.text


def test_data_that_looks_like_jinja_is_shown_as_typed() -> None:
    message = Renderer().render("dingtalk", "en", announcement("{{ 7*7 }}{% raw %}"))

    assert "{{ 7\\*7 }}{% raw %}" in message.text


def test_preview_with_a_renderer_covers_every_builtin() -> None:
    previews = preview(Renderer(), sample_announcements(1)[0])

    assert [name for name, _ in previews] == [
        "dingtalk (zh)",
        "dingtalk (en)",
        "slack (zh)",
        "slack (en)",
    ]
    assert previews[0][1]["msgtype"] == "markdown"
    assert "blocks" in previews[2][1]


def test_preview_with_settings_uses_each_channel_and_sends_nothing(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "WATCH_TARGETS": "c1/metrics-server",
            "ACK_REGION": "cn-hangzhou",
            # Nothing listens here: a send would fail the test.
            "DINGTALK_WEBHOOK_URL": "http://127.0.0.1:9/robot/send?access_token=x",
            "DINGTALK_AT_MOBILES": "13800000000",
            "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/services/x",
            "STATE_STORE": f"sqlite://{tmp_path / 's.sqlite3'}",
        }
    )

    previews = preview(settings, sample_announcements(3))

    assert [name for name, _ in previews] == ["dingtalk", "slack"]
    dingtalk = previews[0][1]
    assert dingtalk["markdown"]["text"].endswith("@13800000000")
    assert dingtalk["markdown"]["title"].startswith("3 个组件升级结束")
    json.dumps(previews)


def test_preview_without_sample_is_an_error() -> None:
    with pytest.raises(TemplateError) as caught:
        preview(Renderer(), [])

    assert "at least one sample" in str(caught.value)


def test_readme_shows_what_the_builtin_templates_render() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")

    shown = readme.split(readme_samples.START)[1].split(readme_samples.END)[0]

    assert shown.strip() == readme_samples.markdown().strip(), (
        "README is stale: regenerate with `python -m tests.readme_samples`"
    )


def test_cluster_name_is_looked_up_once_and_shown_escaped() -> None:
    calls: list[int] = []

    def names() -> dict[str, str]:
        calls.append(1)
        return {announcement().target.cluster_id: "prod_<main>"}

    renderer = Renderer(cluster_names=names)

    texts = [renderer.render(kind, "en", announcement()).text for kind in KINDS]
    renderer.render_group("slack", "zh", many(3))

    assert calls == [1]
    assert "**Cluster**: prod\\_\\<main\\> (c0123456789abcdef0123456789abcdef)" in texts[0]
    assert "*Cluster:* prod_&lt;main&gt; (c0123456789abcdef0123456789abcdef)\n" in texts[1]


def test_cluster_name_lookup_failure_leaves_the_id(caplog: pytest.LogCaptureFixture) -> None:
    def names() -> dict[str, str]:
        raise AckApiError("DescribeClustersV1 answered HTTP 403 Forbidden.RAM")

    with caplog.at_level(logging.WARNING, logger="addon_watch"):
        message = Renderer(cluster_names=names).render("slack", "en", announcement())

    assert "*Cluster:* c0123456789abcdef0123456789abcdef\n" in message.text
    assert "Forbidden.RAM" in caplog.records[0].getMessage()


@pytest.mark.parametrize("kind", KINDS)
def test_console_link_points_at_the_cluster(kind: str) -> None:
    message = Renderer().render(kind, "en", announcement())

    assert console_url(CLUSTER) in message.text
    assert console_url("c1/../x") is None
