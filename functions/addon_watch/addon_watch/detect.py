"""Deciding, from the last record and a fresh answer, what is news.

News is, first, a task that just ended. Three opt-in notices come on top,
each behind its own switch (``Notices``): a task that became ``Paused``, a
task still running after a set time, and an upgrade that became available.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from .model import INSTANT_FORMAT, AddonStatus, Announcement, Outcome, Task, instant

logger = logging.getLogger(__name__)

# A version change seen this long after a task succeeded is taken as that task's
# (the API may report the new version a tick late), not as an upgrade outside it.
SETTLE_TIME = timedelta(hours=1)
# Ids of tasks without a creation time: known by their end, or by when first seen.
FINISHED_PREFIX = "finished:"
SEEN_PREFIX = "seen:"


@dataclass(frozen=True)
class TargetRecord:
    """What the store remembers of one target between ticks."""

    task_id: str | None
    status: str
    outcome: str | None
    version: str
    task_created_at: datetime | None = None
    # The recorded task's pause / long run was told (or seen on first sight).
    paused_notified: bool = False
    stuck_notified: bool = False
    # None when unknown (a record written before this was kept).
    ready_to_upgrade: bool | None = None
    # When the recorded task ended, if known (not kept by earlier releases).
    task_finished_at: datetime | None = None
    # How many version-change notices were told; it numbers the next.
    notices_told: int = 0


@dataclass(frozen=True)
class Notices:
    """The opt-in notices; all off by default."""

    paused: bool = False
    stuck_after: timedelta | None = None
    available: bool = False


NO_NOTICES = Notices()


def record_of(status: AddonStatus) -> TargetRecord:
    """The record to keep after seeing this answer."""
    task = status.task
    if task is None:
        ready = status.ready_to_upgrade
        return TargetRecord(None, "", None, status.version, ready_to_upgrade=ready)
    outcome = task.outcome
    return TargetRecord(
        task.task_id,
        task.status,
        outcome.value if outcome else None,
        status.version,
        task.created_at,
        ready_to_upgrade=status.ready_to_upgrade,
        task_finished_at=task.finished_at,
    )


def observe(
    previous: TargetRecord | None,
    current: AddonStatus,
    notices: Notices = NO_NOTICES,
    now: datetime | None = None,
) -> tuple[TargetRecord, list[Announcement]]:
    """The record to keep and the announcements this answer calls for.

    A finished task is announced once per outcome. The first sight of a target is
    recorded silently, so a deploy does not replay old upgrades; a task that
    started and ended between two ticks is still announced because the target
    was seen before. The notices follow the same rule, each once per task (pause,
    long run) or per new state of the addon (upgrade available).

    Args:
        previous: the stored record, None on the first sight of the target.
        current: the fresh answer.
        notices: which opt-in notices are on.
        now: the time of the check, for the long-run notice.
    """
    now = now or datetime.now(timezone.utc)
    task = current.task
    known_same = None
    if task is not None and task.task_id == "":
        # Neither creation nor end time: an identity is carried from the record.
        carried, known_same = _carried_identity(previous, task, now)
        task = replace(task, task_id=carried)
        current = replace(current, task=task)
    if task is None and previous is not None:
        # No task in this answer: keep the last task's identity so that it is not
        # taken for a new one if the API shows it again.
        record = replace(
            previous, version=current.version, ready_to_upgrade=current.ready_to_upgrade
        )
        notes = _available(previous, current, [], notices, now)
        return _counted(record, previous, notes), notes
    record = record_of(current)
    same = previous is not None and task is not None and _same_task(previous, task, current)
    if known_same is not None:
        same = known_same
    if (
        previous is not None
        and task is not None
        and not same
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
        return previous, []
    if task is None:
        return record, []
    if previous is not None and same:
        # Times the answer no longer shows are kept: they tell the task apart later.
        record = replace(
            record,
            paused_notified=previous.paused_notified,
            stuck_notified=previous.stuck_notified,
            task_created_at=record.task_created_at or previous.task_created_at,
            task_finished_at=record.task_finished_at or previous.task_finished_at,
        )
    found: list[Announcement] = []
    outcome = task.outcome
    if (
        previous is not None
        and outcome is not None
        and (not same or previous.outcome != outcome.value)
    ):
        found.append(_about(task, current, outcome))
    if outcome is None:
        record, notes = _running_notices(record, previous, task, current, notices, now)
        found += notes
    notes = _available(previous, current, found, notices, now)
    return _counted(record, previous, notes), found + notes


def _counted(
    record: TargetRecord, previous: TargetRecord | None, notes: list[Announcement]
) -> TargetRecord:
    """``record`` with the count of numbered (version-change) notices told, these included."""
    if previous is None:
        return record
    numbered = any(note.sequence for note in notes)
    return replace(record, notices_told=previous.notices_told + (1 if numbered else 0))


def _same_task(previous: TargetRecord, task: Task, current: AddonStatus) -> bool:
    """Whether the answer's task is the recorded one.

    Ids match; or the creation times do (a record whose id kept another form of
    the time); or, one side lacking a creation time, the end times do; or the
    record's task was first seen without times after the answer's was created;
    or a record of an earlier release kept a task without creation time under
    the empty id, and the answer shows an ended task with the same outcome and
    version, which it now tells apart by its end time.
    """
    if previous.task_id == task.task_id:
        return True
    if previous.task_created_at is not None and previous.task_created_at == task.created_at:
        return True
    if task.finished_at is not None and (
        previous.task_created_at is None or task.created_at is None
    ):
        ended = previous.task_finished_at
        if ended == task.finished_at or previous.task_id == finished_id(task.finished_at):
            return True
    first_seen = _seen_time(previous.task_id)
    if first_seen is not None and task.created_at is not None and task.created_at <= first_seen:
        return True
    outcome = task.outcome
    return (
        previous.task_id == ""
        and task.task_id.startswith("finished:")
        and outcome is not None
        and previous.outcome == outcome.value
        and previous.version == current.version
    )


def _carried_identity(
    previous: TargetRecord | None, task: Task, now: datetime
) -> tuple[str, bool | None]:
    """The id of a task reported without any time, and whether it is the recorded task.

    The record's task is kept while it runs, and when the answer shows it ended
    as recorded or (same task, other outcome) otherwise; a task running after
    the record's ended is new, named after when it was first seen. The empty id
    that the previous release kept is replaced, as it would name every such task.
    """
    if previous is None or previous.task_id is None:
        return seen_id(now, previous), None
    ended = task.outcome
    if previous.outcome is not None and ended is None:
        return seen_id(now, previous), False
    if previous.outcome is not None and ended is not None and previous.outcome == ended.value:
        return previous.task_id, True
    return previous.task_id or seen_id(now, previous), True


def seen_id(now: datetime, previous: TargetRecord | None = None) -> str:
    """``seen:<now>``, a second past the record's own such id when that is not earlier."""
    moment = now.astimezone(timezone.utc).replace(microsecond=0)
    last = _seen_time(previous.task_id) if previous is not None else None
    if last is not None and moment <= last:
        moment = last + timedelta(seconds=1)
    return f"{SEEN_PREFIX}{instant(moment)}"


def finished_id(moment: datetime) -> str:
    """The id of a task known only by when it ended."""
    return f"{FINISHED_PREFIX}{instant(moment)}"


def _seen_time(task_id: str | None) -> datetime | None:
    if not task_id or not task_id.startswith(SEEN_PREFIX):
        return None
    try:
        moment = datetime.strptime(task_id[len(SEEN_PREFIX) :], INSTANT_FORMAT)
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc)


def _about(
    task: Task, current: AddonStatus, outcome: Outcome, seen_at: datetime | None = None
) -> Announcement:
    return Announcement(
        target=current.target,
        task_id=task.task_id,
        outcome=outcome,
        version=current.version,
        status=task.status,
        created_at=task.created_at,
        finished_at=task.finished_at,
        seen_at=seen_at,
    )


def _running_notices(
    record: TargetRecord,
    previous: TargetRecord | None,
    task: Task,
    current: AddonStatus,
    notices: Notices,
    now: datetime,
) -> tuple[TargetRecord, list[Announcement]]:
    """A task not ended: paused, or running longer than allowed, told once per task.

    On the first sight of the target the condition is recorded as told, silently.
    """
    found: list[Announcement] = []
    if notices.paused and task.status.lower() == "paused" and not record.paused_notified:
        record = replace(record, paused_notified=True)
        if previous is not None:
            found.append(_about(task, current, Outcome.PAUSED, now))
    limit = notices.stuck_after
    if (
        limit is not None
        and task.created_at is not None
        and now - task.created_at >= limit
        and not record.stuck_notified
    ):
        record = replace(record, stuck_notified=True)
        if previous is not None:
            found.append(_about(task, current, Outcome.STUCK, now))
    return record, found


def _available(
    previous: TargetRecord | None,
    current: AddonStatus,
    found: list[Announcement],
    notices: Notices,
    now: datetime,
) -> list[Announcement]:
    """Upgrade-available notices: ``ready_to_upgrade`` turned true, or the version moved.

    A version change counts only outside a task: not while one runs, not when
    an ended task is announced in the same answer, and not shortly after a task
    succeeded. Each notice is keyed by its versions, a version change also by
    its number on the target: a version is told each time it is reached, and
    readiness that comes and goes at one version is told once.
    """
    if not notices.available or previous is None:
        return []
    task = current.task

    def notice(before: str | None) -> Announcement:
        return Announcement(
            target=current.target,
            task_id="",
            outcome=Outcome.AVAILABLE,
            version=current.version,
            status="",
            created_at=None,
            finished_at=None,
            previous_version=before,
            seen_at=now,
            # Numbered when the version moved: a version reached again is news again,
            # while readiness that comes and goes stays one notice.
            sequence=previous.notices_told + 1 if before else 0,
        )

    result: list[Announcement] = []
    moved = bool(previous.version and current.version and previous.version != current.version)
    was_ready = previous.ready_to_upgrade
    if current.ready_to_upgrade and was_ready is not None and (not was_ready or moved):
        result.append(notice(None))
    explained = (
        any(item.outcome.ended for item in found)
        or (task is not None and task.outcome is None)
        or (
            task is not None
            and task.outcome is Outcome.SUCCESS
            and (task.finished_at is None or now - task.finished_at < SETTLE_TIME)
        )
    )
    if moved and not explained:
        result.append(notice(previous.version))
    return result
