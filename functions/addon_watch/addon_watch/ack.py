"""A small client for the ACK (CS) OpenAPI upgrade-status call, signed with V3."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from .credentials import Credentials
from .errors import AckApiError
from .model import AddonStatus, Target, Task
from .redaction import REDACTOR
from .signer import canonical_query, signed_headers

logger = logging.getLogger(__name__)

API_VERSION = "2015-12-15"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
ZERO_TIME_PREFIX = "0001-01-01"
_FRACTION = re.compile(r"(\.\d{6})\d+")
_SNIPPET = 200


def parse_time(value: object) -> datetime | None:
    """An API timestamp as an aware datetime; None for empty, zero or unreadable values."""
    if not isinstance(value, str) or not value.strip() or value.startswith(ZERO_TIME_PREFIX):
        return None
    text = _FRACTION.sub(r"\1", value.strip().replace("Z", "+00:00").replace(" ", "T", 1))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        logger.warning("unreadable timestamp %r in an ACK answer; treated as not set", value[:64])
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def parse_upgrade_status(target: Target, body: object) -> AddonStatus:
    """Read one component's entry from a (single or batch) upgrade-status answer."""
    if not isinstance(body, dict):
        raise AckApiError(
            f"upgrade status of {target}: expected a JSON object, got {type(body).__name__}"
        )
    entry = body.get(target.component)
    if entry is None and ("tasks" in body or "addon_info" in body):
        # Some gateways answer with the entry itself rather than keyed by name.
        entry = body
    if not isinstance(entry, dict):
        keys = ", ".join(sorted(str(k) for k in body)[:10]) or "none"
        raise AckApiError(
            f"upgrade status of {target}: the answer has no entry for {target.component!r} "
            f"(keys: {keys}); check that the addon is installed in the cluster"
        )

    raw_info = entry.get("addon_info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    tasks = entry.get("tasks")
    task = None
    if isinstance(tasks, dict) and (tasks.get("status") or tasks.get("is_canceled")):
        created_raw = _as_text(tasks.get("created_at"))
        task = Task(
            task_id="" if created_raw.startswith(ZERO_TIME_PREFIX) else created_raw,
            status=_as_text(tasks.get("status")),
            created_at=parse_time(created_raw),
            finished_at=parse_time(tasks.get("finished_at")),
            is_canceled=_as_bool(tasks.get("is_canceled")),
        )
    elif tasks is not None and not isinstance(tasks, dict):
        raise AckApiError(
            f"upgrade status of {target}: 'tasks' is a {type(tasks).__name__}, expected an object"
        )
    return AddonStatus(
        target=target,
        version=_as_text(info.get("version")),
        ready_to_upgrade=_as_bool(info.get("ready_to_upgrade")),
        task=task,
    )


class AckClient:
    """Calls the CS OpenAPI with V3 signatures over one ``requests`` session."""

    def __init__(
        self,
        endpoint: str,
        credentials: Callable[[], Credentials],
        session: requests.Session | None = None,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        parts = urlsplit(self._endpoint)
        self._host = parts.netloc
        self._base_path = parts.path
        self._credentials = credentials
        self._session = session or requests.Session()

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

    def _get(self, action: str, path: str, query: Mapping[str, str], *, what: str) -> Any:
        creds = self._credentials()
        full_path = self._base_path + path
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
        # The query is sent exactly as it was signed, not re-encoded by requests.
        url = f"{self._endpoint}{path}" + (f"?{canonical_query(query)}" if query else "")
        logger.debug("GET %s%s", self._host, full_path)
        try:
            response = self._session.get(
                url, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
            )
        except requests.RequestException as exc:
            raise AckApiError(
                f"{what}: {action} could not reach {self._host} ({type(exc).__name__}); "
                "check ACK_REGION / ACK_ENDPOINT and the network"
            ) from None
        return self._read(response, action, what)

    def _read(self, response: requests.Response, action: str, what: str) -> Any:
        request_id = response.headers.get("x-acs-request-id")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            fields: dict[str, Any] = body if isinstance(body, dict) else {}
            code = _as_text(fields.get("code") or fields.get("Code")) or None
            message = REDACTOR.scrub(_as_text(fields.get("message") or fields.get("Message")))
            message = message[:_SNIPPET]
            request_id = _as_text(fields.get("requestId") or fields.get("RequestId")) or request_id
            detail = f"{code}: {message}" if code else _snippet(response.text)
            raise AckApiError(
                f"{what}: {action} answered HTTP {response.status_code} {detail}"
                f" (request id {request_id or 'none'})",
                code=code,
                http_status=response.status_code,
                request_id=request_id,
            )
        if body is None:
            raise AckApiError(
                f"{what}: {action} answered HTTP {response.status_code} "
                f"with a body that is not JSON: "
                f"{_snippet(response.text)}",
                http_status=response.status_code,
                request_id=request_id,
            )
        return body


def _snippet(text: str) -> str:
    # Scrubbed before it is cut: a secret cut in half would no longer be recognised.
    flat = REDACTOR.scrub(" ".join(text.split()))
    return json.dumps(flat[:_SNIPPET] + ("…" if len(flat) > _SNIPPET else ""), ensure_ascii=False)
