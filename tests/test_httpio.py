"""Answers that trickle or grow are cut off: a whole call is bounded, not each read."""

from __future__ import annotations

import time

import pytest
import requests

from addon_watch.ack import AckClient, RetryPolicy
from addon_watch.credentials import Credentials
from addon_watch.errors import AckTransientError, DeliveryError
from addon_watch.httpio import BodyError, read_body
from addon_watch.model import Target
from addon_watch.notify import DingTalkNotifier
from addon_watch.redaction import Secret
from tests.fakes.trickle import TrickleServer

OK = b'{"errcode": 0, "errmsg": "ok"}'


def test_read_body_returns_a_prompt_body_and_keeps_json_working() -> None:
    with TrickleServer(OK, interval=0) as server:
        response = requests.get(server.base_url, stream=True, timeout=(1, 1))

        body = read_body(response, seconds=2, max_bytes=1000)

    assert body == OK
    assert response.json() == {"errcode": 0, "errmsg": "ok"}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_read_body_trickling_answer_is_cut_at_the_deadline(chunked: bool) -> None:
    with TrickleServer(OK, interval=0.2, chunked=chunked) as server:
        response = requests.get(server.base_url, stream=True, timeout=(1, 1))
        started = time.monotonic()

        with pytest.raises(BodyError) as caught:
            read_body(response, seconds=0.5, max_bytes=1000)

    # Each read waits at most one short interval, so the cut comes soon after the deadline.
    assert time.monotonic() - started < 2
    assert "longer than 0.5 s" in str(caught.value)


def test_read_body_oversized_answer_is_refused() -> None:
    with TrickleServer(b"x" * 5000, interval=0) as server:
        response = requests.get(server.base_url, stream=True, timeout=(1, 1))

        with pytest.raises(BodyError) as caught:
            read_body(response, seconds=5, max_bytes=100)

    assert "larger than 100 bytes" in str(caught.value)


def test_dingtalk_trickling_answer_is_an_ambiguous_failure() -> None:
    secret_url = "dt-trickle-token-0123456789abcdef"
    with TrickleServer(OK, interval=0.3) as server:
        url = f"{server.base_url}/robot/send?access_token={secret_url}"
        notifier = DingTalkNotifier(Secret(url), timeouts=(1, 0.4))

        with pytest.raises(DeliveryError) as caught:
            notifier.send({"msgtype": "text", "text": {"content": "hi"}})

        received = list(server.requests)

    assert caught.value.ambiguous is True
    assert "may have arrived" in str(caught.value)
    assert secret_url not in str(caught.value)
    assert [method for method, _ in received] == ["POST"]


def test_ack_trickling_answer_is_a_transient_error() -> None:
    target = Target("c0123456789abcdef", "metrics-server")
    with TrickleServer(b'{"metrics-server": {}}', interval=0.3) as server:
        client = AckClient(
            server.base_url,
            lambda: Credentials("key-id", Secret("trickle-test-secret")),
            deadline=time.monotonic() + 0.8,
            retry=RetryPolicy(attempts=1),
        )

        with pytest.raises(AckTransientError) as caught:
            client.describe_addons_upgrade_status(target.cluster_id, [target.component])

    assert "took longer than" in str(caught.value)


def test_dingtalk_trickling_headers_are_cut_as_a_whole() -> None:
    with TrickleServer(OK, interval=0.1, slow_headers=True) as server:
        url = f"{server.base_url}/robot/send?access_token=dt-slow-headers-0123456789"
        notifier = DingTalkNotifier(Secret(url), timeouts=(0.5, 0.4))
        started = time.monotonic()

        with pytest.raises(DeliveryError) as caught:
            notifier.send({"msgtype": "text", "text": {"content": "hi"}})

    # 0.5 s to connect plus 1.5 read timeouts: the headers alone would take 4 s and more.
    assert time.monotonic() - started < 2
    assert caught.value.ambiguous is True
    assert "took longer than 1.1 s" in str(caught.value)


def test_ack_trickling_headers_are_cut_as_a_whole() -> None:
    with TrickleServer(b"{}", interval=0.1, slow_headers=True) as server:
        client = AckClient(
            server.base_url,
            lambda: Credentials("key-id", Secret("trickle-test-secret")),
            deadline=time.monotonic() + 1.0,
            retry=RetryPolicy(attempts=1, min_attempt_time=0.1),
        )
        started = time.monotonic()

        with pytest.raises(AckTransientError) as caught:
            client.describe_addons_upgrade_status("c0123456789abcdef", ["metrics-server"])

    # At most a 1 s connect plus two 1 s reads; the headers alone would take 6 s.
    assert time.monotonic() - started < 4.5
    assert "took longer than" in str(caught.value)
