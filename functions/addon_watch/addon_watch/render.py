"""Rendering announcements into DingTalk and Slack payloads with Jinja.

Templates are text, never JSON: the payload is built here as data and only
the message text comes from a template. Values from the API reach a template
as variables (never as template source) and every ``{{ value }}`` is escaped
for its channel on the way out, so a cluster name holding ``{{ 7*7 }}``,
quotes, newlines or ``<&>`` is shown as typed.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from .errors import TemplateError
from .model import Announcement

SLACK_SECTION_LIMIT = 3000
SLACK_TEXT_LIMIT = 150
_WHITESPACE = re.compile(r"\s+")
# Characters that start markdown structure in the middle of a line. Hyphens and
# dots, common in addon names and versions, are left alone.
_DINGTALK_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def builtin_templates_dir() -> Path:
    """The built-in templates: packaged beside the code, or the repository's ``templates/``."""
    code_root = Path(__file__).resolve().parent.parent
    packaged = code_root / "templates"
    return packaged if packaged.is_dir() else code_root.parent.parent / "templates"


def _one_line(value: object) -> str:
    return _WHITESPACE.sub(" ", str(value)).strip()


def escape_slack(value: object) -> str:
    """Slack mrkdwn escaping of a data value: ``&``, ``<`` and ``>``, on one line."""
    return _one_line(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_dingtalk(value: object) -> str:
    """Markdown punctuation in a data value backslash-escaped, on one line."""
    return _DINGTALK_SPECIAL.sub(r"\\\1", _one_line(value))


def format_duration(seconds: object, language: str = "en") -> str:
    """``1h 2m 3s`` or ``1小时2分3秒``."""
    if not isinstance(seconds, int) or seconds < 0:
        return "—"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    units = ("小时", "分", "秒") if language == "zh" else ("h ", "m ", "s")
    parts = [f"{n}{u}" for n, u in zip((hours, minutes, secs), units, strict=True) if n]
    return ("".join(parts) or f"0{units[2]}").strip()


def _escaping(escape: Callable[[object], str]) -> Callable[[object], object]:
    """A Jinja ``finalize`` that escapes data values and leaves template markup alone."""

    def finalize(value: object) -> object:
        return value if isinstance(value, _Markup) else escape(value)

    return finalize


class _Markup(str):
    """Text produced by the project's own filters, already escaped."""


@dataclass(frozen=True)
class Message:
    """A rendered message: its title (preview line) and body text."""

    title: str
    text: str


class Renderer:
    """Loads the templates once and renders announcements for each channel."""

    ESCAPERS: ClassVar[dict[str, Callable[[object], str]]] = {
        "dingtalk": escape_dingtalk,
        "slack": escape_slack,
    }

    def __init__(self, templates_dir: Path | None = None, timezone_name: str | None = None) -> None:
        self._search_path = [
            str(p) for p in (templates_dir, builtin_templates_dir()) if p is not None
        ]
        self._zone = _zone(timezone_name)

    @functools.cached_property
    def _environments(self) -> dict[str, Any]:
        # Built on the first render: a check with nothing to say never imports Jinja.
        from jinja2 import FileSystemLoader, StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        search_path = self._search_path
        environments = {}
        for channel, escape in self.ESCAPERS.items():
            env = SandboxedEnvironment(
                loader=FileSystemLoader(search_path),
                undefined=StrictUndefined,
                autoescape=False,
                trim_blocks=True,
                lstrip_blocks=True,
                finalize=_escaping(escape),
            )
            env.filters["duration"] = lambda seconds, language="en": _Markup(
                format_duration(seconds, language)
            )
            environments[channel] = env
        return environments

    def context(self, item: Announcement, language: str) -> dict[str, Any]:
        """The variables a template sees."""
        duration = None
        if item.created_at and item.finished_at and item.finished_at >= item.created_at:
            duration = int((item.finished_at - item.created_at).total_seconds())
        return {
            "language": language,
            "cluster_id": item.target.cluster_id,
            "component": item.target.component,
            "version": item.version,
            "outcome": item.outcome.value,
            "status": item.status,
            "task_id": item.task_id,
            "started_at": self._when(item.created_at),
            "finished_at": self._when(item.finished_at),
            "duration_seconds": duration,
        }

    def render(self, channel: str, language: str, item: Announcement) -> Message:
        """Title and text of the message for one channel."""
        from jinja2 import TemplateError as JinjaTemplateError

        name = f"{channel}.{language}.j2"
        try:
            module = (
                self._environments[channel]
                .get_template(name)
                .make_module(self.context(item, language))
            )
            title = _one_line(getattr(module, "title", ""))
            text = str(module).strip()
        except JinjaTemplateError as exc:
            where = _template_location(exc, name)
            raise TemplateError(f"template {where} failed: {type(exc).__name__}: {exc}") from exc
        if not title or not text:
            raise TemplateError(
                f"template {name} rendered an empty title or text; "
                "it must set 'title' and write a body"
            )
        return Message(title, text)

    def _when(self, moment: datetime | None) -> str | None:
        if moment is None:
            return None
        local = moment.astimezone(self._zone)
        label = "UTC" if self._zone is timezone.utc else local.strftime("UTC%z")
        if label.startswith("UTC") and len(label) == 8:
            label = f"{label[:6]}:{label[6:]}"
        return f"{local:%Y-%m-%d %H:%M:%S} {label}"


def _template_location(exc: Exception, name: str) -> str:
    """``file:line`` of a template error: from a syntax error, else from the traceback."""
    lineno = getattr(exc, "lineno", None)
    if lineno:
        return f"{getattr(exc, 'filename', None) or name}:{lineno}"
    # Jinja rewrites tracebacks so that template frames carry the template's file and line.
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else name


def _zone(name: str | None) -> Any:
    if not name:
        return timezone.utc
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def dingtalk_payload(message: Message) -> dict[str, Any]:
    """A DingTalk markdown message, built as data."""
    return {"msgtype": "markdown", "markdown": {"title": message.title, "text": message.text}}


def slack_payload(message: Message) -> dict[str, Any]:
    """A Slack message: fallback text plus one mrkdwn section."""
    text = message.text
    if len(text) > SLACK_SECTION_LIMIT:
        text = text[: SLACK_SECTION_LIMIT - 1] + "…"
    return {
        "text": message.title[:SLACK_TEXT_LIMIT],
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


PAYLOAD_BUILDERS: dict[str, Callable[[Message], dict[str, Any]]] = {
    "dingtalk": dingtalk_payload,
    "slack": slack_payload,
}
