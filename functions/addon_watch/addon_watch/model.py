"""Plain data passed between the steps of a check: targets, statuses, outcomes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone

# The one form of an instant in task ids: ACK's usual UTC form.
INSTANT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def instant(moment: datetime) -> str:
    """``moment`` in UTC as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return moment.astimezone(timezone.utc).strftime(INSTANT_FORMAT)


@dataclass(frozen=True, order=True)
class Target:
    """One addon of one cluster to watch."""

    cluster_id: str
    component: str

    @property
    def key(self) -> str:
        return f"{self.cluster_id}/{self.component}"

    def __str__(self) -> str:
        return self.key


class Outcome(str, enum.Enum):
    """What an announcement tells: how an upgrade task ended, or an opt-in notice."""

    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    # Opt-in notices, each behind its own switch (see config).
    PAUSED = "paused"
    STUCK = "stuck"
    AVAILABLE = "available"

    @property
    def ended(self) -> bool:
        """Whether this is how a task ended, rather than a notice about a task or addon."""
        return self in ENDED


# Task statuses the API documents, lower-cased; anything else is logged as unknown.
RUNNING_STATUSES = frozenset({"running", "upgrading", "paused", "pending"})
TERMINAL_STATUSES = {
    "success": Outcome.SUCCESS,
    "failed": Outcome.FAILED,
    "canceled": Outcome.CANCELED,
    "cancelled": Outcome.CANCELED,
}
KNOWN_STATUSES = RUNNING_STATUSES | frozenset(TERMINAL_STATUSES)
ENDED = frozenset(TERMINAL_STATUSES.values())


@dataclass(frozen=True)
class Task:
    """The upgrade task an addon reports; ``task_id`` is its creation time (see ack.task_id_of)."""

    task_id: str
    status: str
    created_at: datetime | None
    finished_at: datetime | None
    is_canceled: bool

    @property
    def outcome(self) -> Outcome | None:
        """The outcome once the task has ended, else None."""
        if self.is_canceled:
            return Outcome.CANCELED
        return TERMINAL_STATUSES.get(self.status.lower())

    @property
    def status_known(self) -> bool:
        return self.status.lower() in KNOWN_STATUSES


@dataclass(frozen=True)
class AddonStatus:
    """One answer of the upgrade-status API for one addon."""

    target: Target
    version: str
    ready_to_upgrade: bool
    task: Task | None


@dataclass(frozen=True)
class Announcement:
    """A finished task, or a notice, that is to be told to every channel once.

    A ``paused`` or ``stuck`` notice is about a task that has not ended
    (``finished_at`` is None; ``seen_at`` is when it was seen so). An
    ``available`` notice is about the addon: ``previous_version`` is set when
    its version changed outside an announced task, and ``task_id`` is empty.
    """

    target: Target
    task_id: str
    outcome: Outcome
    version: str
    status: str
    created_at: datetime | None
    finished_at: datetime | None
    previous_version: str | None = None
    seen_at: datetime | None = None
    # The number of a version-change notice among the target's (0: not numbered);
    # the first one's key has no number, as the keys of earlier releases.
    sequence: int = 0

    @property
    def key(self) -> str:
        """Identity of the announcement: task and outcome, never the rendered text.

        An ``available`` notice is about a state of the addon, not a task: it is
        keyed by the versions, and a version change also by its number, so a
        version reached again is told again.
        """
        if self.outcome is Outcome.AVAILABLE:
            number = f"#{self.sequence}" if self.sequence > 1 else ""
            state = f"{self.previous_version or ''}>{self.version}{number}"
            return f"{self.target.key}|{state}|available"
        return f"{self.target.key}|{self.task_id}|{self.outcome.value}"
