"""Plain data passed between the steps of a check: targets, statuses, outcomes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


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
    """How an upgrade task ended."""

    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"


# Task statuses the API documents, lower-cased; anything else is logged as unknown.
RUNNING_STATUSES = frozenset({"running", "upgrading", "paused", "pending"})
TERMINAL_STATUSES = {
    "success": Outcome.SUCCESS,
    "failed": Outcome.FAILED,
    "canceled": Outcome.CANCELED,
}
KNOWN_STATUSES = RUNNING_STATUSES | frozenset(TERMINAL_STATUSES)


@dataclass(frozen=True)
class Task:
    """The upgrade task an addon reports; ``task_id`` is its creation time as sent."""

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
    """A finished task that is to be told to every channel once."""

    target: Target
    task_id: str
    outcome: Outcome
    version: str
    status: str
    created_at: datetime | None
    finished_at: datetime | None

    @property
    def key(self) -> str:
        """Identity of the announcement: task and outcome, never the rendered text."""
        return f"{self.target.key}|{self.task_id}|{self.outcome.value}"
