"""How the OSS store drives the SDK: STS tokens, V4 signing, create-only writes, retries, errors.

The bucket is the in-memory fake served by ``responses`` on a host that cannot
resolve; the ACK simulator and the webhook receiver run on loopback.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterator

import pytest

from addon_watch.credentials import Credentials
from addon_watch.errors import CredentialsError, StateStoreError
from addon_watch.redaction import Secret
from addon_watch.store.oss import OssStore
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.oss import DROP, ENDPOINT, REGION, SETTINGS, FakeOss, serving
from tests.fakes.ticks import Ticks
from tests.fakes.webhooks import WebhookReceiver

PREFIX = "ack-addon-watch/sdk"
KEY_ID = "sts-test-key-id"
SECRET = "oss-sdk-test-access-key-secret-0123456789"
TOKEN = "oss-sdk-test-sts-token-CAIS0123456789abcdefghijklmnopqrstuvwxyz"
NO_CREDENTIALS = "no Alibaba Cloud credentials found: set ALIBABA_CLOUD_ACCESS_KEY_ID"


@pytest.fixture
def bucket(simulator: AckSimulator, webhooks: WebhookReceiver) -> Iterator[FakeOss]:
    with serving(simulator.base_url, webhooks.base_url) as fake:
        yield fake


@pytest.fixture
def ticks(simulator: AckSimulator, webhooks: WebhookReceiver, bucket: FakeOss) -> Ticks:
    return Ticks(simulator, webhooks, bucket.location(PREFIX), **SETTINGS)


def sts_credentials() -> Credentials:
    return Credentials(KEY_ID, Secret(SECRET), Secret(TOKEN))


def connect(bucket: FakeOss, credentials: Callable[[], Credentials] = sts_credentials) -> OssStore:
    return OssStore.connect(
        endpoint=ENDPOINT,
        region=REGION,
        bucket=bucket.bucket,
        prefix=PREFIX,
        credentials=credentials,
    )


def test_oss_sdk_signs_every_request_with_v4_and_the_sts_token(
    ticks: Ticks, bucket: FakeOss
) -> None:
    store = connect(bucket)
    ticks.seen_then_finished(store)

    summary = ticks.tick(store)

    assert summary.sent == 2
    scope = re.compile(
        rf"OSS4-HMAC-SHA256 Credential={KEY_ID}/\d{{8}}/{REGION}/oss/aliyun_v4_request"
    )
    assert len(bucket.headers) == len(bucket.requests) > 10
    for headers in bucket.headers:
        assert headers["x-oss-security-token"] == TOKEN
        assert scope.fullmatch(headers["authorization"].split(",")[0])


def test_oss_sdk_forbids_overwrite_exactly_for_outbox_entries_and_claims(
    ticks: Ticks, bucket: FakeOss
) -> None:
    store = connect(bucket)
    ticks.seen_then_finished(store)

    ticks.tick(store)

    puts = [
        (key.removeprefix(f"{PREFIX}/").split("/")[0], headers.get("x-oss-forbid-overwrite"))
        for (method, key, _), headers in zip(bucket.requests, bucket.headers, strict=True)
        if method == "PUT"
    ]
    create_only = {folder for folder, forbid in puts if forbid == "true"}
    overwrite = {folder for folder, forbid in puts if forbid is None}
    assert create_only == {"outbox", "claims"}
    # Settling an entry rewrites it; records and markers are plain writes.
    assert overwrite == {"targets", "pending", "outbox"}
    assert {forbid for _, forbid in puts} == {"true", None}


def test_oss_sdk_dropped_connection_is_tried_again_and_the_run_goes_on(
    ticks: Ticks, bucket: FakeOss
) -> None:
    store = connect(bucket)
    ticks.seen_then_finished(store)
    bucket.faults.append(DROP)

    summary = ticks.tick(store)

    assert bucket.faults == []
    assert (summary.changes, summary.sent) == (1, 2)
    assert ticks.delivered() == {"dingtalk": 1, "slack": 1}


def test_oss_sdk_missing_credentials_fail_the_run_with_our_own_error_once(
    ticks: Ticks, bucket: FakeOss
) -> None:
    asked: list[int] = []

    def missing() -> Credentials:
        asked.append(1)
        raise CredentialsError(NO_CREDENTIALS)

    store = connect(bucket, missing)
    ticks.start_upgrade()

    with pytest.raises(CredentialsError) as raised:
        ticks.tick(store)

    assert str(raised.value) == NO_CREDENTIALS
    assert asked == [1]
    assert bucket.requests == []
    assert ticks.delivered() == {"dingtalk": 0, "slack": 0}


@pytest.mark.parametrize("status", [403, 503])
def test_oss_sdk_error_and_every_cause_chained_to_it_hold_no_secret(
    ticks: Ticks, bucket: FakeOss, status: int
) -> None:
    store = connect(bucket)
    ticks.seen_then_finished(store)
    bucket.faults.append(status)

    with pytest.raises(StateStoreError) as raised:
        ticks.tick(store)

    shown = "".join(traceback.format_exception(raised.value))
    assert f"HTTP {status} InternalError: injected fault (request id " in str(raised.value)
    assert "alibabacloud_oss_v2.exceptions.OperationError" in shown
    assert SECRET not in shown
    assert TOKEN not in shown


def test_oss_sdk_upload_whose_crc_differs_fails_the_run_naming_the_check(
    ticks: Ticks, bucket: FakeOss
) -> None:
    store = connect(bucket)
    ticks.start_upgrade()
    bucket.damage_uploads = True

    with pytest.raises(StateStoreError) as raised:
        ticks.tick(store)

    message = str(raised.value)
    assert message.startswith(f"state store oss://{bucket.bucket}/{PREFIX}/: cannot record ")
    assert ": InconsistentError: crc is inconsistent, client " in message
    assert ticks.delivered() == {"dingtalk": 0, "slack": 0}
