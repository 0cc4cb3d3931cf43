"""`make package`: the Function Compute code package, built without Docker.

The runtime dependencies come from PyPI as binary wheels for the runtime's
platform (CPython 3.10 on manylinux2014 x86_64), whatever machine builds the
package; the function code and the message templates are copied beside them.
The zip is reproducible: entries sorted, one fixed timestamp, fixed permissions,
so the same dependency versions give the same bytes.

Usage: python -m deploy.package [--out build] [--python-version 3.10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE_ROOT = ROOT / "functions" / "addon_watch"
TEMPLATES = ROOT / "templates"
REQUIREMENTS = ROOT / "requirements.txt"

PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.10"
ZIP_NAME = "ack-addon-watch.zip"
SIZE_GOAL = 10 * 1024 * 1024

# 1980-01-01 is the earliest time a zip entry can hold; SOURCE_DATE_EPOCH wins when set.
DEFAULT_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z in Unix seconds
# Left out of the package: byte-code caches of the build machine's interpreter.
EXCLUDED_DIRS = frozenset({"__pycache__"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


class PackageError(Exception):
    """The package could not be built; the message says what to check."""


def install_dependencies(target: Path, python_version: str = PYTHON_VERSION) -> None:
    """Runtime wheels for the FC runtime into ``target``, never built from source."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--platform",
        PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "-r",
        str(REQUIREMENTS),
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True)  # noqa: S603
    if result.returncode != 0:
        raise PackageError(
            f"pip could not install {REQUIREMENTS.name} as {PLATFORM} wheels for CPython "
            f"{python_version} (exit {result.returncode}); check access to PyPI and that "
            f"every dependency publishes such a wheel:\n{result.stderr.strip()[-2000:]}"
        )
    # Console scripts carry this machine's interpreter path; the function never runs them.
    shutil.rmtree(target / "bin", ignore_errors=True)
    _forget_scripts(target)


def _forget_scripts(target: Path) -> None:
    """Drop the removed scripts from each RECORD: their hashes depend on the build machine."""
    for record in sorted(target.glob("*.dist-info/RECORD")):
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [
            line
            for line in lines
            if [p for p in line.split(",", 1)[0].split("/") if p != ".."][:1] != ["bin"]
        ]
        if kept != lines:
            record.write_text("".join(kept), encoding="utf-8")


def _copy_tree(source: Path, destination: Path) -> None:
    shutil.copytree(
        source,
        destination,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"),
    )


def stage(package_dir: Path, python_version: str = PYTHON_VERSION) -> Path:
    """Lay out the package in ``package_dir``: dependencies, code root, ``templates/``."""
    if package_dir.exists():
        shutil.rmtree(package_dir)
    package_dir.mkdir(parents=True)
    install_dependencies(package_dir, python_version)
    _copy_tree(CODE_ROOT, package_dir)
    # render.py looks for <code root>/templates before the repository's own folder.
    _copy_tree(TEMPLATES, package_dir / "templates")
    return package_dir


def _entries(source: Path) -> Iterator[tuple[str, Path]]:
    """Every file under ``source`` as (archive name, path), sorted by archive name."""
    found = []
    for directory, dirnames, filenames in os.walk(source):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS]
        for name in filenames:
            if name.endswith(EXCLUDED_SUFFIXES):
                continue
            path = Path(directory) / name
            found.append((path.relative_to(source).as_posix(), path))
    yield from sorted(found)


def _timestamp() -> tuple[int, int, int, int, int, int]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        return DEFAULT_TIMESTAMP
    if not epoch.isdigit():
        raise PackageError(
            f"SOURCE_DATE_EPOCH is {epoch!r}; expected whole seconds since 1970, or unset"
        )
    moment = time.gmtime(max(int(epoch), ZIP_EPOCH))
    return (
        moment.tm_year,
        moment.tm_mon,
        moment.tm_mday,
        moment.tm_hour,
        moment.tm_min,
        moment.tm_sec,
    )


def write_zip(source: Path, zip_path: Path) -> int:
    """Zip ``source`` reproducibly into ``zip_path``; returns the zip's size in bytes."""
    timestamp = _timestamp()
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, path in _entries(source):
            info = zipfile.ZipInfo(name, date_time=timestamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so that the permission bits below are honoured
            # The same bits for every file: nothing in the package is executed directly.
            info.external_attr = (0o100000 | 0o644) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    partial.replace(zip_path)
    return zip_path.stat().st_size


def largest_parts(source: Path, count: int = 5) -> list[tuple[str, int]]:
    """The top-level folders or files that weigh most, uncompressed."""
    sizes: dict[str, int] = {}
    for name, path in _entries(source):
        top = name.split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + path.stat().st_size
    return sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:count]


def build(out_dir: Path, python_version: str = PYTHON_VERSION) -> tuple[Path, Path, int]:
    """Stage and zip the package; returns (package folder, zip, zip size)."""
    package_dir = stage(out_dir / "package", python_version)
    zip_path = out_dir / ZIP_NAME
    return package_dir, zip_path, write_zip(package_dir, zip_path)


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy.package", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="output folder")
    parser.add_argument("--python-version", default=PYTHON_VERSION, help="runtime's CPython")
    args = parser.parse_args(argv)

    try:
        package_dir, zip_path, size = build(args.out, args.python_version)
    except PackageError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1

    print(f"package: {package_dir}")
    print(f"zip:     {zip_path}  {_megabytes(size)} zipped ({size} bytes)")
    parts = ", ".join(f"{name} {_megabytes(n)}" for name, n in largest_parts(package_dir))
    print(f"largest, unzipped: {parts}")
    if size > SIZE_GOAL:
        print(f"package: over the {_megabytes(SIZE_GOAL)} goal", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
