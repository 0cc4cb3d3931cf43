"""What every state store offers, and the stored formats they share.

A store keeps two things: the last record of each target, and an outbox with
one entry per announcement and channel. The outbox is what makes delivery
durable:

- an entry is written, keyed by announcement and channel, before anything is
  sent, and writing it again is a no-op, so two runs that see the same change
  enqueue it once;
- a run sends an entry only after claiming it with an atomic compare-and-set
  (SQLite) or create-if-absent (OSS); the claim is a lease, so the claim of a
  run that died is taken over once the lease has run out;
- after the send the entry is marked sent, retried later (with backoff) or
  given up; given-up entries stay in the store with the reason.

Besides, a channel that throttled (DingTalk 130101, a 429) gets a hold-until
time, which every run on every instance respects before claiming its entries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from ..config import DEFAULT_DELIVERY_LEASE, DEFAULT_DELIVERY_MAX_AGE
from ..detect import TargetRecord
from ..errors import StateStoreError
from ..model import Announcement, Outcome, Target

# Version of every stored JSON document; a record of another version is refused
# (for that target only) rather than misread. Version 2 added the notice fields
# of records and announcements; documents of version 1 are still read.
FORMAT_VERSION = 2
# A numbered upgrade-available notice: its key has a part that releases reading
# only versions 1 and 2 would drop, so they list it as unreadable instead.
NUMBERED_NOTICE_VERSION = 3
READABLE_VERSIONS = (1, 2)
DEFAULT_MAX_AGE = DEFAULT_DELIVERY_MAX_AGE
DEFAULT_LEASE = DEFAULT_DELIVERY_LEASE
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)

Decide = Callable[[TargetRecord | None], tuple[TargetRecord, list[Announcement]]]
# The channels of an announcement: the same for all, or chosen per announcement.
Channels = Iterable[str] | Callable[[Announcement], Iterable[str]]


def channels_of(channels: Channels, item: Announcement) -> list[str]:
    """The channels ``item`` goes to."""
    return list(channels(item) if callable(channels) else channels)


class CorruptRecordError(StateStoreError):
    """One stored document cannot be read; only what it belongs to is affected."""


@dataclass(frozen=True)
class OutboxItem:
    """One announcement waiting to go to one channel."""

    announcement: Announcement
    channel: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    # Bumped on every settled attempt; OSS names its claim objects after it.
    generation: int = 0

    @property
    def key(self) -> str:
        return f"{self.announcement.key}|{self.channel}"


@dataclass(frozen=True)
class Claim:
    """The right, until ``expires_at``, to send one outbox item."""

    item: OutboxItem
    owner: str
    expires_at: datetime
    generation: int = 0


@dataclass
class PendingScan:
    """The pending outbox, and the entries that could not be read (never dropped silently)."""

    items: list[OutboxItem] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


class Store(Protocol):
    """What a check needs from a state store; ``SqliteStore`` and ``OssStore`` implement it."""

    def observe(
        self, target: Target, decide: Decide, channels: Channels, now: datetime
    ) -> list[Announcement]:
        """Atomically read the target's record, ``decide``, and write the new record and outbox.

        Each announcement gets one outbox entry per channel of ``channels``.

        Raises ``CorruptRecordError`` when the stored record is unreadable, and
        ``StateStoreError`` when the store cannot be read or written.
        """
        ...

    def get_target(self, target: Target) -> TargetRecord | None:
        """The target's last record, read only; None when it was never seen."""
        ...

    def pending(self) -> PendingScan: ...

    def claim(self, item: OutboxItem, owner: str, now: datetime, lease: timedelta) -> Claim | None:
        """The claim on ``item``, or None when another run holds it or it was settled."""
        ...

    def mark_sent(self, claim: Claim, now: datetime) -> bool:
        """Record a delivery; False when the claim had been lost to another run."""
        ...

    def mark_retry(self, claim: Claim, error: str, retry_at: datetime, now: datetime) -> bool: ...

    def mark_given_up(self, claim: Claim, state: str, error: str, now: datetime) -> bool:
        """Record a permanent failure (``failed``) or an expiry (``expired``)."""
        ...

    def hold_channel(self, channel: str, until: datetime) -> None:
        """Send nothing to ``channel`` before ``until`` (it throttles); a later hold wins."""
        ...

    def channel_holds(self) -> dict[str, datetime]:
        """The hold-until time of every channel that was ever held."""
        ...

    def close(self) -> None: ...


def retry_delay(attempts: int) -> timedelta:
    """Backoff after ``attempts`` failed sends: 1 min, 2, 4, ... up to an hour."""
    delay: timedelta = FIRST_RETRY * 2 ** max(attempts - 1, 0)
    return min(delay, LONGEST_RETRY)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def check_version(
    data: Any, what: str, readable: tuple[int, ...] = READABLE_VERSIONS
) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what} is not a JSON object")
    if data.get("v") not in readable:
        raise ValueError(
            f"{what} has format {data.get('v')!r}; this release reads formats "
            f"{', '.join(map(str, readable))}"
        )
    return data


def announcement_to_dict(item: Announcement) -> dict[str, Any]:
    return {
        "v": NUMBERED_NOTICE_VERSION if item.sequence > 1 else FORMAT_VERSION,
        "cluster_id": item.target.cluster_id,
        "component": item.target.component,
        "task_id": item.task_id,
        "outcome": item.outcome.value,
        "version": item.version,
        "status": item.status,
        "created_at": iso(item.created_at),
        "finished_at": iso(item.finished_at),
        "previous_version": item.previous_version,
        "seen_at": iso(item.seen_at),
        "sequence": item.sequence,
    }


def announcement_from_dict(data: Any) -> Announcement:
    data = check_version(data, "the announcement", (*READABLE_VERSIONS, NUMBERED_NOTICE_VERSION))
    return Announcement(
        target=Target(data["cluster_id"], data["component"]),
        task_id=data["task_id"],
        outcome=Outcome(data["outcome"]),
        version=data["version"],
        status=data["status"],
        created_at=from_iso(data["created_at"]),
        finished_at=from_iso(data["finished_at"]),
        previous_version=data.get("previous_version"),
        seen_at=from_iso(data.get("seen_at")),
        sequence=int(data.get("sequence", 0)),
    )


def announcement_to_json(item: Announcement) -> str:
    return json.dumps(announcement_to_dict(item), ensure_ascii=False)


def announcement_from_json(text: str) -> Announcement:
    return announcement_from_dict(json.loads(text))


def record_to_dict(record: TargetRecord) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "task_id": record.task_id,
        "status": record.status,
        "outcome": record.outcome,
        "version": record.version,
        "task_created_at": iso(record.task_created_at),
        "paused_notified": record.paused_notified,
        "stuck_notified": record.stuck_notified,
        "ready_to_upgrade": record.ready_to_upgrade,
        "task_finished_at": iso(record.task_finished_at),
        "notices_told": record.notices_told,
    }


def record_to_json(record: TargetRecord) -> str:
    return json.dumps(record_to_dict(record), ensure_ascii=False)


def record_from_dict(data: Any) -> TargetRecord:
    data = check_version(data, "the record")
    return TargetRecord(
        task_id=data["task_id"],
        status=data["status"],
        outcome=data["outcome"],
        version=data["version"],
        task_created_at=from_iso(data["task_created_at"]),
        # Absent from version 1: nothing told yet, readiness unknown.
        paused_notified=bool(data.get("paused_notified", False)),
        stuck_notified=bool(data.get("stuck_notified", False)),
        ready_to_upgrade=_optional_bool(data.get("ready_to_upgrade")),
        # Absent from records of earlier releases; they ignore it in newer ones.
        task_finished_at=from_iso(data.get("task_finished_at")),
        notices_told=int(data.get("notices_told", 0)),
    )


def _optional_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ValueError(f"ready_to_upgrade is {value!r}, not true, false or null")


def read_record(text: str | bytes, target: Target, where: str) -> TargetRecord:
    """The stored record of ``target``, or ``CorruptRecordError`` saying how to recover."""
    try:
        return record_from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptRecordError(
            f"{where}: the record of {target} is unreadable ({exc}); this target is skipped "
            "until the record is fixed or deleted (deleting it makes the next check record "
            "the target afresh, silently)"
        ) from exc
