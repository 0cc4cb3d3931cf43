"""Rendering announcements into DingTalk and Slack payloads with Jinja.

Templates are text, never JSON: the payload is built here as data and only
the message text comes from a template. Values from the API reach a template
as variables (never as template source) and every ``{{ value }}`` is escaped
for its channel on the way out, so a cluster name holding ``{{ 7*7 }}``,
quotes, newlines or ``<&>`` is shown as typed.

A directory of user templates (``TEMPLATES_DIR``) may override any built-in
template. A user template that does not compile is reported with its file and
line when the renderer is built; one that fails while rendering is reported
then. Either way the built-in template renders the message, so it still goes out.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import AddonWatchError, TemplateError
from .model import Announcement, Outcome, Target

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment

    from .config import Settings

logger = logging.getLogger(__name__)

SLACK_SECTION_LIMIT = 3000
SLACK_HEADER_LIMIT = 150
SLACK_BLOCK_LIMIT = 50
# The fallback text is the header's text: a notification shows no more anyway.
SLACK_TEXT_LIMIT = SLACK_HEADER_LIMIT
# DingTalk refuses bodies over 20,000 UTF-8 bytes; a little is kept in reserve.
DINGTALK_BODY_LIMIT = 19_800
# The title shows only in the conversation list; a long one is shortened there anyway.
DINGTALK_TITLE_LIMIT = 128
# Worst first: a digest takes the colour of the worst thing it reports.
SLACK_COLORS = {
    "failed": "#e01e5a",
    "stuck": "#e8912d",
    "paused": "#f2c744",
    "canceled": "#9e9e9e",
    "success": "#2eb886",
    "available": "#1d9bd1",
}
CUT_MARKERS = {
    "zh": "……（消息过长，以下内容已截断）",
    "en": "… (cut here: the message was too long for DingTalk)",
}

_WHITESPACE = re.compile(r"\s+")
# Characters that start markdown structure in the middle of a line. Hyphens and
# dots, common in addon names and versions, are left alone.
_DINGTALK_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")
_LONE_NEWLINE = re.compile(r"(?<![\n ])[ ]?\n(?!\n)")


# NOTE: the console's URL scheme is not documented as an interface; this is the
# cluster overview page as the console addresses it today.
CONSOLE_URL = "https://cs.console.aliyun.com/#/k8s/cluster/{cluster_id}/v2/info/overview"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def console_url(cluster_id: str) -> str | None:
    """The cluster's page in the ACK console, for an id that is safe in a URL."""
    if not _SAFE_ID.match(cluster_id):
        return None
    # Built here from a checked id: trusted markup, not data to escape.
    return _Markup(CONSOLE_URL.format(cluster_id=cluster_id))


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


def channel_kind(channel: str) -> str:
    """``dingtalk`` for ``dingtalk`` and ``dingtalk:ops``."""
    return channel.partition(":")[0]


@dataclass(frozen=True)
class Message:
    """A rendered message: its title (preview line), body text and what it reports."""

    title: str
    text: str
    outcomes: tuple[str, ...] = field(default=(), compare=False)
    language: str = field(default="en", compare=False)


@dataclass
class _Loaded:
    """The environments of one channel kind: the user's (if any) and the built-in one."""

    builtin: SandboxedEnvironment
    user: SandboxedEnvironment | None
    user_names: set[str] = field(default_factory=set)


class Renderer:
    """Loads the templates once and renders announcements for each channel.

    ``problems`` lists what was wrong with the user's templates, one line each
    with file and line; the built-in template stood in for each of them.
    """

    ESCAPERS: ClassVar[dict[str, Callable[[object], str]]] = {
        "dingtalk": escape_dingtalk,
        "slack": escape_slack,
    }

    def __init__(
        self,
        templates_dir: Path | None = None,
        timezone_name: str | None = None,
        *,
        cluster_names: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self._zone = _zone(timezone_name)
        self.problems: list[str] = []
        self._cluster_lookup = cluster_names
        self._cluster_names: Mapping[str, str] | None = None
        self._user_dir = templates_dir
        if templates_dir is not None and not templates_dir.is_dir():
            self._problem(
                f"TEMPLATES_DIR {templates_dir} is not a directory; the built-in templates are used"
            )
            self._user_dir = None

    @functools.cached_property
    def _loaded(self) -> dict[str, _Loaded]:
        # Built on the first render: a check with nothing to say never imports Jinja.
        return {kind: self._load(kind, escape) for kind, escape in self.ESCAPERS.items()}

    def _environment(
        self, directory: Path, escape: Callable[[object], str]
    ) -> SandboxedEnvironment:
        from jinja2 import FileSystemLoader, StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        env = SandboxedEnvironment(
            loader=FileSystemLoader(str(directory)),
            undefined=StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_escaping(escape),
        )
        env.filters["duration"] = lambda seconds, language="en": _Markup(
            format_duration(seconds, language)
        )
        return env

    def _load(self, kind: str, escape: Callable[[object], str]) -> _Loaded:
        from jinja2 import TemplateError as JinjaTemplateError

        loaded = _Loaded(self._environment(builtin_templates_dir(), escape), None)
        if self._user_dir is None:
            return loaded
        loaded.user = self._environment(self._user_dir, escape)
        for path in sorted(self._user_dir.glob(f"{kind}*.j2")):
            # Compile now, so a broken template is reported when loaded, not when needed.
            try:
                loaded.user.get_template(path.name)
            except JinjaTemplateError as exc:
                self._problem(
                    f"template {_where(exc, path.name, self._user_dir)} is broken: "
                    f"{type(exc).__name__}: {exc}; the built-in template is used"
                )
                continue
            loaded.user_names.add(path.name)
        return loaded

    def _problem(self, text: str) -> None:
        logger.error("%s", text)
        self.problems.append(text)

    def context(self, item: Announcement, language: str) -> dict[str, Any]:
        """The variables a template sees for one announcement."""
        duration = _seconds(item.created_at, item.finished_at)
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
            "cluster_name": self._cluster_name(item.target.cluster_id),
            "console_url": console_url(item.target.cluster_id),
            # Notices: when it was seen, how long the task had run then, the version before.
            "seen_at": self._when(item.seen_at),
            "running_seconds": _seconds(item.created_at, item.seen_at),
            "previous_version": item.previous_version,
        }

    def _cluster_name(self, cluster_id: str) -> str | None:
        """The cluster's name, looked up once per renderer and only when a message needs it."""
        if self._cluster_lookup is None:
            return None
        if self._cluster_names is None:
            try:
                self._cluster_names = dict(self._cluster_lookup())
            except AddonWatchError as exc:
                # A name is a nicety: the message goes out with the cluster id alone.
                logger.warning("cluster names unavailable, messages show ids only: %s", exc)
                self._cluster_names = {}
        return self._cluster_names.get(cluster_id) or None

    def digest_context(self, items: Sequence[Announcement], language: str) -> dict[str, Any]:
        """The variables a digest template sees: ``items``, counts by outcome, and ``notices``.

        ``notices`` counts the items that are notices (paused, stuck, available)
        rather than ended tasks.
        """
        counts = {outcome.value: 0 for outcome in Outcome}
        for item in items:
            counts[item.outcome.value] += 1
        return {
            "language": language,
            "items": [self.context(item, language) for item in items],
            "count": len(items),
            "counts": counts,
            "notices": sum(1 for item in items if not item.outcome.ended),
        }

    def render(self, channel: str, language: str, item: Announcement) -> Message:
        """Title and text of the message about one announcement."""
        kind = channel_kind(channel)
        title, text = self._render(kind, f"{kind}.{language}.j2", self.context(item, language))
        return Message(title, text, (item.outcome.value,), language)

    def render_group(self, channel: str, language: str, items: Sequence[Announcement]) -> Message:
        """One message about several announcements (a digest); the usual one for a single one."""
        if len(items) == 1:
            return self.render(channel, language, items[0])
        kind = channel_kind(channel)
        title, text = self._render(
            kind, f"{kind}-digest.{language}.j2", self.digest_context(items, language)
        )
        return Message(title, text, tuple(item.outcome.value for item in items), language)

    def _render(self, kind: str, name: str, context: dict[str, Any]) -> tuple[str, str]:
        loaded = self._loaded[kind]
        if loaded.user is not None and name in loaded.user_names:
            try:
                return _render_with(loaded.user, name, context, self._user_dir)
            except TemplateError as exc:
                self._problem(f"{exc}; the built-in template is used instead")
        return _render_with(loaded.builtin, name, context, builtin_templates_dir())

    def _when(self, moment: datetime | None) -> str | None:
        if moment is None:
            return None
        local = moment.astimezone(self._zone)
        label = "UTC" if self._zone is timezone.utc else local.strftime("UTC%z")
        if label.startswith("UTC") and len(label) == 8:
            label = f"{label[:6]}:{label[6:]}"
        return f"{local:%Y-%m-%d %H:%M:%S} {label}"


def _seconds(start: datetime | None, end: datetime | None) -> int | None:
    if start and end and end >= start:
        return int((end - start).total_seconds())
    return None


def _where(
    exc: BaseException, name: str, directory: Path | None, template: Template | None = None
) -> str:
    """``file:line`` of a Jinja error: the syntax error's own, else the template's frame."""
    filename = getattr(exc, "filename", None) or str((directory or Path()) / name)
    lineno = getattr(exc, "lineno", None)
    if lineno is None and template is not None:
        # A render error's frame is in the compiled template; map it back to the source.
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
        if frames and frames[-1].lineno is not None:
            lineno = template.get_corresponding_lineno(frames[-1].lineno)
    return f"{filename}:{lineno if lineno is not None else '?'}"


def _render_with(
    env: SandboxedEnvironment, name: str, context: dict[str, Any], directory: Path | None
) -> tuple[str, str]:
    from jinja2 import TemplateError as JinjaTemplateError

    template = None
    try:
        template = env.get_template(name)
        module = template.make_module(context)
        title = _one_line(getattr(module, "title", ""))
        text = str(module).strip()
    except JinjaTemplateError as exc:
        where = _where(exc, name, directory, template)
        raise TemplateError(f"template {where} failed: {type(exc).__name__}: {exc}") from exc
    if not title or not text:
        raise TemplateError(
            f"template {(directory or Path()) / name} rendered an empty title or text; "
            "it must set 'title' and write a body"
        )
    return title, text


def _zone(name: str | None) -> Any:
    if not name:
        return timezone.utc
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


# --- DingTalk --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DingTalkOptions:
    """What a DingTalk robot needs in every message: mentions and its custom keyword."""

    at_mobiles: tuple[str, ...] = ()
    at_user_ids: tuple[str, ...] = ()
    at_all: bool = False
    keyword: str | None = None


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact request body sent for a payload: compact UTF-8 JSON."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def dingtalk_line_breaks(text: str) -> str:
    """Make every single newline a markdown line break (two spaces before it)."""
    return _LONE_NEWLINE.sub("  \n", text)


def dingtalk_payload(message: Message, options: DingTalkOptions | None = None) -> dict[str, Any]:
    """A DingTalk markdown message built as data, under the body limit.

    Mentions are written into the text (``@mobile``), because DingTalk notifies
    only those whose ``@`` appears there; the custom keyword is added when the
    text lacks it. Both come after any cut, so neither can be cut away.
    """
    options = options or DingTalkOptions()
    text = dingtalk_line_breaks(message.text)
    at: dict[str, Any] = {
        "atMobiles": list(options.at_mobiles),
        "atUserIds": list(options.at_user_ids),
        "isAtAll": options.at_all,
    }
    title = _limit(message.title, DINGTALK_TITLE_LIMIT)

    def build(body: str) -> dict[str, Any]:
        who = (*options.at_mobiles, *options.at_user_ids)
        tail = [f"@{one}" for one in who if f"@{one}" not in body]
        if options.keyword and options.keyword not in body:
            tail.append(options.keyword)
        full = body + ("\n\n" + " ".join(tail) if tail else "")
        return {"msgtype": "markdown", "markdown": {"title": title, "text": full}, "at": at}

    payload = build(text)
    if len(body_bytes(payload)) <= DINGTALK_BODY_LIMIT:
        return payload
    marker = CUT_MARKERS.get(message.language, CUT_MARKERS["en"])
    return build(_cut(text, lambda kept: len(body_bytes(build(kept + marker))), marker))


def _cut(text: str, size: Callable[[str], int], marker: str) -> str:
    """The longest clean prefix of ``text`` (plus a marker) whose body fits the limit."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if size(_clean_prefix(text[:middle])) <= DINGTALK_BODY_LIMIT:
            low = middle
        else:
            high = middle - 1
    kept = text[:low]
    # End at a line when one is near, never inside an escape or a half-written line.
    line_end = kept.rfind("\n", int(len(kept) * 0.9))
    if line_end > 0:
        kept = kept[:line_end]
    return _clean_prefix(kept) + marker


def _clean_prefix(text: str) -> str:
    return "\n\n" if not text else text.rstrip().rstrip("\\").rstrip() + "\n\n"


# --- Slack -----------------------------------------------------------------------------------


def slack_color(outcomes: Iterable[str]) -> str:
    """The attachment colour: the worst outcome reported wins."""
    seen = set(outcomes)
    for outcome, color in SLACK_COLORS.items():
        if outcome in seen:
            return color
    return "#439fe0"


def _limit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: _cut_point(text, limit - 1)] + "…"


def _cut_point(text: str, at: int) -> int:
    """``at``, or earlier so that no ``&amp;``-style entity is cut in half."""
    entity = text.rfind("&", max(at - 5, 0), at)
    return entity if entity >= 0 and ";" not in text[entity:at] else at


def _sections(text: str) -> list[str]:
    """Paragraphs packed into section texts of at most the section limit."""
    sections: list[str] = []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        rest = paragraph
        while len(rest) > SLACK_SECTION_LIMIT:
            cut = rest.rfind("\n", 0, SLACK_SECTION_LIMIT)
            cut = cut if cut > 0 else _cut_point(rest, SLACK_SECTION_LIMIT)
            sections.append(rest[:cut])
            rest = rest[cut:].lstrip("\n")
        if not rest:
            continue
        if sections and len(sections[-1]) + 2 + len(rest) <= SLACK_SECTION_LIMIT:
            sections[-1] += "\n\n" + rest
        else:
            sections.append(rest)
    return sections


def slack_payload(message: Message) -> dict[str, Any]:
    """A Slack message: fallback text, a header, and the body in a coloured attachment."""
    header = {
        "type": "header",
        "text": {"type": "plain_text", "text": _limit(message.title, SLACK_HEADER_LIMIT)},
    }
    sections = _sections(message.text)
    room = SLACK_BLOCK_LIMIT - 1
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in sections
    ]
    if len(blocks) > room:
        blocks = blocks[: room - 1]
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"… {len(sections) - len(blocks)} more section(s) not shown",
                    }
                ],
            }
        )
    return {
        "text": _limit(message.title, SLACK_TEXT_LIMIT),
        "blocks": [header],
        "attachments": [{"color": slack_color(message.outcomes), "blocks": blocks}],
    }


# --- Preview ---------------------------------------------------------------------------------


def sample_announcements(count: int = 1) -> list[Announcement]:
    """Made-up announcements for previews: success, failure and cancellation in turn."""
    finished = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    outcomes = (Outcome.SUCCESS, Outcome.FAILED, Outcome.CANCELED)
    components = ("metrics-server", "nginx-ingress-controller", "cloud-controller-manager")
    return [
        Announcement(
            target=Target("c0123456789abcdef0123456789abcdef", components[i % 3]),
            task_id=f"2026-01-02T02:5{i % 10}:00Z",
            outcome=outcomes[i % 3],
            version="v0.3.9.7-9a1b2c3-aliyun",
            status={"success": "Success", "failed": "Failed", "canceled": "Canceled"}[
                outcomes[i % 3].value
            ],
            created_at=finished - timedelta(minutes=6, seconds=7 * i),
            finished_at=finished,
        )
        for i in range(count)
    ]


def sample_notices() -> list[Announcement]:
    """Made-up notices for previews: a paused task, a task running long, an upgrade available."""
    seen = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    cluster = "c0123456789abcdef0123456789abcdef"
    started = seen - timedelta(hours=2, minutes=5)

    def notice(component: str, outcome: Outcome, status: str, **extra: Any) -> Announcement:
        task_id = "" if outcome is Outcome.AVAILABLE else started.isoformat()
        return Announcement(
            target=Target(cluster, component),
            task_id=task_id,
            outcome=outcome,
            version=extra.get("version", "v0.3.9.7-9a1b2c3-aliyun"),
            status=status,
            created_at=None if outcome is Outcome.AVAILABLE else started,
            finished_at=None,
            previous_version=extra.get("previous_version"),
            seen_at=seen,
        )

    return [
        notice("nginx-ingress-controller", Outcome.PAUSED, "Paused"),
        notice("metrics-server", Outcome.STUCK, "Upgrading"),
        notice(
            "cloud-controller-manager",
            Outcome.AVAILABLE,
            "",
            version="v2.9.1",
            previous_version="v2.8.0",
        ),
    ]


@dataclass(frozen=True)
class Preview:
    """What one channel would receive: the rendered message and the exact payload."""

    channel: str
    language: str
    message: Message
    payload: dict[str, Any]


def preview(
    settings_or_renderer: Settings | Renderer,
    sample: Announcement | Sequence[Announcement],
) -> list[tuple[str, dict[str, Any]]]:
    """The payloads each channel would receive for a sample, without sending anything.

    Args:
        settings_or_renderer: the settings (every configured channel, with its
            language, filters, mentions and keyword, and the user's templates),
            or a renderer alone (each built-in channel kind in each language).
        sample: one announcement, or several to preview the grouped message.

    Returns:
        ``(channel, payload)`` pairs in sending order; the payload is exactly
        the JSON that would be posted. Built-in previews are named
        ``dingtalk (zh)`` and so on.
    """
    builtin = isinstance(settings_or_renderer, Renderer)
    return [
        (f"{p.channel} ({p.language})" if builtin else p.channel, p.payload)
        for p in previews(settings_or_renderer, sample)
    ]


def previews(
    settings_or_renderer: Settings | Renderer,
    sample: Announcement | Sequence[Announcement],
    *,
    renderer: Renderer | None = None,
) -> list[Preview]:
    """``preview`` with the rendered messages: what each channel would receive.

    With settings, each channel gets the sample items its filters take, as one
    message (a digest for several), exactly as a check sends them; ``renderer``
    replaces the one the settings describe (other templates or time zone).
    """
    items = [sample] if isinstance(sample, Announcement) else list(sample)
    if not items:
        raise TemplateError("preview needs at least one sample announcement")
    found: list[Preview] = []
    if isinstance(settings_or_renderer, Renderer):
        for kind, build in PAYLOAD_BUILDERS.items():
            for language in ("zh", "en"):
                message = settings_or_renderer.render_group(kind, language, items)
                found.append(Preview(kind, language, message, build(message)))
        return found

    from .routing import build_routes

    settings = settings_or_renderer
    renderer = renderer or Renderer(settings.templates_dir, settings.notify_timezone)
    for name, route in build_routes(settings).items():
        accepted = [item for item in items if route.accepts(item)]
        if accepted:
            message = renderer.render_group(name, route.language, accepted)
            found.append(Preview(name, route.language, message, route.build(message)))
    return found


PAYLOAD_BUILDERS: dict[str, Callable[[Message], dict[str, Any]]] = {
    "dingtalk": dingtalk_payload,
    "slack": slack_payload,
}
