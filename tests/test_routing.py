"""Routing: several channels with filters from a YAML file, env references, env-only case."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from addon_watch.config import load_settings
from addon_watch.errors import ConfigError
from addon_watch.handler import build_notifiers, handle
from addon_watch.model import Outcome
from addon_watch.routing import RouteFilter, build_routes, channels_for, parse_routes
from tests.delivery_helpers import announcement
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import DINGTALK_SECRET, WebhookReceiver

CLUSTER = "c0123456789abcdef0123456789abcdef"
BASE_ENV = {"WATCH_TARGETS": f"{CLUSTER}/metrics-server", "ACK_REGION": "cn-hangzhou"}
ROUTES = """
channels:
  - name: ops
    type: dingtalk
    webhook_url: ${env:OPS_URL}
    secret: ${env:OPS_SECRET}
    keyword: ACK
    at_mobiles: ["13800000000"]
    filters:
      outcomes: [failed, canceled]
  - name: platform
    type: dingtalk
    webhook_url: ${env:PLATFORM_URL}
    secret: ${env:OPS_SECRET}
    language: en
    filters:
      components: ["nginx-*", "metrics-server"]
  - name: all
    type: slack
    webhook_url: ${env:SLACK_ALL_URL}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "addon-watch.yaml"
    path.write_text(text)
    return path


def settings_env(tmp_path: Path, hooks: WebhookReceiver, **extra: str) -> dict[str, str]:
    return {
        **BASE_ENV,
        "ADDON_WATCH_CONFIG": str(write(tmp_path, ROUTES)),
        "OPS_URL": hooks.dingtalk_url,
        "OPS_SECRET": DINGTALK_SECRET,
        "PLATFORM_URL": hooks.add_dingtalk_robot("platform-token"),
        "SLACK_ALL_URL": hooks.slack_url,
        "STATE_STORE": f"sqlite://{tmp_path / 'state.sqlite3'}",
        **extra,
    }


@pytest.mark.parametrize(
    ("route", "cluster", "component", "outcome", "taken"),
    [
        (RouteFilter(), CLUSTER, "metrics-server", Outcome.SUCCESS, True),
        (RouteFilter(clusters=("c0123*",)), CLUSTER, "x", Outcome.SUCCESS, True),
        (RouteFilter(clusters=("cfff*",)), CLUSTER, "x", Outcome.SUCCESS, False),
        (
            RouteFilter(components=("nginx-*",)),
            CLUSTER,
            "nginx-ingress-controller",
            Outcome.FAILED,
            True,
        ),
        (RouteFilter(components=("nginx-*",)), CLUSTER, "metrics-server", Outcome.FAILED, False),
        (RouteFilter(components=("Metrics-*",)), CLUSTER, "metrics-server", Outcome.FAILED, False),
        (RouteFilter(outcomes=frozenset({"failed"})), CLUSTER, "x", Outcome.FAILED, True),
        (RouteFilter(outcomes=frozenset({"failed"})), CLUSTER, "x", Outcome.CANCELED, False),
        (
            RouteFilter(("c0*",), ("metrics-*",), frozenset({"success"})),
            CLUSTER,
            "metrics-server",
            Outcome.SUCCESS,
            True,
        ),
    ],
)
def test_route_filter_truth_table(
    route: RouteFilter, cluster: str, component: str, outcome: Outcome, taken: bool
) -> None:
    assert route.accepts(announcement(component, outcome, cluster_id=cluster)) is taken


def test_routing_file_channels_are_named_by_type_and_name(tmp_path: Path) -> None:
    with WebhookReceiver() as hooks:
        settings = load_settings(settings_env(tmp_path, hooks))

    routes = build_routes(settings)

    assert list(routes) == ["dingtalk:ops", "dingtalk:platform", "slack:all"]
    assert [r.language for r in routes.values()] == ["zh", "en", "en"]
    ops = settings.routes[0]
    assert ops.secret is not None and ops.secret.reveal() == DINGTALK_SECRET
    assert ops.dingtalk.keyword == "ACK" and ops.dingtalk.at_mobiles == ("13800000000",)
    assert DINGTALK_SECRET not in repr(settings) and "access_token" not in repr(settings)


def test_routing_filters_choose_the_channels_of_each_announcement(tmp_path: Path) -> None:
    with WebhookReceiver() as hooks:
        routes = build_routes(load_settings(settings_env(tmp_path, hooks)))

    failed_nginx = announcement("nginx-ingress-controller", Outcome.FAILED)
    ok_flex = announcement("flexvolume", Outcome.SUCCESS)

    assert channels_for(routes, failed_nginx) == ["dingtalk:ops", "dingtalk:platform", "slack:all"]
    assert channels_for(routes, ok_flex) == ["slack:all"]


def test_plain_environment_keeps_one_channel_per_kind(tmp_path: Path) -> None:
    env = {
        **BASE_ENV,
        "DINGTALK_WEBHOOK_URL": "https://oapi.dingtalk.com/robot/send?access_token=t",
        "DINGTALK_AT_MOBILES": "@13800000000, 13900000000",
        "DINGTALK_AT_USER_IDS": "manager4711",
        "DINGTALK_AT_ALL": "true",
        "DINGTALK_KEYWORD": "ACK",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
    }

    routes = build_notifiers(load_settings(env), session=None)  # type: ignore[arg-type]

    assert list(routes) == ["dingtalk", "slack"]
    options = routes["dingtalk"].notifier.options  # type: ignore[attr-defined]
    assert options.at_mobiles == ("13800000000", "13900000000")
    assert options.at_user_ids == ("manager4711",) and options.at_all and options.keyword == "ACK"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("channels: []", "non-empty list 'channels:'"),
        ("channels: [\n  - name: a\n    type: x", "not valid YAML"),
        ("channels:\n  - name: Ops\n    type: slack\n    webhook_url: https://h/s", "name 'Ops'"),
        ("channels:\n  - name: a\n    type: teams\n    webhook_url: https://h/s", "type 'teams'"),
        ("channels:\n  - name: a\n    type: slack\n    url: https://h/s", "unknown keys ['url']"),
        ("channels:\n  - name: a\n    type: slack", "webhook_url is missing"),
        ("channels:\n  - name: a\n    type: slack\n    webhook_url: ftp://h", "not a valid http"),
        (
            "channels:\n  - {name: a, type: slack, webhook_url: 'https://h/s'}\n"
            "  - {name: a, type: slack, webhook_url: 'https://h/t'}",
            "defined twice",
        ),
        (
            "channels:\n  - {name: a, type: slack, webhook_url: 'https://h/s', "
            "filters: {outcomes: [done]}}",
            "outcomes has ['done']",
        ),
        (
            "channels:\n  - {name: a, type: slack, webhook_url: 'https://h/s', secret: x}",
            "DingTalk only",
        ),
        (
            "channels:\n  - {name: a, type: dingtalk, webhook_url: '${env:NOPE}'}",
            "channels[0] (dingtalk:a).webhook_url refers to ${env:NOPE}, which is not set",
        ),
    ],
)
def test_routing_file_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yaml", {})

    assert message in str(caught.value)
    assert str(caught.value).startswith("routes.yaml")


def test_routing_file_error_never_shows_a_secret_value() -> None:
    text = "channels:\n  - {name: a, type: dingtalk, webhook_url: '${env:URL} x'}"

    with pytest.raises(ConfigError) as caught:
        parse_routes(
            text, "routes.yaml", {"URL": "https://oapi/robot/send?access_token=SECRETTOKEN"}
        )

    assert "SECRETTOKEN" not in str(caught.value)


def test_routing_file_unreadable_names_the_variable(tmp_path: Path) -> None:
    env = {**BASE_ENV, "ADDON_WATCH_CONFIG": str(tmp_path / "missing.yaml")}

    with pytest.raises(ConfigError) as caught:
        load_settings(env)

    assert "ADDON_WATCH_CONFIG" in str(caught.value) and "missing.yaml" in str(caught.value)


def stamp(minutes_ago: float) -> str:
    moment = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_routing_end_to_end_each_robot_gets_what_its_filter_takes(
    tmp_path: Path, simulator: AckSimulator
) -> None:
    with WebhookReceiver() as hooks:
        env = settings_env(
            tmp_path,
            hooks,
            WATCH_TARGETS=f"{CLUSTER}/metrics-server,{CLUSTER}/flexvolume",
            ACK_ENDPOINT=simulator.endpoint,
            ALIBABA_CLOUD_ACCESS_KEY_ID=simulator.access_key_id,
            ALIBABA_CLOUD_ACCESS_KEY_SECRET=simulator.access_key_secret,
        )
        for component in ("metrics-server", "flexvolume"):
            simulator.add_addon(CLUSTER, component, "v1")
            simulator.start_task(CLUSTER, component, stamp(3))
        handle(b"", None, environ=env)
        simulator.finish_task(CLUSTER, "metrics-server", "Success", stamp(0))
        simulator.finish_task(CLUSTER, "flexvolume", "Failed", stamp(0))

        summary = handle(b"", None, environ=env)

        by_robot = {}
        for received in hooks.received:
            assert received.accepted
            by_robot.setdefault(received.robot, []).append(json.dumps(received.payload))
    assert summary["sent"] == 4 and not summary["errors"]
    ops, platform, slack = (by_robot[k] for k in sorted(by_robot, key=_order))
    assert len(ops) == 1 and "flexvolume" in ops[0] and "metrics-server" not in ops[0]
    assert "@13800000000" in ops[0] and "ACK" in ops[0]
    assert (
        len(platform) == 1 and "metrics-server" in platform[0] and "flexvolume" not in platform[0]
    )
    assert len(slack) == 1 and "metrics-server" in slack[0] and "flexvolume" in slack[0]


def _order(robot: str) -> int:
    return 2 if robot.startswith("/services/") else 1 if robot == "platform-token" else 0


def test_cluster_name_comes_from_one_listing_per_run(
    tmp_path: Path, simulator: AckSimulator
) -> None:
    with WebhookReceiver() as hooks:
        env = {
            "WATCH_TARGETS": f"{CLUSTER}/metrics-server,{CLUSTER}/flexvolume",
            "ACK_ENDPOINT": simulator.endpoint,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": simulator.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": simulator.access_key_secret,
            "SLACK_WEBHOOK_URL": hooks.slack_url,
            "STATE_STORE": f"sqlite://{tmp_path / 'state.sqlite3'}",
        }
        for component in ("metrics-server", "flexvolume"):
            simulator.add_addon(CLUSTER, component, "v1")
            simulator.start_task(CLUSTER, component, stamp(3))
        handle(b"", None, environ=env)
        quiet = [call.action for call in simulator.calls]
        simulator.finish_task(CLUSTER, "metrics-server", "Success", stamp(0))
        simulator.finish_task(CLUSTER, "flexvolume", "Failed", stamp(0))

        handle(b"", None, environ=env)

        (payload,) = hooks.delivered("slack")
    actions = [call.action for call in simulator.calls][len(quiet) :]
    assert "DescribeClustersV1" not in quiet
    assert actions.count("DescribeClustersV1") == 1
    assert f"cluster-{CLUSTER[:8]}" in json.dumps(payload)
