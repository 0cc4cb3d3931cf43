"""`make bench`: one tick of the watcher at scale, against the official SDK in a plain loop.

A local ACK simulator (127.0.0.1 only, every signature verified) holds 50
clusters of 10 addons and sleeps 100 ms in every call. The handler runs in a
fresh interpreter per scenario (``bench.tick``); the official SDK
(``alibabacloud-cs20151215``) then makes the same API calls one after the
other, pointed at the same simulator. Finally the handler module's import time
is compared with ``import requests``, each in fresh interpreters.

The figures are printed, never asserted: timing belongs here, not in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "functions" / "addon_watch"
TARGET_TICK_S = 1.0
TARGET_PEAK_MB = 60.0
TARGET_IMPORT_RATIO = 1.5
MB = 1024 * 1024


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def run_python(
    arguments: list[str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter like this one, with the package importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SOURCE), str(ROOT)])}
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def run_ticks(settings: dict[str, str]) -> dict[str, Any]:
    """Three handler ticks in a fresh interpreter (see ``bench.tick``)."""
    done = run_python(["-m", "bench.tick"], stdin=json.dumps(settings), timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"the tick process failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def calls_by_action(sim: AckSimulator, since: int, ticks: int) -> tuple[float, Counter[str]]:
    """API calls per tick since ``since``, in total and by action."""
    made = sim.calls[since:]
    by_action = Counter(call.action for call in made)
    return len(made) / ticks, Counter({k: v // ticks for k, v in by_action.items()})


def scenario(
    title: str,
    sim: AckSimulator,
    settings: dict[str, str],
    clusters: int,
    sdk_tick: Callable[[], None],
) -> None:
    """One workload: the handler's ticks, then the official SDK doing the same calls."""
    print(f"\n{title}")
    since = len(sim.calls)
    result = run_ticks(settings)
    per_tick, by_action = calls_by_action(sim, since, result["ticks"])
    cold, warm = result["walls"]
    batch = by_action["DescribeClusterAddonsUpgradeStatus"]
    discovery = per_tick - batch
    peak_mb = result["peak_rss_bytes"] / MB

    print(
        f"  tick, empty state store      {cold:6.3f} s   {verdict(cold <= TARGET_TICK_S)} (≤ 1 s)"
    )
    print(f"  tick, warm state store       {warm:6.3f} s")
    print(
        f"  API calls per tick           {per_tick:6.0f}     {batch} batch status calls for "
        f"{clusters} clusters + {discovery:.0f} discovery calls  "
        f"{verdict(batch <= clusters)} (≤ 1 per cluster + discovery)"
    )
    errors = len(result["errors"])
    print(f"  addons checked per tick      {result['checked'][0]:6d}     errors: {errors}")
    print(
        f"  peak memory (RSS, process)   {peak_mb:6.1f} MB  {verdict(peak_mb <= TARGET_PEAK_MB)} "
        f"(≤ 60 MB); Python allocations during one tick peak at "
        f"{result['traced_peak_bytes'] / MB:.1f} MB"
    )
    for error in result["errors"][:3]:
        print(f"    error: {error}")

    since = len(sim.calls)
    started = time.perf_counter()
    sdk_tick()
    sdk_wall = time.perf_counter() - started
    sdk_calls = len(sim.calls) - since
    print(
        f"  official SDK, sequential     {sdk_wall:6.3f} s   {sdk_calls} calls; "
        f"the handler's tick is {sdk_wall / cold:.1f}× faster"
    )


def sdk_client(sim: AckSimulator) -> Any:
    """The official ACK client, pointed at the simulator over plain HTTP, with its key."""
    from alibabacloud_cs20151215.client import Client
    from alibabacloud_tea_openapi import utils_models

    config = utils_models.Config(
        access_key_id=sim.access_key_id,
        access_key_secret=sim.access_key_secret,
        endpoint=sim.endpoint.partition("://")[2],
        protocol="http",
        region_id=sim.region,
    )
    return Client(config)


def sdk_named(client: Any, ids: list[str], components: list[str]) -> Callable[[], None]:
    from alibabacloud_cs20151215 import models
    from darabonba.runtime import RuntimeOptions

    def tick() -> None:
        for cluster_id in ids:
            request = models.DescribeClusterAddonsUpgradeStatusRequest(component_ids=components)
            client.describe_cluster_addons_upgrade_status_with_options(
                cluster_id, request, {}, RuntimeOptions()
            )

    return tick


def sdk_everything(client: Any, region: str) -> Callable[[], None]:
    from alibabacloud_cs20151215 import models
    from darabonba.runtime import RuntimeOptions

    def tick() -> None:
        ids: list[str] = []
        page = 1
        while True:
            request = models.DescribeClustersV1Request(
                page_number=page, page_size=100, region_id=region
            )
            body = client.describe_clusters_v1with_options(request, {}, RuntimeOptions()).body
            ids += [cluster.cluster_id for cluster in body.clusters or []]
            if not body.clusters or len(ids) >= body.page_info.total_count:
                break
            page += 1
        for cluster_id in ids:
            listing = client.list_cluster_addon_instances_with_options(
                cluster_id, {}, RuntimeOptions()
            )
            names = [addon.name for addon in listing.body.addons or []]
            request = models.DescribeClusterAddonsUpgradeStatusRequest(component_ids=names)
            client.describe_cluster_addons_upgrade_status_with_options(
                cluster_id, request, {}, RuntimeOptions()
            )

    return tick


def import_seconds(module: str) -> float:
    """Seconds ``import module`` takes in a fresh interpreter."""
    code = (
        "import time; started = time.perf_counter(); "
        f"import {module}; print(time.perf_counter() - started)"
    )
    done = run_python(["-c", code], timeout=60)
    done.check_returncode()
    return float(done.stdout.strip())


def import_times(runs: int) -> None:
    print("\ncold start: import time in fresh interpreters of", sys.executable)
    modules = {"index (the FC handler module)": "index", "requests": "requests"}
    for module in modules.values():
        import_seconds(module)  # writes the bytecode caches
    samples: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(runs):
        for name, module in modules.items():
            samples[name].append(import_seconds(module))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in medians.items():
        print(f"  import {name:32s} {value * 1000:6.1f} ms (median of {runs})")
    ratio = medians["index (the FC handler module)"] / medians["requests"]
    print(
        f"  ratio                               {ratio:6.2f}×    "
        f"{verdict(ratio <= TARGET_IMPORT_RATIO)} (≤ 1.5× import requests)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--addons", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per ACK call")
    parser.add_argument("--import-runs", type=int, default=9)
    args = parser.parse_args()
    # Loopback only, whatever proxy this shell has configured.
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

    with (
        AckSimulator(latency=args.latency) as sim,
        WebhookReceiver() as hooks,
        tempfile.TemporaryDirectory() as tmp,
    ):
        ids = sim.populate(args.clusters, args.addons)
        components = [f"addon-{n:02d}" for n in range(args.addons)]
        base = {
            "ACK_ENDPOINT": sim.endpoint,
            "ACK_REGION": sim.region,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": sim.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": sim.access_key_secret,
            "SLACK_WEBHOOK_URL": hooks.slack_url,
        }
        named = ",".join(f"{c}/{name}" for c in ids for name in components)
        from addon_watch.config import DEFAULT_ACK_CONCURRENCY

        print(
            f"ack-addon-watch benchmark: {args.clusters} clusters × {args.addons} addons, "
            f"{args.latency * 1000:.0f} ms per ACK call, ACK_CONCURRENCY={DEFAULT_ACK_CONCURRENCY} "
            f"(default); simulator at {sim.endpoint}"
        )
        client = sdk_client(sim)
        scenario(
            f"{len(ids) * len(components)} named targets (WATCH_TARGETS lists every addon)",
            sim,
            {**base, "WATCH_TARGETS": named, "STATE_STORE": f"sqlite://{tmp}/named.sqlite3"},
            len(ids),
            sdk_named(client, ids, components),
        )
        scenario(
            "WATCH_TARGETS=* (every cluster in the region, every addon in each)",
            sim,
            {**base, "WATCH_TARGETS": "*", "STATE_STORE": f"sqlite://{tmp}/all.sqlite3"},
            len(ids),
            sdk_everything(client, sim.region),
        )

        result = run_ticks(
            {
                **base,
                "WATCH_TARGETS": "*",
                "ACK_CONCURRENCY": "32",
                "STATE_STORE": f"sqlite://{tmp}/all32.sqlite3",
            }
        )
        print(f"  the same with ACK_CONCURRENCY=32  {result['walls'][0]:6.3f} s")

        # Throttling: the simulator refuses calls beyond 8 in flight, asking for 100 ms.
        sim.max_in_flight, sim.throttle_retry_after_ms = 8, 100
        since = len(sim.calls)
        result = run_ticks(
            {**base, "WATCH_TARGETS": named, "STATE_STORE": f"sqlite://{tmp}/throttled.sqlite3"}
        )
        made = sim.calls[since:]
        throttled = sum(1 for call in made if call.status == 400)
        print(
            f"\n{len(ids) * len(components)} named targets, the API throttling beyond 8 calls "
            "in flight (x-acs-retry-after 100 ms)"
        )
        print(
            f"  tick, empty state store      {result['walls'][0]:6.3f} s   "
            f"{len(made) / result['ticks']:.0f} calls per tick, "
            f"{throttled / result['ticks']:.0f} of them throttled and asked again; "
            f"errors: {len(result['errors'])}"
        )
        sim.max_in_flight = None
        refused = sum(1 for call in sim.calls if call.status not in (200, 400))
        print(f"\nthe simulator verified {len(sim.calls)} signed calls; {refused} refused")

    import_times(args.import_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
