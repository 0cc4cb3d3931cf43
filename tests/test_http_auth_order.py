"""The HTTP trigger authenticates before it routes: a caller without a token learns nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import WebhookReceiver
from tests.invocation import call, environment, load_event, watch


@pytest.fixture
def env(simulator: AckSimulator, webhooks: WebhookReceiver, tmp_path: Path) -> dict[str, str]:
    watch(simulator)
    return environment(simulator, webhooks, tmp_path)


def request(name: str, authorization: str | None, method: str | None = None) -> dict[str, Any]:
    event = load_event(name)
    event["headers"] = {k: v for k, v in event["headers"].items() if k.lower() != "authorization"}
    if authorization is not None:
        event["headers"]["Authorization"] = authorization
    if method is not None:
        event["requestContext"]["http"]["method"] = method
    return event


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("http_unknown_route", None),
        ("http_check_wrong_method", None),
        ("http_status_upper_case", "DELETE"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer not-the-token-at-all-0000", "Basic x"])
def test_http_route_probe_without_valid_token_refused_401(
    env: dict[str, str],
    simulator: AckSimulator,
    name: str,
    method: str | None,
    authorization: str | None,
) -> None:
    answer = call(request(name, authorization, method), env)

    assert answer.status == 401
    assert "Allow" not in answer.headers and "routes" not in answer.json
    assert simulator.calls == []


@pytest.mark.parametrize(("method", "status"), [("GET", 200), ("POST", 405)])
def test_http_healthz_open_without_token(env: dict[str, str], method: str, status: int) -> None:
    answer = call(request("http_healthz", None, method), env)

    assert answer.status == status


def test_http_unknown_route_with_token_still_404(env: dict[str, str]) -> None:
    answer = call(load_event("http_unknown_route"), env)

    assert answer.status == 404
