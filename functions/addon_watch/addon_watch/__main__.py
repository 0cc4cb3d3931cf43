"""Command line: ``python -m addon_watch check`` runs one check with this environment."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .errors import AddonWatchError
from .handler import handle
from .redaction import REDACTOR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="addon_watch", description=__doc__)
    parser.add_argument(
        "command", choices=["check"], help="check: ask ACK once and send what is owed"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log internals at DEBUG")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s %(message)s",
    )
    try:
        summary = handle(b"")
    except AddonWatchError as exc:
        print(f"addon_watch: {type(exc).__name__}: {REDACTOR.scrub(str(exc))}", file=sys.stderr)
        return 2
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
