"""Channels and the filters that route announcements to them.

The one-channel case needs only environment variables: ``DINGTALK_WEBHOOK_URL``
makes the channel ``dingtalk`` and ``SLACK_WEBHOOK_URL`` the channel ``slack``.
More robots and webhooks, each with filters, come from the YAML file named by
``ADDON_WATCH_CONFIG``::

    channels:
      - name: ops                        # the channel is "dingtalk:ops"
        type: dingtalk
        webhook_url: ${env:DINGTALK_OPS_URL}
        secret: ${env:DINGTALK_OPS_SECRET}
        language: zh
        keyword: ACK
        at_mobiles: ["13800000000"]
        filters:
          clusters: ["c0123*"]
          components: ["nginx-*", "metrics-server"]
          outcomes: [failed, canceled]

The outbox keys its rows by channel name, so a channel keeps its name across
deployments: renaming one leaves its waiting messages behind.
"""

from __future__ import annotations

import fnmatch
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import LANGUAGES, Env, _parse_base_url
from .errors import ConfigError
from .model import Announcement, Outcome
from .redaction import Secret
from .render import DingTalkOptions, Message

if TYPE_CHECKING:
    import requests

    from .config import Settings
    from .notify import Notifier

KINDS = ("dingtalk", "slack")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_CHANNEL_KEYS = frozenset(
    {
        "name",
        "type",
        "webhook_url",
        "secret",
        "language",
        "keyword",
        "at_mobiles",
        "at_user_ids",
        "at_all",
        "filters",
    }
)
_FILTER_KEYS = frozenset({"clusters", "components", "outcomes"})
_EXAMPLES = {
    "dingtalk": "https://oapi.dingtalk.com/robot/send?access_token=...",
    "slack": "https://hooks.slack.com/services/T.../B.../...",
}


@dataclass(frozen=True)
class RouteFilter:
    """Which announcements a channel takes; an empty list lets everything through."""

    clusters: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    outcomes: frozenset[str] = frozenset()

    def accepts(self, item: Announcement) -> bool:
        def matches(value: str, globs: tuple[str, ...]) -> bool:
            return not globs or any(fnmatch.fnmatchcase(value, glob) for glob in globs)

        return (
            matches(item.target.cluster_id, self.clusters)
            and matches(item.target.component, self.components)
            and (not self.outcomes or item.outcome.value in self.outcomes)
        )


@dataclass(frozen=True)
class ChannelSpec:
    """One configured channel, validated; its secrets stay wrapped."""

    name: str
    kind: str
    webhook_url: Secret
    secret: Secret | None = None
    language: str | None = None
    filter: RouteFilter = field(default_factory=RouteFilter)
    dingtalk: DingTalkOptions = field(default_factory=DingTalkOptions)


class Route:
    """A channel ready to use: its notifier, language and filter."""

    def __init__(self, spec: ChannelSpec, notifier: Notifier, language: str) -> None:
        self.channel = spec.name
        self.spec = spec
        self.notifier = notifier
        self.language = language

    def __repr__(self) -> str:
        return f"Route({self.channel!r}, {self.notifier!r})"

    def accepts(self, item: Announcement) -> bool:
        return self.spec.filter.accepts(item)

    def build(self, message: Message) -> dict[str, Any]:
        return self.notifier.build(message)

    def send(self, payload: dict[str, Any]) -> None:
        self.notifier.send(payload)


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(piece.strip().lstrip("@") for piece in value.split(",") if piece.strip())


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("", "0", "false", "no", "off"):
        return False
    if lowered in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} is {value!r}; expected true or false")


def notifier_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The notifier fields of ``Settings``, read from the environment."""

    def get(name: str) -> str:
        return env.get(name, "").strip()

    config_path = get(Env.ADDON_WATCH_CONFIG)
    return {
        "dingtalk_at_mobiles": _split_list(get(Env.DINGTALK_AT_MOBILES)),
        "dingtalk_at_user_ids": _split_list(get(Env.DINGTALK_AT_USER_IDS)),
        "dingtalk_at_all": _parse_bool(Env.DINGTALK_AT_ALL, get(Env.DINGTALK_AT_ALL)),
        "dingtalk_keyword": get(Env.DINGTALK_KEYWORD) or None,
        "routes": load_routes(Path(config_path), env) if config_path else (),
    }


def load_routes(path: Path, env: Mapping[str, str] | None = None) -> tuple[ChannelSpec, ...]:
    """The channels of a routing file; ``${env:NAME}`` is replaced from ``env``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{Env.ADDON_WATCH_CONFIG} names {path}, which cannot be read "
            f"({type(exc).__name__}); check the path"
        ) from exc
    return parse_routes(text, str(path), os.environ if env is None else env)


def parse_routes(text: str, source: str, env: Mapping[str, str]) -> tuple[ChannelSpec, ...]:
    """The channels of a routing document; ``source`` names it in errors."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    channels = document.get("channels") if isinstance(document, dict) else None
    if not isinstance(channels, list) or not channels:
        raise ConfigError(f"{source} must hold a non-empty list 'channels:'; see the README")

    specs: list[ChannelSpec] = []
    for index, entry in enumerate(channels):
        spec = _parse_channel(entry, f"{source}: channels[{index}]", env)
        if any(other.name == spec.name for other in specs):
            raise ConfigError(f"{source}: channel {spec.name!r} is defined twice")
        specs.append(spec)
    return tuple(specs)


def _parse_channel(entry: object, where: str, env: Mapping[str, str]) -> ChannelSpec:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is not a mapping with name, type and webhook_url")
    unknown = sorted(set(map(str, entry)) - _CHANNEL_KEYS)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; known: {sorted(_CHANNEL_KEYS)}")
    name, kind = str(entry.get("name", "")), str(entry.get("type", ""))
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}: name {name!r} must be lower-case letters, digits, '-' or '_', e.g. 'ops'"
        )
    if kind not in KINDS:
        raise ConfigError(f"{where} ({name}): type {kind!r} must be one of {list(KINDS)}")
    where = f"{where} ({kind}:{name})"

    url = _resolve(entry.get("webhook_url"), f"{where}.webhook_url", env)
    if not url:
        raise ConfigError(f"{where}.webhook_url is missing; e.g. {_EXAMPLES[kind]}")
    webhook = Secret(_parse_base_url(f"{where}.webhook_url", url, _EXAMPLES[kind], True))
    secret = _resolve(entry.get("secret"), f"{where}.secret", env)
    language = entry.get("language")
    if language is not None and language not in LANGUAGES:
        raise ConfigError(f"{where}.language is {language!r}; expected 'zh' or 'en'")
    if kind == "slack" and any(k in entry for k in ("secret", "keyword", "at_mobiles")):
        raise ConfigError(f"{where}: secret, keyword and mentions apply to DingTalk only")

    return ChannelSpec(
        name=f"{kind}:{name}",
        kind=kind,
        webhook_url=webhook,
        secret=Secret(secret) if secret else None,
        language=language,
        filter=_parse_filter(entry.get("filters"), f"{where}.filters"),
        dingtalk=DingTalkOptions(
            at_mobiles=_strings(entry.get("at_mobiles"), f"{where}.at_mobiles"),
            at_user_ids=_strings(entry.get("at_user_ids"), f"{where}.at_user_ids"),
            at_all=entry.get("at_all") is True,
            keyword=str(entry["keyword"]) if entry.get("keyword") else None,
        ),
    )


def _resolve(value: object, where: str, env: Mapping[str, str]) -> str | None:
    """A string with every ``${env:NAME}`` replaced; the message never shows the value."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if not env.get(name):
            raise ConfigError(f"{where} refers to ${{env:{name}}}, which is not set or empty")
        return env[name]

    return _ENV_REF.sub(replace, value).strip()


def _strings(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ConfigError(f"{where} must be a list of strings, e.g. ['13800000000']")
    return tuple(str(v).lstrip("@") for v in value)


def _parse_filter(value: object, where: str) -> RouteFilter:
    if value is None:
        return RouteFilter()
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of clusters, components and outcomes")
    unknown = sorted(set(map(str, value)) - _FILTER_KEYS)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; known: {sorted(_FILTER_KEYS)}")
    outcomes = _strings(value.get("outcomes"), f"{where}.outcomes")
    known = {outcome.value for outcome in Outcome}
    wrong = sorted(set(outcomes) - known)
    if wrong:
        raise ConfigError(f"{where}.outcomes has {wrong}; expected some of {sorted(known)}")
    return RouteFilter(
        clusters=_strings(value.get("clusters"), f"{where}.clusters"),
        components=_strings(value.get("components"), f"{where}.components"),
        outcomes=frozenset(outcomes),
    )


def channel_specs(settings: Settings) -> tuple[ChannelSpec, ...]:
    """Every configured channel: the environment's ``dingtalk`` and ``slack``, then the file's."""
    specs: list[ChannelSpec] = []
    if settings.dingtalk_webhook_url:
        specs.append(
            ChannelSpec(
                name="dingtalk",
                kind="dingtalk",
                webhook_url=settings.dingtalk_webhook_url,
                secret=settings.dingtalk_secret,
                dingtalk=DingTalkOptions(
                    at_mobiles=settings.dingtalk_at_mobiles,
                    at_user_ids=settings.dingtalk_at_user_ids,
                    at_all=settings.dingtalk_at_all,
                    keyword=settings.dingtalk_keyword,
                ),
            )
        )
    if settings.slack_webhook_url:
        specs.append(
            ChannelSpec(name="slack", kind="slack", webhook_url=settings.slack_webhook_url)
        )
    return (*specs, *settings.routes)


def build_routes(
    settings: Settings, session: requests.Session | None = None, deadline: float | None = None
) -> dict[str, Route]:
    """One route per configured channel, by channel name, in sending order.

    ``deadline`` is the invocation's, a ``time.monotonic()`` value: no send waits past it.
    """
    from .notify import DingTalkNotifier, SlackNotifier, robot_window

    time_left = None if deadline is None else partial(_seconds_until, deadline)
    routes: dict[str, Route] = {}
    for spec in channel_specs(settings):
        notifier: Notifier
        if spec.kind == "dingtalk":
            # The robot's window is shared for the life of the instance: a warm
            # instance remembers its sends and a 130101 hold across invocations.
            notifier = DingTalkNotifier(
                spec.webhook_url,
                spec.secret,
                session,
                channel=spec.name,
                options=spec.dingtalk,
                window=robot_window(spec.webhook_url.reveal()),
            )
        else:
            notifier = SlackNotifier(
                spec.webhook_url, session, channel=spec.name, time_left=time_left
            )
        routes[spec.name] = Route(spec, notifier, settings.language_for(spec.name))
    return routes


def _seconds_until(deadline: float) -> float:
    return deadline - time.monotonic()


def channels_for(notifiers: Mapping[str, Notifier], item: Announcement) -> list[str]:
    """The channels an announcement goes to: every one whose filter takes it."""
    return [
        name
        for name, notifier in notifiers.items()
        if not isinstance(notifier, Route) or notifier.accepts(item)
    ]
