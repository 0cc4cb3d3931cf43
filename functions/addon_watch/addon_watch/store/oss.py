"""The state store in an OSS bucket: small JSON objects under one prefix.

Layout under ``oss://BUCKET/PREFIX``::

    targets/<cluster>/<component>.json   the last record of each target
    outbox/<id>.json                     one announcement for one channel, with its state
    pending/<id>                         marker: this outbox entry is not settled yet
    claims/<id>.<generation>             a run's lease on one attempt to send it
    holds/<channel id>.json              a throttled channel: nothing sent before its time

Atomicity comes from ``x-oss-forbid-overwrite: true`` (OSS answers 409
``FileAlreadyExists`` when the object exists): an outbox entry is created at
most once, so two runs that see the same change enqueue it once, and a claim
object is created by exactly one run. A claim left by a run that died is
taken over, once its lease has passed, by creating the next generation's claim.

The official SDK, ``alibabacloud-oss-v2``, is imported only when this store is
opened, so a run on SQLite never pays for its import.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from ..credentials import Credentials
from ..detect import TargetRecord
from ..errors import AddonWatchError, StateStoreError
from ..model import Announcement, Target
from ..redaction import REDACTOR
from .base import (
    DEFAULT_MAX_AGE,
    FORMAT_VERSION,
    Channels,
    Claim,
    Decide,
    OutboxItem,
    PendingScan,
    announcement_from_dict,
    announcement_to_dict,
    channels_of,
    check_version,
    from_iso,
    iso,
    read_record,
    record_to_dict,
)

logger = logging.getLogger(__name__)

# Seconds to connect, and to wait for each answer: the objects are small.
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 10
# A request that failed before OSS answered is tried this many times in all.
ATTEMPTS = 3
# A run gives up walking past expired claims after this many generations.
_MAX_TAKEOVERS = 20


def _sdk_credentials(credentials: Callable[[], Credentials]) -> Callable[[], Any]:
    """The SDK's credentials of the invocation, resolved on first use (STS token included)."""

    def get() -> Any:
        from alibabacloud_oss_v2 import Credentials as SdkCredentials

        found = credentials()
        token = found.security_token.reveal() if found.security_token else None
        return SdkCredentials(found.access_key_id, found.access_key_secret.reveal(), token)

    return get


class _TransportFailures:
    """Retry what failed before OSS answered; an answer from OSS itself fails the run.

    A create retried after its answer was lost finds its own object (409), which
    the callers treat as done: an outbox entry exists, a claim names its owner.
    """

    def __init__(self, request_error: type[Exception]) -> None:
        self._request_error = request_error

    def is_error_retryable(self, error: Exception) -> bool:
        return isinstance(error, self._request_error)


class OssStore:
    """The store in OSS; safe for runs on any number of instances at once."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._where = f"oss://{bucket}/{self._prefix}"

    @classmethod
    def connect(
        cls,
        *,
        endpoint: str,
        region: str,
        bucket: str,
        prefix: str,
        credentials: Callable[[], Credentials],
    ) -> OssStore:
        """A store in ``bucket`` reached through ``endpoint``, signed with OSS signature V4."""
        try:
            import alibabacloud_oss_v2 as oss
        except ImportError as exc:
            raise StateStoreError(
                "STATE_STORE is oss://... but the OSS SDK cannot be imported "
                f"({type(exc).__name__}: {exc}); it ships in the code package built by "
                "`make package`, elsewhere `pip install -r requirements.txt`"
            ) from exc
        config = oss.config.load_default()
        config.region = region
        config.endpoint = endpoint
        config.signature_version = "v4"
        config.credentials_provider = oss.credentials.CredentialsProviderFunc(
            _sdk_credentials(credentials)
        )
        config.connect_timeout = CONNECT_TIMEOUT
        config.readwrite_timeout = READ_TIMEOUT
        config.retryer = oss.retry.StandardRetryer(
            max_attempts=ATTEMPTS,
            error_retryables=[_TransportFailures(oss.exceptions.RequestError)],
        )
        return cls(oss.Client(config), bucket, prefix)

    def __repr__(self) -> str:
        return f"OssStore({self._where!r})"

    def close(self) -> None:
        """Nothing to release: every call is one HTTP request."""

    # --- objects -----------------------------------------------------------

    def _fail(self, what: str, exc: Exception) -> AddonWatchError:
        """A clear error for a failed SDK call; our own (credentials) comes back unchanged."""
        from alibabacloud_oss_v2 import exceptions

        cause = _cause(exc)
        if isinstance(cause, AddonWatchError):
            return cause
        if isinstance(cause, exceptions.ServiceError):
            detail = f"HTTP {cause.status_code} {cause.code or 'error'}"
            if cause.message:
                detail += f": {cause.message}"
            if cause.request_id:
                detail += f" (request id {cause.request_id})"
        elif isinstance(cause, (exceptions.RequestError, exceptions.ResponseError)):
            # Raised by the SDK itself (connection refused, timeout): name the cause.
            detail = type(cause.unwrap()).__name__
        elif isinstance(cause, exceptions.BaseError):
            # The SDK's own checks (CRC-64 mismatch, an answer it cannot parse).
            detail = f"{type(cause).__name__}: {REDACTOR.scrub(str(cause))[:300]}"
        else:
            detail = type(cause).__name__
        return StateStoreError(
            f"state store {self._where}: cannot {what}: {detail}; check the bucket, "
            "OSS_ENDPOINT and that the function's role may read and write the prefix"
        )

    def _get(self, key: str, what: str) -> bytes | None:
        import alibabacloud_oss_v2 as oss

        request = oss.GetObjectRequest(bucket=self._bucket, key=self._prefix + key)
        try:
            result = self._client.get_object(request)
            with result.body as body:
                return bytes(body.read())
        except (oss.exceptions.BaseError, requests.RequestException) as exc:
            cause = _cause(exc)
            if isinstance(cause, oss.exceptions.ServiceError) and cause.code == "NoSuchKey":
                return None
            raise self._fail(what, exc) from exc

    def _put(self, key: str, data: dict[str, Any], what: str, *, create_only: bool = False) -> bool:
        """Write ``data``; with ``create_only``, False when the object already existed."""
        import alibabacloud_oss_v2 as oss

        request = oss.PutObjectRequest(
            bucket=self._bucket,
            key=self._prefix + key,
            body=json.dumps(data, ensure_ascii=False).encode(),
            content_type="application/json",
            forbid_overwrite=True if create_only else None,
        )
        try:
            self._client.put_object(request)
        except oss.exceptions.BaseError as exc:
            # 409 FileAlreadyExists: the object is there already, or another run holds it.
            cause = _cause(exc)
            exists = isinstance(cause, oss.exceptions.ServiceError) and cause.status_code == 409
            if create_only and exists:
                return False
            raise self._fail(what, exc) from exc
        return True

    def _delete(self, key: str, what: str) -> None:
        import alibabacloud_oss_v2 as oss

        request = oss.DeleteObjectRequest(bucket=self._bucket, key=self._prefix + key)
        try:
            self._client.delete_object(request)
        except oss.exceptions.BaseError as exc:
            raise self._fail(what, exc) from exc

    def _list(self, folder: str, what: str) -> list[tuple[str, float]]:
        """(name under ``folder``, last modified) of every object there."""
        import alibabacloud_oss_v2 as oss

        start = self._prefix + folder
        request = oss.ListObjectsV2Request(bucket=self._bucket, prefix=start)
        try:
            return [
                (info.key[len(start) :], info.last_modified.timestamp())
                for page in self._client.list_objects_v2_paginator().iter_page(request)
                for info in page.contents or ()
            ]
        except oss.exceptions.BaseError as exc:
            raise self._fail(what, exc) from exc

    # --- records -----------------------------------------------------------

    def get_target(self, target: Target) -> TargetRecord | None:
        text = self._get(_record_key(target), f"read the record of {target}")
        return read_record(text, target, self._where) if text is not None else None

    def observe(
        self, target: Target, decide: Decide, channels: Channels, now: datetime
    ) -> list[Announcement]:
        key = _record_key(target)
        previous = self.get_target(target)
        record, announcements = decide(previous)

        # Outbox before record: a run that dies in between leaves the record as it
        # was, so the next run sees the change again and enqueues the same keys,
        # which already exist.
        # NOTE: OSS has no compare-and-set on the record itself. Two runs that read
        # the record at once both write it; the later write wins, and if it is the
        # staler answer the change is seen again next tick and finds its outbox
        # entries already there, so nothing is sent twice.
        for announcement in announcements:
            for channel in channels_of(channels, announcement):
                item = OutboxItem(announcement, channel, 0, now)
                ident = _ident(item)
                self._put(f"pending/{ident}", {"v": FORMAT_VERSION}, f"enqueue {item.key}")
                self._put(
                    f"outbox/{ident}.json",
                    _item_to_dict(item, "pending"),
                    f"enqueue {item.key}",
                    create_only=True,
                )
        if record != previous:
            self._put(key, record_to_dict(record), f"record {target}")
        return announcements

    # --- outbox ------------------------------------------------------------

    def pending(self) -> PendingScan:
        scan = PendingScan()
        now = datetime.now(timezone.utc).timestamp()
        for ident, modified in self._list("pending/", "list pending messages"):
            loaded = self._load_item(ident)
            if loaded is None:
                # A marker whose entry was never written (the run died in between):
                # the change is seen again and re-enqueued; an old one is litter.
                if now - modified > DEFAULT_MAX_AGE.total_seconds():
                    self._delete(f"pending/{ident}", "remove a stale marker")
                continue
            if isinstance(loaded, str):
                scan.unreadable.append(loaded)
                continue
            item, state = loaded
            if state != "pending":
                self._delete(f"pending/{ident}", f"clear the marker of {item.key}")
                continue
            scan.items.append(item)
        scan.items.sort(key=lambda item: item.created_at)
        return scan

    def _load_item(self, ident: str) -> tuple[OutboxItem, str] | str | None:
        """The entry and its state; a description when unreadable; None when absent."""
        text = self._get(f"outbox/{ident}.json", f"read outbox entry {ident}")
        if text is None:
            return None
        try:
            return _item_from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            return f"outbox entry {ident}: {exc}"

    def claim(self, item: OutboxItem, owner: str, now: datetime, lease: timedelta) -> Claim | None:
        ident = _ident(item)
        expires_at = now + lease
        generation = item.generation
        for _ in range(_MAX_TAKEOVERS):
            lease_doc = {"v": FORMAT_VERSION, "owner": owner, "expires_at": iso(expires_at)}
            name = f"claims/{ident}.{generation}"
            if self._put(name, lease_doc, f"claim {item.key}", create_only=True):
                break
            held = self._get(name, f"read the claim on {item.key}")
            holder = _lease_of(held)
            if holder is not None and holder[0] == owner:
                break  # our own create, retried by the SDK after a lost answer
            if holder is not None and holder[1] > now:
                return None  # another run is sending it
            generation += 1  # gone, unreadable, or its lease ran out: take over
        else:
            logger.warning("gave up claiming %s after %d expired claims", item.key, _MAX_TAKEOVERS)
            return None

        # The entry may have been settled since it was listed (and its claim
        # removed, which is how this create could succeed): read it again.
        loaded = self._load_item(ident)
        if not isinstance(loaded, tuple) or loaded[1] != "pending":
            self._delete(f"claims/{ident}.{generation}", f"release the claim on {item.key}")
            return None
        fresh = loaded[0]
        retry_later = fresh.next_attempt_at is not None and fresh.next_attempt_at > now
        if fresh.generation > generation or retry_later:
            self._delete(f"claims/{ident}.{generation}", f"release the claim on {item.key}")
            return None
        return Claim(fresh, owner, expires_at, generation)

    def mark_sent(self, claim: Claim, now: datetime) -> bool:
        return self._settle(claim, "sent", None, None)

    def mark_retry(self, claim: Claim, error: str, retry_at: datetime, now: datetime) -> bool:
        return self._settle(claim, "pending", error, retry_at)

    def mark_given_up(self, claim: Claim, state: str, error: str, now: datetime) -> bool:
        return self._settle(claim, state, error, None)

    def _settle(
        self, claim: Claim, state: str, error: str | None, retry_at: datetime | None
    ) -> bool:
        item = claim.item
        ident = _ident(item)
        loaded = self._load_item(ident)
        still_ours = (
            isinstance(loaded, tuple)
            and loaded[1] == "pending"
            and loaded[0].generation <= claim.generation
        )
        settled = OutboxItem(
            item.announcement,
            item.channel,
            item.attempts + 1,
            item.created_at,
            retry_at,
            error[:1000] if error else None,
            claim.generation + 1,
        )
        if still_ours:
            self._put(f"outbox/{ident}.json", _item_to_dict(settled, state), f"settle {item.key}")
        # Claims of this and any generations taken over are spent; once the entry
        # names a later generation, a run that recreates one re-reads and backs off.
        for generation in range(item.generation, claim.generation + 1):
            self._delete(f"claims/{ident}.{generation}", f"remove the claim on {item.key}")
        if state != "pending" and still_ours:
            self._delete(f"pending/{ident}", f"clear the marker of {item.key}")
        return still_ours

    # --- channel holds -----------------------------------------------------

    def hold_channel(self, channel: str, until: datetime) -> None:
        # NOTE: read then write, no compare-and-set: of two runs holding at once the
        # later write wins, and either hold is one the channel asked for.
        key = f"holds/{_channel_ident(channel)}.json"
        earlier = _hold_of(self._get(key, f"read the hold on {channel}"))
        if earlier is not None and earlier[1] >= until:
            return
        data = {"v": FORMAT_VERSION, "channel": channel, "until": iso(until)}
        self._put(key, data, f"hold {channel}")

    def channel_holds(self) -> dict[str, datetime]:
        holds: dict[str, datetime] = {}
        for name, _ in self._list("holds/", "list the channel holds"):
            hold = _hold_of(self._get(f"holds/{name}", "read a channel hold"))
            if hold is None:
                logger.warning("%s: the channel hold holds/%s is unreadable; ignored", self, name)
                continue
            holds[hold[0]] = hold[1]
        return holds


def _channel_ident(channel: str) -> str:
    return hashlib.sha256(channel.encode()).hexdigest()[:40]


def _hold_of(text: bytes | None) -> tuple[str, datetime] | None:
    """(channel, hold-until) of a hold object; None when gone or unreadable."""
    return _named_time(text, "the channel hold", "channel", "until")


def _cause(exc: BaseException) -> BaseException:
    """The error inside the SDK's ``OperationError`` and ``CredentialsFetchError`` wrappers."""
    from alibabacloud_oss_v2 import exceptions

    while isinstance(exc, (exceptions.OperationError, exceptions.CredentialsFetchError)):
        inner = exc.kwargs.get("error")
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return exc


def _record_key(target: Target) -> str:
    return f"targets/{target.cluster_id}/{target.component}.json"


def _ident(item: OutboxItem) -> str:
    """An object-name-safe id for one announcement and channel."""
    return hashlib.sha256(item.key.encode()).hexdigest()[:40]


def _item_to_dict(item: OutboxItem, state: str) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "announcement": announcement_to_dict(item.announcement),
        "channel": item.channel,
        "state": state,
        "attempts": item.attempts,
        "created_at": iso(item.created_at),
        "next_attempt_at": iso(item.next_attempt_at),
        "last_error": item.last_error,
        "generation": item.generation,
    }


def _item_from_dict(data: Any) -> tuple[OutboxItem, str]:
    data = check_version(data, "the outbox entry")
    created_at = from_iso(data["created_at"])
    if created_at is None:
        raise ValueError("the outbox entry has no creation time")
    item = OutboxItem(
        announcement_from_dict(data["announcement"]),
        str(data["channel"]),
        int(data["attempts"]),
        created_at,
        from_iso(data["next_attempt_at"]),
        data["last_error"],
        int(data["generation"]),
    )
    return item, str(data["state"])


def _lease_of(text: bytes | None) -> tuple[str, datetime] | None:
    """(owner, expiry) of a claim object; None when gone or unreadable."""
    return _named_time(text, "the claim", "owner", "expires_at")


def _named_time(
    text: bytes | None, what: str, name: str, moment: str
) -> tuple[str, datetime] | None:
    """(``name``, ``moment``) of a small versioned document; None when gone or unreadable."""
    if text is None:
        return None
    try:
        data = check_version(json.loads(text), what)
        when = from_iso(data[moment])
        return (str(data[name]), when) if when is not None else None
    except (ValueError, KeyError, TypeError):
        return None
