"""Parsing upgrade-status answers and talking to the (simulated) API."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import responses

from addon_watch.ack import AckClient, parse_time, parse_upgrade_status
from addon_watch.credentials import Credentials
from addon_watch.errors import AckApiError
from addon_watch.model import Outcome, Target
from addon_watch.redaction import Secret
from tests.fakes.ack_simulator import AckSimulator

DATA = Path(__file__).parent / "data"
CCM = Target("c0123456789abcdef", "cloud-controller-manager")


def creds(sim: AckSimulator | None = None, token: str | None = None) -> Credentials:
    key_id = sim.access_key_id if sim else "LTAI5tExampleKeyId"
    secret = sim.access_key_secret if sim else "ExampleSecret0123456789"
    return Credentials(key_id, Secret(secret), Secret(token) if token else None)


def test_parse_documented_body_gives_the_documented_values() -> None:
    body = json.loads((DATA / "upgradestatus_documented.json").read_text())

    status = parse_upgrade_status(CCM, body)

    assert status.version == "v2.9.1"
    assert status.ready_to_upgrade is True
    assert status.task is not None
    assert status.task.task_id == "2026-01-02T03:04:00Z"
    assert status.task.status == "Success"
    assert status.task.outcome is Outcome.SUCCESS
    assert status.task.created_at == datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)
    assert status.task.finished_at == datetime(2026, 1, 2, 3, 10, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("tasks", "outcome"),
    [
        ({"status": "success"}, Outcome.SUCCESS),
        ({"status": "FAILED"}, Outcome.FAILED),
        ({"status": "Canceled"}, Outcome.CANCELED),
        ({"status": "Running", "is_canceled": True}, Outcome.CANCELED),
        ({"status": "Upgrading", "is_canceled": "true"}, Outcome.CANCELED),
        ({"status": "Running"}, None),
        ({"status": "Paused"}, None),
        ({"status": "Rolling-Back-Somehow"}, None),
    ],
)
def test_parse_task_status_case_insensitive_unknown_not_finished(
    tasks: dict[str, object], outcome: Outcome | None
) -> None:
    body = {CCM.component: {"tasks": {"created_at": "2026-01-02T03:04:00Z", **tasks}}}

    task = parse_upgrade_status(CCM, body).task

    assert task is not None
    assert task.outcome is outcome


@pytest.mark.parametrize(
    "entry",
    [
        {"addon_info": None, "tasks": None},
        {"addon_info": {"version": None, "ready_to_upgrade": False}},
        {"tasks": {"status": "", "created_at": "0001-01-01T00:00:00Z", "is_canceled": False}},
        {"addon_info": {"version": ""}, "tasks": {}, "unexpected": [1, 2]},
    ],
)
def test_parse_quirky_bodies_give_no_task(entry: dict[str, object]) -> None:
    status = parse_upgrade_status(CCM, {CCM.component: entry})

    assert status.task is None
    assert status.version == ""
    assert status.ready_to_upgrade is False


def test_parse_entry_not_keyed_by_component_is_accepted() -> None:
    status = parse_upgrade_status(
        CCM, {"tasks": {"status": "Failed", "created_at": "2026-01-02T03:04:00Z"}}
    )

    assert status.task is not None
    assert status.task.outcome is Outcome.FAILED


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object, got list"),
        ({"metrics-server": {}}, "no entry for 'cloud-controller-manager' (keys: metrics-server)"),
        ({CCM.component: {"tasks": "Success"}}, "'tasks' is a str, expected an object"),
    ],
)
def test_parse_malformed_bodies_raise_clear_errors(body: object, message: str) -> None:
    with pytest.raises(AckApiError) as caught:
        parse_upgrade_status(CCM, body)

    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        ("2026-01-02T11:04:05+08:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        (
            "2026-01-02T03:04:05.123456789Z",
            datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc),
        ),
        ("2026-01-02 03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_time_accepts_variants_and_zero_time(text: object, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_client_signed_request_is_accepted_by_simulator(simulator: AckSimulator) -> None:
    simulator.add_addon(CCM.cluster_id, CCM.component, "v2.9.1")
    simulator.start_task(CCM.cluster_id, CCM.component, "2026-01-02T03:04:00Z")
    client = AckClient(simulator.endpoint, lambda: creds(simulator))

    status = client.describe_addon_upgrade_status(CCM)

    assert status.task is not None
    assert status.task.status == "Running"
    assert [(c.action, c.status) for c in simulator.calls] == [
        ("DescribeClusterAddonUpgradeStatus", 200)
    ]


def test_client_sts_token_is_sent_and_signed(simulator: AckSimulator) -> None:
    simulator.security_token = "CAIS-sts-token+/="
    simulator.add_addon(CCM.cluster_id, CCM.component)
    client = AckClient(simulator.endpoint, lambda: creds(simulator, token="CAIS-sts-token+/="))

    client.describe_addon_upgrade_status(CCM)

    assert simulator.calls[0].security_token == "CAIS-sts-token+/="
    assert simulator.calls[0].status == 200


def test_client_wrong_secret_is_refused_with_code_and_request_id(simulator: AckSimulator) -> None:
    simulator.add_addon(CCM.cluster_id, CCM.component)
    wrong = Credentials(simulator.access_key_id, Secret("not-the-secret-at-all"))
    client = AckClient(simulator.endpoint, lambda: wrong)

    with pytest.raises(AckApiError) as caught:
        client.describe_addon_upgrade_status(CCM)

    assert caught.value.code == "SignatureDoesNotMatch"
    assert caught.value.http_status == 400
    assert caught.value.request_id
    assert "not-the-secret-at-all" not in str(caught.value)


def test_client_unknown_cluster_names_code(simulator: AckSimulator) -> None:
    client = AckClient(simulator.endpoint, lambda: creds(simulator))

    with pytest.raises(AckApiError) as caught:
        client.describe_addon_upgrade_status(CCM)

    assert caught.value.code == "ErrorClusterNotFound"
    assert "HTTP 404" in str(caught.value)


@responses.activate
def test_client_html_answer_is_a_clear_error() -> None:
    responses.get(
        "https://cs.cn-hangzhou.aliyuncs.com/clusters/c0123456789abcdef/components/cloud-controller-manager/upgradestatus",
        body="<html><body>502 Bad Gateway</body></html>",
        status=200,
        content_type="text/html",
    )
    client = AckClient("https://cs.cn-hangzhou.aliyuncs.com", creds)

    with pytest.raises(AckApiError) as caught:
        client.describe_addon_upgrade_status(CCM)

    assert "not JSON" in str(caught.value)
    assert "502 Bad Gateway" in str(caught.value)


@responses.activate
def test_client_connection_error_names_host_not_secret() -> None:
    responses.get(
        "https://cs.cn-hangzhou.aliyuncs.com/clusters/c0123456789abcdef/components/cloud-controller-manager/upgradestatus",
        body=requests.ConnectionError("reset"),
    )
    client = AckClient("https://cs.cn-hangzhou.aliyuncs.com", creds)

    with pytest.raises(AckApiError) as caught:
        client.describe_addon_upgrade_status(CCM)

    assert "the connection to cs.cn-hangzhou.aliyuncs.com failed" in str(caught.value)
    assert "(ConnectionError)" in str(caught.value)
    assert "ExampleSecret" not in str(caught.value)
