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
from urllib.parse import parse_qs, urlsplit

from .config import LANGUAGES, Env, _parse_base_url, require_access_token
from .errors import ConfigError
from .model import Announcement, Outcome
from .redaction import REDACTOR, Secret
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
_KNOWN_KEYS = _CHANNEL_KEYS | _FILTER_KEYS | {"channels"}
# Keys whose values are secret wherever they appear: webhook_url, secret, app_token, ...
_SECRET_KEY = re.compile(r"(^|_)(url|webhook|secret|token|password|key|sign)(_|$)", re.I)
# What an error may repeat: a short plain word (a misspelt key, language or outcome).
_PLAIN_KEY = re.compile(r"^[a-z_]{1,32}$")
# Longer words may be tokens (an AccessKey secret is 30 characters).
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_.-]{1,16}$")
_MOBILE = re.compile(r"^\+?[0-9]{3,20}$")
_TRUE_WORDS, _FALSE_WORDS = ("true", "yes", "1"), ("false", "no", "0")
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


def _mobiles(values: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Phone numbers to mention: DingTalk ignores anything else without a word."""
    for value in values:
        if not _MOBILE.match(value):
            raise ConfigError(
                f"{where} has {_shown(value)}, which is not a phone number; expected "
                "digits with an optional leading '+', e.g. '13800000000,+8613900000000'"
            )
    return values


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
        "dingtalk_at_mobiles": _mobiles(
            _split_list(get(Env.DINGTALK_AT_MOBILES)), Env.DINGTALK_AT_MOBILES
        ),
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
    try:
        return _parse_text(text, source, env)
    except RecursionError:
        # Every step walks the document recursively; no routing file is nested thousands deep.
        raise ConfigError(
            f"{source} (named by {Env.ADDON_WATCH_CONFIG}) is nested too deeply to read; "
            "a routing file is a list 'channels:' of flat mappings, see the README"
        ) from None


def _parse_text(text: str, source: str, env: Mapping[str, str]) -> tuple[ChannelSpec, ...]:
    import yaml

    try:
        document = _load_yaml(text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        # A problem may quote a piece of the file ("found undefined alias '...'").
        problem = re.sub(
            r"'[^']{4,}'", "'...'", str(getattr(exc, "problem", "") or "a syntax error")
        )
        raise ConfigError(f"{where} is not valid YAML: {problem}") from None
    # Before any check, so that no error or log line can show a secret of the file.
    _register_secrets(document, env)
    try:
        return _parse_document(document, source, env)
    except ConfigError as exc:
        scrubbed = REDACTOR.scrub(str(exc))
        if scrubbed == str(exc):
            raise
        raise ConfigError(scrubbed) from None


def _load_yaml(text: str, source: str) -> object:
    """The YAML document, refusing a key given twice in one mapping (YAML would keep the last)."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, source, "")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: object, source: str, path: str) -> None:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(item, source, f"{path}[{index}]")
    elif isinstance(node, yaml.MappingNode):
        seen: set[tuple[str, str]] = set()
        for key, value in node.value:
            # A key is shown only if it is one of ours: another may be a pasted secret.
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            shown = name if name in _KNOWN_KEYS else "(a key not shown)"
            where = f"{path}.{shown}" if path else shown
            if name is not None and key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, name) in seen:
                    raise ConfigError(
                        f"{source}:{key.start_mark.line + 1}: {where} is given twice in one "
                        "mapping; YAML would silently keep the last: keep one"
                    )
                seen.add((key.tag, name))
            _refuse_duplicate_keys(value, source, where)


def _register_secrets(node: object, env: Mapping[str, str], secret: bool = False) -> None:
    """Tell the redactor every string of the document that may be a secret.

    That is every value under a secret-like key (``webhook_url``, ``secret``,
    ``*_token``, ...), every string holding ``://`` wherever it is (a URL pasted
    as a name or a key), and the value of every ``${env:NAME}`` referred to.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            _register_secrets(key, env, secret)
            secret_key = isinstance(key, str) and _SECRET_KEY.search(key) is not None
            _register_secrets(value, env, secret or secret_key)
    elif isinstance(node, list):
        for item in node:
            _register_secrets(item, env, secret)
    elif isinstance(node, str):
        names = _ENV_REF.findall(node)
        for name in names:
            REDACTOR.register(env.get(name, ""))
        if secret or "://" in node:
            # The reference itself is no secret, and errors name it: only its value is.
            REDACTOR.register(_ENV_REF.sub(lambda m: env.get(m.group(1), ""), node))
    elif secret and isinstance(node, (int, float)) and not isinstance(node, bool):
        REDACTOR.register(str(node))


def _shown(value: object) -> str:
    """A wrong value as an error may show it: a short plain word, else only its kind and size."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    text = str(value)
    if isinstance(value, str) and _PLAIN_VALUE.match(text) and REDACTOR.scrub(text) == text:
        return repr(text)
    kind = "a value" if isinstance(value, str) else f"a {type(value).__name__}"
    return f"({kind} of {len(text)} characters, not shown: it may be a secret)"


def _unknown_keys(mapping: dict[Any, Any], known: frozenset[str], where: str) -> None:
    """Refuse keys outside ``known``; one that looks like a value is named by position only."""
    shown, hidden = [], False
    for position, key in enumerate(mapping, start=1):
        if isinstance(key, str) and key in known:
            continue
        if isinstance(key, str) and _PLAIN_KEY.match(key) and REDACTOR.scrub(key) == key:
            shown.append(repr(key))
        else:
            shown.append(f"key {position} (not shown)")
            hidden = True
    if not shown:
        return
    hint = (
        "; a key not shown looks like a value, perhaps a URL or secret: write it after its "
        "key, e.g. 'webhook_url: ...'"
        if hidden
        else ""
    )
    raise ConfigError(
        f"{where} has unknown keys [{', '.join(shown)}]; known: {sorted(known)}{hint}"
    )


def _parse_document(
    document: object, source: str, env: Mapping[str, str]
) -> tuple[ChannelSpec, ...]:
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
    _unknown_keys(entry, _CHANNEL_KEYS, where)
    raw_name, kind = entry.get("name", ""), _lower(entry.get("type", ""))
    name = str(raw_name)
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}: name {_shown(raw_name)} must be lower-case letters, digits, '-' or '_', "
            "e.g. 'ops'"
        )
    if kind not in KINDS:
        raise ConfigError(f"{where} ({name}): type {_shown(kind)} must be one of {list(KINDS)}")
    where = f"{where} ({kind}:{name})"

    url = _resolve(entry.get("webhook_url"), f"{where}.webhook_url", env)
    if not url:
        raise ConfigError(f"{where}.webhook_url is missing; e.g. {_EXAMPLES[kind]}")
    webhook = Secret(_parse_base_url(f"{where}.webhook_url", url, _EXAMPLES[kind], True))
    if kind == "dingtalk":
        require_access_token(f"{where}.webhook_url", url, _EXAMPLES[kind])
    secret = _resolve(entry.get("secret"), f"{where}.secret", env)
    language = _lower(entry.get("language"))
    if language is not None and language not in LANGUAGES:
        raise ConfigError(f"{where}.language is {_shown(language)}; expected 'zh' or 'en'")
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
            at_mobiles=_mobiles(
                _strings(entry.get("at_mobiles"), f"{where}.at_mobiles"), f"{where}.at_mobiles"
            ),
            at_user_ids=_strings(entry.get("at_user_ids"), f"{where}.at_user_ids"),
            at_all=_flag(entry.get("at_all"), f"{where}.at_all"),
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


def _lower(value: object) -> object:
    """A word of a closed set (type, language, outcome) in any case."""
    return value.strip().lower() if isinstance(value, str) else value


def _flag(value: object, where: str) -> bool:
    """A YAML boolean, or a word for one in any case: true/false, yes/no, 1/0; unset is false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    word = _lower(str(value)) if isinstance(value, (str, int)) else None
    if word in _TRUE_WORDS or word in _FALSE_WORDS:
        return word in _TRUE_WORDS
    raise ConfigError(f"{where} is {_shown(value)}; expected true or false (or yes/no, 1/0)")


def _strings(value: object, where: str, example: str = "['13800000000']") -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ConfigError(f"{where} must be a list of strings, e.g. {example}")
    return tuple(str(v).lstrip("@") for v in value)


def _parse_filter(value: object, where: str) -> RouteFilter:
    if value is None:
        return RouteFilter()
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of clusters, components and outcomes")
    _unknown_keys(value, _FILTER_KEYS, where)
    outcomes = _strings(value.get("outcomes"), f"{where}.outcomes", "[failed, canceled]")
    outcomes = tuple(outcome.lower() for outcome in outcomes)
    known = {outcome.value for outcome in Outcome}
    wrong = [_shown(outcome) for outcome in sorted(set(outcomes) - known)]
    if wrong:
        raise ConfigError(
            f"{where}.outcomes has [{', '.join(wrong)}]; expected some of {sorted(known)}"
        )
    return RouteFilter(
        clusters=_strings(value.get("clusters"), f"{where}.clusters", "['c0123*']"),
        components=_strings(value.get("components"), f"{where}.components", "['nginx-*']"),
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


def refuse_repeated_robots(settings: Settings) -> None:
    """Refuse two channels posting to one robot or webhook: each message would arrive twice."""
    seen: dict[tuple[str, ...], str] = {}
    for spec in channel_specs(settings):
        robot = _robot(spec.webhook_url.reveal())
        if robot in seen:
            raise ConfigError(
                f"channels {seen[robot]!r} ({_origin(seen[robot])}) and {spec.name!r} "
                f"({_origin(spec.name)}) post to the same webhook, so every message would be "
                "sent twice; remove one of them, or give one its own robot or webhook"
            )
        seen[robot] = spec.name


def _robot(url: str) -> tuple[str, ...]:
    """What identifies a webhook: a DingTalk robot's access_token, else the URL."""
    parts = urlsplit(url)
    tokens = parse_qs(parts.query).get("access_token")
    if tokens:
        return ("access_token", tokens[0])
    host = (parts.hostname or "").lower()
    return (host, str(parts.port), parts.path.rstrip("/"), parts.query)


def _origin(channel: str) -> str:
    if ":" in channel:
        return f"the file named by {Env.ADDON_WATCH_CONFIG}"
    return Env.DINGTALK_WEBHOOK_URL if channel == "dingtalk" else Env.SLACK_WEBHOOK_URL


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
