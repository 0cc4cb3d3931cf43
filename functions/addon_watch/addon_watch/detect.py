"""Deciding, from the last record and a fresh answer, whether a task just ended."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from .model import AddonStatus, Announcement

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetRecord:
    """What the store remembers of one target between ticks."""

    task_id: str | None
    status: str
    outcome: str | None
    version: str
    task_created_at: datetime | None = None


def record_of(status: AddonStatus) -> TargetRecord:
    """The record to keep after seeing this answer."""
    task = status.task
    if task is None:
        return TargetRecord(None, "", None, status.version)
    outcome = task.outcome
    return TargetRecord(
        task.task_id,
        task.status,
        outcome.value if outcome else None,
        status.version,
        task.created_at,
    )


def observe(
    previous: TargetRecord | None, current: AddonStatus
) -> tuple[TargetRecord, Announcement | None]:
    """The record to keep and the announcement this answer calls for, if any.

    A finished task is announced once per outcome. The first sight of a target is
    recorded silently, so a deploy does not replay old upgrades; a task that
    started and ended between two ticks is still announced because the target
    was seen before.
    """
    task = current.task
    if task is None and previous is not None:
        # No task in this answer: keep the last task's identity so that it is not
        # taken for a new one if the API shows it again.
        return replace(previous, version=current.version), None
    record = record_of(current)
    if (
        previous is not None
        and task is not None
        and previous.task_id != task.task_id
        and previous.task_created_at
        and task.created_at
        and task.created_at < previous.task_created_at
    ):
        # An answer about an older task than the one on record (a lagging replica):
        # keep the record, or the newer task would be announced again later.
        logger.info(
            "ignoring %s: task %s is older than the recorded %s",
            current.target,
            task.task_id,
            previous.task_id,
        )
        return previous, None
    if task is None or task.outcome is None or previous is None:
        return record, None
    if previous.task_id == task.task_id and previous.outcome == task.outcome.value:
        return record, None
    return record, Announcement(
        target=current.target,
        task_id=task.task_id,
        outcome=task.outcome,
        version=current.version,
        status=task.status,
        created_at=task.created_at,
        finished_at=task.finished_at,
    )
