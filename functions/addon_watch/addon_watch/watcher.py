"""One check: fetch every target's status, compare, record, render and send."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .ack import AckClient
from .detect import observe
from .errors import DeliveryError, TemplateError
from .fetch import fetch_statuses
from .model import Target
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

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = [REDACTOR.scrub(e) for e in self.errors]
        return data


def run_check(
    *,
    targets: tuple[Target, ...],
    client: AckClient,
    store: Store,
    notifiers: Mapping[str, Notifier],
    renderer: Renderer,
    languages: Mapping[str, str],
    trigger: str,
    exclude: tuple[Target, ...] = (),
) -> Summary:
    """Check every target once and deliver what is owed.

    Args:
        targets: the addons to ask about; patterns are expanded.
        client: the ACK API client.
        store: where records and the outbox live.
        notifiers: the configured channels, by name.
        renderer: turns announcements into messages.
        languages: the message language for each channel.
        trigger: what started the check, for the summary.
        exclude: patterns of addons never to ask about.

    Returns:
        The summary of the check.
    """
    started = time.monotonic()
    fetched = fetch_statuses(client, targets, exclude)
    summary = Summary(trigger=trigger, targets=fetched.targets, errors=fetched.errors)

    for status in fetched.statuses:
        target = status.target
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
        store.record(target, record, announcement, notifiers.keys())
        if announcement is not None:
            summary.changes += 1
            logger.info(
                "%s: task %s ended: %s", target, announcement.task_id, announcement.outcome.value
            )

    summary.expired = len(store.expire_old())
    by_channel: dict[str, list[OutboxItem]] = {}
    for item in store.pending():
        by_channel.setdefault(item.channel, []).append(item)
    for channel, items in by_channel.items():
        _deliver_channel(channel, items, notifiers, renderer, languages, store, summary)

    summary.duration_ms = int((time.monotonic() - started) * 1000)
    return summary


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
