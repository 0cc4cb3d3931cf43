"""ACS3-HMAC-SHA256, the V3 request signature of Alibaba Cloud OpenAPI."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(text: str) -> str:
    """RFC 3986 encoding: everything but unreserved characters is escaped."""
    return quote(text, safe="-_.~")


def canonical_uri(path: str) -> str:
    """The path with each segment percent-encoded, slashes kept."""
    return "/".join(percent_encode(segment) for segment in (path or "/").split("/"))


def canonical_query(query: Mapping[str, str]) -> str:
    """Parameters sorted by name, names and values encoded, ``k=v`` joined by ``&``."""
    pairs = sorted((percent_encode(k), percent_encode(v or "")) for k, v in query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def _signed(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers that take part in the signature, by lower-case name."""
    chosen = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in ("host", "content-type") or lower.startswith("x-acs-"):
            chosen[lower] = value.strip()
    return dict(sorted(chosen.items()))


def canonical_request(
    method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body_sha256: str
) -> tuple[str, str]:
    """The canonical request and the ``;``-joined list of signed header names."""
    signed = _signed(headers)
    lines = "".join(f"{name}:{value}\n" for name, value in signed.items())
    names = ";".join(signed)
    request = "\n".join(
        [method.upper(), canonical_uri(path), canonical_query(query), lines, names, body_sha256]
    )
    return request, names


def authorization(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    access_key_id: str,
    access_key_secret: str,
) -> str:
    """The ``Authorization`` header value for a request whose other headers are final."""
    body_sha256 = headers.get("x-acs-content-sha256", EMPTY_BODY_SHA256)
    request, names = canonical_request(method, path, query, headers, body_sha256)
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(request.encode()).hexdigest()}"
    signature = hmac.new(
        access_key_secret.encode(), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={names},Signature={signature}"


def signed_headers(
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    *,
    action: str,
    version: str,
    access_key_id: str,
    access_key_secret: str,
    security_token: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    now: datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Every header a signed request sends, ``Authorization`` included."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    if content_type:
        headers["content-type"] = content_type
    if security_token:
        headers["x-acs-security-token"] = security_token
    headers["Authorization"] = authorization(
        method, path, query, headers, access_key_id, access_key_secret
    )
    return headers
