"""A local ACK (CS) OpenAPI for tests and the demo.

It serves the documented upgrade-status shapes, single and batch, cluster
discovery (``DescribeClustersV1``, paged) and addon listing
(``ListClusterAddonInstances``), and refuses any request whose ACS3-HMAC-SHA256
signature does not verify. Verification uses the official signer from
``alibabacloud-tea-openapi``, so the project's own signer is checked against an
independent implementation on every call.

Tests script trouble: latency on every call, scripted answers for the next
request (to any path, or to one cluster's), throttling of the next requests or
of every request beyond a number in flight.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest

from tests.fakes.loopback import LoopbackServer, Request

ZERO_TIME = "0001-01-01T00:00:00Z"
_SINGLE = re.compile(r"^/clusters/([^/]+)/components/([^/]+)/upgradestatus$")
_BATCH = re.compile(r"^/clusters/([^/]+)/components/upgradestatus$")
_ADDON_INSTANCES = re.compile(r"^/clusters/([^/]+)/addon_instances$")
_CLUSTERS = "/api/v1/clusters"
THROTTLED = (
    "Throttling.User",
    "Request was denied due to user flow control.",
)
_AUTH = re.compile(
    r"^ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]{64})$"
)
_REQUIRED_SIGNED = {
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
}


@dataclass
class Call:
    """One request the simulator accepted or refused."""

    action: str
    path: str
    query: dict[str, str]
    status: int
    security_token: str | None


@dataclass
class Addon:
    """The simulated state of one addon in one cluster."""

    version: str = "v1.0.0"
    ready_to_upgrade: bool = False
    task: dict[str, Any] | None = None


@dataclass
class Fault:
    """A scripted answer for the next request whose path contains ``path`` (any when None)."""

    status: int
    headers: dict[str, str]
    body: bytes
    path: str | None = None


@dataclass
class AckSimulator(LoopbackServer):
    """Clusters and addons whose upgrade tasks a test moves along.

    ``latency`` is slept at the start of every request; with ``max_in_flight``
    set, a request that arrives while that many are being answered is refused
    with ``Throttling.User`` (and ``x-acs-retry-after`` when
    ``throttle_retry_after_ms`` is set).
    """

    access_key_id: str = "sim-access-key-id"
    access_key_secret: str = "sim-access-key-secret"
    security_token: str | None = None
    latency: float = 0.0
    max_in_flight: int | None = None
    throttle_retry_after_ms: int | None = None
    region: str = "cn-hangzhou"
    max_page_size: int = 100
    clusters: dict[str, dict[str, Addon]] = field(default_factory=dict)
    cluster_info: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._nonces: set[str] = set()
        self._in_flight = 0
        self.peak_in_flight = 0

    @property
    def endpoint(self) -> str:
        return self.base_url

    # --- scripting -------------------------------------------------------

    def add_cluster(
        self, cluster_id: str, *, region: str | None = None, state: str = "running"
    ) -> dict[str, Addon]:
        """A cluster (with no addons yet) that discovery lists."""
        self.cluster_info[cluster_id] = {
            "cluster_id": cluster_id,
            "name": f"cluster-{cluster_id[:8]}",
            "region_id": region or self.region,
            "state": state,
            "cluster_type": "ManagedKubernetes",
            "current_version": "1.31.1-aliyun.1",
        }
        return self.clusters.setdefault(cluster_id, {})

    def remove_cluster(self, cluster_id: str) -> None:
        """The cluster is deleted: every call about it answers ErrorClusterNotFound."""
        self.clusters.pop(cluster_id, None)
        self.cluster_info.pop(cluster_id, None)

    def add_addon(self, cluster_id: str, component: str, version: str = "v1.0.0") -> Addon:
        if cluster_id not in self.cluster_info:
            self.add_cluster(cluster_id)
        addon = Addon(version=version)
        self.clusters[cluster_id][component] = addon
        return addon

    def populate(self, clusters: int, addons: int, prefix: str = "c") -> list[str]:
        """``clusters`` clusters of ``addons`` addons each; their ids, in order."""
        ids = [f"{prefix}{index:031x}" for index in range(clusters)]
        for cluster_id in ids:
            for number in range(addons):
                self.add_addon(cluster_id, f"addon-{number:02d}")
        return ids

    def calls_to(self, action: str) -> list[Call]:
        """The calls of one API action, in arrival order."""
        with self._lock:
            return [call for call in self.calls if call.action == action]

    def start_task(
        self, cluster_id: str, component: str, created_at: str, status: str = "Running"
    ) -> None:
        addon = self.clusters[cluster_id][component]
        addon.task = {
            "status": status,
            "created_at": created_at,
            "finished_at": ZERO_TIME,
            "is_canceled": False,
        }

    def finish_task(
        self,
        cluster_id: str,
        component: str,
        status: str,
        finished_at: str,
        *,
        version: str | None = None,
        is_canceled: bool = False,
    ) -> None:
        addon = self.clusters[cluster_id][component]
        assert addon.task is not None, "start_task first"
        addon.task.update(status=status, finished_at=finished_at, is_canceled=is_canceled)
        if version is not None:
            addon.version = version

    def fail_next(
        self,
        status: int,
        body: str | dict[str, Any],
        content_type: str = "application/json",
        *,
        path: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next request (whose path contains ``path``) with this instead."""
        payload = json.dumps(body) if isinstance(body, dict) else body
        with self._lock:
            self.faults.append(
                Fault(
                    status,
                    {"Content-Type": content_type, **(headers or {})},
                    payload.encode(),
                    path,
                )
            )

    def throttle_next(
        self,
        count: int = 1,
        *,
        path: str | None = None,
        retry_after_ms: int | None = None,
        status: int = 400,
    ) -> None:
        """Refuse the next ``count`` requests (to ``path``) as throttled."""
        for _ in range(count):
            headers = {"x-acs-request-id": str(uuid.uuid4()).upper()}
            if retry_after_ms is not None:
                headers["x-acs-retry-after"] = str(retry_after_ms)
            code, message = THROTTLED
            body = {"code": code, "message": message, "requestId": headers["x-acs-request-id"]}
            self.fail_next(status, body, path=path, headers=headers)

    # --- serving ---------------------------------------------------------

    def respond(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self._in_flight += 1
            crowded = self.max_in_flight is not None and self._in_flight > self.max_in_flight
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            return self._answer(request, crowded)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, request: Request, crowded: bool) -> tuple[int, dict[str, str], bytes]:
        action = request.headers.get("x-acs-action", "")
        refusal = self._verify(request)
        if refusal is not None:
            status, code, message = refusal
            return self._record(request, action, status, self._error(status, code, message))
        if crowded:
            answer = self._error(400, *THROTTLED)
            if self.throttle_retry_after_ms is not None:
                answer[1]["x-acs-retry-after"] = str(self.throttle_retry_after_ms)
            return self._record(request, action, 400, answer)
        with self._lock:
            fault = next(
                (f for f in self.faults if f.path is None or f.path in request.raw_path), None
            )
            if fault is not None:
                self.faults.remove(fault)
        if fault is not None:
            return self._record(
                request, action, fault.status, (fault.status, fault.headers, fault.body)
            )

        if request.raw_path == _CLUSTERS and action == "DescribeClustersV1":
            return self._record(request, action, 200, self._json(self._clusters_page(request)))
        single = _SINGLE.match(request.raw_path)
        batch = _BATCH.match(request.raw_path)
        listing = _ADDON_INSTANCES.match(request.raw_path)
        if single and action == "DescribeClusterAddonUpgradeStatus":
            cluster_id, component = single.groups()
            components = [component]
        elif batch and action == "DescribeClusterAddonsUpgradeStatus":
            cluster_id = batch.group(1)
            try:
                components = json.loads(request.query.get("componentIds", "[]"))
            except ValueError:
                return self._record(
                    request,
                    action,
                    400,
                    self._error(400, "InvalidParameter", "componentIds is not a JSON array"),
                )
        elif listing and action == "ListClusterAddonInstances":
            cluster_id, components = listing.group(1), []
        else:
            return self._record(
                request,
                action,
                404,
                self._error(404, "InvalidAction.NotFound", f"no route {request.raw_path}"),
            )

        addons = self.clusters.get(cluster_id)
        if addons is None:
            return self._record(
                request,
                action,
                404,
                self._error(404, "ErrorClusterNotFound", f"cluster {cluster_id} not found"),
            )
        if listing:
            body: dict[str, Any] = {
                "addons": [
                    {"name": name, "version": addon.version, "state": "active"}
                    for name, addon in addons.items()
                ]
            }
        else:
            body = {name: self._entry(name, addons[name]) for name in components if name in addons}
        return self._record(request, action, 200, self._json(body))

    def _clusters_page(self, request: Request) -> dict[str, Any]:
        region = request.query.get("region_id")
        number = int(request.query.get("page_number") or 1)
        size = min(int(request.query.get("page_size") or 10), self.max_page_size)
        listed = [
            info for info in self.cluster_info.values() if not region or info["region_id"] == region
        ]
        return {
            "clusters": listed[(number - 1) * size : number * size],
            "page_info": {"page_number": number, "page_size": size, "total_count": len(listed)},
        }

    @staticmethod
    def _json(body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        request_id = str(uuid.uuid4()).upper()
        return (
            200,
            {"Content-Type": "application/json", "x-acs-request-id": request_id},
            json.dumps(body).encode(),
        )

    def _entry(self, name: str, addon: Addon) -> dict[str, Any]:
        return {
            "addon_info": {
                "component_name": name,
                "version": addon.version,
                "ready_to_upgrade": str(addon.ready_to_upgrade).lower(),
            },
            "tasks": dict(addon.task)
            if addon.task
            else {
                "status": "",
                "created_at": ZERO_TIME,
                "finished_at": ZERO_TIME,
                "is_canceled": False,
            },
        }

    def _record(
        self, request: Request, action: str, status: int, answer: tuple[int, dict[str, str], bytes]
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.calls.append(
                Call(
                    action,
                    request.raw_path,
                    request.query,
                    status,
                    request.headers.get("x-acs-security-token"),
                )
            )
        return answer

    @staticmethod
    def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
        request_id = str(uuid.uuid4()).upper()
        body = {"code": code, "message": message, "requestId": request_id}
        return (
            status,
            {"Content-Type": "application/json", "x-acs-request-id": request_id},
            json.dumps(body).encode(),
        )

    def _verify(self, request: Request) -> tuple[int, str, str] | None:
        """None when the request is signed right, else (status, code, message)."""
        match = _AUTH.match(request.headers.get("authorization", ""))
        if match is None:
            return 400, "MissingAuthorization", "Authorization header missing or malformed"
        key_id, signed_names, signature = match.groups()
        names = signed_names.split(";")
        if key_id != self.access_key_id:
            return 404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
        if not _REQUIRED_SIGNED <= set(names) or names != sorted(names):
            return (
                400,
                "IncompleteSignature",
                f"signed headers {signed_names} lack a required header",
            )
        if (
            self.security_token
            and request.headers.get("x-acs-security-token") != self.security_token
        ):
            return 400, "InvalidSecurityToken.Mismatch", "security token mismatch"
        if hashlib.sha256(request.body).hexdigest() != request.headers.get("x-acs-content-sha256"):
            return 400, "ContentSHA256Mismatch", "x-acs-content-sha256 does not match the body"
        sent = datetime.strptime(request.headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc
        )
        if abs((datetime.now(timezone.utc) - sent).total_seconds()) > 900:
            return 400, "InvalidTimeStamp.Expired", "x-acs-date is more than 15 minutes off"
        nonce = request.headers["x-acs-signature-nonce"]
        with self._lock:
            if nonce in self._nonces:
                return 400, "SignatureNonceUsed", "the signature nonce was used before"
            self._nonces.add(nonce)

        official = DaraRequest()
        official.method = request.method
        official.pathname = request.raw_path
        official.query = request.query
        official.headers = {name: request.headers.get(name, "") for name in names}
        expected = Utils.get_authorization(
            official,
            "ACS3-HMAC-SHA256",
            request.headers["x-acs-content-sha256"],
            key_id,
            self.access_key_secret,
        )
        if not expected.endswith(f"Signature={signature}"):
            return (
                400,
                "SignatureDoesNotMatch",
                "The request signature does not conform to Aliyun standards.",
            )
        return None
