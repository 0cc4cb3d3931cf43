"""Routing-file mistakes are named without showing a secret, and values are read leniently."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from addon_watch.__main__ import main
from addon_watch.errors import ConfigError
from addon_watch.handler import handle
from addon_watch.redaction import REDACTOR
from addon_watch.routing import parse_routes

CLUSTER = "c0123456789abcdef"
BASE_ENV = {"WATCH_TARGETS": f"{CLUSTER}/metrics-server", "ACK_REGION": "cn-hangzhou"}
SLACK_URL = "https://127.0.0.1:1/services/T0/B0/"
TIMER = {"triggerTime": "2026-01-02T03:05:00Z", "triggerName": "every-5m", "payload": ""}

# Each case: a routing file, the secret it holds, what its error must say instead, and
# whether the secret can be recognised (and so scrubbed from any later log line).
LEAKS = {
    "url_without_key": (
        "channels:\n  - {name: ops, type: slack, http://127.0.0.1:1/services/T/B/SECRETpathA1}\n",
        "SECRETpathA1",
        "key 3",
        True,
    ),
    "url_as_name": (
        "channels:\n  - name: https://127.0.0.1:1/services/T/B/NAMEsecretB2\n"
        "    type: slack\n    webhook_url: https://127.0.0.1:1/services/T/B/x\n",
        "NAMEsecretB2",
        "name",
        True,
    ),
    "secret_as_language": (
        "channels:\n  - name: ops\n    type: dingtalk\n"
        "    webhook_url: https://127.0.0.1:1/robot/send?access_token=TOKENsecretC3\n"
        "    secret: SECsigningSecretC3\n    language: SECsigningSecretC3\n",
        "SECsigningSecretC3",
        "language",
        True,
    ),
    "secret_run_into_language": (
        "channels:\n  - name: ops\n    type: dingtalk\n"
        "    webhook_url: https://127.0.0.1:1/robot/send?access_token=TOKENsecretD4\n"
        "    language: en secret SECsigningSecretD4\n",
        "SECsigningSecretD4",
        "language",
        False,
    ),
    "url_as_type": (
        "channels:\n  - {name: ops, type: 'https://127.0.0.1:1/services/T/B/TYPEsecretE5'}\n",
        "TYPEsecretE5",
        "type",
        True,
    ),
    "url_as_filter_key": (
        "channels:\n  - name: ops\n    type: slack\n    webhook_url: https://127.0.0.1:1/s/t\n"
        "    filters: {outcomes: [failed], https://127.0.0.1:1/services/T/B/FILTERsecretF6}\n",
        "FILTERsecretF6",
        "key 2",
        True,
    ),
    "url_as_outcome": (
        "channels:\n  - name: ops\n    type: slack\n    webhook_url: https://127.0.0.1:1/s/t\n"
        "    filters: {outcomes: ['https://127.0.0.1:1/services/T/B/OUTCOMEsecretG7']}\n",
        "OUTCOMEsecretG7",
        "outcomes",
        True,
    ),
    "env_secret_as_language": (
        "channels:\n  - name: ops\n    type: dingtalk\n"
        "    webhook_url: https://127.0.0.1:1/robot/send?access_token=x\n"
        "    secret: ${env:OPS_SECRET}\n    language: SECfromEnvironmentH8\n",
        "SECfromEnvironmentH8",
        "language",
        True,
    ),
}


@pytest.mark.parametrize("case", sorted(LEAKS))
def test_parse_routes_mistake_with_secret_named_without_it(case: str) -> None:
    text, secret, named, registered = LEAKS[case]

    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {"OPS_SECRET": "SECfromEnvironmentH8"})

    message = str(caught.value)
    assert secret not in message
    assert named in message and message.startswith("routes.yaml: channels[0]")
    assert (secret not in REDACTOR.scrub(f"seen later in a log: {secret}")) is registered


@pytest.mark.parametrize("case", sorted(LEAKS))
def test_handle_routing_mistake_summary_and_log_hold_no_secret(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A secret no earlier test has seen: safe on its own, not because it was registered before.
    text, secret, _, _ = LEAKS[case]
    text, secret = text.replace(secret, f"{secret}x"), f"{secret}x"
    config = tmp_path / "routes.yaml"
    config.write_text(text)
    env = {**BASE_ENV, "ADDON_WATCH_CONFIG": str(config), "OPS_SECRET": "SECfromEnvironmentH8x"}
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ConfigError) as caught:
        handle(json.dumps(TIMER).encode(), None, environ=env)

    assert secret not in str(caught.value)
    assert secret not in caplog.text
    (summary,) = [r.getMessage() for r in caplog.records if "addon_watch.summary" in r.getMessage()]
    assert '"error": "ConfigError: ' in summary


def test_cli_routing_mistake_stderr_holds_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, secret, _, _ = LEAKS["url_without_key"]
    text, secret = text.replace(secret, f"{secret}y"), f"{secret}y"
    config = tmp_path / "routes.yaml"
    config.write_text(text)

    code = main(["check"], {**BASE_ENV, "ADDON_WATCH_CONFIG": str(config)})

    captured = capsys.readouterr()
    assert code == 2
    assert "unknown keys" in captured.err and "webhook_url" in captured.err
    assert secret not in captured.err + captured.out


def test_parse_routes_unknown_key_looking_like_a_value_hints_at_webhook_url() -> None:
    text, _, _, _ = LEAKS["url_without_key"]

    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {})

    assert "not shown" in str(caught.value) and "'webhook_url: ...'" in str(caught.value)


def test_parse_routes_plain_unknown_key_still_shown() -> None:
    text = "channels:\n  - {name: ops, type: slack, webhook_url: 'https://h/s', colour: red}"

    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {})

    assert "unknown keys ['colour']" in str(caught.value)


def test_parse_routes_every_url_and_secret_registered_before_validation() -> None:
    text = (
        "channels:\n  - name: ops\n    type: dingtalk\n"
        "    webhook_url: https://127.0.0.1:1/robot/send?access_token=REGtokenJ1\n"
        "    secret: SECregisteredJ1\n    app_token: TOKENregisteredJ1\n    language: fr\n"
        "  - {name: b, type: slack, webhook_url: '${env:B_URL}'}\n"
    )
    env = {"B_URL": f"{SLACK_URL}ENVsecretJ1"}

    with pytest.raises(ConfigError):
        parse_routes(text, "routes.yaml", env)

    scrubbed = REDACTOR.scrub("REGtokenJ1 SECregisteredJ1 TOKENregisteredJ1 ENVsecretJ1")
    assert scrubbed == "*** *** *** ***"


# --- values read leniently, or refused clearly ------------------------------------------


def channel(extra: str) -> str:
    url = "https://h/r?access_token=t"
    return f"channels:\n  - {{name: ops, type: dingtalk, webhook_url: '{url}', {extra}}}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("false", False),
        ('"true"', True),
        ('"TRUE"', True),
        ('"False"', False),
        ('"yes"', True),
        ('"No"', False),
        ('"1"', True),
        ('"0"', False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("null", False),
    ],
)
def test_parse_routes_at_all_booleans_and_their_strings_read(value: str, expected: bool) -> None:
    (spec,) = parse_routes(channel(f"at_all: {value}"), "routes.yaml", {})

    assert spec.dingtalk.at_all is expected


@pytest.mark.parametrize("value", ['"maybe"', "2", "[true]", '"truee"'])
def test_parse_routes_at_all_other_values_refused(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_routes(channel(f"at_all: {value}"), "routes.yaml", {})

    message = str(caught.value)
    assert "channels[0] (dingtalk:ops).at_all" in message and "expected true or false" in message


def test_parse_routes_outcomes_error_example_is_outcomes() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_routes(channel("filters: {outcomes: failed}"), "routes.yaml", {})

    message = str(caught.value)
    assert "filters.outcomes must be a list" in message
    assert "13800000000" not in message and "[failed, canceled]" in message


@pytest.mark.parametrize(
    ("extra", "kind", "language", "outcomes"),
    [
        ("language: EN", "dingtalk", "en", frozenset()),
        ("language: Zh, filters: {outcomes: [Failed, CANCELED]}", "dingtalk", "zh", {"failed"}),
    ],
)
def test_parse_routes_enums_any_case_accepted(
    extra: str, kind: str, language: str, outcomes: frozenset[str]
) -> None:
    (spec,) = parse_routes(channel(extra), "routes.yaml", {})

    assert (spec.kind, spec.language) == (kind, language)
    assert outcomes <= spec.filter.outcomes


def test_parse_routes_type_any_case_keeps_channel_name_lower_case() -> None:
    text = "channels:\n  - {name: ops, type: Slack, webhook_url: 'https://h/s'}"

    (spec,) = parse_routes(text, "routes.yaml", {})

    assert (spec.name, spec.kind) == ("slack:ops", "slack")


def test_parse_routes_numeric_name_read_as_text() -> None:
    text = "channels:\n  - {name: 123, type: slack, webhook_url: 'https://h/s'}"

    (spec,) = parse_routes(text, "routes.yaml", {})

    assert spec.name == "slack:123"


def test_parse_routes_yaml_error_does_not_quote_the_file() -> None:
    text = "channels:\n  - {name: ops, type: slack, webhook_url: *SECRETaliasK9}\n"

    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {})

    assert "not valid YAML" in str(caught.value) and "SECRETaliasK9" not in str(caught.value)
