"""Checks before `make deploy`: would the function, as template.yml deploys it, start?

Resolves template.yml the way Serverless Devs does for the two forms it uses
(``${env('NAME', 'default')}`` and ``${vars.name}``) against this shell's
environment, then runs the function's own settings validation over exactly
the environment variables the function will get, as Function Compute would
set them. Nothing is sent anywhere; secrets are never printed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from deploy.package import ROOT, ZIP_NAME

TEMPLATE = ROOT / "template.yml"
_EXPRESSION = re.compile(r"\$\{\s*([^{}]+?)\s*\}")
_ENV = re.compile(r"""^env\(\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*(?:,\s*'([^']*)'\s*)?\)$""")
# Function Compute's limit on all of a function's environment variables together.
ENVIRONMENT_LIMIT = 4096
_ROLE_ARN = re.compile(r"^acs:ram::\d+:role/[A-Za-z0-9.@-]+$")


class PreflightError(Exception):
    """The deployment would fail or the function would not start; says what to set."""


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """template.yml as data, unresolved."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise PreflightError(f"{path} is not a YAML mapping")
    return document


def env_references(text: str) -> list[tuple[str, str | None]]:
    """Every ``${env('NAME'[, 'default'])}`` in ``text``, as (name, default or None)."""
    found = []
    for expression in _EXPRESSION.findall(text):
        match = _ENV.match(expression)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def resolve(node: Any, variables: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
    """``node`` with its ``${env(...)}`` and ``${vars.*}`` expressions replaced."""
    if isinstance(node, dict):
        return {key: resolve(value, variables, environ) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, variables, environ) for value in node]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("vars."):
            value = variables.get(expression.removeprefix("vars."))
            if value is None:
                raise PreflightError(f"template.yml uses ${{{expression}}}, which is not in vars")
            return str(resolve(value, variables, environ))
        env = _ENV.match(expression)
        if env is None:
            raise PreflightError(f"template.yml has ${{{expression}}}, which preflight can't read")
        name, default = env.group(1), env.group(2)
        value = environ.get(name)
        if value is None:
            if default is None:
                raise PreflightError(f"{name} is not set; template.yml needs it (see README)")
            return default
        return value

    return _EXPRESSION.sub(replace, node)


def resolved_function(
    environ: Mapping[str, str], template: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The fc3 props of the function, resolved against ``environ``."""
    document = load_template() if template is None else template
    variables = document.get("vars") or {}
    resources = document.get("resources") or {}
    (props,) = (r["props"] for r in resources.values() if r.get("component") == "fc3")
    resolved: dict[str, Any] = resolve(props, variables, environ)
    return resolved


def function_environment(props: Mapping[str, Any]) -> dict[str, str]:
    """The environment Function Compute gives the function: the template's plus FC's own."""
    environment = {k: str(v) for k, v in (props.get("environmentVariables") or {}).items()}
    environment.update(FC_REGION=props["region"], FC_FUNCTION_NAME=props["functionName"])
    return environment


def check(
    environ: Mapping[str, str], template: Mapping[str, Any] | None = None, root: Path = ROOT
) -> list[str]:
    """What would go wrong; an empty list when the deployment can go ahead."""
    from addon_watch.config import load_settings
    from addon_watch.errors import ConfigError

    text = TEMPLATE.read_text(encoding="utf-8") if template is None else yaml.safe_dump(template)
    missing = sorted(
        {name for name, default in env_references(text) if default is None} - set(environ)
    )
    if missing:
        return [f"not set, and template.yml needs them (see README): {', '.join(missing)}"]
    try:
        props = resolved_function(environ, template)
    except PreflightError as exc:
        return [str(exc)]

    problems = []
    if not _ROLE_ARN.match(str(props.get("role", ""))):
        problems.append(
            "DEPLOY_ROLE_ARN should look like acs:ram::1234567890123456:role/ack-addon-watch "
            "(the role the function runs as; see the README's prerequisites)"
        )
    code = root / str(props.get("code", ""))
    if not code.is_file():
        problems.append(f"{code.relative_to(root).as_posix()} does not exist; run `make package`")
    elif code.name != ZIP_NAME:
        problems.append(f"template.yml deploys {code.name}, not the package {ZIP_NAME}")
    variables = props.get("environmentVariables") or {}
    size = sum(len(f"{k}{v}".encode()) for k, v in variables.items())
    if size > ENVIRONMENT_LIMIT:
        problems.append(
            f"the function's environment variables hold {size} bytes; Function Compute allows "
            f"{ENVIRONMENT_LIMIT}: shorten the longest (often WATCH_TARGETS)"
        )
    try:
        load_settings(function_environment(props))
    except ConfigError as exc:
        problems.append(f"the function would not start: {exc}")
    return problems


def main() -> int:
    import os

    problems = check(os.environ)
    for problem in problems:
        print(f"preflight: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("preflight: template.yml resolves and the function's settings are valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
