"""The Function Compute entry point: read the event, run one check, log one summary line."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import requests

from .ack import AckClient
from .config import Settings, load_settings
from .credentials import Credentials, resolve_credentials
from .errors import AddonWatchError, EventError
from .fetch import fetch_deadline
from .notify import DingTalkNotifier, Notifier, SlackNotifier
from .redaction import REDACTOR, install_log_redaction
from .render import Renderer
from .store import SqliteStore
from .watcher import Summary, run_check

logger = logging.getLogger("addon_watch")

SUMMARY_EVENT = "addon_watch.summary"


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
        except ValueError as exc:
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


def build_notifiers(settings: Settings, session: requests.Session) -> dict[str, Notifier]:
    """One notifier for each configured channel."""
    notifiers: dict[str, Notifier] = {}
    if settings.dingtalk_webhook_url:
        notifiers["dingtalk"] = DingTalkNotifier(
            settings.dingtalk_webhook_url, settings.dingtalk_secret, session
        )
    if settings.slack_webhook_url:
        notifiers["slack"] = SlackNotifier(settings.slack_webhook_url, session)
    return notifiers


def check(
    settings: Settings,
    trigger: str,
    session: requests.Session | None = None,
    deadline: float | None = None,
) -> Summary:
    """Run one check with real clients built from the settings."""
    session = session or requests.Session()

    def credentials() -> Credentials:
        # Resolved on first use: a run with nothing to ask never loads the credentials
        # chain; the chain caches its answer until shortly before it expires.
        return resolve_credentials(settings.access_key)

    if settings.running_in_fc and str(settings.state_path).startswith("/tmp/"):
        logger.warning(
            "the state store %s is under /tmp, which Function Compute discards with the instance: "
            "messages may repeat or be missed after an instance change; "
            "set STATE_STORE to durable storage",
            settings.state_path,
        )
    store = SqliteStore(settings.state_path)
    try:
        return run_check(
            targets=settings.targets,
            client=AckClient(
                settings.ack_endpoint,
                credentials,
                session,
                region=settings.region,
                concurrency=settings.ack_concurrency,
                deadline=deadline,
            ),
            store=store,
            notifiers=build_notifiers(settings, session),
            renderer=Renderer(settings.templates_dir, settings.notify_timezone),
            languages={channel: settings.language_for(channel) for channel in settings.channels},
            trigger=trigger,
            exclude=settings.exclude,
        )
    finally:
        store.close()


def _log_summary(data: Mapping[str, Any]) -> None:
    line = {"event": SUMMARY_EVENT, **data}
    logger.info("%s", REDACTOR.scrub(json.dumps(line, ensure_ascii=False, sort_keys=True)))


def handle(
    event: object, context: object = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Handle one invocation.

    Args:
        event: the FC event: bytes of JSON for a timer trigger; empty for a manual run.
        context: the FC context; its remaining time bounds the retries of ACK calls.
        environ: the settings' source; the process environment when omitted.

    Returns:
        The run summary as a JSON-serialisable dict, or an HTTP response for an
        HTTP trigger event.

    Raises:
        AddonWatchError: when the run could not start or the store failed; the
            summary line is logged first.
    """
    install_log_redaction()
    started = time.monotonic()
    trigger = "unknown"
    try:
        trigger, _ = parse_event(event)
        if trigger == "http":
            # NOTE: the manual HTTP routes are not served yet;
            # refuse rather than run unauthenticated.
            return {
                "statusCode": 501,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"error": "the HTTP trigger is not enabled in this version"}),
                "isBase64Encoded": False,
            }
        settings = load_settings(environ)
        summary = check(settings, trigger, deadline=fetch_deadline(context, started)).as_dict()
    except AddonWatchError as exc:
        error = REDACTOR.scrub(str(exc))
        _log_summary(
            {
                "trigger": trigger,
                "error": f"{type(exc).__name__}: {error}",
                "duration_ms": int((time.monotonic() - started) * 1000),
            }
        )
        raise
    _log_summary(summary)
    return summary
