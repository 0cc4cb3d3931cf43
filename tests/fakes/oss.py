"""An OSS bucket in memory, served through ``responses`` to the real ``oss2`` client.

It answers PutObject (honouring ``x-oss-forbid-overwrite: true`` with 409
``FileAlreadyExists``), GetObject, DeleteObject and ListObjectsV2 for one
bucket on a host name that cannot resolve (``*.invalid``); ``responses``
refuses every other URL, so nothing leaves the process.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

import responses

HOST = "oss-cn-hangzhou.fake.invalid"
ENDPOINT = f"http://{HOST}"
REGION = "cn-hangzhou"


@dataclass
class FakeOss:
    """One bucket; ``faults`` answer the next requests with an error instead."""

    bucket: str = "watch-state"
    objects: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    delay: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def install(self, rsps: responses.RequestsMock) -> None:
        pattern = re.compile(rf"^http://{re.escape(self.bucket)}\.{re.escape(HOST)}/.*")
        for method in ("GET", "PUT", "DELETE", "HEAD"):
            rsps.add_callback(method, pattern, callback=self._serve)

    def keys(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(k for k in self.objects if k.startswith(prefix))

    def text(self, key: str) -> str:
        with self._lock:
            return self.objects[key][0].decode()

    def put_raw(self, key: str, body: bytes) -> None:
        with self._lock:
            self.objects[key] = (body, time.time())

    # --- serving -----------------------------------------------------------

    def _serve(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        if self.delay:
            time.sleep(self.delay)
        parts = urlsplit(request.url)
        key = unquote(parts.path.lstrip("/"))
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, answer_headers, body = self._answer(request.method, key, query, headers, request)
        with self._lock:
            self.requests.append((request.method, key, status))
        return status, {"x-oss-request-id": uuid.uuid4().hex.upper(), **answer_headers}, body

    def _answer(
        self, method: str, key: str, query: dict[str, str], headers: dict[str, str], request: Any
    ) -> tuple[int, dict[str, str], bytes]:
        if not headers.get("authorization", "").startswith("OSS4-HMAC-SHA256 Credential="):
            return _error(403, "AccessDenied", "the request is not signed with V4")
        with self._lock:
            if self.faults:
                return _error(self.faults.pop(0), "InternalError", "injected fault")
        if method == "GET" and not key:
            return self._list(query)
        if method == "PUT":
            body = request.body or b""
            if hasattr(body, "read"):
                body = body.read()
            body = body.encode() if isinstance(body, str) else bytes(body)
            with self._lock:
                if headers.get("x-oss-forbid-overwrite") == "true" and key in self.objects:
                    return _error(
                        409,
                        "FileAlreadyExists",
                        "The object you specified already exists and can not be overwritten.",
                    )
                self.objects[key] = (body, time.time())
            return 200, {"ETag": f'"{uuid.uuid4().hex}"'}, b""
        if method == "DELETE":
            with self._lock:
                self.objects.pop(key, None)
            return 204, {}, b""
        with self._lock:
            found = self.objects.get(key)
        if found is None:
            return _error(404, "NoSuchKey", "The specified key does not exist.")
        return 200, {"Content-Type": "application/json", "ETag": '"0"'}, found[0]

    def _list(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        prefix = query.get("prefix", "")
        after = query.get("continuation-token", "")
        limit = int(query.get("max-keys", "100"))
        with self._lock:
            names = sorted(k for k in self.objects if k.startswith(prefix) and k > after)
            page = [(k, self.objects[k]) for k in names[:limit]]
        truncated = len(names) > limit
        contents = "".join(
            f"<Contents><Key>{quote(k)}</Key>"
            f'<LastModified>{_iso(modified)}</LastModified><ETag>"0"</ETag>'
            f"<Type>Normal</Type><Size>{len(body)}</Size>"
            f"<StorageClass>Standard</StorageClass></Contents>"
            for k, (body, modified) in page
        )
        token = (
            f"<NextContinuationToken>{quote(page[-1][0])}</NextContinuationToken>"
            if truncated
            else ""
        )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
            f"<Name>{self.bucket}</Name><Prefix>{quote(prefix)}</Prefix>"
            f"<MaxKeys>{limit}</MaxKeys><EncodingType>url</EncodingType>"
            f"<IsTruncated>{str(truncated).lower()}</IsTruncated>"
            f"{token}<KeyCount>{len(page)}</KeyCount>{contents}"
            "</ListBucketResult>"
        )
        return 200, {"Content-Type": "application/xml"}, xml.encode()


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><Error>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{uuid.uuid4().hex.upper()}</RequestId><HostId>{HOST}</HostId></Error>"
    )
    return status, {"Content-Type": "application/xml"}, xml.encode()
