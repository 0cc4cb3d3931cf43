"""The HTTP trigger, end to end: FC-shaped events in, FC-shaped responses out."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from addon_watch.config import load_settings
from addon_watch.errors import EventError
from addon_watch.handler import handle, select_targets
from addon_watch.http_trigger import parse_request
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import WebhookReceiver
from tests.invocation import (
    CLUSTER,
    HTTP_TOKEN,
    TARGETS,
    call,
    environment,
    finish,
    load_event,
    tick,
    watch,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(simulator: AckSimulator, webhooks: WebhookReceiver, tmp_path: Path) -> dict[str, str]:
    watch(simulator)
    return environment(simulator, webhooks, tmp_path)


def summary_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.getMessage().startswith('{"') and "addon_watch.summary" in r.getMessage()
    ]


# --- reading the event ------------------------------------------------------


@pytest.mark.parametrize("name", ["http_check", "http_status_upper_case"])
def test_parse_request_header_names_any_case_found(name: str) -> None:
    request = parse_request(load_event(name), "fallback")

    assert request.header("authorization") == f"Bearer {HTTP_TOKEN}"
    assert request.header("Authorization") == f"Bearer {HTTP_TOKEN}"
    assert request.header("USER-AGENT") == "curl/8.5.0"


def test_parse_request_same_header_in_two_cases_joined() -> None:
    event = load_event("http_check")
    event["headers"]["X-Trace"] = "a"
    event["headers"]["x-trace"] = "b"

    assert parse_request(event, "x").header("x-trace") == "a, b"


def test_parse_request_list_values_joined_by_commas() -> None:
    event = load_event("http_check")
    event["queryParameters"] = {"dry_run": ["true", "false"]}

    assert parse_request(event, "x").query == {"dry_run": "true,false"}


def test_parse_request_base64_body_decoded() -> None:
    request = parse_request(load_event("http_check_base64_body"), "x")

    assert request.json_body() == {"targets": [f"{CLUSTER}/metrics-server"]}


def test_parse_request_routes_on_decoded_path_keeps_raw() -> None:
    request = parse_request(load_event("http_status_encoded_path"), "x")

    assert (request.path, request.raw_path) == ("/status", "/stat%75s")


def test_parse_request_request_id_from_event() -> None:
    request = parse_request(load_event("http_check"), "fallback")

    assert request.request_id == "1-6757f2a1-0a1b2c3d4e5f60718293a4b5"


def test_parse_request_without_method_refused() -> None:
    event = load_event("http_check")
    del event["requestContext"]["http"]["method"]

    with pytest.raises(EventError) as caught:
        parse_request(event, "x")

    assert "requestContext.http.method" in str(caught.value)


# --- routes ---------------------------------------------------------------


def test_healthz_without_credentials_ok(env: dict[str, str], simulator: AckSimulator) -> None:
    answer = call(load_event("http_healthz"), env)

    assert (answer.status, answer.json) == (200, {"status": "ok"})
    assert simulator.calls == []


def test_check_title_case_token_runs_check(
    env: dict[str, str], simulator: AckSimulator, webhooks: WebhookReceiver
) -> None:
    tick(env)
    finish(simulator)

    answer = call(load_event("http_check"), env)

    assert answer.status == 200
    assert answer.json["trigger"] == "http"
    assert (answer.json["checked"], answer.json["changes"], answer.json["sent"]) == (2, 1, 2)
    assert len(webhooks.delivered("dingtalk")) == len(webhooks.delivered("slack")) == 1


def test_check_base64_body_checks_only_named_target(
    env: dict[str, str], simulator: AckSimulator
) -> None:
    answer = call(load_event("http_check_base64_body"), env)

    assert answer.status == 200
    assert (answer.json["targets"], answer.json["checked"]) == (1, 1)
    assert [(c.path, c.query) for c in simulator.calls] == [
        (f"/clusters/{CLUSTER}/components/upgradestatus", {"componentIds": '["metrics-server"]'})
    ]


def test_status_upper_case_token_reads_store_without_calling_ack(
    env: dict[str, str], simulator: AckSimulator
) -> None:
    tick(env)
    calls = len(simulator.calls)

    answer = call(load_event("http_status_upper_case"), env)

    assert answer.status == 200
    assert answer.json == {
        "pending": {},
        "targets": [
            {
                "target": TARGETS[0],
                "seen": True,
                "task_id": "2026-01-02T03:00:00Z",
                "status": "Running",
                "outcome": None,
                "version": "v0.3.9.4",
            },
            {
                "target": TARGETS[1],
                "seen": True,
                "task_id": None,
                "status": "",
                "outcome": None,
                "version": "v1.30.1",
            },
        ],
    }
    assert len(simulator.calls) == calls


def test_status_before_any_check_targets_unseen(env: dict[str, str]) -> None:
    answer = call(load_event("http_status_encoded_path"), env)

    assert answer.status == 200
    assert answer.json["targets"] == [{"target": t, "seen": False} for t in TARGETS]


def test_unknown_route_404(env: dict[str, str]) -> None:
    answer = call(load_event("http_unknown_route"), env)

    assert answer.status == 404
    assert answer.json == {"error": "no route /admin", "routes": ["/check", "/healthz", "/status"]}


def test_wrong_method_405_with_allow(env: dict[str, str], simulator: AckSimulator) -> None:
    answer = call(load_event("http_check_wrong_method"), env)

    assert answer.status == 405
    assert answer.headers["Allow"] == "POST"
    assert "POST" in answer.json["error"]
    assert simulator.calls == []


def _with(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    for key, value in changes.items():
        if key == "query":
            event["queryParameters"] = value
        elif key == "authorization":
            event["headers"].pop("Authorization", None)
            event["headers"].pop("AUTHORIZATION", None)
            if value is not None:
                event["headers"]["Authorization"] = value
        else:
            event[key] = value
    return event


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"body": "not base64!", "isBase64Encoded": True}, "not valid base64"),
        ({"body": "{targets: 1}"}, "not JSON"),
        ({"body": "[1, 2]"}, "a JSON list"),
        ({"body": '{"targets": "all"}'}, "non-empty list of strings"),
        ({"body": '{"targets": ["c9/unknown"]}'}, "'c9/unknown' is not one of the watched"),
        ({"body": '{"target": []}'}, "unknown key 'target'"),
        ({"query": {"dry_run": "maybe"}}, "dry_run is 'maybe'"),
        ({"query": {"dry_run": "true,false"}}, "more than once"),
        ({"query": {"verbose": "1"}}, "unknown query parameter 'verbose'"),
    ],
)
def test_check_bad_input_400(
    env: dict[str, str],
    simulator: AckSimulator,
    webhooks: WebhookReceiver,
    changes: dict[str, Any],
    says: str,
) -> None:
    answer = call(_with(load_event("http_check"), **changes), env)

    assert answer.status == 400
    assert says in answer.json["error"]
    assert simulator.calls == []
    assert webhooks.received == []


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        f"Basic {HTTP_TOKEN}",
        "Bearer wrong-token-0123456789",
        f"Bearer {HTTP_TOKEN}x",
    ],
)
@pytest.mark.parametrize("name", ["http_check", "http_status_upper_case"])
def test_missing_or_wrong_credentials_401(
    env: dict[str, str], simulator: AckSimulator, name: str, authorization: str | None
) -> None:
    answer = call(_with(load_event(name), authorization=authorization), env)

    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert HTTP_TOKEN not in answer.raw["body"]
    assert simulator.calls == []


def test_token_in_lower_case_scheme_accepted(env: dict[str, str]) -> None:
    answer = call(
        _with(load_event("http_status_upper_case"), authorization=f"bearer {HTTP_TOKEN}"), env
    )

    assert answer.status == 200


def test_repeated_authorization_headers_refused(env: dict[str, str]) -> None:
    # FC joins repeated headers with commas: the joined value is no token.
    event = load_event("http_status_upper_case")
    event["headers"]["Authorization"] = f"Bearer {HTTP_TOKEN}"

    assert call(event, env).status == 401


@pytest.mark.parametrize("name", ["http_check", "http_status_upper_case"])
def test_token_mode_without_token_refuses_all_but_healthz(
    env: dict[str, str], simulator: AckSimulator, name: str
) -> None:
    del env["HTTP_TOKEN"]

    assert call(load_event(name), env).status == 401
    assert call(load_event("http_healthz"), env).status == 200
    assert simulator.calls == []


def test_function_auth_trusts_the_gateway(env: dict[str, str]) -> None:
    env.update(HTTP_AUTH="function")
    del env["HTTP_TOKEN"]

    answer = call(_with(load_event("http_check"), authorization=None), env)

    assert answer.status == 200
    assert answer.json["checked"] == 2


def test_misconfiguration_500_carries_only_request_id(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    env["WATCH_TARGETS"] = "not a target"

    answer = call(load_event("http_check"), env)

    assert answer.status == 500
    request_id = "1-6757f2a1-0a1b2c3d4e5f60718293a4b5"
    assert answer.json == {"error": "internal error", "request_id": request_id}
    logged = [r for r in caplog.records if request_id in r.getMessage() and r.exc_info]
    assert logged and "WATCH_TARGETS" in caplog.text


def test_store_failure_500_without_stack_trace(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env["STATE_STORE"] = f"sqlite://{blocker}/state.sqlite3"

    answer = call(load_event("http_status_upper_case"), env)

    assert answer.status == 500
    assert set(answer.json) == {"error", "request_id"}
    assert "Traceback" not in answer.raw["body"]
    assert str(blocker) not in answer.raw["body"]


# --- dry run ---------------------------------------------------------------


def test_dry_run_then_tick_announces(
    env: dict[str, str], simulator: AckSimulator, webhooks: WebhookReceiver
) -> None:
    tick(env)
    finish(simulator)
    status_before = call(load_event("http_status_upper_case"), env).json

    answer = call(load_event("http_check_dry_run"), env)

    assert answer.status == 200
    assert answer.json["dry_run"] is True
    assert (answer.json["changes"], answer.json["sent"]) == (1, 0)
    assert [(p["channel"], p["announcement"]) for p in answer.json["previews"]] == [
        ("dingtalk", f"{TARGETS[0]}|2026-01-02T03:00:00Z|success"),
        ("slack", f"{TARGETS[0]}|2026-01-02T03:00:00Z|success"),
    ]
    slack = answer.json["previews"][1]
    assert slack["payload"]["text"] == slack["title"]
    assert "metrics-server" in slack["text"]
    assert webhooks.received == []
    assert call(load_event("http_status_upper_case"), env).json == status_before

    summary = tick(env)

    assert (summary["changes"], summary["sent"]) == (1, 2)
    assert len(webhooks.delivered("dingtalk")) == len(webhooks.delivered("slack")) == 1


def test_dry_run_shows_messages_still_waiting(
    env: dict[str, str], simulator: AckSimulator, webhooks: WebhookReceiver
) -> None:
    tick(env)
    finish(simulator)
    webhooks.script("slack", 500, "rollup_error")
    tick(env)
    received = len(webhooks.received)

    answer = call(load_event("http_check_dry_run"), env)

    assert answer.json["changes"] == 0
    assert [p["channel"] for p in answer.json["previews"]] == ["slack"]
    assert len(webhooks.received) == received


# --- timer payload, deadline, summary line ---------------------------------


def test_timer_payload_checks_only_named_targets(
    env: dict[str, str], simulator: AckSimulator
) -> None:
    summary = handle(json.dumps(load_event("timer_subset")).encode(), None, environ=env)

    assert (summary["trigger"], summary["targets"], summary["checked"]) == ("timer", 1, 1)
    assert [(c.path, c.query) for c in simulator.calls] == [
        (f"/clusters/{CLUSTER}/components/upgradestatus", {"componentIds": '["metrics-server"]'})
    ]


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ("targets", "the timer payload is not JSON"),
        ('["c0123456789abcdef/flexvolume"]', "the timer payload is a JSON list"),
        ('{"targets": []}', "non-empty list"),
        ('{"targets": ["c0123456789abcdef/coredns"]}', "not one of the watched targets"),
        ('{"targets": ["x"], "extra": 1}', "unknown key 'extra'"),
    ],
)
def test_timer_payload_malformed_refused(
    env: dict[str, str], simulator: AckSimulator, payload: str, says: str
) -> None:
    event = load_event("timer_subset")
    event["payload"] = payload

    with pytest.raises(EventError) as caught:
        handle(json.dumps(event).encode(), None, environ=env)

    assert says in str(caught.value)
    assert simulator.calls == []


class _Function:
    def __init__(self, timeout: int) -> None:
        self.timeout = timeout


class Py310Context:
    """The shape of the FC python3.10 context the handler reads."""

    def __init__(self, request_id: str, timeout: int) -> None:
        self.request_id = request_id
        self.function = _Function(timeout)


class RemainingContext:
    def __init__(self, remaining_ms: int) -> None:
        self.request_id = "req-remaining"
        self._remaining = remaining_ms

    def get_remaining_time_in_ms(self) -> int:
        return self._remaining


def test_deadline_reached_defers_targets_and_says_so(
    env: dict[str, str], simulator: AckSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    summary = tick(env, RemainingContext(0))

    assert (summary["checked"], summary["deferred"]) == (0, 2)
    assert simulator.calls == []
    assert summary_lines(caplog)[-1]["deferred"] == 2
    assert "left for the next tick" in caplog.text


@pytest.mark.parametrize(
    ("context", "environ", "expected"),
    [
        # 30% of the budget is kept back for recording and delivery, 1 s to 20 s.
        (Py310Context("r", 300), {}, 100.0 + 300 - 20),
        (Py310Context("r", 8), {}, 100.0 + 8 - 2.4),
        (Py310Context("r", 8), {"FUNCTION_TIMEOUT": "40"}, 100.0 + 8 - 2.4),
        (None, {"FUNCTION_TIMEOUT": "40"}, 100.0 + 40 - 12),
        (object(), {}, None),
    ],
)
def test_invocation_deadline_from_context_or_setting(
    env: dict[str, str], context: object, environ: dict[str, str], expected: float | None
) -> None:
    from addon_watch.handler import invocation_deadline

    settings = load_settings({**env, **environ})

    assert invocation_deadline(context, settings, 100.0) == pytest.approx(expected)


def test_one_summary_line_per_invocation(
    env: dict[str, str], simulator: AckSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    tick(env, Py310Context("req-timer-1", 300))
    call(load_event("http_status_upper_case"), env)
    call(load_event("http_unknown_route"), env)

    timer, status, unknown = summary_lines(caplog)
    assert {k: timer[k] for k in ("trigger", "request_id", "checked", "changes", "sent")} == {
        "trigger": "timer",
        "request_id": "req-timer-1",
        "checked": 2,
        "changes": 0,
        "sent": 0,
    }
    assert {"failed", "pending", "duration_ms", "deferred"} <= set(timer)
    assert (status["trigger"], status["path"], status["status"]) == ("http", "/status", 200)
    assert status["request_id"] == "1-status_upper_case"
    assert (unknown["path"], unknown["status"]) == ("/admin", 404)


# --- secrets ----------------------------------------------------------------


def test_everything_fails_no_secret_anywhere(
    env: dict[str, str],
    simulator: AckSimulator,
    webhooks: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [
        env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        env["DINGTALK_WEBHOOK_URL"].partition("access_token=")[2],
        env["DINGTALK_SECRET"],
        env["SLACK_WEBHOOK_URL"].rpartition("/")[2],
        HTTP_TOKEN,
    ]
    echo = " ".join([*secrets, env["DINGTALK_WEBHOOK_URL"], env["SLACK_WEBHOOK_URL"]])
    tick(env)
    finish(simulator)
    webhooks.script("dingtalk", 503, f"upstream {echo}")
    webhooks.script("slack", 500, f"rollup_error {echo}")
    tick(env)  # the announcement now waits in the outbox

    def fail_everything() -> None:
        # Refused for good (not asked again), echoing every secret back.
        simulator.fail_next(403, {"code": "Forbidden.RAM", "message": f"denied {echo}"})
        webhooks.script("dingtalk", 200, {"errcode": 310000, "errmsg": f"sign not match {echo}"})
        webhooks.script("slack", 403, f"invalid_token {echo}")

    fail_everything()
    summary = tick(env, Py310Context("req-all-fail", 300))
    fail_everything()
    answer = call(load_event("http_check"), env)

    assert summary["checked"] == 0
    # The cluster's API error; the two failed sends of the tick before wait out their backoff.
    assert len(summary["errors"]) == 1
    assert summary["pending"] == 2
    assert answer.status == 200 and answer.json["checked"] == 0
    shown = {
        "logs": caplog.text + "".join(str(r.exc_text) for r in caplog.records),
        "summary": json.dumps(summary),
        "response": json.dumps(answer.raw),
        "output": "".join(capsys.readouterr()),
    }
    # A secret cut short (error snippets are) leaks too: look for either end of each.
    pieces = [piece for s in secrets for piece in (s[:20], s[-20:])]
    leaks = [(where, p[:4]) for where, text in shown.items() for p in pieces if p in text]
    assert leaks == []


# --- cold start -------------------------------------------------------------


def test_import_index_loads_neither_requests_nor_jinja() -> None:
    code = (
        "import sys, index; "
        "print(sorted(m for m in ('requests', 'jinja2', 'alibabacloud_credentials') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "functions" / "addon_watch",
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout.strip() == "[]"


def test_check_with_nothing_to_render_loads_no_jinja(tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "from tests.fakes.ack_simulator import AckSimulator\n"
        "from tests.fakes.webhooks import WebhookReceiver\n"
        "from tests.invocation import environment, tick, watch\n"
        "from pathlib import Path\n"
        "with AckSimulator() as sim, WebhookReceiver() as hooks:\n"
        "    watch(sim)\n"
        f"    summary = tick(environment(sim, hooks, Path({str(tmp_path)!r})))\n"
        "print(summary['checked'], 'jinja2' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            "PYTHONPATH": f"{ROOT / 'functions' / 'addon_watch'}:{ROOT}",
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        },
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout.strip().splitlines()[-1] == "2 False"


@pytest.mark.parametrize(
    ("watched", "asked", "accepted"),
    [
        ("*", ["c0123456789abcdef/*"], True),
        ("c0123456789abcdef/*", ["c0123456789abcdef/metrics-server"], True),
        ("c0123456789abcdef/nginx-*", ["c0123456789abcdef/nginx-ingress-controller"], True),
        ("c0123456789abcdef/nginx-*", ["c0123456789abcdef/metrics-server"], False),
        ("c0123456789abcdef/*", ["*"], False),
        ("c0123456789abcdef/metrics-server", ["c0123456789abcdef/metrics-server "], True),
        ("c0123456789abcdef/metrics-server", ["not a target"], False),
    ],
)
def test_select_targets_accepts_what_a_watched_pattern_takes_in(
    env: dict[str, str], watched: str, asked: list[str], accepted: bool
) -> None:
    settings = load_settings({**env, "WATCH_TARGETS": watched})

    if accepted:
        assert select_targets({"targets": asked}, settings, "the timer payload")
    else:
        with pytest.raises(EventError) as caught:
            select_targets({"targets": asked}, settings, "the timer payload")
        assert "not one of the watched targets" in str(caught.value)
