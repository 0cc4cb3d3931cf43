"""The V3 signer against the documented vector and the official signer."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest
from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest

from addon_watch import signer

EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_signer_official_vector_reproduces() -> None:
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-version": "2014-05-26",
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
        "x-acs-content-sha256": EMPTY,
    }
    query = {
        "ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
        "RegionId": "cn-shanghai",
    }

    request, _ = signer.canonical_request("POST", "/", query, headers, EMPTY)
    value = signer.authorization(
        "POST", "/", query, headers, "YourAccessKeyId", "YourAccessKeySecret"
    )

    assert hashlib.sha256(request.encode()).hexdigest() == (
        "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    assert value == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,"
        "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;"
        "x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )


CASES = [
    pytest.param(
        "GET", "/clusters/c123/components/metrics-server/upgradestatus", {}, None, b"", id="single"
    ),
    pytest.param(
        "GET",
        "/clusters/c123/components/upgradestatus",
        {"componentIds": '["metrics-server","nginx-ingress-controller"]'},
        None,
        b"",
        id="json-array-query",
    ),
    pytest.param(
        "GET",
        "/clusters/c123/components/flexvolume/upgradestatus",
        {},
        "CAIS+sts/token==with~odd*chars",
        b"",
        id="sts-token",
    ),
    pytest.param(
        "GET",
        "/api/v1/clusters",
        {"page_number": "2", "page_size": "50", "name": "prod cluster*~", "empty": ""},
        None,
        b"",
        id="spaces-star-tilde-empty",
    ),
    pytest.param(
        "POST",
        "/clusters/c123/components/metrics-server/upgrade",
        {"a": "1"},
        "token",
        b'{"version":"v2"}',
        id="post-body",
    ),
    pytest.param("GET", "/clusters", {"name": "集群-生产"}, None, b"", id="unicode-query"),
]


@pytest.mark.parametrize(("method", "path", "query", "token", "body"), CASES)
def test_signer_agrees_with_official_signer(
    method: str, path: str, query: dict[str, str], token: str | None, body: bytes
) -> None:
    headers = signer.signed_headers(
        method,
        "cs.cn-hangzhou.aliyuncs.com",
        path,
        query,
        action="SomeAction",
        version="2015-12-15",
        access_key_id="LTAI5tExampleKeyId",
        access_key_secret="ExampleSecret0123456789",
        security_token=token,
        body=body,
        content_type="application/json" if body else None,
        now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        nonce="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    )
    ours = headers.pop("Authorization")

    official = DaraRequest()
    official.method = method
    official.pathname = path
    official.query = query
    official.headers = headers
    expected = Utils.get_authorization(
        official,
        "ACS3-HMAC-SHA256",
        hashlib.sha256(body).hexdigest(),
        "LTAI5tExampleKeyId",
        "ExampleSecret0123456789",
    )

    assert ours == expected
    assert headers["x-acs-date"] == "2026-01-02T03:04:05Z"
    assert ("x-acs-security-token" in headers) == bool(token)


def test_signer_canonical_uri_encodes_each_segment() -> None:
    assert signer.canonical_uri("/a b/c*d/e~f") == "/a%20b/c%2Ad/e~f"
