"""Settings of the ACK client (targets, exclusions, concurrency, network), credentials, deadline."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest

from addon_watch.config import (
    DEFAULT_ACK_CONCURRENCY,
    AccessKey,
    load_settings,
    parse_exclude,
    parse_targets,
)
from addon_watch.credentials import CredentialsChain, resolve_credentials
from addon_watch.errors import ConfigError, CredentialsError
from addon_watch.fetch import fetch_deadline
from addon_watch.model import Target
from addon_watch.redaction import Secret

BASE = {"ACK_REGION": "cn-hangzhou", "WATCH_TARGETS": "c1/metrics-server"}
SLACK = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/settingstest"}


def settings(**env: str):  # type: ignore[no-untyped-def]
    return load_settings({**BASE, **SLACK, **env})


# --- targets and exclusions ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", [Target("*", "*")]),
        ("c1/*", [Target("c1", "*")]),
        ("*/metrics-server", [Target("*", "metrics-server")]),
        ("c1/nginx-*, c1/ack-?[ab]", [Target("c1", "nginx-*"), Target("c1", "ack-?[ab]")]),
        ("c1/a,*,c1/a,*/*", [Target("c1", "a"), Target("*", "*")]),
    ],
)
def test_targets_accept_wildcards(text: str, expected: list[Target]) -> None:
    assert list(parse_targets(text)) == expected


@pytest.mark.parametrize("text", ["*/", "c1/", "c*/metrics-server", "c1/a b", "**", "c1/a/b"])
def test_targets_refuse_malformed_wildcards_naming_the_item(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_targets(text)

    assert "WATCH_TARGETS" in str(caught.value)
    assert repr(text) in str(caught.value)


def test_exclude_uses_the_target_syntax_and_may_be_empty() -> None:
    assert settings().exclude == ()
    assert settings(WATCH_EXCLUDE="*/ack-*, c2/*").exclude == (
        Target("*", "ack-*"),
        Target("c2", "*"),
    )
    with pytest.raises(ConfigError) as caught:
        parse_exclude("ack-*")

    assert "WATCH_EXCLUDE has 'ack-*'" in str(caught.value)


# --- concurrency and endpoint ----------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("", DEFAULT_ACK_CONCURRENCY), ("1", 1), ("64", 64), (" 8 ", 8)]
)
def test_concurrency_setting_reads_whole_numbers(value: str, expected: int) -> None:
    assert settings(ACK_CONCURRENCY=value).ack_concurrency == expected


@pytest.mark.parametrize("value", ["0", "65", "-1", "four", "1.5", "²"])
def test_concurrency_setting_refuses_others_with_the_range(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(ACK_CONCURRENCY=value)

    assert "ACK_CONCURRENCY" in str(caught.value)
    assert "from 1 to 64" in str(caught.value)


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({}, "https://cs.cn-hangzhou.aliyuncs.com"),
        ({"ACK_NETWORK": "public"}, "https://cs.cn-hangzhou.aliyuncs.com"),
        ({"ACK_NETWORK": "vpc"}, "https://cs-vpc.cn-hangzhou.aliyuncs.com"),
        ({"ACK_NETWORK": "VPC"}, "https://cs-vpc.cn-hangzhou.aliyuncs.com"),
        (
            {"ACK_NETWORK": "vpc", "ACK_ENDPOINT": "https://cs.example.internal/"},
            "https://cs.example.internal",
        ),
    ],
)
def test_endpoint_is_regional_vpc_on_request_and_overridable(
    env: dict[str, str], endpoint: str
) -> None:
    assert settings(**env).ack_endpoint == endpoint


def test_network_setting_refuses_unknown_values() -> None:
    with pytest.raises(ConfigError) as caught:
        settings(ACK_NETWORK="intranet")

    assert "ACK_NETWORK is 'intranet'; expected 'public' or 'vpc'" in str(caught.value)


# --- credentials -----------------------------------------------------------


class FakeCreds:
    def __init__(self, number: int, expiration: int | None) -> None:
        self.number, self.expiration = number, expiration

    def get_access_key_id(self) -> str:
        return f"STS.id-{self.number}"

    def get_access_key_secret(self) -> str:
        return f"chain-secret-{self.number}"

    def get_security_token(self) -> str:
        return f"chain-token-{self.number}"

    def get_expiration(self) -> int | None:
        return self.expiration


class FakeProvider:
    """Hands out numbered credentials valid for ``lifetime`` seconds from the clock's now."""

    def __init__(self, clock: list[float], lifetime: int | None = 3600) -> None:
        self.clock, self.lifetime = clock, lifetime
        self.asked = 0
        self.failing = False

    def get_credentials(self) -> FakeCreds:
        if self.failing:
            raise RuntimeError("metadata unreachable with chain-secret-leak")
        self.asked += 1
        expiry = None if self.lifetime is None else int(self.clock[0]) + self.lifetime
        return FakeCreds(self.asked, expiry)


def make_chain(provider: FakeProvider, clock: list[float]) -> tuple[CredentialsChain, list[int]]:
    built: list[int] = []

    def factory() -> FakeProvider:
        built.append(1)
        return provider

    return CredentialsChain(factory, clock=lambda: clock[0]), built


def test_chain_credentials_are_reused_until_shortly_before_they_expire() -> None:
    clock = [1_000_000.0]
    provider = FakeProvider(clock)
    chain, built = make_chain(provider, clock)

    first = chain.get()
    clock[0] += 3600 - 301
    still = chain.get()
    clock[0] += 2
    refreshed = chain.get()

    assert first is still
    assert first.expires_at == 1_000_000 + 3600
    assert refreshed.access_key_id == "STS.id-2"
    assert refreshed.security_token == Secret("chain-token-2")
    assert provider.asked == 2
    assert built == [1]


def test_chain_credentials_without_expiry_are_asked_again_after_a_while() -> None:
    clock = [1_000_000.0]
    provider = FakeProvider(clock, lifetime=None)
    chain, _ = make_chain(provider, clock)

    chain.get()
    clock[0] += 899
    chain.get()
    clock[0] += 2
    chain.get()

    assert provider.asked == 2


def test_chain_failing_to_refresh_keeps_unexpired_credentials_then_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [1_000_000.0]
    provider = FakeProvider(clock)
    chain, _ = make_chain(provider, clock)
    first = chain.get()
    provider.failing = True

    clock[0] += 3500
    with caplog.at_level(logging.WARNING):
        kept = chain.get()
    clock[0] += 200
    with pytest.raises(CredentialsError) as caught:
        chain.get()

    assert kept is first
    assert "refreshing credentials failed" in caplog.text
    assert "RuntimeError" in str(caught.value)


def test_chain_error_never_shows_a_secret() -> None:
    clock = [1_000_000.0]
    provider = FakeProvider(clock)
    chain, _ = make_chain(provider, clock)
    chain.get()  # registers chain-secret-1 with the redactor
    provider.failing = True
    Secret("chain-secret-leak")

    clock[0] += 4000
    with pytest.raises(CredentialsError) as caught:
        chain.get()

    assert "chain-secret-leak" not in str(caught.value)


def test_environment_credentials_never_touch_the_chain() -> None:
    def factory() -> object:
        raise AssertionError("the chain was built")

    chain = CredentialsChain(factory)
    key = AccessKey("env-id", Secret("env-secret-value"), Secret("env-token-value"))

    creds = resolve_credentials(key, chain)

    assert (creds.access_key_id, creds.security_token) == ("env-id", Secret("env-token-value"))
    assert creds.expires_at is None


# --- deadline --------------------------------------------------------------


def test_deadline_from_remaining_time_keeps_a_share_for_delivery() -> None:
    context = SimpleNamespace(get_remaining_time_in_ms=lambda: 60_000)

    before = time.monotonic()
    deadline = fetch_deadline(context, started=0.0)
    after = time.monotonic()

    assert deadline is not None
    assert before + 42 <= deadline <= after + 42


def test_deadline_from_the_function_timeout_counts_from_the_start() -> None:
    context = SimpleNamespace(function=SimpleNamespace(timeout=10))

    assert fetch_deadline(context, started=500.0) == pytest.approx(500.0 + 10 - 3)


@pytest.mark.parametrize(
    "context", [None, object(), SimpleNamespace(function=SimpleNamespace(timeout=True))]
)
def test_no_deadline_without_a_context_that_tells_the_time(context: object) -> None:
    assert fetch_deadline(context, started=0.0) is None
