"""Settings, read once per invocation from the environment into a frozen object.

Every environment variable name the function reads is listed in ``Env``. An
explicit argument to ``load_settings`` beats the environment, which makes the
settings easy to build in tests and in the demo.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from .detect import NO_NOTICES, Notices
from .errors import ConfigError
from .model import Target
from .redaction import REDACTOR, Secret

if TYPE_CHECKING:
    from .routing import ChannelSpec


class Env:
    """Names of the environment variables the function reads."""

    WATCH_TARGETS = "WATCH_TARGETS"
    ACK_REGION = "ACK_REGION"
    ACK_ENDPOINT = "ACK_ENDPOINT"
    FC_REGION = "FC_REGION"
    FC_FUNCTION_NAME = "FC_FUNCTION_NAME"
    ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
    ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
    SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
    DINGTALK_WEBHOOK_URL = "DINGTALK_WEBHOOK_URL"
    DINGTALK_SECRET = "DINGTALK_SECRET"
    SLACK_WEBHOOK_URL = "SLACK_WEBHOOK_URL"
    STATE_STORE = "STATE_STORE"
    NOTIFY_LANGUAGE = "NOTIFY_LANGUAGE"
    NOTIFY_TIMEZONE = "NOTIFY_TIMEZONE"
    TEMPLATES_DIR = "TEMPLATES_DIR"
    # Manual HTTP trigger and the invocation's time budget.
    HTTP_AUTH = "HTTP_AUTH"
    HTTP_TOKEN = "HTTP_TOKEN"
    FUNCTION_TIMEOUT = "FUNCTION_TIMEOUT"
    # Durable delivery: the OSS store, ephemeral state in Function Compute, the outbox.
    OSS_ENDPOINT = "OSS_ENDPOINT"
    ALLOW_EPHEMERAL_STATE = "ALLOW_EPHEMERAL_STATE"
    DELIVERY_MAX_AGE = "DELIVERY_MAX_AGE"
    DELIVERY_LEASE = "DELIVERY_LEASE"
    # ACK client at scale: wildcard targets, exclusions, parallel calls, network.
    WATCH_EXCLUDE = "WATCH_EXCLUDE"
    ACK_CONCURRENCY = "ACK_CONCURRENCY"
    ACK_NETWORK = "ACK_NETWORK"
    # Notifiers: DingTalk mentions and keyword, and the routing file.
    DINGTALK_AT_MOBILES = "DINGTALK_AT_MOBILES"
    DINGTALK_AT_USER_IDS = "DINGTALK_AT_USER_IDS"
    DINGTALK_AT_ALL = "DINGTALK_AT_ALL"
    DINGTALK_KEYWORD = "DINGTALK_KEYWORD"
    ADDON_WATCH_CONFIG = "ADDON_WATCH_CONFIG"
    # Opt-in notices: a paused task, a task running too long, an upgrade available.
    NOTIFY_PAUSED = "NOTIFY_PAUSED"
    NOTIFY_STUCK_AFTER = "NOTIFY_STUCK_AFTER"
    NOTIFY_UPGRADE_AVAILABLE = "NOTIFY_UPGRADE_AVAILABLE"


LANGUAGES = ("zh", "en")
_CLUSTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_OSS_HOST = re.compile(r"^oss-([a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")
_DURATION = re.compile(r"^([0-9]+)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")
DEFAULT_DELIVERY_MAX_AGE = timedelta(hours=24)
DEFAULT_DELIVERY_LEASE = timedelta(minutes=10)
# The longest each duration may be, with a usual value: longer is a typo, and would
# overflow the date arithmetic of every run.
_MAX_DURATIONS = {
    "DELIVERY_MAX_AGE": (timedelta(days=30), "24h"),
    "DELIVERY_LEASE": (timedelta(days=1), "10m"),
    "NOTIFY_STUCK_AFTER": (timedelta(days=30), "2h"),
}
# More digits than any allowed duration has, even in seconds.
_MAX_DURATION_DIGITS = 12
# The shortest lease: one Slack send may take three requests of up to 15 s each
# (connect and read timeouts) and 30 s of waiting out 429s; plus a margin.
MIN_DELIVERY_LEASE = timedelta(minutes=2)
# A target's cluster may be "*" (every cluster) and its component a glob ("*", "nginx-*").
ANY = "*"
_GLOB_CHARS = frozenset("*?[")
_COMPONENT_GLOB = re.compile(r"^[A-Za-z0-9._*?\[\]!-]{1,253}$")
DEFAULT_ACK_CONCURRENCY = 20
MAX_ACK_CONCURRENCY = 64
NETWORKS = ("public", "vpc")
# Variables holding secrets, registered with the redactor before anything is parsed.
SECRET_VARIABLES = (
    Env.ACCESS_KEY_SECRET,
    Env.SECURITY_TOKEN,
    Env.DINGTALK_WEBHOOK_URL,
    Env.DINGTALK_SECRET,
    Env.SLACK_WEBHOOK_URL,
    Env.HTTP_TOKEN,
)


@dataclass(frozen=True)
class AccessKey:
    """An AccessKey pair from the environment, with its STS token when there is one."""

    access_key_id: str
    access_key_secret: Secret
    security_token: Secret | None = None


@dataclass(frozen=True)
class OssLocation:
    """Where the OSS state store lives and how to reach it."""

    bucket: str
    prefix: str
    endpoint: str
    region: str


@dataclass(frozen=True)
class Settings:
    """Everything one invocation needs, validated."""

    targets: tuple[Target, ...]
    ack_endpoint: str
    region: str | None
    state_path: Path | None
    access_key: AccessKey | None = None
    dingtalk_webhook_url: Secret | None = None
    dingtalk_secret: Secret | None = None
    slack_webhook_url: Secret | None = None
    notify_language: str | None = None
    notify_timezone: str | None = None
    templates_dir: Path | None = None
    running_in_fc: bool = field(default=False, compare=False)
    http_auth: str = "token"
    http_token: Secret | None = None
    function_timeout: float | None = None
    oss_store: OssLocation | None = None
    allow_ephemeral_state: bool = False
    delivery_max_age: timedelta = DEFAULT_DELIVERY_MAX_AGE
    delivery_lease: timedelta = DEFAULT_DELIVERY_LEASE
    exclude: tuple[Target, ...] = ()
    ack_concurrency: int = DEFAULT_ACK_CONCURRENCY
    # Notifiers: DingTalk mentions and keyword, and the channels of the routing file.
    dingtalk_at_mobiles: tuple[str, ...] = ()
    dingtalk_at_user_ids: tuple[str, ...] = ()
    dingtalk_at_all: bool = False
    dingtalk_keyword: str | None = None
    routes: tuple[ChannelSpec, ...] = ()
    # Opt-in notices, all off by default.
    notices: Notices = NO_NOTICES

    @property
    def channels(self) -> tuple[str, ...]:
        """Names of the configured channels, in sending order."""
        names = []
        if self.dingtalk_webhook_url:
            names.append("dingtalk")
        if self.slack_webhook_url:
            names.append("slack")
        return (*names, *(route.name for route in self.routes))

    @property
    def ephemeral_state(self) -> bool:
        """The SQLite file is on Function Compute's /tmp, lost with the instance."""
        return self.running_in_fc and _ephemeral(self.state_path)

    def language_for(self, channel: str) -> str:
        """The language of messages to this channel (``dingtalk``, ``dingtalk:ops``, ...)."""
        for route in self.routes:
            if route.name == channel and route.language:
                return route.language
        if self.notify_language:
            return self.notify_language
        return "zh" if channel.partition(":")[0] == "dingtalk" else "en"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings.

    Args:
        environ: the variables to read; the process environment when omitted.

    Returns:
        The validated settings.

    Raises:
        ConfigError: naming the first variable that is missing or malformed and
            showing what a valid value looks like.
    """
    env = dict(os.environ if environ is None else environ)
    # Before anything is parsed: an error about any variable, or a log line, may
    # show a secret pasted into the wrong variable, and must show it masked.
    for name in SECRET_VARIABLES:
        REDACTOR.register(env.get(name, "").strip())
    try:
        return _read_settings(env)
    except ConfigError as exc:
        scrubbed = REDACTOR.scrub(str(exc))
        if scrubbed == str(exc):
            raise
        raise ConfigError(scrubbed) from None


def _read_settings(env: Mapping[str, str]) -> Settings:
    from .routing import notifier_settings, refuse_repeated_robots

    def get(name: str) -> str:
        return env.get(name, "").strip()

    running_in_fc = bool(get(Env.FC_FUNCTION_NAME))
    region = get(Env.ACK_REGION) or get(Env.FC_REGION) or None
    if region is not None and not _REGION.match(region):
        raise ConfigError(
            f"{Env.ACK_REGION} is {region!r}, which is not a region id; "
            "expected something like 'cn-hangzhou'"
        )
    network = get(Env.ACK_NETWORK).lower() or NETWORKS[0]
    if network not in NETWORKS:
        raise ConfigError(
            f"{Env.ACK_NETWORK} is {get(Env.ACK_NETWORK)!r}; expected 'public' or 'vpc' "
            "('vpc' calls cs-vpc.{region}.aliyuncs.com, reachable from the region's VPCs)"
        )
    endpoint = get(Env.ACK_ENDPOINT)
    if endpoint:
        endpoint = _parse_base_url(
            Env.ACK_ENDPOINT, endpoint, "https://cs-vpc.cn-hangzhou.aliyuncs.com"
        )
    elif region:
        endpoint = f"https://{'cs-vpc' if network == 'vpc' else 'cs'}.{region}.aliyuncs.com"
    else:
        raise ConfigError(
            f"{Env.ACK_REGION} is not set (nor {Env.FC_REGION}); set it to the clusters' "
            f"region, e.g. 'cn-hangzhou', or set {Env.ACK_ENDPOINT} to a full base URL"
        )

    allow_ephemeral = _parse_bool(Env.ALLOW_EPHEMERAL_STATE, get(Env.ALLOW_EPHEMERAL_STATE))
    # The bucket sits beside the function (its internal endpoint works only in
    # that region), which may differ from the clusters' region.
    state_path, oss_store = _parse_state_store(
        get(Env.STATE_STORE), env, running_in_fc, allow_ephemeral, get(Env.FC_REGION) or region
    )
    settings = Settings(
        targets=parse_targets(get(Env.WATCH_TARGETS)),
        ack_endpoint=endpoint,
        region=region,
        state_path=state_path,
        access_key=_parse_access_key(
            get(Env.ACCESS_KEY_ID), get(Env.ACCESS_KEY_SECRET), get(Env.SECURITY_TOKEN)
        ),
        dingtalk_webhook_url=_webhook(Env.DINGTALK_WEBHOOK_URL, get(Env.DINGTALK_WEBHOOK_URL)),
        dingtalk_secret=Secret(get(Env.DINGTALK_SECRET)) if get(Env.DINGTALK_SECRET) else None,
        slack_webhook_url=_webhook(Env.SLACK_WEBHOOK_URL, get(Env.SLACK_WEBHOOK_URL)),
        notify_language=_parse_language(get(Env.NOTIFY_LANGUAGE)),
        notify_timezone=_parse_timezone(get(Env.NOTIFY_TIMEZONE)),
        templates_dir=_parse_templates_dir(get(Env.TEMPLATES_DIR)),
        running_in_fc=running_in_fc,
        http_auth=_parse_http_auth(get(Env.HTTP_AUTH)),
        http_token=_parse_http_token(get(Env.HTTP_TOKEN)),
        function_timeout=_parse_timeout(get(Env.FUNCTION_TIMEOUT)),
        oss_store=oss_store,
        allow_ephemeral_state=allow_ephemeral,
        delivery_max_age=_parse_duration(
            Env.DELIVERY_MAX_AGE, get(Env.DELIVERY_MAX_AGE), DEFAULT_DELIVERY_MAX_AGE
        ),
        delivery_lease=_parse_lease(
            get(Env.DELIVERY_LEASE), _parse_timeout(get(Env.FUNCTION_TIMEOUT))
        ),
        exclude=parse_exclude(get(Env.WATCH_EXCLUDE)),
        ack_concurrency=_parse_concurrency(get(Env.ACK_CONCURRENCY)),
        **notifier_settings(env),
        notices=parse_notices(env),
    )
    if not settings.channels:
        raise ConfigError(
            f"no channel is configured; set {Env.DINGTALK_WEBHOOK_URL} "
            "(https://oapi.dingtalk.com/robot/send?access_token=...) and/or "
            f"{Env.SLACK_WEBHOOK_URL} (https://hooks.slack.com/services/...), "
            f"or name a routing file in {Env.ADDON_WATCH_CONFIG}"
        )
    if settings.dingtalk_secret and not settings.dingtalk_webhook_url:
        raise ConfigError(f"{Env.DINGTALK_SECRET} is set but {Env.DINGTALK_WEBHOOK_URL} is not")
    refuse_repeated_robots(settings)
    return settings


def _parse_lease(value: str, function_timeout: float | None) -> timedelta:
    """A lease shorter than a send, or than a run, lets a second run send the same message."""
    shortest = MIN_DELIVERY_LEASE
    why = "the time one delivery can take"
    if function_timeout is not None and function_timeout > shortest.total_seconds():
        shortest = timedelta(seconds=math.ceil(function_timeout))
        why = f"{Env.FUNCTION_TIMEOUT} ({function_timeout:g} s)"
    if not value:
        # Unset: the default, stretched to a function whose timeout is longer.
        return max(DEFAULT_DELIVERY_LEASE, shortest)
    lease = _parse_duration(Env.DELIVERY_LEASE, value, DEFAULT_DELIVERY_LEASE)
    if lease < shortest:
        raise ConfigError(
            f"{Env.DELIVERY_LEASE} is {value!r}, shorter than {why}: another run could take "
            "over a message while it is being sent, and send it again; set it to at least "
            f"'{int(shortest.total_seconds())}s' (the default is '10m')"
        )
    return lease


def parse_targets(text: str) -> tuple[Target, ...]:
    """``CLUSTER_ID/COMPONENT`` items separated by commas, duplicates dropped.

    ``CLUSTER_ID/*`` is every addon installed in the cluster, ``*`` every addon of
    every cluster in the region; the component may be any glob (``nginx-*``).
    """
    example = "e.g. 'c0123456789abcdef/metrics-server,c0123456789abcdef/nginx-ingress-controller'"
    if not text:
        raise ConfigError(
            f"{Env.WATCH_TARGETS} is not set; list CLUSTER_ID/COMPONENT pairs, {example}"
        )
    targets = _parse_target_list(Env.WATCH_TARGETS, text, example)
    if not targets:
        raise ConfigError(f"{Env.WATCH_TARGETS} lists no target; {example}")
    return targets


def parse_exclude(text: str) -> tuple[Target, ...]:
    """Targets never to ask about, in the syntax of ``WATCH_TARGETS``."""
    return _parse_target_list(Env.WATCH_EXCLUDE, text, "e.g. '*/ack-node-problem-detector,c0123/*'")


def is_glob(component: str) -> bool:
    """Whether a target's component is a pattern rather than one addon's name."""
    return not _GLOB_CHARS.isdisjoint(component)


def _parse_target_list(name: str, text: str, example: str) -> tuple[Target, ...]:
    targets: list[Target] = []
    for item in (piece.strip() for piece in text.split(",")):
        if not item:
            continue
        cluster_id, slash, component = (ANY, "/", ANY) if item == ANY else item.partition("/")
        cluster_ok = cluster_id == ANY or _CLUSTER_ID.match(cluster_id)
        component_ok = _COMPONENT.match(component) or (
            is_glob(component) and _COMPONENT_GLOB.match(component)
        )
        if not slash or not cluster_ok or not component_ok:
            raise ConfigError(
                f"{name} has {item!r}, which is not CLUSTER_ID/COMPONENT, CLUSTER_ID/* or * "
                f"(letters, digits, '-', '_' and '.'; globs in the component); {example}"
            )
        target = Target(cluster_id, component)
        if target not in targets:
            targets.append(target)
    return tuple(targets)


def default_state_path(env: Mapping[str, str], running_in_fc: bool) -> Path:
    """Where the SQLite store lives when ``STATE_STORE`` is not set."""
    if running_in_fc:
        return Path("/tmp/ack-addon-watch/state.sqlite3")
    # A relative XDG_DATA_HOME is to be ignored (XDG base directory specification).
    data_home = env.get("XDG_DATA_HOME", "")
    if not data_home.startswith("/"):
        data_home = str(Path.home() / ".local" / "share")
    return Path(data_home) / "ack-addon-watch" / "state.sqlite3"


def _parse_state_store(
    value: str,
    env: Mapping[str, str],
    running_in_fc: bool,
    allow_ephemeral: bool,
    region: str | None,
) -> tuple[Path | None, OssLocation | None]:
    """The SQLite path or the OSS location ``STATE_STORE`` names."""
    scheme, sep, rest = value.partition("://")
    if value and sep and scheme == "oss":
        return None, _parse_oss(value, rest, env, running_in_fc, region)
    if value and (scheme != "sqlite" or not sep or not rest.lstrip("/")):
        raise ConfigError(
            f"{Env.STATE_STORE} is {_shown_store(value)}; expected sqlite:///ABSOLUTE/PATH "
            "(e.g. 'sqlite:///var/lib/ack-addon-watch/state.sqlite3') or oss://BUCKET/PREFIX "
            "(e.g. 'oss://my-bucket/ack-addon-watch')"
        )
    if value and not rest.startswith("/"):
        raise ConfigError(
            f"{Env.STATE_STORE} is {_shown_store(value)}, whose path is relative (it would "
            "depend on the working directory); write sqlite:// and an absolute path, three slashes "
            "in all, e.g. 'sqlite:///var/lib/ack-addon-watch/state.sqlite3'"
        )
    path = Path(rest) if value else default_state_path(env, running_in_fc)
    # Function Compute discards /tmp with the instance, and with it every record
    # and undelivered message: refuse unless the user accepted that.
    if running_in_fc and _ephemeral(path) and not allow_ephemeral:
        raise ConfigError(
            f"the state store would be the SQLite file {path}, which Function Compute "
            "discards with the instance (messages would repeat or be lost); set "
            f"{Env.STATE_STORE}=oss://BUCKET/PREFIX (e.g. 'oss://my-bucket/ack-addon-watch'), "
            f"or set {Env.ALLOW_EPHEMERAL_STATE}=true to accept that"
        )
    return path, None


def _shown_store(value: str) -> str:
    """``STATE_STORE`` as an error may show it: whole unless it may hold credentials."""
    scheme, sep, rest = value.partition("://")
    if not re.search(r"[@?#]|^[^/]*:", rest if sep else value):
        return repr(value)
    if sep and re.match(r"^[A-Za-z][A-Za-z0-9+.-]{0,15}$", scheme):
        return f"a URL with the scheme {scheme}:// and credentials or parameters (not shown)"
    return f"a value of {len(value)} characters with credentials or parameters (not shown)"


def _ephemeral(path: Path | None) -> bool:
    return path is not None and path.is_relative_to("/tmp")


def _parse_oss(
    value: str, rest: str, env: Mapping[str, str], running_in_fc: bool, region: str | None
) -> OssLocation:
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket):
        raise ConfigError(
            f"{Env.STATE_STORE} is {_shown_store(value)}, whose bucket name is not valid (3 to 63 "
            "lower-case letters, digits and '-'); expected e.g. 'oss://my-bucket/ack-addon-watch'"
        )
    override = env.get(Env.OSS_ENDPOINT, "").strip()
    endpoint = ""
    if override:
        endpoint = _parse_base_url(
            Env.OSS_ENDPOINT, override, "https://oss-cn-hangzhou-internal.aliyuncs.com"
        )
        host = re.sub(r"^https?://", "", endpoint).split("/")[0].split(":")[0]
        named = _OSS_HOST.match(host)
        region = named.group(1) if named else region
    elif region:
        # Inside Alibaba Cloud the internal endpoint is free of traffic charges.
        internal = "-internal" if running_in_fc else ""
        endpoint = f"https://oss-{region}{internal}.aliyuncs.com"
    if not region:
        hint = (
            f"set {Env.ACK_REGION} (the bucket's region cannot be read from {Env.OSS_ENDPOINT})"
            if endpoint
            else f"set {Env.ACK_REGION} or {Env.OSS_ENDPOINT} "
            "(e.g. https://oss-cn-hangzhou.aliyuncs.com)"
        )
        raise ConfigError(f"{Env.STATE_STORE} is an OSS location but no region is known; {hint}")
    return OssLocation(bucket, prefix.strip("/"), endpoint, region)


def _parse_bool(name: str, value: str) -> bool:
    if value.lower() not in _TRUE + _FALSE:
        raise ConfigError(f"{name} is {value!r}; expected 'true' or 'false'")
    return value.lower() in _TRUE


def _parse_duration(name: str, value: str, default: timedelta) -> timedelta:
    if not value:
        return default
    match = _DURATION.match(value.lower())
    if match is None or not match.group(1).lstrip("0"):
        raise ConfigError(
            f"{name} is {value!r}; expected a positive duration such as '90s', '15m', '24h' "
            "or '2d' (a bare number is seconds)"
        )
    most, example = _MAX_DURATIONS.get(name, (timedelta(days=30), "24h"))
    digits = match.group(1).lstrip("0")
    seconds = int(digits) * _UNITS[match.group(2)] if len(digits) <= _MAX_DURATION_DIGITS else 0
    if not 0 < seconds <= most.total_seconds():
        shown = value if len(value) <= 24 else f"{REDACTOR.scrub(value)[:20]}..."
        raise ConfigError(
            f"{name} is {shown!r}, too long; expected at most {_span(most)}, e.g. '{example}'"
        )
    return timedelta(seconds=seconds)


def _span(delta: timedelta) -> str:
    """A duration in the largest whole unit: '30d', '90m'."""
    seconds = int(delta.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def _parse_access_key(key_id: str, key_secret: str, token: str) -> AccessKey | None:
    if not key_id and not key_secret:
        if token:
            raise ConfigError(
                f"{Env.SECURITY_TOKEN} is set without {Env.ACCESS_KEY_ID} and "
                f"{Env.ACCESS_KEY_SECRET}; an STS token needs its AccessKey pair"
            )
        return None
    if not key_id or not key_secret:
        missing = Env.ACCESS_KEY_ID if not key_id else Env.ACCESS_KEY_SECRET
        raise ConfigError(
            f"{missing} is not set; set both {Env.ACCESS_KEY_ID} and "
            f"{Env.ACCESS_KEY_SECRET}, or neither"
        )
    return AccessKey(key_id, Secret(key_secret), Secret(token) if token else None)


def _webhook(name: str, value: str) -> Secret | None:
    if not value:
        return None
    example = {
        Env.DINGTALK_WEBHOOK_URL: "https://oapi.dingtalk.com/robot/send?access_token=...",
        Env.SLACK_WEBHOOK_URL: "https://hooks.slack.com/services/T.../B.../...",
    }[name]
    url = _parse_base_url(name, value, example, allow_query=True)
    if name == Env.DINGTALK_WEBHOOK_URL:
        require_access_token(name, url, example)
    return Secret(url)


def require_access_token(name: str, url: str, example: str) -> None:
    """A DingTalk robot's URL names the robot by its access_token; without it every send fails."""
    if not parse_qs(urlsplit(url).query).get("access_token"):
        raise ConfigError(
            f"{name} has no access_token parameter; copy the robot's whole webhook URL from "
            f"DingTalk, like {example}"
        )


def _parse_base_url(name: str, value: str, example: str, allow_query: bool = False) -> str:
    """A validated http(s) URL; the message never repeats the value, which may be secret."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.fragment
        or (parts.query and not allow_query)
        or any(c.isspace() for c in value)
    ):
        raise ConfigError(f"{name} is not a valid http(s) URL; expected something like {example}")
    return value.rstrip("/") if not allow_query else value


def _parse_concurrency(value: str) -> int:
    if not value:
        return DEFAULT_ACK_CONCURRENCY
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_ACK_CONCURRENCY:
        raise ConfigError(
            f"{Env.ACK_CONCURRENCY} is {value!r}; expected a whole number of calls in flight "
            f"from 1 to {MAX_ACK_CONCURRENCY} (default {DEFAULT_ACK_CONCURRENCY})"
        )
    return int(value)


def _parse_language(value: str) -> str | None:
    if value and value.lower() not in LANGUAGES:
        raise ConfigError(f"{Env.NOTIFY_LANGUAGE} is {value!r}; expected 'zh' or 'en' (or unset)")
    return value.lower() or None


def _parse_templates_dir(value: str) -> Path | None:
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise ConfigError(
            f"{Env.TEMPLATES_DIR} is {value!r}, which {what}; name a directory holding the "
            "templates to override, e.g. dingtalk.zh.j2 or slack.en.j2 (the others stay "
            "built-in), or leave it unset"
        )
    return path


def _parse_timezone(value: str) -> str | None:
    if not value:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"{Env.NOTIFY_TIMEZONE} is {value!r}, not a known time zone; "
            "expected e.g. 'Asia/Shanghai'"
        ) from exc
    return value


HTTP_AUTH_MODES = ("token", "function")
MIN_HTTP_TOKEN_LENGTH = 16


def _parse_http_auth(value: str) -> str:
    mode = value.lower() or "token"
    if mode not in HTTP_AUTH_MODES:
        raise ConfigError(
            f"{Env.HTTP_AUTH} is {value!r}; expected 'token' (callers send "
            f"'Authorization: Bearer <{Env.HTTP_TOKEN}>') or 'function' (the HTTP trigger's "
            "authType is 'function' and Function Compute checks each request's signature)"
        )
    return mode


def _parse_http_token(value: str) -> Secret | None:
    if not value:
        return None
    if len(value) < MIN_HTTP_TOKEN_LENGTH or any(c.isspace() for c in value):
        # The value is not repeated: even a bad token is a secret.
        raise ConfigError(
            f"{Env.HTTP_TOKEN} is too short or contains spaces; use at least "
            f"{MIN_HTTP_TOKEN_LENGTH} random characters, e.g. the output of 'openssl rand -hex 32'"
        )
    return Secret(value)


def _parse_timeout(value: str) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 86_400:
        raise ConfigError(
            f"{Env.FUNCTION_TIMEOUT} is {value!r}; expected the function's timeout in seconds, "
            "from 1 to 86400, e.g. '300'"
        )
    return seconds


def parse_notices(env: Mapping[str, str]) -> Notices:
    """The opt-in notices: one switch each, all off when unset."""

    def get(name: str) -> str:
        return env.get(name, "").strip()

    stuck = get(Env.NOTIFY_STUCK_AFTER)
    return Notices(
        paused=_parse_bool(Env.NOTIFY_PAUSED, get(Env.NOTIFY_PAUSED)),
        stuck_after=_parse_duration(Env.NOTIFY_STUCK_AFTER, stuck, timedelta()) if stuck else None,
        available=_parse_bool(Env.NOTIFY_UPGRADE_AVAILABLE, get(Env.NOTIFY_UPGRADE_AVAILABLE)),
    )
