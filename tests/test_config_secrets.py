"""Configuration mistakes never echo a secret, and malformed input is refused clearly."""

from __future__ import annotations

import http.client
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from addon_watch.__main__ import main
from addon_watch.config import load_settings
from addon_watch.errors import ConfigError, EventError
from addon_watch.handler import handle
from addon_watch.http_trigger import parse_request
from addon_watch.redaction import REDACTOR
from addon_watch.routing import parse_routes
from tests.invocation import HTTP_TOKEN, call, load_event, serving

CLUSTER = "c0123456789abcdef"
TIMER = {"triggerTime": "2026-01-02T03:05:00Z", "triggerName": "every-5m", "payload": ""}


def fresh(prefix: str) -> str:
    """A secret no other test has registered, so only this test's code can hide it."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def base_env(tmp_path: Path) -> dict[str, str]:
    return {
        "WATCH_TARGETS": f"{CLUSTER}/metrics-server",
        "ACK_REGION": "cn-hangzhou",
        "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/services/T0/B0/x",
        "STATE_STORE": f"sqlite://{tmp_path / 'state.sqlite3'}",
        "HTTP_TOKEN": HTTP_TOKEN,
    }


# --- a secret pasted into the wrong variable --------------------------------------------

SECRET_VARIABLES = {
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "AkSecret",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "CAIS",
    "DINGTALK_SECRET": "SEC",
    "HTTP_TOKEN": "Http",
}
WRONG_VARIABLES = ("ACK_REGION", "WATCH_TARGETS", "STATE_STORE", "ACK_NETWORK")


def misplaced(tmp_path: Path, holder: str, wrong: str, secret: str) -> dict[str, str]:
    env = {**base_env(tmp_path), holder: secret, wrong: secret}
    if holder.startswith("ALIBABA_CLOUD_"):
        env.update(ALIBABA_CLOUD_ACCESS_KEY_ID="LTAI5tExampleKeyId")
        env.setdefault("ALIBABA_CLOUD_ACCESS_KEY_SECRET", fresh("AkSecret"))
    if holder == "DINGTALK_SECRET":
        env["DINGTALK_WEBHOOK_URL"] = "http://127.0.0.1:9/robot/send?access_token=t0123456"
    return env


@pytest.mark.parametrize("wrong", WRONG_VARIABLES)
@pytest.mark.parametrize("holder", sorted(SECRET_VARIABLES))
def test_load_settings_secret_in_wrong_variable_not_echoed(
    holder: str, wrong: str, tmp_path: Path
) -> None:
    secret = fresh(SECRET_VARIABLES[holder])

    with pytest.raises(ConfigError) as caught:
        load_settings(misplaced(tmp_path, holder, wrong, secret))

    message = str(caught.value)
    assert wrong in message
    assert secret not in message and secret.lower() not in message.lower()


@pytest.mark.parametrize("wrong", WRONG_VARIABLES)
def test_handle_sts_token_as_setting_kept_out_of_log_and_error(
    wrong: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = fresh("CAIS")
    env = misplaced(tmp_path, "ALIBABA_CLOUD_SECURITY_TOKEN", wrong, secret)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ConfigError) as caught:
        handle(json.dumps(TIMER).encode(), None, environ=env)

    assert secret not in str(caught.value) and secret not in caplog.text
    assert f'"error": "ConfigError: {wrong}' in caplog.text


def test_cli_sts_token_as_region_kept_off_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = fresh("CAIS")

    code = main(
        ["check"], misplaced(tmp_path, "ALIBABA_CLOUD_SECURITY_TOKEN", "ACK_REGION", secret)
    )

    captured = capsys.readouterr()
    assert code == 2 and "ACK_REGION" in captured.err
    assert secret not in captured.err + captured.out


@pytest.mark.parametrize(
    ("value", "hidden", "scheme"),
    [
        ("mysql://watch:Pa55word0rd@db.internal/state", "Pa55word0rd", "mysql://"),
        ("oss://AKIDsecretkey99@bucket/prefix", "AKIDsecretkey99", "oss://"),
        ("sqlite://admin:Hunter2pass@host/state.db", "Hunter2pass", "sqlite://"),
        ("redis://:Sup3rSecretPw@cache:6379/0", "Sup3rSecretPw", "redis://"),
    ],
)
def test_load_settings_state_store_credentials_not_echoed(
    value: str, hidden: str, scheme: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**base_env(tmp_path), "STATE_STORE": value})

    message = str(caught.value)
    assert "STATE_STORE" in message and scheme in message
    assert hidden not in message


# --- case variants of a secret ----------------------------------------------------------


def test_redactor_scrubs_any_case_of_a_secret() -> None:
    secret = fresh("SECaBc")
    REDACTOR.register(secret)

    scrubbed = REDACTOR.scrub(f"lower {secret.lower()} upper {secret.upper()} as is {secret}")

    assert scrubbed == "lower *** upper *** as is ***"


@pytest.mark.parametrize(
    ("key", "shape"),
    [("language", "{}"), ("type", "{}"), ("filters", "outcomes: [{}]"), ("at_all", "{}")],
)
def test_parse_routes_lower_cased_signing_secret_not_shown(key: str, shape: str) -> None:
    secret = fresh("SEC")
    fields = {
        "name": "ops",
        "type": "dingtalk",
        "webhook_url": "https://h/r?access_token=t0123456",
        "secret": "${env:OPS_SECRET}",
        key: yaml.safe_load(shape.format(secret)),
    }
    text = yaml.safe_dump({"channels": [fields]})

    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {"OPS_SECRET": secret})

    assert key in str(caught.value)
    assert secret.lower() not in str(caught.value).lower()


# --- deep nesting -----------------------------------------------------------------------


def test_json_body_deeply_nested_is_an_event_error() -> None:
    event = load_event("http_check")
    event["body"] = "[" * 200_000

    request = parse_request(event, "x")
    with pytest.raises(EventError) as caught:
        request.json_body()

    assert "nested" in str(caught.value)


def test_http_check_deeply_nested_body_400(tmp_path: Path) -> None:
    event = load_event("http_check")
    event["body"] = "[" * 200_000

    answer = call(event, base_env(tmp_path))

    assert answer.status == 400 and "nested" in answer.json["error"]


def test_parse_routes_deeply_nested_names_config_variable() -> None:
    text = "channels: " + "[" * 5000 + "]" * 5000 + "\n"

    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {})

    assert "ADDON_WATCH_CONFIG" in str(caught.value) and "nested" in str(caught.value)


def test_cli_render_deeply_nested_routing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text("channels: " + "[" * 5000 + "]" * 5000 + "\n")

    code = main(["render"], {**base_env(tmp_path), "ADDON_WATCH_CONFIG": str(config)})

    assert code == 2 and "ADDON_WATCH_CONFIG" in capsys.readouterr().err


def test_http_with_broken_settings_summary_logged_at_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    answer = call(load_event("http_check"), {**base_env(tmp_path), "ACK_REGION": "nowhere"})

    (record,) = [r for r in caplog.records if "addon_watch.summary" in r.getMessage()]
    assert answer.status == 500
    assert record.levelno == logging.ERROR


# --- the same robot twice ---------------------------------------------------------------


def test_load_settings_env_robot_repeated_in_routing_file_refused(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:9/robot/send?access_token={fresh('tok')}"
    config = tmp_path / "routes.yaml"
    config.write_text("channels:\n  - {name: ops, type: dingtalk, webhook_url: '${env:OPS_URL}'}\n")
    env = {
        **base_env(tmp_path),
        "DINGTALK_WEBHOOK_URL": url,
        "ADDON_WATCH_CONFIG": str(config),
        "OPS_URL": url,
    }

    with pytest.raises(ConfigError) as caught:
        load_settings(env)

    message = str(caught.value)
    assert "'dingtalk'" in message and "'dingtalk:ops'" in message
    assert url not in message and "access_token" not in message


def test_load_settings_two_routing_channels_one_webhook_refused(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:9/services/T0/B0/{fresh('hook')}"
    config = tmp_path / "routes.yaml"
    config.write_text(
        "channels:\n"
        f"  - {{name: a, type: slack, webhook_url: '{url}'}}\n"
        f"  - {{name: b, type: slack, webhook_url: '{url}/'}}\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_settings({**base_env(tmp_path), "ADDON_WATCH_CONFIG": str(config)})

    message = str(caught.value)
    assert "'slack:a'" in message and "'slack:b'" in message and url not in message


# --- small gaps -------------------------------------------------------------------------


def test_load_settings_dingtalk_url_without_access_token_refused(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "DINGTALK_WEBHOOK_URL": "https://oapi.dingtalk.com/robot/send"}

    with pytest.raises(ConfigError) as caught:
        load_settings(env)

    assert "DINGTALK_WEBHOOK_URL" in str(caught.value) and "access_token" in str(caught.value)


def test_parse_routes_dingtalk_url_without_access_token_refused() -> None:
    text = "channels:\n  - {name: ops, type: dingtalk, webhook_url: 'https://h/robot/send?x=1'}\n"

    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {})

    assert "webhook_url" in str(caught.value) and "access_token" in str(caught.value)


@pytest.mark.parametrize("value", ["abc,;", "13800000000,12ab", "+", "138 0000 0000"])
def test_load_settings_bad_at_mobiles_refused(value: str, tmp_path: Path) -> None:
    env = {
        **base_env(tmp_path),
        "DINGTALK_WEBHOOK_URL": "http://127.0.0.1:9/robot/send?access_token=t0123456",
        "DINGTALK_AT_MOBILES": value,
    }

    with pytest.raises(ConfigError) as caught:
        load_settings(env)

    assert "DINGTALK_AT_MOBILES" in str(caught.value) and "digits" in str(caught.value)


def test_load_settings_good_at_mobiles_read(tmp_path: Path) -> None:
    env = {
        **base_env(tmp_path),
        "DINGTALK_WEBHOOK_URL": "http://127.0.0.1:9/robot/send?access_token=t0123456",
        "DINGTALK_AT_MOBILES": "13800000000, +8613900000000,@13700000000",
    }

    settings = load_settings(env)

    assert settings.dingtalk_at_mobiles == ("13800000000", "+8613900000000", "13700000000")


def test_parse_routes_bad_at_mobiles_refused() -> None:
    text = (
        "channels:\n  - {name: ops, type: dingtalk, "
        "webhook_url: 'https://h/r?access_token=t0123456', at_mobiles: ['abc']}\n"
    )

    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {})

    assert "at_mobiles" in str(caught.value) and "digits" in str(caught.value)


def test_parse_routes_duplicate_key_refused_with_its_path() -> None:
    secret = fresh("https://127.0.0.1:9/services/T/B/")
    text = (
        "channels:\n  - name: ops\n    type: slack\n"
        f"    webhook_url: {secret}\n    filters:\n      outcomes: [failed]\n"
        "      outcomes: [canceled]\n"
    )

    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {})

    message = str(caught.value)
    assert "channels[0].filters.outcomes" in message and "twice" in message
    assert "failed" not in message and secret not in message


def test_parse_routes_duplicate_url_key_not_shown() -> None:
    secret = fresh("https://127.0.0.1:9/services/T/B/")
    text = f"channels: []\n{secret}: 1\n{secret}: 2\n"

    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {})

    assert "twice" in str(caught.value) and secret not in str(caught.value)


# --- the local server -------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with serving(base_env(tmp_path)) as address:
        yield address


def raw_post(server: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPConnection(server, timeout=5)
    connection.putrequest("POST", "/check")
    connection.putheader("Authorization", f"Bearer {HTTP_TOKEN}")
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    connection.send(body)
    answer = connection.getresponse()
    data = json.loads(answer.read())
    connection.close()
    return answer.status, data


@pytest.mark.parametrize("length", ["-5", "abc", "1e3"])
def test_serve_bad_content_length_400(server: str, length: str) -> None:
    status, body = raw_post(server, {"Content-Length": length}, b"")

    assert status == 400 and "Content-Length" in body["error"]


def test_serve_chunked_body_read(server: str) -> None:
    payload = json.dumps({"targets": ["c0123456789abcdef/not-watched"]}).encode()
    chunked = b"".join(
        f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for piece in (payload[:7], payload[7:])
    )

    status, body = raw_post(server, {"Transfer-Encoding": "chunked"}, chunked + b"0\r\n\r\n")

    # Read, the body narrows the check; this target is not watched, so it is refused.
    assert status == 400 and "not one of the watched targets" in body["error"]


def test_parse_routes_long_unregistered_word_under_language_not_shown() -> None:
    # A token-sized word nobody registered (the routing file alone, no environment).
    token = fresh("xoxb")
    text = (
        "channels:\n  - {name: ops, type: dingtalk, "
        f"webhook_url: 'https://h/r?access_token=t0123456', language: {token}}}\n"
    )

    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {})

    assert "language" in str(caught.value) and token.lower() not in str(caught.value).lower()


def test_http_check_long_secret_as_target_not_shown_in_part(tmp_path: Path) -> None:
    # Cut to a length before scrubbing, a long STS token would show its first part.
    token = fresh("CAIS") * 20
    env = {
        **base_env(tmp_path),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tExampleKeyId",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": fresh("AkSecret"),
        "ALIBABA_CLOUD_SECURITY_TOKEN": token,
    }
    event = load_event("http_check")
    event["body"] = json.dumps({"targets": [token]})

    answer = call(event, env)

    assert answer.status == 400 and "not one of the watched targets" in answer.json["error"]
    assert token[:20] not in answer.raw["body"]
