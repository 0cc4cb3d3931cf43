"""One check: fetch every target's status, compare, record, render and send."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from .ack import AckClient
from .detect import NO_NOTICES, Notices, observe
from .errors import DeliveryError, StateStoreError, TemplateError
from .fetch import fetch_statuses
from .model import Announcement, Outcome, Target
from .notify import Notifier
from .redaction import REDACTOR
from .render import Renderer
from .routing import channels_for
from .store import (
    DEFAULT_LEASE,
    DEFAULT_MAX_AGE,
    Claim,
    CorruptRecordError,
    OutboxItem,
    Store,
    retry_delay,
)
from .waits import clamp_wait

logger = logging.getLogger(__name__)

# Most announcements in one grouped message. A digest line takes about 250 bytes and
# at most about 700 (longest component and cluster names): 25 stay under DingTalk's
# 20,000 bytes, so no outcome is ever cut out of a digest.
GROUP_LIMIT = 25
# Starts the stored error of a message that may have been delivered by an earlier attempt.
MAYBE_DELIVERED = "maybe delivered already: "
MAYBE_DELIVERED_REASON = "may have been delivered; not sent again to avoid duplicates"


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
    # Messages given up for good this run (permanent failure or too old), with why.
    given_up: list[dict[str, str]] = field(default_factory=list)
    # Messages another run was sending at the same moment.
    busy: int = 0
    deferred: int = 0
    dry_run: bool = False
    previews: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = [REDACTOR.scrub(e) for e in self.errors]
        data["given_up"] = [
            {k: REDACTOR.scrub(v) for k, v in entry.items()} for entry in self.given_up
        ]
        return data


@dataclass(frozen=True)
class SendResult:
    """How sending one claimed message went; ``error`` is None when it was delivered."""

    claim: Claim
    error: DeliveryError | TemplateError | None = None

    @property
    def permanent(self) -> bool:
        """Sending it again cannot help: a template error or a permanent refusal."""
        return isinstance(self.error, TemplateError) or bool(
            isinstance(self.error, DeliveryError) and self.error.permanent
        )

    @property
    def throttled_for(self) -> float | None:
        """Seconds the destination asked for before the next message, finite and clamped."""
        if isinstance(self.error, DeliveryError) and self.error.retry_after is not None:
            return clamp_wait(self.error.retry_after)
        return None

    @property
    def ambiguous(self) -> bool:
        """The message was sent and no answer came: it may have been delivered."""
        return isinstance(self.error, DeliveryError) and self.error.ambiguous


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def run_check(
    *,
    targets: tuple[Target, ...],
    client: AckClient,
    store: Store,
    notifiers: Mapping[str, Notifier],
    renderer: Renderer,
    languages: Mapping[str, str],
    trigger: str,
    clock: Callable[[], datetime] = _utc_now,
    max_age: timedelta = DEFAULT_MAX_AGE,
    lease: timedelta = DEFAULT_LEASE,
    dry_run: bool = False,
    deadline: float | None = None,
    exclude: tuple[Target, ...] = (),
    notices: Notices = NO_NOTICES,
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
        clock: the current time (tests move it forward).
        max_age: a message still unsent after this long is given up.
        lease: how long a claim on a message keeps other runs off it.
        dry_run: ask and render, but record nothing and send nothing; the
            messages that would go out are returned in ``previews``.
        deadline: a ``time.monotonic()`` value after which no new target or
            delivery is started; what is left is counted as ``deferred``
            targets and ``pending`` messages, for the next tick.
        exclude: patterns of addons never to ask about.
        notices: the opt-in notices (paused, running too long, upgrade available).

    Returns:
        The summary of the check.

    Raises:
        StateStoreError: the store could not be read or written; nothing that
            could not be recorded was sent, and the next check picks up from there.
    """
    started = time.monotonic()
    if _past(deadline):
        logger.warning("near the time limit: %d target(s) left for the next tick", len(targets))
        return Summary(
            trigger=trigger, targets=len(targets), deferred=len(targets), dry_run=dry_run
        )
    fetched = fetch_statuses(client, targets, exclude)
    summary = Summary(
        trigger=trigger, targets=fetched.targets, errors=fetched.errors, dry_run=dry_run
    )
    found: list[Announcement] = []

    for status in fetched.statuses:
        target = status.target
        summary.checked += 1
        if status.task is not None and not status.task.status_known:
            unknown = (
                f"{target} reports an unknown task status {status.task.status[:40]!r}; treated "
                "as not finished; check the task in the ACK console (a newer release may know it)"
            )
            logger.warning("%s", unknown)
            summary.errors.append(unknown)

        # Read, compare and write the record and its outbox entries as one step,
        # before any send: a crash now cannot lose the message, and a run beside
        # this one cannot enqueue it twice. Only the channels whose filters take
        # the announcement get an entry.
        now = clock()
        decide = partial(observe, current=status, notices=notices, now=now)
        try:
            if dry_run:
                _, announcements = decide(store.get_target(target))
            else:
                routes = partial(channels_for, notifiers)
                announcements = store.observe(target, decide, routes, now)
        except CorruptRecordError as exc:
            logger.error("%s", exc)
            summary.errors.append(str(exc))
            continue
        for announcement in announcements:
            summary.changes += 1
            found.append(announcement)
            logger.info("%s: %s", target, _news(announcement))

    if dry_run:
        _preview(store.pending().items, found, notifiers, renderer, languages, summary)
        summary.duration_ms = int((time.monotonic() - started) * 1000)
        return summary
    if _past(deadline):
        waiting = len(store.pending().items)
        logger.warning("near the time limit: %d message(s) left for the next tick", waiting)
        summary.pending += waiting
        summary.duration_ms = int((time.monotonic() - started) * 1000)
        return summary

    # Claim everything due before sending anything: what this run holds, no run
    # beside it sends; each result is recorded before the next send.
    owner = uuid.uuid4().hex
    claimed = _claim_due(store, notifiers, summary, clock, max_age, lease, owner)
    for channel, claims in claimed.items():
        notifier = notifiers[channel]
        render = partial(_payload, renderer, notifier, channel, languages[channel])
        try:
            _deliver(channel, send_channel(notifier, claims, render), store, summary, clock)
        except StateStoreError:
            raise
        except Exception as exc:
            # One channel's fault must not stop the others' deliveries.
            # Its unsettled messages stay claimed until the lease runs out, then are retried.
            problem = f"{channel}: delivery stopped by an unexpected {_described(exc)}"
            logger.error("%s", problem)
            summary.errors.append(problem)

    summary.duration_ms = int((time.monotonic() - started) * 1000)
    return summary


def _news(item: Announcement) -> str:
    """One log phrase for an announcement."""
    if item.outcome.ended:
        return f"task {item.task_id} ended: {item.outcome.value}"
    if item.outcome is Outcome.AVAILABLE:
        moved = f"{item.previous_version} -> " if item.previous_version else ""
        return f"upgrade available: {moved}{item.version or '?'}"
    return f"task {item.task_id}: {item.outcome.value} ({item.status})"


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
    owed += [(channel, item) for item in found for channel in channels_for(notifiers, item)]
    for channel, announcement in dict.fromkeys(owed):
        preview: dict[str, Any] = {"channel": channel, "announcement": announcement.key}
        try:
            message = renderer.render(channel, languages[channel], announcement)
        except TemplateError as exc:
            preview["error"] = str(exc)
            summary.errors.append(f"{channel}: {exc}")
        else:
            preview.update(
                title=message.title, text=message.text, payload=notifiers[channel].build(message)
            )
        summary.previews.append(preview)


def _claim_due(
    store: Store,
    notifiers: Mapping[str, Notifier],
    summary: Summary,
    clock: Callable[[], datetime],
    max_age: timedelta,
    lease: timedelta,
    owner: str,
) -> dict[str, list[Claim]]:
    """Claim, per channel, the messages due now; give up those too old to matter."""
    scan = store.pending()
    for problem in scan.unreadable:
        logger.error("an outbox entry is unreadable and cannot be sent: %s", problem)
        summary.errors.append(f"unreadable outbox entry: {problem}")

    # A channel that throttled a run, on any instance, is left alone until it allows.
    holds = store.channel_holds() if scan.items else {}
    by_channel: dict[str, list[Claim]] = {}
    waiting: dict[str, int] = {}
    for item in scan.items:
        now = clock()
        too_old = now - item.created_at > max_age
        held_until = holds.get(item.channel)
        if not too_old and (
            item.channel not in notifiers
            or (item.next_attempt_at is not None and item.next_attempt_at > now)
            or (held_until is not None and held_until > now)
        ):
            waiting[item.channel] = waiting.get(item.channel, 0) + 1
            continue
        claim = store.claim(item, owner, now, lease)
        if claim is None:
            summary.busy += 1
            continue
        if too_old:
            _give_up(claim, "expired", f"still undelivered after {max_age}", store, summary, now)
            continue
        by_channel.setdefault(item.channel, []).append(claim)

    for channel, count in waiting.items():
        summary.pending += count
        if channel not in notifiers:
            # Configured when the change was seen and not now: the messages wait
            # until the channel is configured again, or until they expire.
            logger.warning("%d message(s) for %s wait: channel not configured", count, channel)
        elif channel in holds and holds[channel] > clock():
            logger.warning(
                "%d message(s) for %s wait: the channel throttled and is held until %s",
                count,
                channel,
                holds[channel].isoformat(timespec="seconds"),
            )
    return by_channel


def _payload(
    renderer: Renderer,
    notifier: Notifier,
    channel: str,
    language: str,
    announcements: list[Announcement],
) -> Any:
    return notifier.build(renderer.render_group(channel, language, announcements))


def send_channel(
    notifier: Notifier, claims: list[Claim], render: Callable[[list[Announcement]], Any]
) -> Iterator[SendResult]:
    """Send one channel's claimed messages, oldest first; one result per claim, as it is known.

    This is the one place that decides how claimed messages become sends; the
    caller records each result before the next is produced. Several messages
    go out as one grouped message (a DingTalk robot takes 20 a minute, a Slack
    webhook about one a second); a very long list as a few.
    """
    groups = [claims[i : i + GROUP_LIMIT] for i in range(0, len(claims), GROUP_LIMIT)]
    for number, group in enumerate(groups):
        error: DeliveryError | TemplateError
        try:
            notifier.send(render([claim.item.announcement for claim in group]))
        except (TemplateError, DeliveryError) as exc:
            error = exc
        except Exception as exc:
            # A notifier's bug fails its own messages only, as a passing failure.
            error = DeliveryError(
                f"sending failed with an unexpected {_described(exc)}", channel=notifier.channel
            )
        else:
            yield from (SendResult(claim) for claim in group)
            continue
        yield from (SendResult(claim, error) for claim in group)
        if isinstance(error, DeliveryError) and error.retry_after is not None:
            # Throttled: anything more now would only lengthen the throttling.
            rest = [claim for later in groups[number + 1 :] for claim in later]
            yield from (SendResult(claim, error) for claim in rest)
            return


def _described(exc: Exception) -> str:
    """``TypeName: message``, scrubbed of secrets and cut short."""
    return f"{type(exc).__name__}: {REDACTOR.scrub(str(exc))[:300]}"


def _deliver(
    channel: str,
    results: Iterator[SendResult],
    store: Store,
    summary: Summary,
    clock: Callable[[], datetime],
) -> None:
    """Record each result as it comes; a throttled channel is held for every run."""
    held = False
    for result in results:
        _settle(result, store, summary, clock)
        wait = result.throttled_for
        if wait is not None and not held:
            store.hold_channel(channel, clock() + timedelta(seconds=wait))
            held = True


def _settle(
    result: SendResult, store: Store, summary: Summary, clock: Callable[[], datetime]
) -> None:
    """Record how a send went; a store failure here ends the run before the next send."""
    claim, item, now = result.claim, result.claim.item, clock()
    if result.error is None:
        if not store.mark_sent(claim, now):
            logger.warning(
                "%s reached %s after its claim had passed to another run: it may arrive twice",
                item.announcement.key,
                item.channel,
            )
        summary.sent += 1
        summary.delivered.append({"channel": item.channel, "announcement": item.announcement.key})
        return

    error = str(result.error)
    if result.permanent:
        _give_up(claim, "failed", error, store, summary, now)
        return
    # A message that may have arrived already is sent at most once more: each
    # such attempt risks one duplicate. The mark stays on the stored error.
    earlier = (item.last_error or "").startswith(MAYBE_DELIVERED)
    if result.ambiguous and earlier:
        reason = f"{MAYBE_DELIVERED_REASON}: a second attempt went unanswered too ({error})"
        _give_up(claim, "failed", reason, store, summary, now)
        return
    if result.ambiguous or earlier:
        error = MAYBE_DELIVERED + error
    delay = retry_delay(item.attempts + 1)
    wait = result.throttled_for
    if wait is not None:
        # The destination throttles: no run, on any instance, tries before it allows.
        delay = max(delay, timedelta(seconds=wait))
    retry_at = now + delay
    store.mark_retry(claim, error, retry_at, now)
    logger.error(
        "sending %s to %s failed (attempt %d, %s %s): %s",
        item.announcement.key,
        item.channel,
        item.attempts + 1,
        "next after" if wait is None else "deferred: throttled, next after",
        retry_at.isoformat(timespec="seconds"),
        error,
    )
    summary.errors.append(f"{item.channel}: {error}")
    summary.pending += 1


def _give_up(
    claim: Claim, state: str, reason: str, store: Store, summary: Summary, now: datetime
) -> None:
    """Record a message as given up for good, and say so in the log and the summary."""
    item = claim.item
    store.mark_given_up(claim, state, reason, now)
    logger.error(
        "gave up sending %s to %s (%s): %s", item.announcement.key, item.channel, state, reason
    )
    summary.given_up.append(
        {
            "channel": item.channel,
            "announcement": item.announcement.key,
            "state": state,
            "reason": reason,
        }
    )
    if state == "expired":
        summary.expired += 1
    else:
        summary.failed += 1
        summary.errors.append(f"{item.channel}: {reason}")
