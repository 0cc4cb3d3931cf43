"""Run the handler from a built package in an interpreter that sees nothing else.

The child is started with ``-I -S -B`` (no user or site packages, no PYTHON*
variables, not the current folder, no byte-code written) and only the package folder is put before
the standard library on ``sys.path``; it reports every module it loaded from
anywhere else, so a dependency missing from the package cannot hide behind the
developer's virtual environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The child's program: kept in one string so that it runs with -c and no file on sys.path.
_CHILD = r"""
import json, logging, resource, sys, sysconfig, time

package = sys.argv[1]
job = json.loads(sys.stdin.read())
sys.path.insert(0, package)
# Function Compute's Python runtime logs the root logger at INFO to the function log.
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")

started = time.perf_counter()
import index
import_ms = (time.perf_counter() - started) * 1000
for name in job["preload"]:
    __import__(name)

ticks = []
for event in job["events"]:
    started = time.perf_counter()
    summary = index.handler(json.dumps(event).encode(), None)
    ticks.append({"ms": (time.perf_counter() - started) * 1000, "summary": summary})

stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
foreign = sorted(
    f"{name}: {module.__file__}"
    for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None)
    and not module.__file__.startswith(package)
    and not module.__file__.startswith(stdlib)
)
print(json.dumps({
    "import_ms": import_ms,
    "ticks": ticks,
    "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "foreign_modules": foreign,
    "python": sys.version.split()[0],
}))
"""


@dataclass(frozen=True)
class IsolatedRun:
    """What the child reported, and its log (standard error)."""

    import_ms: float
    ticks: list[dict[str, Any]]
    peak_rss_kb: int
    foreign_modules: list[str]
    python: str
    log: str


class IsolatedRunError(Exception):
    """The child interpreter failed; the message carries its standard error."""


def run_handler(
    package_dir: Path,
    environ: Mapping[str, str],
    events: Sequence[Mapping[str, Any]],
    *,
    preload: Sequence[str] = (),
    python: str = sys.executable,
    timeout: float = 120.0,
) -> IsolatedRun:
    """Import ``index`` from ``package_dir`` and call its handler once per event.

    Args:
        package_dir: the staged package (``build/package``).
        environ: the child's whole environment: the function's settings.
        events: FC events, JSON-encoded to bytes as Function Compute passes them.
        preload: modules to import after ``index`` (to weigh an optional dependency).
        python: the interpreter to run.
        timeout: seconds before the child is killed.

    Returns:
        The child's timings, peak RSS, the modules it found outside the package
        and the standard library, and its log.

    Raises:
        IsolatedRunError: when the child exits non-zero or prints no report.
    """
    job = json.dumps({"events": list(events), "preload": list(preload)})
    result = subprocess.run(  # noqa: S603 - our own interpreter and program, no shell
        [python, "-I", "-S", "-B", "-c", _CHILD, str(package_dir.resolve())],
        input=job,
        capture_output=True,
        text=True,
        env=dict(environ),
        timeout=timeout,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise IsolatedRunError(
            f"the handler from {package_dir} failed in an isolated interpreter "
            f"(exit {result.returncode}):\n{result.stderr.strip()[-3000:]}"
        )
    report = json.loads(lines[-1])
    return IsolatedRun(log=result.stderr, **report)
