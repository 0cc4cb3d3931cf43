"""The ACK client's batch call, discovery calls, error classes and retries, against `responses`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import responses

from addon_watch.ack import (
    AckClient,
    CallGate,
    RetryPolicy,
    parse_addon_instances,
    parse_addons_upgrade_status,
    parse_clusters_page,
)
from addon_watch.credentials import Credentials
from addon_watch.errors import (
    AckApiError,
    AckMalformedError,
    AckPermanentError,
    AckTransientError,
)
from addon_watch.redaction import Secret

ENDPOINT = "https://cs.cn-hangzhou.aliyuncs.com"
CLUSTER = "c0123456789abcdef"
BATCH_URL = f"{ENDPOINT}/clusters/{CLUSTER}/components/upgradestatus"
SECRET = "unit-test-access-key-secret"
ENTRY = {
    "addon_info": {
        "component_name": "metrics-server",
        "version": "v0.3.9",
        "ready_to_upgrade": "false",
    },
    "tasks": {
        "status": "Success",
        "created_at": "2026-01-02T03:00:00Z",
        "finished_at": "2026-01-02T03:04:00Z",
        "is_canceled": False,
    },
}


class Clock:
    """A monotonic clock that moves only when told, or when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def make_client(clock: Clock, deadline: float | None = None, **kwargs: object) -> AckClient:
    creds = Credentials("unit-key-id", Secret(SECRET))
    return AckClient(
        ENDPOINT,
        lambda: creds,
        deadline=deadline,
        sleep=clock.sleep,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


def error_body(code: str, request_id: str = "REQ-1") -> dict[str, str]:
    return {"code": code, "message": f"{code} happened", "requestId": request_id}


def throttle(api: responses.RequestsMock, retry_after_ms: str) -> None:
    """The next batch call is throttled, asking for a wait."""
    headers = {"x-acs-retry-after": retry_after_ms}
    api.get(BATCH_URL, status=400, json=error_body("Throttling.User"), headers=headers)


# --- the batch call -------------------------------------------------------


def test_batch_call_sends_component_ids_as_compact_json_and_reads_each_entry(
    api: responses.RequestsMock, clock: Clock
) -> None:
    api.get(
        BATCH_URL, json={"metrics-server": ENTRY, "flexvolume": {"addon_info": {"version": "v1"}}}
    )

    found = make_client(clock).describe_addons_upgrade_status(
        CLUSTER, ["flexvolume", "metrics-server"]
    )

    assert api.calls[0].request.url == (
        f"{BATCH_URL}?componentIds=%5B%22flexvolume%22%2C%22metrics-server%22%5D"
    )
    assert api.calls[0].request.headers["x-acs-action"] == "DescribeClusterAddonsUpgradeStatus"
    assert found["metrics-server"].task is not None
    assert found["metrics-server"].task.status == "Success"
    assert found["flexvolume"].version == "v1"
    assert found["flexvolume"].task is None


def test_batch_answer_without_a_component_leaves_it_out() -> None:
    found = parse_addons_upgrade_status(
        CLUSTER, ["metrics-server", "gone"], {"metrics-server": ENTRY, "gone": None}
    )

    assert sorted(found) == ["metrics-server"]


def test_batch_answer_that_is_an_error_in_disguise_is_malformed() -> None:
    with pytest.raises(AckMalformedError) as caught:
        parse_addons_upgrade_status(CLUSTER, ["a", "b"], {"code": "Oops", "message": "broken"})

    assert "Oops: broken" in str(caught.value)


def test_client_pool_for_the_endpoint_fits_the_concurrency(clock: Clock) -> None:
    session = requests.Session()
    make_client(clock, session=session, concurrency=7)

    adapter = session.get_adapter(f"{ENDPOINT}/clusters")
    other = session.get_adapter("https://oapi.dingtalk.com/robot/send")

    assert adapter.poolmanager.connection_pool_kw["maxsize"] == 7  # type: ignore[attr-defined]
    assert adapter is not other


# --- error classes --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "advice"),
    [
        (404, "ErrorClusterNotFound", "check the cluster id"),
        (403, "Forbidden.RAM", "allow DescribeClusterAddonsUpgradeStatus"),
        (400, "SignatureDoesNotMatch", "check the AccessKey"),
        (404, "InvalidAccessKeyId.NotFound", "check the AccessKey"),
        (400, "InvalidParameter", "check the request"),
    ],
)
def test_permanent_error_is_typed_not_retried_and_says_what_to_check(
    api: responses.RequestsMock, clock: Clock, status: int, code: str, advice: str
) -> None:
    api.get(BATCH_URL, status=status, json=error_body(code, "REQ-42"))

    with pytest.raises(AckPermanentError) as caught:
        make_client(clock).describe_addons_upgrade_status(CLUSTER, ["metrics-server"])

    error = caught.value
    assert (error.code, error.http_status, error.request_id) == (code, status, "REQ-42")
    assert advice in str(error)
    assert f"HTTP {status}" in str(error)
    assert len(api.calls) == 1
    assert clock.slept == []


def test_error_request_id_comes_from_the_header_when_the_body_has_none(
    api: responses.RequestsMock, clock: Clock
) -> None:
    api.get(
        BATCH_URL,
        status=403,
        json={"Code": "Forbidden.RAM", "Message": "denied"},
        headers={"x-acs-request-id": "HDR-7"},
    )

    with pytest.raises(AckPermanentError) as caught:
        make_client(clock).describe_addons_upgrade_status(CLUSTER, ["a"])

    assert caught.value.request_id == "HDR-7"
    assert caught.value.code == "Forbidden.RAM"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (200, "<html><body>502 Bad Gateway</body></html>", "text/html", "not JSON"),
        (200, '{"metrics-server": {"addon_info": {"vers', "application/json", "not JSON"),
        (200, "[]", "application/json", "expected a JSON object"),
        (200, '{"metrics-server": {"tasks": "Success"}}', "application/json", "'tasks' is a str"),
        (200, "", "application/json", "not JSON"),
        (302, "", "text/html", "HTTP 302 instead of JSON"),
    ],
    ids=["html", "truncated", "list", "tasks-shape", "empty", "redirect"],
)
def test_malformed_answer_is_typed_and_not_retried(
    api: responses.RequestsMock,
    clock: Clock,
    status: int,
    body: str,
    content_type: str,
    expected: str,
) -> None:
    api.get(BATCH_URL, status=status, body=body, content_type=content_type)

    with pytest.raises(AckMalformedError) as caught:
        make_client(clock).describe_addons_upgrade_status(CLUSTER, ["metrics-server"])

    assert expected in str(caught.value)
    assert len(api.calls) == 1


def test_every_ack_error_is_an_ack_api_error() -> None:
    assert all(
        issubclass(kind, AckApiError)
        for kind in (AckTransientError, AckPermanentError, AckMalformedError)
    )


# --- transient errors and retries -----------------------------------------


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ({"status": 400, "json": error_body("Throttling.User")}, "Throttling.User"),
        ({"status": 429, "json": error_body("Throttling")}, "Throttling"),
        ({"status": 503, "json": error_body("ServiceUnavailable")}, "ServiceUnavailable"),
        ({"status": 502, "body": "<html>Bad Gateway</html>", "content_type": "text/html"}, None),
        ({"body": requests.ConnectionError("Connection reset by peer")}, "ConnectionError"),
        ({"body": requests.ReadTimeout("read timed out")}, "ReadTimeout"),
        (
            {"body": requests.exceptions.ChunkedEncodingError("IncompleteRead")},
            "ChunkedEncodingError",
        ),
    ],
    ids=[
        "throttling-400",
        "throttling-429",
        "503",
        "502-html",
        "reset",
        "timeout",
        "truncated-stream",
    ],
)
def test_transient_failure_once_is_asked_again_and_succeeds(
    api: responses.RequestsMock, clock: Clock, first: dict[str, object], code: str | None
) -> None:
    api.get(BATCH_URL, **first)  # type: ignore[arg-type]
    api.get(BATCH_URL, json={"metrics-server": ENTRY})

    found = make_client(clock).describe_addons_upgrade_status(CLUSTER, ["metrics-server"])

    assert found["metrics-server"].version == "v0.3.9"
    assert len(api.calls) == 2
    assert len(clock.slept) == 1


def test_retry_waits_what_x_acs_retry_after_asks_in_milliseconds(
    api: responses.RequestsMock, clock: Clock
) -> None:
    throttle(api, retry_after_ms="1500")
    api.get(BATCH_URL, json={"metrics-server": ENTRY})

    make_client(clock).describe_addons_upgrade_status(CLUSTER, ["metrics-server"])

    assert 1.5 <= clock.slept[0] <= 1.5 + RetryPolicy().base_delay


def test_transient_failure_every_time_gives_up_after_the_attempts_with_the_last_error(
    api: responses.RequestsMock, clock: Clock
) -> None:
    for _ in range(4):
        api.get(BATCH_URL, status=503, json=error_body("ServiceUnavailable", "REQ-LAST"))

    with pytest.raises(AckTransientError) as caught:
        make_client(clock).describe_addons_upgrade_status(CLUSTER, ["metrics-server"])

    assert (caught.value.code, caught.value.http_status, caught.value.request_id) == (
        "ServiceUnavailable",
        503,
        "REQ-LAST",
    )
    assert "gave up after 4 attempt(s)" in str(caught.value)
    assert len(api.calls) == 4
    assert len(clock.slept) == 3


def test_retry_after_longer_than_the_time_left_gives_up_without_waiting(
    api: responses.RequestsMock, clock: Clock
) -> None:
    throttle(api, retry_after_ms="5000")

    with pytest.raises(AckTransientError) as caught:
        make_client(clock, deadline=clock.now + 3).describe_addons_upgrade_status(CLUSTER, ["a"])

    assert "gave up out of time" in str(caught.value)
    assert clock.slept == []
    assert len(api.calls) == 1


def test_no_call_is_started_after_the_deadline(api: responses.RequestsMock, clock: Clock) -> None:
    with pytest.raises(AckTransientError) as caught:
        make_client(clock, deadline=clock.now + 0.1).describe_addons_upgrade_status(CLUSTER, ["a"])

    assert "not sent" in str(caught.value)
    assert len(api.calls) == 0


def test_call_timeout_is_cut_to_the_time_left(api: responses.RequestsMock, clock: Clock) -> None:
    api.get(BATCH_URL, json={"a": ENTRY})

    make_client(clock, deadline=clock.now + 2.5).describe_addons_upgrade_status(CLUSTER, ["a"])

    assert api.calls[0].request.req_kwargs["timeout"] == (2.5, 2.5)


@pytest.mark.parametrize(
    ("retry", "retry_after", "longest"),
    [(1, None, 0.2), (2, None, 0.4), (3, None, 0.8), (8, None, 5.0), (1, 2.0, 2.2), (5, 0.5, 3.7)],
)
def test_retry_delay_is_exponential_with_full_jitter_capped(
    retry: int, retry_after: float | None, longest: float
) -> None:
    policy = RetryPolicy()

    most = policy.delay(retry, retry_after, uniform=lambda low, high: high)
    least = policy.delay(retry, retry_after, uniform=lambda low, high: low)

    assert most == pytest.approx(longest)
    assert least == pytest.approx(retry_after or 0.0)


def test_error_messages_never_contain_the_secret(api: responses.RequestsMock, clock: Clock) -> None:
    api.get(BATCH_URL, status=400, json=error_body("SignatureDoesNotMatch"))

    with pytest.raises(AckPermanentError) as caught:
        make_client(clock).describe_addons_upgrade_status(CLUSTER, ["a"])

    assert SECRET not in str(caught.value)
    assert "Authorization" not in str(caught.value)


def test_gate_halves_once_for_a_burst_of_throttled_answers_and_regrows_on_successes() -> None:
    gate = CallGate(8)
    sent = [gate.enter(None) for _ in range(8)]

    for round_sent in sent[:4]:
        gate.leave(round_sent, throttled=True, succeeded=False)  # type: ignore[arg-type]
    halved = gate.limit
    for round_sent in sent[4:]:
        gate.leave(round_sent, throttled=False, succeeded=True)  # type: ignore[arg-type]

    assert sent == [0] * 8
    assert halved == 4
    assert gate.limit == 5


def test_gate_full_until_the_timeout_admits_nothing() -> None:
    gate = CallGate(1)
    first = gate.enter(None)

    assert first == 0
    assert gate.enter(0.01) is None


def test_throttled_answer_lowers_the_calls_in_flight(
    api: responses.RequestsMock, clock: Clock
) -> None:
    api.get(BATCH_URL, status=400, json=error_body("Throttling.User"))
    api.get(BATCH_URL, json={"a": ENTRY})
    client = make_client(clock, concurrency=6)

    client.describe_addons_upgrade_status(CLUSTER, ["a"])

    assert client._gate.limit == 3


# --- discovery ------------------------------------------------------------


def test_list_clusters_reads_every_page_until_the_total(
    api: responses.RequestsMock, clock: Clock
) -> None:
    url = f"{ENDPOINT}/api/v1/clusters"
    pages = [["c1", "c2"], ["c3", "c2"], ["c4"]]
    for number, ids in enumerate(pages, start=1):
        api.get(
            url,
            json={
                "clusters": [{"cluster_id": i, "state": "running"} for i in ids],
                "page_info": {"page_number": number, "page_size": 2, "total_count": 5},
            },
        )

    found = make_client(clock, region="cn-hangzhou").list_clusters()

    assert found == ["c1", "c2", "c3", "c4"]
    queries = [call.request.params for call in api.calls]
    assert [q["page_number"] for q in queries] == ["1", "2", "3"]
    assert {q["region_id"] for q in queries} == {"cn-hangzhou"}


def test_list_clusters_passes_by_clusters_that_cannot_have_addons(
    api: responses.RequestsMock, clock: Clock
) -> None:
    states = {"c1": "running", "c2": "deleting", "c3": "initial", "c4": "Updating"}
    api.get(
        f"{ENDPOINT}/api/v1/clusters",
        json={
            "clusters": [{"cluster_id": c, "state": s} for c, s in states.items()],
            "page_info": {"total_count": 4},
        },
    )

    assert make_client(clock).list_clusters() == ["c1", "c4"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"addons": [{"name": "a", "version": "1"}, {"name": ""}, {"version": "2"}, "x"]}, ["a"]),
        ({"addons": None}, []),
        ([{"name": "b"}], ["b"]),
    ],
)
def test_addon_instances_reads_the_names(body: object, expected: list[str]) -> None:
    assert parse_addon_instances(CLUSTER, body) == expected


@pytest.mark.parametrize("body", [{"addons": {"a": 1}}, {}, "addons", 3])
def test_addon_instances_of_another_shape_is_malformed(body: object) -> None:
    with pytest.raises(AckMalformedError):
        parse_addon_instances(CLUSTER, body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "clusters": [{"cluster_id": "c1", "state": "running"}],
                "page_info": {"total_count": "1"},
            },
            ([("c1", "running")], 1),
        ),
        ({"clusters": [], "page_info": {"total_count": None}}, ([], None)),
        ({"clusters": None}, ([], None)),
    ],
)
def test_clusters_page_reads_ids_states_and_total(body: object, expected: object) -> None:
    assert parse_clusters_page(body) == expected


@pytest.mark.parametrize("body", [[{"cluster_id": "c1"}], {"clusters": "c1"}, None])
def test_clusters_page_of_another_shape_is_malformed(body: object) -> None:
    with pytest.raises(AckMalformedError) as caught:
        parse_clusters_page(body)

    assert "listing clusters" in str(caught.value)
