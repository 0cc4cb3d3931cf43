"""An OSS bucket in memory, served through ``responses`` to the real OSS SDK client.

It answers PutObject (honouring ``x-oss-forbid-overwrite: true`` with 409
``FileAlreadyExists``), GetObject, DeleteObject and ListObjectsV2 for one
bucket, addressed virtual-host style, on a host name that cannot resolve
(``*.invalid``); ``responses`` refuses every other URL, so nothing leaves the
process. Like OSS it dates every answer and gives the CRC-64 of what it stores,
which the SDK checks against what it sent.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

import requests
import responses

HOST = "oss-cn-hangzhou.fake.invalid"
ENDPOINT = f"http://{HOST}"
REGION = "cn-hangzhou"
# The function's settings that point the OSS store at the fake.
SETTINGS = {"ACK_REGION": REGION, "OSS_ENDPOINT": ENDPOINT}
# A fault that drops the connection instead of answering.
DROP = 0


@dataclass
class FakeOss:
    """One bucket; ``faults`` answer the next requests with an error (or ``DROP`` them)."""

    bucket: str = "watch-state"
    objects: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    delay: float = 0.0
    # The headers of every request, names in lower case, in order.
    headers: list[dict[str, str]] = field(default_factory=list)
    # Stores what PUTs send but answers with the CRC-64 of other bytes (damaged in transit).
    damage_uploads: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def install(self, rsps: responses.RequestsMock) -> None:
        pattern = re.compile(rf"^http://{re.escape(self.bucket)}\.{re.escape(HOST)}/.*")
        for method in ("GET", "PUT", "DELETE", "HEAD"):
            rsps.add_callback(method, pattern, callback=self._serve)

    def location(self, prefix: str) -> str:
        """``STATE_STORE`` for ``prefix`` in this bucket."""
        return f"oss://{self.bucket}/{prefix}"

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
            self.headers.append(headers)
        common = {"x-oss-request-id": uuid.uuid4().hex.upper(), "Date": formatdate(usegmt=True)}
        return status, {**common, **answer_headers}, body

    def _answer(
        self, method: str, key: str, query: dict[str, str], headers: dict[str, str], request: Any
    ) -> tuple[int, dict[str, str], bytes]:
        if not headers.get("authorization", "").startswith("OSS4-HMAC-SHA256 Credential="):
            return _error(403, "AccessDenied", "the request is not signed with V4")
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault == DROP:
            raise requests.ConnectionError("connection reset by the fake bucket")
        if fault is not None:
            return _error(fault, "InternalError", "injected fault")
        if method == "GET" and not key:
            return self._list(query)
        if method == "PUT":
            body = _body(request.body)
            with self._lock:
                if headers.get("x-oss-forbid-overwrite") == "true" and key in self.objects:
                    return _error(
                        409,
                        "FileAlreadyExists",
                        "The object you specified already exists and can not be overwritten.",
                    )
                self.objects[key] = (body, time.time())
            stored = body + b"!" if self.damage_uploads else body
            return 200, {"ETag": f'"{uuid.uuid4().hex}"', **_crc_header(stored)}, b""
        if method == "DELETE":
            with self._lock:
                self.objects.pop(key, None)
            return 204, {}, b""
        with self._lock:
            found = self.objects.get(key)
        if found is None:
            return _error(404, "NoSuchKey", "The specified key does not exist.")
        answer = {"Content-Type": "application/json", "ETag": '"0"', **_crc_header(found[0])}
        return 200, answer, found[0]

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


@contextmanager
def serving(*passthru: str) -> Iterator[FakeOss]:
    """A new bucket served by ``responses``; of other URLs only ``passthru`` (loopback) pass."""
    fake = FakeOss()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.install(rsps)
        for url in passthru:
            rsps.add_passthru(url)
        yield fake


def _body(sent: Any) -> bytes:
    """The bytes of a request body: bytes, text, a file, or chunks streamed from a generator."""
    if sent is None:
        return b""
    if hasattr(sent, "read"):
        sent = sent.read()
    if isinstance(sent, str):
        return sent.encode()
    if isinstance(sent, (bytes, bytearray)):
        return bytes(sent)
    return b"".join(chunk.encode() if isinstance(chunk, str) else chunk for chunk in sent)


def _crc64_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xC96C5795D7870F42 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC64_TABLE = _crc64_table()


def crc64(data: bytes) -> int:
    """CRC-64/XZ (ECMA-182 polynomial, reflected), as OSS sends in ``x-oss-hash-crc64ecma``."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = _CRC64_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def _crc_header(body: bytes) -> dict[str, str]:
    return {"x-oss-hash-crc64ecma": str(crc64(body))}


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><Error>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{uuid.uuid4().hex.upper()}</RequestId><HostId>{HOST}</HostId></Error>"
    )
    return status, {"Content-Type": "application/xml"}, xml.encode()
