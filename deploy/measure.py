"""`make measure`: peak memory and duration of demo-sized ticks run from the built package.

Runs the packaged handler in an isolated interpreter against the local ACK
simulator and webhook receiver (both on 127.0.0.1), through ticks the size of
`make demo`'s: a first look at four targets, one that announces two finished
upgrades to DingTalk and Slack, and one with nothing new. It prints the
import time, each tick's duration, the peak RSS, and the peak RSS again with
the credentials library loaded (the path taken when the environment holds no
AccessKey). These figures size ``memorySize`` and ``timeout`` in template.yml.

The local interpreter may be newer than the runtime's 3.10: the compiled
wheels in the package then fall back to their pure-Python code, so the figures
are an upper bound on CPU time and close on memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from deploy.isolated import IsolatedRun, run_handler
from deploy.package import ROOT
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import DINGTALK_SECRET, WebhookReceiver

CLUSTER = "c8f2e1d0a9b8c7d6e5f4a3b2c1d0e9f8a"
ADDONS = ("cloud-controller-manager", "nginx-ingress-controller", "metrics-server", "flexvolume")


def stamp(minutes_ago: float = 0) -> str:
    """An ACK time stamp, ``minutes_ago`` minutes before now."""
    moment = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def timer_event() -> dict[str, Any]:
    """What a Function Compute timer trigger passes, decoded."""
    return {"triggerTime": stamp(), "triggerName": "timer", "payload": ""}


def fake_environment(
    sim: AckSimulator, hooks: WebhookReceiver, targets: str, state_path: Path
) -> dict[str, str]:
    """The function's whole environment, pointed at the local fakes."""
    return {
        "WATCH_TARGETS": targets,
        "ACK_ENDPOINT": sim.endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": sim.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": sim.access_key_secret,
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        "DINGTALK_WEBHOOK_URL": hooks.dingtalk_url,
        "DINGTALK_SECRET": DINGTALK_SECRET,
        "SLACK_WEBHOOK_URL": hooks.slack_url,
        "STATE_STORE": f"sqlite://{state_path}",
    }


def measure(package_dir: Path, preload: tuple[str, ...] = ()) -> tuple[IsolatedRun, int]:
    """Three ticks in one warm instance; returns the run and the messages delivered."""
    with AckSimulator() as sim, WebhookReceiver() as hooks, tempfile.TemporaryDirectory() as tmp:
        for addon in ADDONS:
            sim.add_addon(CLUSTER, addon, "v1.0.0")
            sim.start_task(CLUSTER, addon, stamp(5), status="Upgrading")
        targets = ",".join(f"{CLUSTER}/{addon}" for addon in ADDONS)
        environ = fake_environment(sim, hooks, targets, Path(tmp) / "state.sqlite3")
        # The simulator's tasks finish between the ticks, which the child runs back to back:
        # finish two now, so that the second tick announces them, and the rest stay running.
        first = run_handler(package_dir, environ, [timer_event()], preload=preload)
        sim.finish_task(CLUSTER, ADDONS[0], "Success", stamp(), version="v1.1.0")
        sim.finish_task(CLUSTER, ADDONS[1], "Failed", stamp())
        second = run_handler(package_dir, environ, [timer_event()] * 2, preload=preload)
    run = IsolatedRun(
        import_ms=second.import_ms,
        ticks=first.ticks + second.ticks,
        peak_rss_kb=max(first.peak_rss_kb, second.peak_rss_kb),
        foreign_modules=second.foreign_modules,
        python=second.python,
        log=first.log + second.log,
    )
    return run, len(hooks.delivered("dingtalk")) + len(hooks.delivered("slack"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy.measure", description=__doc__.split("\n")[0])
    parser.add_argument("--package", type=Path, default=ROOT / "build" / "package")
    args = parser.parse_args(argv)
    if not (args.package / "index.py").is_file():
        print(f"measure: no package at {args.package}; run `make package` first", file=sys.stderr)
        return 1

    run, delivered = measure(args.package)
    with_credentials, _ = measure(args.package, preload=("alibabacloud_credentials.client",))
    ticks = ", ".join(f"{tick['ms']:.0f} ms" for tick in run.ticks)
    print(f"interpreter:   Python {run.python}, isolated, package {args.package}")
    print(f"import index:  {run.import_ms:.0f} ms")
    print(f"ticks:         {ticks} (first look, 2 announced x 2 channels, nothing new)")
    print(f"delivered:     {delivered} messages")
    print(f"peak RSS:      {run.peak_rss_kb / 1024:.1f} MB")
    print(
        f"peak RSS with alibabacloud_credentials loaded: "
        f"{with_credentials.peak_rss_kb / 1024:.1f} MB"
    )
    if run.foreign_modules:
        print(f"loaded from outside the package: {run.foreign_modules}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
