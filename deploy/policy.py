"""`make ram-policy`: deploy/ram-policy.json with this deployment's bucket, prefix and logstore.

Reads ``STATE_STORE`` (``oss://BUCKET/PREFIX``), ``DEPLOY_LOG_PROJECT`` and
``DEPLOY_LOG_STORE`` from the environment, fills the placeholders of the policy
template and prints the policy, ready for ``aliyun ram CreatePolicy``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parent / "ram-policy.json"
DEFAULT_LOG_STORE = "ack-addon-watch"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,126}[a-z0-9]$")


class PolicyError(Exception):
    """A setting the policy needs is missing or malformed."""


def placeholders(environ: Mapping[str, str]) -> dict[str, str]:
    """The values for ``<BUCKET>``, ``<PREFIX>``, ``<LOG_PROJECT>`` and ``<LOG_STORE>``."""
    store = environ.get("STATE_STORE", "").strip()
    scheme, _, rest = store.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "oss" or not _BUCKET.match(bucket):
        raise PolicyError(
            f"STATE_STORE is {store!r}; the policy grants access to an OSS prefix, so set it "
            "to oss://BUCKET/PREFIX, e.g. 'oss://my-team-state/ack-addon-watch/'"
        )
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    project = environ.get("DEPLOY_LOG_PROJECT", "").strip()
    logstore = environ.get("DEPLOY_LOG_STORE", "").strip() or DEFAULT_LOG_STORE
    for name, value in (("DEPLOY_LOG_PROJECT", project), ("DEPLOY_LOG_STORE", logstore)):
        if not _NAME.match(value):
            raise PolicyError(
                f"{name} is {value!r}; expected an SLS name such as 'ack-addon-watch' "
                "(lower-case letters, digits, '-' and '_')"
            )
    return {"BUCKET": bucket, "PREFIX": prefix, "LOG_PROJECT": project, "LOG_STORE": logstore}


def render(environ: Mapping[str, str]) -> dict[str, Any]:
    """The policy document for these settings."""
    values = placeholders(environ)
    text = re.sub(r"<([A-Z_]+)>", lambda m: values[m.group(1)], TEMPLATE.read_text())
    document: dict[str, Any] = json.loads(text)
    return document


def main() -> int:
    try:
        document = render(os.environ)
    except PolicyError as exc:
        print(f"ram-policy: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
