"""``python -m addon_watch``: check, status, render and serve."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from addon_watch.__main__ import fc_http_event, main
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import WebhookReceiver
from tests.invocation import HTTP_TOKEN, TARGETS, environment, finish, serving, tick, watch


@pytest.fixture
def env(simulator: AckSimulator, webhooks: WebhookReceiver, tmp_path: Path) -> dict[str, str]:
    watch(simulator)
    return environment(simulator, webhooks, tmp_path)


def run(
    argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = main(argv, env)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_render_previews_both_channels(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["render", "--outcome", "canceled"], {}, capsys)

    previews = json.loads(out)
    assert code == 0
    assert [(p["channel"], p["language"]) for p in previews] == [
        ("dingtalk", "zh"),
        ("slack", "en"),
    ]
    assert previews[0]["payload"]["msgtype"] == "markdown"
    assert previews[1]["payload"]["text"] == previews[1]["title"]
    assert "metrics-server" in previews[1]["text"]


def test_cli_render_one_channel_language_and_zone(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["render", "--channel", "dingtalk", "--language", "en", "--timezone", "Asia/Shanghai"],
        {},
        capsys,
    )

    (preview,) = json.loads(out)
    assert code == 0
    assert (preview["channel"], preview["language"]) == ("dingtalk", "en")
    assert "2026-01-02 11:04:05 UTC+08:00" in preview["text"]


def test_cli_status_before_any_check_unseen(
    env: dict[str, str], simulator: AckSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["status"], env, capsys)

    assert code == 0
    assert json.loads(out) == {
        "pending": {},
        "targets": [{"target": t, "seen": False} for t in TARGETS],
    }
    assert simulator.calls == []


def test_cli_check_dry_run_sends_nothing_then_check_sends(
    env: dict[str, str],
    simulator: AckSimulator,
    webhooks: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tick(env)
    finish(simulator)

    code, out, _ = run(["check", "--dry-run", "--targets", TARGETS[0]], env, capsys)

    summary = json.loads(out)
    assert code == 0
    assert (summary["trigger"], summary["targets"], summary["changes"]) == ("manual", 1, 1)
    assert len(summary["previews"]) == 2
    assert webhooks.received == []

    code, out, _ = run(["check"], env, capsys)

    assert code == 0
    assert json.loads(out)["sent"] == 2


def test_cli_check_unknown_target_exits_2(
    env: dict[str, str], simulator: AckSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["check", "--targets", "c9/coredns"], env, capsys)

    assert code == 2
    assert "'c9/coredns' is not one of the watched targets" in err
    assert out == ""
    assert simulator.calls == []


def test_cli_status_misconfigured_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["status"], {"ACK_REGION": "cn-hangzhou"}, capsys)

    assert code == 2
    assert "ConfigError: WATCH_TARGETS is not set" in err


def test_fc_http_event_title_cases_and_joins() -> None:
    event = fc_http_event(
        "POST",
        "/check?dry_run=true&x=1&x=2",
        [("authorization", "Bearer a"), ("x-trace", "1"), ("X-TRACE", "2")],
        b"\xff\x00",
        "127.0.0.1",
        "localhost:9000",
    )

    assert event["headers"] == {"Authorization": "Bearer a", "X-Trace": "1, 2"}
    assert event["queryParameters"] == {"dry_run": "true", "x": "1,2"}
    assert (event["body"], event["isBase64Encoded"]) == ("/wA=", True)
    assert event["requestContext"]["http"]["method"] == "POST"


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[str]:
    with serving(env) as address:
        yield address


def test_serve_routes_like_function_compute(
    server: str, simulator: AckSimulator, webhooks: WebhookReceiver
) -> None:
    base = f"http://{server}"
    auth = {"Authorization": f"Bearer {HTTP_TOKEN}"}

    health = requests.get(f"{base}/healthz", timeout=5)
    refused = requests.post(f"{base}/check", timeout=5)
    checked = requests.post(f"{base}/check", headers=auth, timeout=5)
    status = requests.get(f"{base}/status", headers=auth, timeout=5)
    wrong = requests.delete(f"{base}/status", headers=auth, timeout=5)
    binary = requests.post(f"{base}/check", headers=auth, data=b"\xff\xfe", timeout=5)

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert refused.status_code == 401
    assert (checked.status_code, checked.json()["checked"]) == (200, 2)
    assert status.status_code == 200
    assert all(t["seen"] for t in status.json()["targets"])
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "GET")
    assert binary.status_code == 400
    assert "not JSON" in binary.json()["error"]


def test_serve_repeated_authorization_joined_and_refused(server: str) -> None:
    connection = http.client.HTTPConnection(server, timeout=5)
    connection.putrequest("GET", "/status")
    connection.putheader("Authorization", f"Bearer {HTTP_TOKEN}")
    connection.putheader("authorization", f"Bearer {HTTP_TOKEN}")
    connection.endheaders()
    answer = connection.getresponse()
    body = json.loads(answer.read())
    connection.close()

    assert answer.status == 401
    assert "unauthorized" in body["error"]
