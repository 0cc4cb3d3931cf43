"""`make demo`: the real handler against a local ACK simulator and local webhooks.

Nothing leaves this machine: the simulator and the webhook receiver listen on
127.0.0.1, and the credentials are the simulator's own.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from addon_watch.handler import handle
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import WebhookReceiver
from tests.invocation import environment

CLUSTER = "c8f2e1d0a9b8c7d6e5f4a3b2c1d0e9f8a"
STAGING = "c1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"


def stamp(minutes_ago: float) -> str:
    moment = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def tick(
    number: int, what: str, sim: AckSimulator, hooks: WebhookReceiver, env: dict[str, str]
) -> None:
    before = len(hooks.received)
    event = {"triggerTime": stamp(0), "triggerName": "every-5-minutes", "payload": ""}
    summary = handle(json.dumps(event).encode(), None, environ=env)
    arrived = hooks.received[before:]

    print(f"\n=== tick {number}: {what}")
    counts = {k: summary[k] for k in ("checked", "changes", "sent", "failed", "pending")}
    print(f"    summary: {json.dumps(counts)}")
    if not arrived:
        print("    nothing was posted")
    for item in arrived:
        verdict = "accepted" if item.accepted else f"refused (HTTP {item.status})"
        print(f"--- {item.channel} ({verdict}):")
        print(json.dumps(item.payload, ensure_ascii=False, indent=2))


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="    log: %(levelname)s %(name)s %(message)s")
    started = time.monotonic()
    with AckSimulator() as sim, WebhookReceiver() as hooks, tempfile.TemporaryDirectory() as tmp:
        env = {
            **environment(sim, hooks, Path(tmp)),
            "WATCH_TARGETS": ",".join(
                f"{CLUSTER}/{name}"
                for name in (
                    "cloud-controller-manager",
                    "nginx-ingress-controller",
                    "metrics-server",
                    "flexvolume",
                )
            )
            + f",{STAGING}/metrics-server",
            "NOTIFY_TIMEZONE": "Asia/Shanghai",
        }
        print(f"ACK simulator at {sim.endpoint}; DingTalk and Slack receivers at {hooks.base_url}")

        sim.add_addon(CLUSTER, "cloud-controller-manager", "v2.9.1")
        sim.start_task(CLUSTER, "cloud-controller-manager", stamp(3))
        sim.add_addon(CLUSTER, "nginx-ingress-controller", "v1.9.3-aliyun.1")
        sim.start_task(CLUSTER, "nginx-ingress-controller", stamp(2), status="Upgrading")
        sim.add_addon(CLUSTER, "metrics-server", "v0.3.9.4-ff225cd-aliyun")
        sim.start_task(CLUSTER, "metrics-server", stamp(4))
        sim.add_addon(CLUSTER, "flexvolume", "v1.30.1")
        sim.start_task(CLUSTER, "flexvolume", stamp(600))
        sim.finish_task(CLUSTER, "flexvolume", "Success", stamp(590))
        sim.add_addon(STAGING, "metrics-server", "v0.3.9.4-ff225cd-aliyun")
        tick(
            1,
            "first look: three upgrades running, one finished long ago (recorded silently)",
            sim,
            hooks,
            env,
        )

        sim.finish_task(
            CLUSTER, "metrics-server", "Success", stamp(0), version="v0.3.9.7-9a1b2c3-aliyun"
        )
        sim.finish_task(CLUSTER, "nginx-ingress-controller", "Failed", stamp(0))
        tick(2, "metrics-server succeeds, nginx-ingress-controller fails", sim, hooks, env)

        sim.finish_task(CLUSTER, "cloud-controller-manager", "Canceled", stamp(0), is_canceled=True)
        sim.start_task(STAGING, "metrics-server", stamp(4))
        sim.finish_task(
            STAGING, "metrics-server", "Success", stamp(1), version="v0.3.9.7-9a1b2c3-aliyun"
        )
        tick(
            3,
            "cloud-controller-manager canceled; staging metrics-server upgraded between two ticks",
            sim,
            hooks,
            env,
        )

        tick(4, "nothing changed: nothing is sent again", sim, hooks, env)

        total = {channel: len(hooks.delivered(channel)) for channel in ("dingtalk", "slack")}
        rejected = sum(1 for call in sim.calls if call.status != 200)
    print(
        f"\nDelivered {total['dingtalk']} DingTalk and {total['slack']} Slack messages; "
        f"the simulator verified {len(sim.calls)} signed API calls ({rejected} refused) "
        f"in {time.monotonic() - started:.1f} s."
    )
    # Four outcomes in two ticks: each tick's outcomes go out as one grouped message.
    return 0 if total == {"dingtalk": 2, "slack": 2} and rejected == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
