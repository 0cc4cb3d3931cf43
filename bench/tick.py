"""Child process of the benchmark: handler ticks in a fresh interpreter.

Reads the settings (a JSON object) on stdin, runs two timed ticks (the first on
an empty state store, the second on a warm one), notes the peak resident
memory, then runs one more tick under ``tracemalloc`` for the peak of Python
allocations during a tick. Prints one JSON line.

Peak memory is ``VmHWM`` where Linux offers it: ``ru_maxrss`` of a child also
counts the parent's memory at the fork that started it.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
import tracemalloc

EVENT = b'{"triggerTime": "2026-01-02T03:04:00Z", "triggerName": "bench", "payload": ""}'


def peak_rss_in_kib() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="    tick log: %(levelname)s %(message)s")
    env = json.load(sys.stdin)
    from addon_watch.handler import handle

    walls, summaries = [], []
    for _ in range(2):
        started = time.perf_counter()
        summaries.append(handle(EVENT, None, environ=env))
        walls.append(time.perf_counter() - started)
    peak_rss_kib = peak_rss_in_kib()

    tracemalloc.start()
    summaries.append(handle(EVENT, None, environ=env))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(
        json.dumps(
            {
                "walls": walls,
                "peak_rss_bytes": peak_rss_kib * 1024,
                "traced_peak_bytes": traced_peak,
                "ticks": len(summaries),
                "checked": [s["checked"] for s in summaries],
                "errors": [e for s in summaries for e in s["errors"]],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
