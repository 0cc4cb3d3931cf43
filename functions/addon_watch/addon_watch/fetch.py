"""One tick's questions to ACK: targets grouped by cluster, wildcards expanded, in parallel.

Each cluster costs one ``DescribeClusterAddonsUpgradeStatus`` call, plus one
``ListClusterAddonInstances`` call when a wildcard needs its addon list; ``*``
costs one ``DescribeClustersV1`` call per hundred clusters first. Clusters are
asked in parallel, at most ``client.concurrency`` at a time. A cluster that
fails (gone, denied, garbage, out of retries) costs only its own targets and
is reported once.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from .ack import AckClient
from .config import ANY, Env, is_glob
from .errors import AckApiError, AddonWatchError
from .model import AddonStatus, Target
from .redaction import REDACTOR

logger = logging.getLogger(__name__)

# Time kept back from the ACK calls for recording and delivery: a share of the
# invocation's time, within these bounds (seconds).
_RESERVE_SHARE = 0.3
_RESERVE_MIN = 1.0
_RESERVE_MAX = 20.0


@dataclass
class Fetched:
    """The statuses one tick got, and one message for each thing that failed."""

    statuses: list[AddonStatus] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    targets: int = 0


@dataclass
class _Plan:
    """What to ask one cluster: named components (and whether to report them missing), globs."""

    cluster_id: str
    named: dict[str, bool] = field(default_factory=dict)
    globs: list[str] = field(default_factory=list)


def fetch_deadline(context: object, started: float) -> float | None:
    """The ``time.monotonic()`` moment the ACK calls must end by, from an FC context if any.

    Uses ``context.get_remaining_time_in_ms()`` when the runtime offers it, else
    ``context.function.timeout``; None (no limit but the retry policy's) without either.
    """
    remaining_ms = getattr(context, "get_remaining_time_in_ms", None)
    timeout = getattr(getattr(context, "function", None), "timeout", None)
    if callable(remaining_ms):
        left = float(remaining_ms()) / 1000
        start = time.monotonic()
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        left, start = float(timeout), started
    else:
        return None
    reserve = min(_RESERVE_MAX, max(_RESERVE_MIN, left * _RESERVE_SHARE))
    return start + max(0.0, left - reserve)


def fetch_statuses(
    client: AckClient, targets: Sequence[Target], exclude: Sequence[Target] = ()
) -> Fetched:
    """Ask ACK about every target, except the excluded ones.

    Args:
        client: the ACK client; its ``concurrency`` bounds the clusters asked at once.
        targets: named addons and patterns (``CLUSTER/*``, ``*/name``, ``*``).
        exclude: patterns of addons never to ask about.

    Returns:
        The statuses, in target order by cluster, and one error message per
        failed cluster, failed discovery or named addon that is not installed.
    """
    fetched = Fetched()
    clusters: list[str] = []
    if any(target.cluster_id == ANY for target in targets):
        try:
            clusters = client.list_clusters()
        except AckApiError as exc:
            _fail(fetched, f"discovering clusters for {Env.WATCH_TARGETS}: {exc}")
        logger.debug("discovered %d cluster(s)", len(clusters))

    plans: dict[str, _Plan] = {}
    for target in targets:
        for cluster_id in clusters if target.cluster_id == ANY else [target.cluster_id]:
            plan = plans.setdefault(cluster_id, _Plan(cluster_id))
            if is_glob(target.component):
                plan.globs.append(target.component)
            elif not _excluded(exclude, cluster_id, target.component):
                # A name under "*" is not expected in every cluster: not reported missing.
                reported = plan.named.get(target.component, False) or target.cluster_id != ANY
                plan.named[target.component] = reported
    wanted = [plan for plan in plans.values() if plan.named or plan.globs]
    wanted = [plan for plan in wanted if not _cluster_excluded(exclude, plan.cluster_id)]
    fetched.targets = sum(len(plan.named) for plan in wanted)

    ask = functools.partial(_fetch_cluster, client, exclude=exclude)
    workers = min(client.concurrency, len(wanted))
    if workers <= 1:
        results = [ask(plan) for plan in wanted]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ack") as pool:
            results = list(pool.map(ask, wanted))

    for result in results:
        fetched.statuses.extend(result.statuses)
        fetched.errors.extend(result.errors)
        fetched.targets += result.targets
    return fetched


def _fetch_cluster(client: AckClient, plan: _Plan, exclude: Sequence[Target]) -> Fetched:
    """One cluster's statuses; a failure of this cluster becomes one error message."""
    result = Fetched()
    cluster_id = plan.cluster_id
    try:
        wanted = dict(plan.named)
        if plan.globs:
            for name in client.list_addon_instances(cluster_id):
                matched = any(fnmatchcase(name, glob) for glob in plan.globs)
                if matched and name not in wanted and not _excluded(exclude, cluster_id, name):
                    wanted[name] = False
                    result.targets += 1
        if not wanted:
            return result

        components = sorted(wanted)
        statuses = client.describe_addons_upgrade_status(cluster_id, components)
    except AckApiError as exc:
        _fail(result, str(exc))
        return result
    except AddonWatchError:
        raise  # no credentials, say: every cluster would fail alike; the run stops
    except Exception as exc:
        # A bug or an answer shape nobody foresaw costs this cluster, not the tick.
        logger.debug("asking cluster %s failed unexpectedly", cluster_id, exc_info=True)
        _fail(result, f"cluster {cluster_id}: unexpected {type(exc).__name__}: {exc}")
        return result

    for name in components:
        status = statuses.get(name)
        if status is not None:
            result.statuses.append(status)
        elif wanted[name]:
            _fail(
                result,
                f"{cluster_id}/{name}: not installed in the cluster (the upgrade-status answer "
                f"has no entry for it); check {Env.WATCH_TARGETS}",
                level=logging.WARNING,
            )
    return result


def _fail(result: Fetched, message: str, level: int = logging.ERROR) -> None:
    message = REDACTOR.scrub(message)
    logger.log(level, "%s", message)
    result.errors.append(message)


def _excluded(exclude: Sequence[Target], cluster_id: str, component: str) -> bool:
    return any(
        pattern.cluster_id in (ANY, cluster_id) and fnmatchcase(component, pattern.component)
        for pattern in exclude
    )


def _cluster_excluded(exclude: Sequence[Target], cluster_id: str) -> bool:
    """Whether every addon of the cluster is excluded, so that it need not be asked at all."""
    return any(p.cluster_id in (ANY, cluster_id) and p.component == ANY for p in exclude)
