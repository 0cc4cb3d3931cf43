"""A tick's ACK calls end to end: the real client against the loopback ACK simulator."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from addon_watch.ack import AckClient, RetryPolicy
from addon_watch.config import parse_exclude, parse_targets
from addon_watch.credentials import Credentials
from addon_watch.errors import CredentialsError
from addon_watch.fetch import Fetched, fetch_statuses
from addon_watch.handler import handle
from addon_watch.redaction import Secret
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import WebhookReceiver

BATCH = "DescribeClusterAddonsUpgradeStatus"
LISTING = "ListClusterAddonInstances"
DISCOVERY = "DescribeClustersV1"
ROOT = Path(__file__).resolve().parent.parent


def client_for(sim: AckSimulator, concurrency: int = 4) -> AckClient:
    creds = Credentials(sim.access_key_id, Secret(sim.access_key_secret))
    return AckClient(sim.endpoint, lambda: creds, region=sim.region, concurrency=concurrency)


def fetch(sim: AckSimulator, targets: str, exclude: str = "", concurrency: int = 4) -> Fetched:
    return fetch_statuses(
        client_for(sim, concurrency), parse_targets(targets), parse_exclude(exclude)
    )


def keys(fetched: Fetched) -> list[str]:
    return sorted(status.target.key for status in fetched.statuses)


@pytest.fixture
def three_clusters(simulator: AckSimulator) -> list[str]:
    ids = simulator.populate(3, 4)
    simulator.add_addon(ids[0], "ack-node-problem-detector")
    return ids


def test_named_targets_cost_one_batch_call_per_cluster(
    simulator: AckSimulator, three_clusters: list[str]
) -> None:
    c1, c2, _ = three_clusters
    spec = f"{c1}/addon-00,{c1}/addon-01,{c1}/addon-02,{c2}/addon-03"

    fetched = fetch(simulator, spec)

    assert keys(fetched) == sorted(spec.split(","))
    assert fetched.errors == []
    assert fetched.targets == 4
    batches = simulator.calls_to(BATCH)
    assert sorted(call.path for call in batches) == sorted(
        f"/clusters/{c}/components/upgradestatus" for c in (c1, c2)
    )
    assert json.loads(batches[0].query["componentIds"]) in (
        ["addon-00", "addon-01", "addon-02"],
        ["addon-03"],
    )
    assert len(simulator.calls) == 2


def test_component_missing_from_the_batch_answer_is_reported_once_as_not_installed(
    simulator: AckSimulator, three_clusters: list[str]
) -> None:
    c1 = three_clusters[0]

    fetched = fetch(simulator, f"{c1}/addon-00,{c1}/not-there,{c1}/not-there,{c1}/addon-01")

    assert keys(fetched) == [f"{c1}/addon-00", f"{c1}/addon-01"]
    assert fetched.errors == [
        f"{c1}/not-there: not installed in the cluster (the upgrade-status answer has no entry "
        "for it); check WATCH_TARGETS"
    ]
    assert len(simulator.calls) == 1


def test_cluster_wildcard_lists_the_addons_then_asks_them_in_one_call(
    simulator: AckSimulator, three_clusters: list[str]
) -> None:
    c1 = three_clusters[0]

    fetched = fetch(simulator, f"{c1}/*", exclude=f"*/ack-*,{c1}/addon-03")

    assert keys(fetched) == [f"{c1}/addon-0{n}" for n in range(3)]
    assert fetched.targets == 3
    assert [call.action for call in simulator.calls] == [LISTING, BATCH]


def test_component_glob_matches_only_installed_addons_and_missing_ones_are_not_reported(
    simulator: AckSimulator, three_clusters: list[str]
) -> None:
    c1 = three_clusters[0]

    fetched = fetch(simulator, f"{c1}/ack-*,{c1}/nothing-*")

    assert keys(fetched) == [f"{c1}/ack-node-problem-detector"]
    assert fetched.errors == []


def test_every_cluster_is_discovered_through_every_page(simulator: AckSimulator) -> None:
    simulator.max_page_size = 7
    ids = simulator.populate(20, 2)
    simulator.add_cluster("celsewhere", region="cn-beijing")
    simulator.add_addon("celsewhere", "addon-00")
    simulator.cluster_info["celsewhere"]["region_id"] = "cn-beijing"
    simulator.add_cluster("cdeleting", state="deleting")

    fetched = fetch(simulator, "*", exclude="*/addon-01", concurrency=8)

    assert keys(fetched) == sorted(f"{c}/addon-00" for c in ids)
    assert fetched.errors == []
    pages = simulator.calls_to(DISCOVERY)
    assert [call.query["page_number"] for call in pages] == ["1", "2", "3"]
    assert {call.query["region_id"] for call in pages} == {"cn-hangzhou"}
    assert len(simulator.calls_to(LISTING)) == 20
    assert len(simulator.calls_to(BATCH)) == 20


def test_named_component_in_every_cluster_needs_no_listing(simulator: AckSimulator) -> None:
    ids = simulator.populate(3, 1)
    simulator.add_cluster("cempty")

    fetched = fetch(simulator, "*/addon-00")

    assert keys(fetched) == sorted(f"{c}/addon-00" for c in ids)
    assert fetched.errors == []
    assert simulator.calls_to(LISTING) == []


def test_excluding_a_whole_cluster_asks_it_nothing(simulator: AckSimulator) -> None:
    c1, c2 = simulator.populate(2, 2)

    fetched = fetch(simulator, "*", exclude=f"{c2}/*")

    assert keys(fetched) == [f"{c1}/addon-00", f"{c1}/addon-01"]
    assert all(c2 not in call.path for call in simulator.calls)


def test_single_throttled_answer_is_recovered_within_the_tick(
    simulator: AckSimulator, three_clusters: list[str]
) -> None:
    c1, c2, c3 = three_clusters
    simulator.throttle_next(1, path=c2, retry_after_ms=20)

    fetched = fetch(simulator, f"{c1}/*,{c2}/addon-00,{c3}/addon-00")

    assert fetched.errors == []
    assert f"{c2}/addon-00" in keys(fetched)
    assert [call.status for call in simulator.calls if c2 in call.path] == [400, 200]


def test_cluster_that_vanishes_fails_alone_and_is_not_asked_again(
    simulator: AckSimulator, three_clusters: list[str]
) -> None:
    c1, c2, c3 = three_clusters
    spec = ",".join(f"{c}/addon-00" for c in three_clusters)
    assert fetch(simulator, spec).errors == []

    simulator.remove_cluster(c2)
    before = len(simulator.calls)
    fetched = fetch(simulator, spec)

    assert keys(fetched) == [f"{c1}/addon-00", f"{c3}/addon-00"]
    assert len(fetched.errors) == 1
    assert "ErrorClusterNotFound" in fetched.errors[0]
    assert "HTTP 404" in fetched.errors[0]
    assert len(simulator.calls) - before == 3


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (200, "<html><body>Access denied by gateway</body></html>", "text/html", "not JSON"),
        (200, '{"addon-00": {"addon_info": {"ver', "application/json", "not JSON"),
        (200, '["addon-00"]', "application/json", "expected a JSON object"),
    ],
    ids=["html", "truncated", "shape"],
)
def test_malformed_answer_fails_that_cluster_only(
    simulator: AckSimulator,
    three_clusters: list[str],
    status: int,
    body: str,
    content_type: str,
    expected: str,
) -> None:
    c1, c2, c3 = three_clusters
    simulator.fail_next(status, body, content_type, path=c2)

    fetched = fetch(simulator, ",".join(f"{c}/addon-00" for c in three_clusters))

    assert keys(fetched) == [f"{c1}/addon-00", f"{c3}/addon-00"]
    assert len(fetched.errors) == 1
    assert expected in fetched.errors[0]
    assert c2 in fetched.errors[0]


def test_discovery_that_fails_is_reported_and_named_targets_still_answer(
    simulator: AckSimulator, three_clusters: list[str]
) -> None:
    simulator.fail_next(403, {"code": "Forbidden.RAM", "message": "no"}, path="/api/v1/clusters")

    fetched = fetch(simulator, f"*,{three_clusters[0]}/addon-00")

    assert keys(fetched) == [f"{three_clusters[0]}/addon-00"]
    assert len(fetched.errors) == 1
    assert fetched.errors[0].startswith("discovering clusters for WATCH_TARGETS:")
    assert "allow DescribeClustersV1" in fetched.errors[0]


def test_calls_in_flight_never_exceed_the_concurrency(simulator: AckSimulator) -> None:
    simulator.latency = 0.02
    simulator.populate(12, 1)

    fetched = fetch(simulator, "*/addon-00", concurrency=3)

    assert len(fetched.statuses) == 12
    assert simulator.peak_in_flight <= 3


def test_api_that_throttles_beyond_two_in_flight_is_met_by_fewer_calls_at_once(
    simulator: AckSimulator,
) -> None:
    simulator.latency = 0.02
    simulator.max_in_flight = 2
    simulator.throttle_retry_after_ms = 10
    simulator.populate(12, 1)
    creds = Credentials(simulator.access_key_id, Secret(simulator.access_key_secret))
    client = AckClient(
        simulator.endpoint, lambda: creds, concurrency=8, retry=RetryPolicy(attempts=10)
    )

    fetched = fetch_statuses(client, parse_targets("*/addon-00"))

    assert fetched.errors == []
    assert len(fetched.statuses) == 12
    assert client._gate.limit < 8


class _BrokenClient(AckClient):
    """Answers one cluster with a shape that trips the reader."""

    def describe_addons_upgrade_status(  # type: ignore[no-untyped-def]
        self, cluster_id, components
    ):
        if cluster_id == "cbroken":
            raise KeyError("surprise")
        return super().describe_addons_upgrade_status(cluster_id, components)


def test_unexpected_failure_in_one_cluster_costs_only_that_cluster(
    simulator: AckSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    (c1,) = simulator.populate(1, 1)
    creds = Credentials(simulator.access_key_id, Secret(simulator.access_key_secret))
    client = _BrokenClient(simulator.endpoint, lambda: creds, concurrency=2)

    with caplog.at_level(logging.ERROR):
        fetched = fetch_statuses(client, parse_targets(f"{c1}/addon-00,cbroken/addon-00"))

    assert keys(fetched) == [f"{c1}/addon-00"]
    assert fetched.errors == ["cluster cbroken: unexpected KeyError: 'surprise'"]


def test_missing_credentials_stop_the_tick_instead_of_failing_each_cluster(
    simulator: AckSimulator,
) -> None:
    ids = simulator.populate(3, 1)

    def no_credentials() -> Credentials:
        raise CredentialsError("no Alibaba Cloud credentials found")

    client = AckClient(simulator.endpoint, no_credentials, concurrency=3)
    with pytest.raises(CredentialsError):
        fetch_statuses(client, parse_targets(",".join(f"{c}/addon-00" for c in ids)))

    assert simulator.calls == []
    assert client.calls == 0


def test_handler_tick_with_wildcards_reports_each_failure_once_in_the_summary(
    simulator: AckSimulator, webhooks: WebhookReceiver, tmp_path: Path
) -> None:
    ids = simulator.populate(4, 3)
    simulator.remove_cluster(ids[3])
    env = {
        "WATCH_TARGETS": f"*,{ids[3]}/addon-00,{ids[0]}/not-installed",
        "WATCH_EXCLUDE": "*/addon-02",
        "ACK_ENDPOINT": simulator.endpoint,
        "ACK_REGION": simulator.region,
        "ACK_CONCURRENCY": "3",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": simulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": simulator.access_key_secret,
        "SLACK_WEBHOOK_URL": webhooks.slack_url,
        "STATE_STORE": f"sqlite://{tmp_path / 'state.sqlite3'}",
    }

    summary = handle(b'{"triggerTime": "2026-01-02T03:04:00Z", "triggerName": "t"}', None, env)

    assert summary["checked"] == 6
    assert summary["targets"] == 8
    assert len(summary["errors"]) == 2
    assert any("ErrorClusterNotFound" in e and ids[3] in e for e in summary["errors"])
    assert any(e.startswith(f"{ids[0]}/not-installed: not installed") for e in summary["errors"])
    assert simulator.access_key_secret not in json.dumps(summary)


def test_handler_with_credentials_in_the_environment_never_imports_the_credentials_library(
    simulator: AckSimulator, webhooks: WebhookReceiver, tmp_path: Path
) -> None:
    (c1,) = simulator.populate(1, 1)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT / "functions" / "addon_watch"),
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        "WATCH_TARGETS": f"{c1}/addon-00",
        "ACK_ENDPOINT": simulator.endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": simulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": simulator.access_key_secret,
        "SLACK_WEBHOOK_URL": webhooks.slack_url,
        "STATE_STORE": f"sqlite://{tmp_path / 'state.sqlite3'}",
    }
    script = (
        "import json, sys\n"
        "from addon_watch.handler import handle\n"
        "summary = handle(b'')\n"
        "print(json.dumps([summary['checked'], summary['errors'],"
        " sorted(m for m in sys.modules if m.startswith('alibabacloud'))]))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [1, [], []]
    assert [call.status for call in simulator.calls] == [200]
