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
from .notify import Notifier
from .redaction import REDACTOR
from .render import Renderer
from .routing import channels_for
from .store import OutboxItem, Store

logger = logging.getLogger(__name__)

# Most announcements in one grouped message. A digest line takes about 250 bytes and
# at most about 700 (longest component and cluster names): 25 stay under DingTalk's
# 20,000 bytes, so no outcome is ever cut out of a digest.
GROUP_LIMIT = 25


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
    targets: tuple[Any, ...],
    client: AckClient,
    store: Store,
    notifiers: Mapping[str, Notifier],
    renderer: Renderer,
    languages: Mapping[str, str],
    trigger: str,
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

    Returns:
        The summary of the check.
    """
    started = time.monotonic()
    summary = Summary(trigger=trigger, targets=len(targets))

    for target in targets:
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
        channels = channels_for(notifiers, announcement) if announcement else []
        store.record(target, record, announcement, channels)
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
    """Send one channel's waiting messages, oldest first, grouped into as few as possible."""
    notifier = notifiers.get(channel)
    if notifier is None:
        # The channel was configured when the change was seen and is not now;
        # its messages wait until it is configured again or they expire.
        logger.warning(
            "%d message(s) for %s are waiting: channel not configured", len(items), channel
        )
        summary.pending += len(items)
        return

    # Several outcomes go out as one message: a DingTalk robot takes 20 a minute,
    # a Slack webhook about one a second. A very long list is split into a few.
    groups = [items[i : i + GROUP_LIMIT] for i in range(0, len(items), GROUP_LIMIT)]
    for number, group in enumerate(groups):
        announcements = [item.announcement for item in group]
        try:
            message = renderer.render_group(channel, languages[channel], announcements)
            notifier.send(notifier.build(message))
        except TemplateError as exc:
            _failed(group, store, summary, str(exc), permanent=True)
            continue
        except DeliveryError as exc:
            _failed(group, store, summary, str(exc), permanent=exc.permanent, after=exc.retry_after)
            if exc.retry_after is not None:
                # Throttled: anything more now would only lengthen the throttling.
                deferred = [item for later in groups[number + 1 :] for item in later]
                if deferred:
                    _failed(deferred, store, summary, str(exc), after=exc.retry_after)
                return
            continue
        for item in group:
            store.mark_sent(item)
            summary.sent += 1
            summary.delivered.append({"channel": channel, "announcement": item.announcement.key})


def _failed(
    items: list[OutboxItem],
    store: Store,
    summary: Summary,
    error: str,
    *,
    permanent: bool = False,
    after: float | None = None,
) -> None:
    for item in items:
        store.mark_failed(item, error, permanent=permanent)
    if permanent:
        fate = "given up"
    elif after is not None:
        fate = f"deferred: throttled, next try in about {after:.0f} s"
    else:
        fate = "will retry next tick"
    logger.error(
        "sending %s to %s failed (%s): %s",
        ", ".join(item.announcement.key for item in items),
        items[0].channel,
        fate,
        error,
    )
    summary.errors.append(f"{items[0].channel}: {error}")
    if permanent:
        summary.failed += len(items)
    else:
        summary.pending += len(items)
