"""The Function Compute entry point: read the event, do the work, log one summary line.

Only light modules are imported here: the HTTP client, the ACK client, the
store and the renderer load on the first invocation that needs them, so a
cold ``/healthz`` or a refused request stays cheap.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from fnmatch import fnmatchcase
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from . import http_trigger
from .config import ANY, Settings, load_settings, parse_targets
from .errors import AddonWatchError, ConfigError, EventError
from .model import Target
from .redaction import REDACTOR, install_log_redaction

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests

    from .credentials import Credentials
    from .notify import Notifier
    from .watcher import Summary

logger = logging.getLogger("addon_watch")

SUMMARY_EVENT = "addon_watch.summary"
# Stop starting work this long before the timeout (at most a quarter of it):
# one ACK call may take its 5 s connect and 10 s read timeouts.


def parse_event(event: object) -> tuple[str, dict[str, Any]]:
    """The trigger kind (``timer``, ``http`` or ``manual``) and the decoded event."""
    if isinstance(event, (bytes, bytearray)):
        try:
            event = bytes(event).decode("utf-8")
        except UnicodeDecodeError:
            raise EventError(
                "the event is not UTF-8 text; expected the JSON of an FC timer or HTTP event"
            ) from None
    if isinstance(event, str):
        if not event.strip():
            return "manual", {}
        try:
            event = json.loads(event)
        except (ValueError, RecursionError) as exc:
            raise EventError(f"the event is not JSON ({exc}); expected an FC timer event") from None
    if event is None:
        return "manual", {}
    if not isinstance(event, dict):
        raise EventError(
            f"the event is a JSON {type(event).__name__}; "
            "expected an object such as an FC timer event"
        )
    if "triggerTime" in event or "triggerName" in event:
        return "timer", event
    if "requestContext" in event and "rawPath" in event:
        return "http", event
    return "manual", event


def select_targets(
    options: Mapping[str, Any], settings: Settings, where: str
) -> tuple[Target, ...] | None:
    """The subset named by ``{"targets": [...]}``, or None for every configured target.

    Raises:
        EventError: naming the malformed or unknown entry and where it came from.
    """
    if "targets" not in options:
        return None
    names = options["targets"]
    example = '{"targets": ["c0123456789abcdef/metrics-server"]}'
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise EventError(f"{where}: 'targets' must be a non-empty list of strings, e.g. {example}")
    selected: list[Target] = []
    for name in names:
        try:
            (target,) = parse_targets(name)
        except (ConfigError, ValueError):
            target = None
        if target is None or not _covered(target, settings.targets):
            raise EventError(
                f"{where}: {REDACTOR.scrub(name)[:100]!r} is not one of the watched targets "
                "(WATCH_TARGETS); a trigger may only narrow the watched set"
            )
        if target not in selected:
            selected.append(target)
    return tuple(selected)


def _covered(target: Target, watched: tuple[Target, ...]) -> bool:
    """Whether a watched pattern takes in ``target`` (itself a name or a pattern)."""
    return any(
        pattern.cluster_id in (ANY, target.cluster_id)
        and fnmatchcase(target.component, pattern.component)
        for pattern in watched
    )


def _options(data: object, accepted: tuple[str, ...], where: str) -> dict[str, Any]:
    """A JSON object of invocation options with no key outside ``accepted``."""
    if data is None:
        # A timer payload of JSON null: the same as none.
        return {}
    if isinstance(data, str):
        if not data.strip():
            return {}
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            raise EventError(
                f'{where} is not JSON; expected nothing or {{"targets": [...]}}'
            ) from None
    if not isinstance(data, dict):
        raise EventError(f'{where} is a JSON {type(data).__name__}; expected {{"targets": [...]}}')
    unknown = sorted(set(data) - set(accepted))
    if unknown:
        raise EventError(f"{where} has the unknown key {unknown[0]!r}; it accepts {accepted}")
    return data


def build_notifiers(
    settings: Settings, session: requests.Session, deadline: float | None = None
) -> dict[str, Notifier]:
    """One notifier for each configured channel, with its filter and the invocation's deadline."""
    from .routing import build_routes

    return dict(build_routes(settings, session, deadline))


def check(
    settings: Settings,
    trigger: str,
    session: requests.Session | None = None,
    *,
    targets: tuple[Target, ...] | None = None,
    dry_run: bool = False,
    deadline: float | None = None,
) -> Summary:
    """Run one check with real clients built from the settings."""
    import requests

    from .ack import AckClient
    from .render import Renderer
    from .store import open_store
    from .watcher import run_check

    session = session or requests.Session()
    credentials = _credentials_for(settings)
    if settings.ephemeral_state:
        # Allowed only with ALLOW_EPHEMERAL_STATE (see config): say it on every run.
        logger.warning(
            "EPHEMERAL STATE: the SQLite store %s lives on this Function Compute instance and "
            "goes with it: messages may repeat or be lost after an instance change; "
            "set STATE_STORE=oss://BUCKET/PREFIX for durable state",
            settings.state_path,
        )
    client = AckClient(
        settings.ack_endpoint,
        credentials,
        session,
        region=settings.region,
        concurrency=settings.ack_concurrency,
        deadline=deadline,
    )
    store = open_store(settings, credentials)
    try:
        return run_check(
            targets=targets or settings.targets,
            client=client,
            store=store,
            notifiers=build_notifiers(settings, session, deadline),
            # Cluster names are looked up only when a message is rendered, once a run.
            renderer=Renderer(
                settings.templates_dir, settings.notify_timezone, cluster_names=client.cluster_names
            ),
            languages={channel: settings.language_for(channel) for channel in settings.channels},
            max_age=settings.delivery_max_age,
            lease=settings.delivery_lease,
            trigger=trigger,
            dry_run=dry_run,
            deadline=deadline,
            exclude=settings.exclude,
            notices=settings.notices,
        )
    finally:
        store.close()


def _credentials_for(settings: Settings) -> Callable[[], Credentials]:
    """Credentials resolved once per invocation, on first use.

    A run with nothing to ask never loads the credentials chain.
    """
    from .credentials import resolve_credentials

    cached: list[Credentials] = []

    def credentials() -> Credentials:
        if not cached:
            cached.append(resolve_credentials(settings.access_key))
        return cached[0]

    return credentials


def status_report(settings: Settings) -> dict[str, Any]:
    """The last known state of every watched target and the messages waiting, from the store."""
    from .store import open_store

    store = open_store(settings, _credentials_for(settings))
    try:
        records = [(target, store.get_target(target)) for target in settings.targets]
        waiting: dict[str, int] = {}
        for item in store.pending().items:
            waiting[item.channel] = waiting.get(item.channel, 0) + 1
    finally:
        store.close()
    return {
        "targets": [
            {"target": target.key, "seen": False}
            if record is None
            else {
                "target": target.key,
                "seen": True,
                "task_id": record.task_id,
                "status": record.status,
                "outcome": record.outcome,
                "version": record.version,
            }
            for target, record in records
        ],
        "pending": waiting,
    }


def invocation_deadline(context: object, settings: Settings, started: float) -> float | None:
    """When to stop starting new work, as a ``time.monotonic()`` value; None without a limit.

    The FC context's ``get_remaining_time_in_ms()`` is used when the runtime has
    it, else ``context.function.timeout`` (seconds), else ``FUNCTION_TIMEOUT``.
    """
    from .fetch import fetch_deadline

    deadline = fetch_deadline(context, started)
    if deadline is None and settings.function_timeout:
        deadline = fetch_deadline(
            SimpleNamespace(function=SimpleNamespace(timeout=settings.function_timeout)), started
        )
    return deadline


def _log_summary(data: Mapping[str, Any], level: int = logging.INFO) -> None:
    line = {"event": SUMMARY_EVENT, **data}
    logger.log(level, "%s", REDACTOR.scrub(json.dumps(line, ensure_ascii=False, sort_keys=True)))


def _line_of(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary as logged: previews are counted, not printed."""
    line = {key: value for key, value in summary.items() if key != "previews"}
    if summary.get("dry_run"):
        line["previewed"] = len(summary.get("previews", ()))
    return line


def _request_id(context: object) -> str:
    value = getattr(context, "request_id", None)
    return value if isinstance(value, str) and value else uuid.uuid4().hex


def handle(
    event: object, context: object = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Handle one invocation.

    Args:
        event: the FC event: bytes of JSON for a timer or HTTP trigger; empty, or
            an object with ``targets`` and ``dry_run``, for a manual run.
        context: the FC context, for the request id and the time limit.
        environ: the settings' source; the process environment when omitted.

    Returns:
        The run summary as a JSON-serialisable dict, or an HTTP response for an
        HTTP trigger event.

    Raises:
        AddonWatchError: when a timer or manual run could not start or the store
            failed; the summary line is logged first. HTTP requests never raise.
    """
    install_log_redaction()
    started = time.monotonic()
    line: dict[str, Any] = {"trigger": "unknown", "request_id": _request_id(context)}
    try:
        trigger, data = parse_event(event)
        line["trigger"] = trigger
        if trigger == "http":
            return _handle_http(data, context, environ, started, line)
        settings = load_settings(environ)
        if trigger == "timer":
            options = _options(data.get("payload", ""), ("targets",), "the timer payload")
            dry_run = False
        else:
            options = _options(data, ("targets", "dry_run"), "the event")
            dry_run = options.get("dry_run", False)
            if not isinstance(dry_run, bool):
                raise EventError("the event's 'dry_run' must be true or false")
        summary = check(
            settings,
            trigger,
            targets=select_targets(options, settings, f"the {trigger} event"),
            dry_run=dry_run,
            deadline=invocation_deadline(context, settings, started),
        ).as_dict()
    except AddonWatchError as exc:
        line["error"] = f"{type(exc).__name__}: {REDACTOR.scrub(str(exc))}"
        _log_summary({**line, "duration_ms": _ms_since(started)}, logging.ERROR)
        raise
    except Exception as exc:
        # Logged here, redacted, with the request id; the runtime, which would print
        # the traceback unredacted, gets only the id.
        logger.exception("request %s failed", line["request_id"])
        line["error"] = f"unexpected {type(exc).__name__}"
        _log_summary({**line, "duration_ms": _ms_since(started)}, logging.ERROR)
        raise AddonWatchError(
            f"unexpected {type(exc).__name__}; see the log of request {line['request_id']}"
        ) from None
    _log_summary({**line, **_line_of(summary), "duration_ms": _ms_since(started)})
    return summary


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _handle_http(
    event: dict[str, Any],
    context: object,
    environ: Mapping[str, str] | None,
    started: float,
    line: dict[str, Any],
) -> dict[str, Any]:
    """Serve one HTTP request; every failure becomes a JSON response."""

    def run(settings: Settings, options: Mapping[str, Any], dry_run: bool) -> dict[str, Any]:
        options = _options(dict(options), ("targets",), "the request body")
        return check(
            settings,
            "http",
            targets=select_targets(options, settings, "the request body"),
            dry_run=dry_run,
            deadline=invocation_deadline(context, settings, started),
        ).as_dict()

    actions = http_trigger.Actions(
        settings=lambda: load_settings(environ), check=run, status=status_report
    )
    summary: dict[str, Any] = {}
    try:
        request = http_trigger.parse_request(event, line["request_id"])
        line.update(request_id=request.request_id, method=request.method, path=request.path)
        result, summary = http_trigger.dispatch(request, actions)
    except EventError as exc:
        result = http_trigger.response(400, {"error": REDACTOR.scrub(str(exc))})
    except Exception as exc:
        # Configuration, store and credential failures and bugs alike: the caller
        # gets the request id, the log gets the details.
        logger.exception("request %s failed: %s", line["request_id"], type(exc).__name__)
        line["error"] = f"{type(exc).__name__}: {REDACTOR.scrub(str(exc))}"
        result = http_trigger.response(
            500, {"error": "internal error", "request_id": line["request_id"]}
        )
    _log_summary(
        {
            **line,
            **_line_of(summary),
            "status": result["statusCode"],
            "duration_ms": _ms_since(started),
        },
        logging.ERROR if result["statusCode"] >= 500 else logging.INFO,
    )
    return result
