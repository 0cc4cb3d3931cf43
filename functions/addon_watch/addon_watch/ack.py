"""A client for the ACK (CS) OpenAPI calls the watcher makes, signed with V3.

One ``requests`` session carries every call, with a connection pool as large as
the number of calls allowed in flight. A transient failure (throttling, a 5xx,
a timeout, a dropped connection) is asked again with exponential backoff and
jitter while the invocation has time left; anything else fails at once. Every
failure is an ``AckApiError`` carrying the API's code, the HTTP status and the
request id.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from .config import DEFAULT_ACK_CONCURRENCY
from .credentials import Credentials
from .detect import finished_id
from .errors import AckApiError, AckMalformedError, AckPermanentError, AckTransientError
from .httpio import BodyError, WatchedAdapter, exchange
from .model import AddonStatus, Target, Task, instant
from .redaction import REDACTOR
from .signer import canonical_query, signed_headers
from .waits import parse_retry_after

logger = logging.getLogger(__name__)

API_VERSION = "2015-12-15"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
# The whole answer, after its headers, may take two read timeouts: a trickling server
# is cut off, and so is a body no upgrade-status or listing answer comes near.
ANSWER_BYTES = 16 * 1024 * 1024
CLUSTERS_PAGE_SIZE = 100
ZERO_TIME_PREFIX = "0001-01-01"
# Clusters in these states have no addons to ask about; discovery passes them by.
UNWATCHABLE_CLUSTER_STATES = frozenset(
    {"initial", "failed", "deleting", "deleted", "delete_failed"}
)
_MAX_PAGES = 1000
_SNIPPET = 200
# ACK's timestamps, read alike on every Python (3.10's fromisoformat takes fewer
# forms than 3.11's): extended or compact ISO 8601, seconds and fraction optional.
_TIME = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[T ]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"|(?P<cyear>\d{4})(?P<cmonth>\d{2})(?P<cday>\d{2})T"
    r"(?P<chour>\d{2})(?P<cminute>\d{2})(?P<csecond>\d{2})(?:\.(?P<cfraction>\d{1,9}))?",
    re.IGNORECASE,
)
_ZONE = re.compile(r"Z|(?P<sign>[+-])(?P<hours>\d{2})(?::?(?P<minutes>\d{2}))?", re.IGNORECASE)
# An epoch number larger than this is in milliseconds (1e11 s is the year 5138).
_EPOCH_MILLIS_ABOVE = 1e11
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Each unreadable value is logged once per instance; the memory of them is bounded.
_UNREADABLE_LOGGED: set[str] = set()
_UNREADABLE_REMEMBERED = 256


def parse_time(value: object) -> datetime | None:
    """An API timestamp as an aware datetime; None for empty, zero or unreadable values.

    Strings are ``YYYY-MM-DD[T ]HH:MM[:SS][.f]`` or ``YYYYMMDDTHHMMSS[.f]``, with
    ``Z``, ``+HH:MM``, ``+HHMM``, ``+HH`` or no zone (UTC); a JSON number is Unix
    time in seconds, or milliseconds when above 1e11.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_epoch(value)
    if not isinstance(value, str) or not value.strip() or value.startswith(ZERO_TIME_PREFIX):
        return None
    moment = _from_text(value.strip())
    if moment is None:
        _log_unreadable(value)
    return moment


def _from_text(text: str) -> datetime | None:
    found = _TIME.match(text)
    zone = _ZONE.fullmatch(text, found.end()) if found else None
    if found is None or (zone is None and found.end() != len(text)):
        return None
    part = {name.lstrip("c"): digits for name, digits in found.groupdict().items() if digits}
    try:
        offset = timezone.utc
        if zone is not None and zone["sign"]:
            sign = -1 if zone["sign"] == "-" else 1
            delta = timedelta(hours=int(zone["hours"]), minutes=int(zone["minutes"] or 0))
            offset = timezone(sign * delta)
        return datetime(
            int(part["year"]),
            int(part["month"]),
            int(part["day"]),
            int(part["hour"]),
            int(part["minute"]),
            int(part.get("second", 0)),
            int(part.get("fraction", "0")[:6].ljust(6, "0")),
            tzinfo=offset,
        ).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _from_epoch(number: float) -> datetime | None:
    try:
        seconds = float(number)
        if seconds > _EPOCH_MILLIS_ABOVE:
            seconds /= 1000
        if math.isfinite(seconds) and seconds > 0:
            return _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        pass
    if number != 0:
        _log_unreadable(repr(number))
    return None


def _log_unreadable(value: str) -> None:
    snippet = value[:64]
    if snippet in _UNREADABLE_LOGGED:
        return
    if len(_UNREADABLE_LOGGED) >= _UNREADABLE_REMEMBERED:
        _UNREADABLE_LOGGED.clear()
    _UNREADABLE_LOGGED.add(snippet)
    logger.warning("unreadable timestamp %r in an ACK answer; treated as not set", snippet)


def task_id_of(created_raw: str, created: datetime | None, finished: datetime | None) -> str:
    """A task's identity: its creation instant in one form, whatever form ACK sent it in.

    The form, UTC ``YYYY-MM-DDTHH:MM:SSZ``, is ACK's usual one, so ids stored by
    earlier releases still match. Without a creation time (ACK's zero time) an
    ended task is told apart by when it ended; a creation time that cannot be
    read is kept as sent.
    """
    if created is not None:
        return instant(created)
    if created_raw.strip() and not created_raw.startswith(ZERO_TIME_PREFIX):
        return created_raw
    return finished_id(finished) if finished is not None else ""


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def parse_upgrade_status(target: Target, body: object) -> AddonStatus:
    """Read one component's entry from a (single or batch) upgrade-status answer."""
    if not isinstance(body, dict):
        raise AckMalformedError(
            f"upgrade status of {target}: expected a JSON object, got {type(body).__name__}"
        )
    entry = body.get(target.component)
    if entry is None and ("tasks" in body or "addon_info" in body):
        # Some gateways answer with the entry itself rather than keyed by name.
        entry = body
    if not isinstance(entry, dict):
        keys = ", ".join(sorted(str(k) for k in body)[:10]) or "none"
        raise AckMalformedError(
            f"upgrade status of {target}: the answer has no entry for {target.component!r} "
            f"(keys: {keys}); check that the addon is installed in the cluster"
        )

    raw_info = entry.get("addon_info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    tasks = entry.get("tasks")
    task = None
    if isinstance(tasks, dict) and (tasks.get("status") or tasks.get("is_canceled")):
        # A creation time that cannot be read is the id as sent; a number never is.
        raw = tasks.get("created_at")
        created_raw = raw if isinstance(raw, str) else ""
        created, finished = parse_time(raw), parse_time(tasks.get("finished_at"))
        task = Task(
            task_id=task_id_of(created_raw, created, finished),
            status=_as_text(tasks.get("status")),
            created_at=created,
            finished_at=finished,
            is_canceled=_as_bool(tasks.get("is_canceled")),
        )
    elif tasks is not None and not isinstance(tasks, dict):
        raise AckMalformedError(
            f"upgrade status of {target}: 'tasks' is a {type(tasks).__name__}, expected an object"
        )
    return AddonStatus(
        target=target,
        version=_as_text(info.get("version")),
        ready_to_upgrade=_as_bool(info.get("ready_to_upgrade")),
        task=task,
    )


def parse_addons_upgrade_status(
    cluster_id: str, components: Sequence[str], body: object
) -> dict[str, AddonStatus]:
    """The batch answer's entries by component; a component it leaves out is not in the result."""
    what = f"upgrade status of cluster {cluster_id}"
    if not isinstance(body, dict):
        raise AckMalformedError(
            f"{what}: expected a JSON object keyed by component, got {type(body).__name__}"
        )
    if len(components) == 1:
        # The single-entry shape some gateways send is accepted here too.
        name = components[0]
        if body.get(name) is None and not ("tasks" in body or "addon_info" in body):
            return _no_entries(what, body)
        return {name: parse_upgrade_status(Target(cluster_id, name), body)}

    found = {
        name: parse_upgrade_status(Target(cluster_id, name), body)
        for name in components
        if body.get(name) is not None
    }
    return found or _no_entries(what, body)


def _no_entries(what: str, body: dict[str, Any]) -> dict[str, AddonStatus]:
    """An answer with none of the asked components: fine, unless it is an error in disguise."""
    code, message = body.get("code") or body.get("Code"), body.get("message") or body.get("Message")
    if isinstance(code, str) and isinstance(message, str):
        raise AckMalformedError(
            f"{what}: the answer is an error body with a success status: "
            f"{code}: {message[:_SNIPPET]}"
        )
    return {}


def parse_addon_instances(cluster_id: str, body: object) -> list[str]:
    """Names of the addons a ``ListClusterAddonInstances`` answer lists."""
    addons = body.get("addons", ()) if isinstance(body, dict) else body
    addons = [] if addons is None else addons
    if not isinstance(addons, list):
        raise AckMalformedError(
            f"addons of cluster {cluster_id}: expected an object with an 'addons' list, "
            f"got {_shape(body)}"
        )
    names = []
    for item in addons:
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name:
            names.append(name)
        else:
            logger.debug("addons of cluster %s: skipping an entry without a name", cluster_id)
    return names


def parse_clusters_page(body: object) -> tuple[list[tuple[str, str]], int | None]:
    """(cluster id, state) pairs of one ``DescribeClustersV1`` page, and the total count."""
    clusters = body.get("clusters", ()) if isinstance(body, dict) else body
    clusters = [] if clusters is None else clusters
    if not isinstance(body, dict) or not isinstance(clusters, list):
        raise AckMalformedError(
            f"listing clusters: expected an object with a 'clusters' list, got {_shape(body)}"
        )
    found = []
    for item in clusters:
        cluster_id = item.get("cluster_id") if isinstance(item, dict) else None
        if isinstance(cluster_id, str) and cluster_id:
            found.append((cluster_id, _as_text(item.get("state")).lower()))
    page_info = body.get("page_info")
    total = page_info.get("total_count") if isinstance(page_info, dict) else None
    try:
        return found, int(total) if total is not None else None
    except (TypeError, ValueError):
        return found, None


def cluster_names_of(body: object) -> dict[str, str]:
    """``{cluster id: name}`` of one ``DescribeClustersV1`` page; nameless entries left out."""
    clusters = body.get("clusters") if isinstance(body, dict) else None
    names = {}
    for item in clusters if isinstance(clusters, list) else ():
        cluster_id = item.get("cluster_id") if isinstance(item, dict) else None
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(cluster_id, str) and isinstance(name, str) and name:
            names[cluster_id] = name
    return names


def _shape(body: object) -> str:
    if isinstance(body, dict):
        return "an object with keys " + (", ".join(sorted(str(k) for k in body)[:10]) or "none")
    return f"a JSON {type(body).__name__}"


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are asked again: exponential backoff with full jitter."""

    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 5.0
    # Waits longer than this (a long x-acs-retry-after) end the attempts instead.
    max_wait: float = 30.0
    # Less time left than this in the invocation: not worth starting a call.
    min_attempt_time: float = 0.5

    def delay(
        self,
        retry: int,
        retry_after: float | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        spread = uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (retry - 1)))
        # After what the API asked for, the spread keeps the workers from returning at once.
        return spread if retry_after is None else retry_after + spread


class CallGate:
    """Admits at most ``limit`` calls at once; throttling halves the limit, successes regrow it.

    One halving per round of calls: answers to calls sent before the last
    halving do not halve it again, so a burst of throttled answers costs one step.
    """

    def __init__(self, limit: int) -> None:
        self.ceiling = self.limit = limit
        self._in_flight = 0
        self._round = 0
        self._successes = 0
        self._changed = threading.Condition()

    def enter(self, timeout: float | None) -> int | None:
        """Wait for a free place (None when ``timeout`` runs out); the round the call is in."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._in_flight < self.limit, timeout):
                return None
            self._in_flight += 1
            return self._round

    def leave(self, round_sent: int, *, throttled: bool, succeeded: bool) -> None:
        with self._changed:
            self._in_flight -= 1
            if throttled and round_sent == self._round:
                self._round += 1
                self._successes = 0
                self.limit = max(1, self.limit // 2)
                logger.info("ACK throttles: at most %d call(s) in flight from now", self.limit)
            elif succeeded:
                self._successes += 1
                if self._successes >= self.limit and self.limit < self.ceiling:
                    self._successes = 0
                    self.limit += 1
            self._changed.notify_all()


class AckClient:
    """Calls the CS OpenAPI with V3 signatures over one ``requests`` session.

    Args:
        endpoint: base URL, e.g. ``https://cs.cn-hangzhou.aliyuncs.com``.
        credentials: called before each request; it must be cheap and thread-safe.
        session: the session to send with; a pool sized for ``concurrency`` is
            mounted on it for the endpoint only.
        region: passed to cluster discovery, which lists only this region.
        concurrency: how many calls may be in flight; fewer while the API throttles.
        deadline: ``time.monotonic()`` value after which no call is started or retried.
        retry: the retry policy for transient failures.
    """

    def __init__(
        self,
        endpoint: str,
        credentials: Callable[[], Credentials],
        session: requests.Session | None = None,
        *,
        region: str | None = None,
        concurrency: int = DEFAULT_ACK_CONCURRENCY,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        parts = urlsplit(self._endpoint)
        self._host = parts.netloc
        self._base_path = parts.path
        self._credentials = credentials
        self._session = session or requests.Session()
        # One kept-alive connection per worker: none is opened and dropped per call.
        self._session.mount(
            self._endpoint + "/",
            WatchedAdapter(pool_connections=1, pool_maxsize=concurrency, max_retries=0),
        )
        self.region = region
        self.concurrency = concurrency
        self.deadline = deadline
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._gate = CallGate(concurrency)
        self.calls = 0
        # Cluster names seen by DescribeClustersV1, for messages.
        self._names: dict[str, str] = {}
        self._listed = False

    def describe_addon_upgrade_status(self, target: Target) -> AddonStatus:
        """``DescribeClusterAddonUpgradeStatus`` for one addon."""
        path = (
            f"/clusters/{quote(target.cluster_id, safe='')}"
            f"/components/{quote(target.component, safe='')}/upgradestatus"
        )
        body = self._get(
            "DescribeClusterAddonUpgradeStatus", path, {}, what=f"upgrade status of {target}"
        )
        return parse_upgrade_status(target, body)

    def describe_addons_upgrade_status(
        self, cluster_id: str, components: Sequence[str]
    ) -> dict[str, AddonStatus]:
        """``DescribeClusterAddonsUpgradeStatus``: many addons of one cluster in one call.

        A component the answer leaves out (not installed) is missing from the result.
        """
        # NOTE: all of a cluster's components go in one query (about 30 bytes each); a
        # cluster would need well over a hundred addons for the URL to grow long.
        path = f"/clusters/{quote(cluster_id, safe='')}/components/upgradestatus"
        query = {"componentIds": json.dumps(list(components), separators=(",", ":"))}
        body = self._get(
            "DescribeClusterAddonsUpgradeStatus",
            path,
            query,
            what=f"upgrade status of cluster {cluster_id}",
        )
        return parse_addons_upgrade_status(cluster_id, components, body)

    def list_addon_instances(self, cluster_id: str) -> list[str]:
        """``ListClusterAddonInstances``: the names of the addons installed in a cluster."""
        path = f"/clusters/{quote(cluster_id, safe='')}/addon_instances"
        body = self._get(
            "ListClusterAddonInstances", path, {}, what=f"addons of cluster {cluster_id}"
        )
        return parse_addon_instances(cluster_id, body)

    def list_clusters(self) -> list[str]:
        """``DescribeClustersV1``, every page: the ids of the clusters that can have addons."""
        found: dict[str, None] = {}
        seen = 0
        for page in range(1, _MAX_PAGES + 1):
            query = {"page_number": str(page), "page_size": str(CLUSTERS_PAGE_SIZE)}
            if self.region:
                query["region_id"] = self.region
            body = self._get(
                "DescribeClustersV1",
                "/api/v1/clusters",
                query,
                what=f"listing clusters (page {page})",
            )
            clusters, total = parse_clusters_page(body)
            self._names.update(cluster_names_of(body))
            seen += len(clusters)
            for cluster_id, state in clusters:
                if state in UNWATCHABLE_CLUSTER_STATES:
                    logger.debug("cluster %s is %s; not watched", cluster_id, state)
                else:
                    # NOTE: a cluster created or deleted while the pages are read can shift
                    # the pages; duplicates are dropped here, a skipped one is seen next tick.
                    found.setdefault(cluster_id, None)
            if not clusters or (
                seen >= total if total is not None else len(clusters) < CLUSTERS_PAGE_SIZE
            ):
                break
        self._listed = True
        return list(found)

    def cluster_names(self) -> dict[str, str]:
        """Each cluster's name by id: from this client's listing, made once if not yet."""
        if not self._listed:
            self.list_clusters()
        return dict(self._names)

    # --- sending ---------------------------------------------------------

    def _time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self._clock()

    def _get(self, action: str, path: str, query: Mapping[str, str], *, what: str) -> Any:
        """One call, asked again while it fails transiently and time and attempts remain."""
        policy = self._retry
        attempt = 0
        while True:
            attempt += 1
            left = self._time_left()
            if left is not None and left < policy.min_attempt_time:
                raise AckTransientError(
                    f"{what}: {action} not sent: the invocation has {max(left, 0):.1f} s left; "
                    "raise the function's timeout or lower the number of targets"
                )
            try:
                return self._send(action, path, query, what)
            except AckTransientError as exc:
                wait = policy.delay(attempt, exc.retry_after)
                left = self._time_left()
                out_of_time = left is not None and wait + policy.min_attempt_time > left
                if attempt >= policy.attempts or wait > policy.max_wait or out_of_time:
                    reason = "out of time" if out_of_time else f"after {attempt} attempt(s)"
                    raise AckTransientError(
                        f"{exc} (gave up {reason})",
                        code=exc.code,
                        http_status=exc.http_status,
                        request_id=exc.request_id,
                        retry_after=exc.retry_after,
                    ) from None
                logger.info("%s: %s; asking again in %.2f s", what, exc.code or "transient", wait)
                self._sleep(wait)

    def _send(self, action: str, path: str, query: Mapping[str, str], what: str) -> Any:
        """One request, once there is a place for it under the gate."""
        least = self._retry.min_attempt_time
        left = self._time_left()
        round_sent = self._gate.enter(None if left is None else max(0.0, left - least))
        if round_sent is None:
            raise AckTransientError(
                f"{what}: {action} not sent: the invocation ran out of time while "
                "other calls were in flight; raise the function's timeout or ACK_CONCURRENCY"
            )
        throttled = succeeded = False
        try:
            left = self._time_left()
            if left is not None and left < least:
                raise AckTransientError(
                    f"{what}: {action} not sent: the invocation has {max(left, 0):.1f} s left"
                )
            timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)
            if left is not None:
                timeout = (min(CONNECT_TIMEOUT, left), min(READ_TIMEOUT, left))
            headers = self._signed_headers(action, path, query)
            with self._lock:
                self.calls += 1
            # The whole exchange: a connect timeout, then two read timeouts for the answer,
            # headers included, however slowly the server sends it.
            total = timeout[0] + timeout[1] * 2
            try:
                response = exchange(
                    lambda: self._session.get(
                        self._url(path, query),
                        headers=headers,
                        timeout=timeout,
                        allow_redirects=False,
                        stream=True,
                    ),
                    seconds=total,
                    max_bytes=ANSWER_BYTES,
                )
            except requests.RequestException as exc:
                raise _transport_error(exc, action, what, self._host, timeout[1]) from None
            except BodyError as exc:
                raise AckTransientError(f"{what}: {action}: {exc}", code="BodyError") from None
            body = _read(response, action, what)
            succeeded = True
            return body
        except AckTransientError as exc:
            throttled = exc.http_status == 429 or (exc.code or "").startswith("Throttling")
            raise
        finally:
            self._gate.leave(round_sent, throttled=throttled, succeeded=succeeded)

    def _url(self, path: str, query: Mapping[str, str]) -> str:
        # The query is sent exactly as it was signed, not re-encoded by requests.
        return f"{self._endpoint}{path}" + (f"?{canonical_query(query)}" if query else "")

    def _signed_headers(self, action: str, path: str, query: Mapping[str, str]) -> dict[str, str]:
        creds = self._credentials()
        full_path = self._base_path + path
        logger.debug("GET %s%s", self._host, full_path)
        headers = signed_headers(
            "GET",
            self._host,
            full_path,
            query,
            action=action,
            version=API_VERSION,
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret.reveal(),
            security_token=creds.security_token.reveal() if creds.security_token else None,
        )
        headers["accept"] = "application/json"
        return headers


def _transport_error(
    exc: requests.RequestException, action: str, what: str, host: str, read_timeout: float
) -> AckApiError:
    """The typed error for a request that got no complete answer."""
    kind = type(exc).__name__
    if isinstance(exc, requests.Timeout):
        return AckTransientError(
            f"{what}: {action} got no answer from {host} in time ({kind}, {read_timeout:.1f} s)",
            code=kind,
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return AckPermanentError(
            f"{what}: {action}: TLS with {host} failed ({kind}); check ACK_ENDPOINT", code=kind
        )
    if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return AckTransientError(
            f"{what}: {action}: the connection to {host} failed or was reset ({kind}); "
            "check ACK_REGION / ACK_ENDPOINT / ACK_NETWORK and the network",
            code=kind,
        )
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return AckMalformedError(f"{what}: {action}: the answer could not be decoded ({kind})")
    return AckPermanentError(
        f"{what}: {action} could not be sent to {host} ({kind}); check ACK_ENDPOINT", code=kind
    )


def _read(response: requests.Response, action: str, what: str) -> Any:
    """The decoded JSON body of a success, or the typed error the answer amounts to."""
    status = response.status_code
    request_id = response.headers.get("x-acs-request-id")
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None

    if status >= 400:
        fields: dict[str, Any] = body if isinstance(body, dict) else {}
        code = _as_text(fields.get("code") or fields.get("Code")) or None
        # Scrubbed before it is cut, so that no half of a secret survives.
        message = REDACTOR.scrub(_as_text(fields.get("message") or fields.get("Message")))
        message = message[:_SNIPPET]
        request_id = _as_text(fields.get("requestId") or fields.get("RequestId")) or request_id
        detail = f"{code}: {message}" if code else _snippet(response.text)
        text = (
            f"{what}: {action} answered HTTP {status} {detail} (request id {request_id or 'none'})"
        )
        if status in (408, 429) or status >= 500 or (code or "").startswith("Throttling"):
            raise AckTransientError(
                text,
                code=code,
                http_status=status,
                request_id=request_id,
                retry_after=_retry_after(response.headers),
            )
        raise AckPermanentError(
            f"{text}; {_advice(code, status, action)}",
            code=code,
            http_status=status,
            request_id=request_id,
        )
    if status >= 300 or status < 200:
        raise AckMalformedError(
            f"{what}: {action} answered HTTP {status} instead of JSON; check ACK_ENDPOINT",
            http_status=status,
            request_id=request_id,
        )
    if body is None:
        raise AckMalformedError(
            f"{what}: {action} answered HTTP {status} with a body that is not JSON "
            f"({response.headers.get('content-type') or 'no content type'}, "
            f"{len(response.content)} bytes): {_snippet(response.text)}",
            http_status=status,
            request_id=request_id,
        )
    return body


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait the API asked for, in seconds: ``x-acs-retry-after`` is in milliseconds.

    None when it asked for none; garbage, NaN and infinities count as not asking,
    and a wait is at most an hour.
    """
    for name, scale in (("x-acs-retry-after", 1000.0), ("retry-after", 1.0)):
        value = parse_retry_after(headers.get(name), default=math.nan, scale=scale, minimum=0.0)
        if value > 0:
            return value
    return None


def _advice(code: str | None, status: int, action: str) -> str:
    """What to check, for an error that asking again will not fix."""
    code = code or ""
    if "NotFound" in code and "Cluster" in code:
        return "check the cluster id in WATCH_TARGETS and that the cluster is in this region"
    if status == 403 or code.startswith(("Forbidden", "NoPermission")):
        return f"allow {action} for the RAM user or role whose credentials are used"
    if "Signature" in code or "AccessKey" in code or "Token" in code:
        return "check the AccessKey pair and security token (and the clock)"
    return "check the request and the settings"


def _snippet(text: str) -> str:
    # Scrubbed before it is cut: a secret cut in half would no longer be recognised.
    flat = REDACTOR.scrub(" ".join(text.split()))
    return json.dumps(flat[:_SNIPPET] + ("…" if len(flat) > _SNIPPET else ""), ensure_ascii=False)
