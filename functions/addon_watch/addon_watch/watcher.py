"""One check: fetch every target's status, compare, record, render and send."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .ack import AckClient
from .detect import observe
from .errors import AckApiError, DeliveryError, TemplateError
from .model import Announcement
from .notify import Notifier
from .redaction import REDACTOR
from .render import PAYLOAD_BUILDERS, Renderer
from .store import OutboxItem, Store

logger = logging.getLogger(__name__)


@dataclass
class Summary:
    """What one check did; logged as one JSON line and returned to the caller."""

    trigger: str
    targets: int = 0
    checked: int = 0
    changes: int = 0
    sent: int = 0
    failed: int = 0
    pending: int = 0
    expired: int = 0
    errors: list[str] = field(default_factory=list)
    delivered: list[dict[str, str]] = field(default_factory=list)
    duration_ms: int = 0
    deferred: int = 0
    dry_run: bool = False
    previews: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = [REDACTOR.scrub(e) for e in self.errors]
        return data


def run_check(
    *,
    targets: tuple[Any, ...],
    client: AckClient,
    store: Store,
    notifiers: Mapping[str, Notifier],
    renderer: Renderer,
    languages: Mapping[str, str],
    trigger: str,
    dry_run: bool = False,
    deadline: float | None = None,
) -> Summary:
    """Check every target once and deliver what is owed.

    Args:
        targets: the addons to ask about.
        client: the ACK API client.
        store: where records and the outbox live.
        notifiers: the configured channels, by name.
        renderer: turns announcements into messages.
        languages: the message language for each channel.
        trigger: what started the check, for the summary.
        dry_run: ask and render, but record nothing and send nothing; the
            messages that would go out are returned in ``previews``.
        deadline: a ``time.monotonic()`` value after which no new target or
            channel is started; what is left is counted as ``deferred``
            targets and ``pending`` messages, for the next tick.

    Returns:
        The summary of the check.
    """
    started = time.monotonic()
    summary = Summary(trigger=trigger, targets=len(targets), dry_run=dry_run)
    found: list[Announcement] = []

    for index, target in enumerate(targets):
        if _past(deadline):
            summary.deferred = len(targets) - index
            logger.warning(
                "near the time limit: %d target(s) left for the next tick", summary.deferred
            )
            break
        try:
            status = client.describe_addon_upgrade_status(target)
        except AckApiError as exc:
            logger.error("%s", exc)
            summary.errors.append(str(exc))
            continue
        summary.checked += 1
        if status.task is not None and not status.task.status_known:
            logger.warning(
                "%s reports an unknown task status %r; treated as not finished",
                target,
                status.task.status,
            )

        # The record and the announcement it implies are written in one transaction,
        # before any send: a crash now cannot lose the message.
        record, announcement = observe(store.get_target(target), status)
        if not dry_run:
            store.record(target, record, announcement, notifiers.keys())
        if announcement is not None:
            summary.changes += 1
            found.append(announcement)
            logger.info(
                "%s: task %s ended: %s", target, announcement.task_id, announcement.outcome.value
            )

    if dry_run:
        _preview(store.pending(), found, notifiers, renderer, languages, summary)
        summary.duration_ms = int((time.monotonic() - started) * 1000)
        return summary

    summary.expired = len(store.expire_old())
    by_channel: dict[str, list[OutboxItem]] = {}
    for item in store.pending():
        by_channel.setdefault(item.channel, []).append(item)
    for channel, items in by_channel.items():
        if _past(deadline):
            logger.warning("near the time limit: %d message(s) to %s left", len(items), channel)
            summary.pending += len(items)
            continue
        _deliver_channel(channel, items, notifiers, renderer, languages, store, summary)

    summary.duration_ms = int((time.monotonic() - started) * 1000)
    return summary


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _preview(
    pending: list[OutboxItem],
    found: list[Announcement],
    notifiers: Mapping[str, Notifier],
    renderer: Renderer,
    languages: Mapping[str, str],
    summary: Summary,
) -> None:
    """Render what a real check would send now: the waiting messages, then the new ones."""
    owed = [(item.channel, item.announcement) for item in pending if item.channel in notifiers]
    owed += [(channel, item) for item in found for channel in notifiers]
    for channel, announcement in dict.fromkeys(owed):
        preview: dict[str, Any] = {"channel": channel, "announcement": announcement.key}
        try:
            message = renderer.render(channel, languages[channel], announcement)
        except TemplateError as exc:
            preview["error"] = str(exc)
            summary.errors.append(f"{channel}: {exc}")
        else:
            preview.update(
                title=message.title, text=message.text, payload=PAYLOAD_BUILDERS[channel](message)
            )
        summary.previews.append(preview)


def _deliver_channel(
    channel: str,
    items: list[OutboxItem],
    notifiers: Mapping[str, Notifier],
    renderer: Renderer,
    languages: Mapping[str, str],
    store: Store,
    summary: Summary,
) -> None:
    """Send one channel's waiting messages, oldest first."""
    notifier = notifiers.get(channel)
    if notifier is None:
        # The channel was configured when the change was seen and is not now;
        # its messages wait until it is configured again or they expire.
        logger.warning(
            "%d message(s) for %s are waiting: channel not configured", len(items), channel
        )
        summary.pending += len(items)
        return

    for item in items:
        try:
            message = renderer.render(channel, languages[channel], item.announcement)
            notifier.send(PAYLOAD_BUILDERS[channel](message))
        except TemplateError as exc:
            _failed(item, store, summary, str(exc), permanent=True)
            continue
        except DeliveryError as exc:
            _failed(item, store, summary, str(exc), permanent=exc.permanent)
            continue
        store.mark_sent(item)
        summary.sent += 1
        summary.delivered.append({"channel": channel, "announcement": item.announcement.key})


def _failed(
    item: OutboxItem, store: Store, summary: Summary, error: str, *, permanent: bool
) -> None:
    store.mark_failed(item, error, permanent=permanent)
    fate = "given up" if permanent else "will retry next tick"
    logger.error(
        "sending %s to %s failed (%s): %s", item.announcement.key, item.channel, fate, error
    )
    summary.errors.append(f"{item.channel}: {error}")
    if permanent:
        summary.failed += 1
    else:
        summary.pending += 1
