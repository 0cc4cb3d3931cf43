"""One Function Compute invocation in its own process, started at ``START_AT``.

Runs the real handler with this process's environment and prints its summary
as JSON; several of these started together overlap like concurrent instances.
"""

from __future__ import annotations

import json
import os
import time

from addon_watch.handler import handle


def main() -> None:
    delay = float(os.environ["START_AT"]) - time.time()
    if delay > 0:
        time.sleep(delay)
    event = {"triggerTime": "2026-01-02T03:04:00Z", "triggerName": "every-5-minutes"}
    print(json.dumps(handle(json.dumps(event).encode(), None)))


if __name__ == "__main__":
    main()
