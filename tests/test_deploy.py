"""The deployment kept in step with the code: settings, template, RAM policy, package.

The settings checks read the code (``class Env`` in config.py and every
literal name passed to an environment lookup), the README's tables and
template.yml, so a new setting fails here until it has a README row and, where
the row says so, a line in template.yml. The package tests build the package
once per session with pip and run the handler from it in an isolated
interpreter.
"""

from __future__ import annotations

import ast
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import package, policy, preflight
from deploy.isolated import run_handler
from deploy.measure import fake_environment, stamp, timer_event
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "functions" / "addon_watch" / "addon_watch"
README = ROOT / "README.md"
TEMPLATE = ROOT / "template.yml"
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")
CS_API = re.compile(r"^(Describe|List|Get|Query)[A-Za-z0-9]*Cluster[A-Za-z0-9]*$")
NOT_IN_TEMPLATE = "—"
SECRET_NAME = re.compile(r"SECRET|TOKEN|WEBHOOK|PASSWORD|PRIVATE")


# --- what the code reads ---------------------------------------------------------------


def _env_class_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Env":
            for item in node.body:
                if (
                    isinstance(item, ast.Assign)
                    and isinstance(item.value, ast.Constant)
                    and isinstance(item.value.value, str)
                ):
                    names.add(item.value.value)
    return names


def _looks_like_environment(node: ast.expr) -> bool:
    return "env" in ast.unparse(node).lower()


def _lookup_names(tree: ast.Module) -> set[str]:
    """Literal names in ``env.get("X")``, ``os.getenv("X")`` and ``environ["X"]``."""
    names = set()
    for node in ast.walk(tree):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("get", "getenv", "pop") and _looks_like_environment(
                node.func.value
            ):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and _looks_like_environment(node.value):
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            if ENV_NAME.match(key.value):
                names.add(key.value)
    return names


def names_read_by_code() -> set[str]:
    names: set[str] = set()
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= _env_class_names(tree) | _lookup_names(tree)
    return names


# --- what the README says --------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of a README table, keyed by the first column's names."""

    header: tuple[str, ...]
    cells: tuple[str, ...]

    def get(self, column: str) -> str:
        return self.cells[self.header.index(column)]


def _cells(line: str) -> tuple[str, ...]:
    return tuple(cell.strip() for cell in line.strip("|").split("|"))


def readme_rows() -> dict[str, Row]:
    """Every README table row whose first column names variables or APIs, by name."""
    rows: dict[str, Row] = {}
    header: tuple[str, ...] = ()
    previous = ""
    for raw in README.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line.startswith("|"):
            header, previous = (), line
            continue
        if re.fullmatch(r"\|[\s|:-]+\|", line):
            header = _cells(previous)
            continue
        previous = line
        if header:
            cells = _cells(line)
            for name in re.findall(r"`([A-Za-z][A-Za-z0-9_]+)`", cells[0]):
                rows[name] = Row(header, cells)
    return rows


def settings_rows() -> dict[str, Row]:
    """The rows of the table of the function's settings (the one with a template.yml column)."""
    return {name: row for name, row in readme_rows().items() if "template.yml" in row.header}


# --- what the template sets ------------------------------------------------------------


def template() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    return document


def template_props() -> dict[str, Any]:
    resources = template()["resources"]
    (props,) = (r["props"] for r in resources.values() if r["component"] == "fc3")
    return props  # type: ignore[no-any-return]


def template_environment() -> dict[str, str]:
    return {k: str(v) for k, v in template_props()["environmentVariables"].items()}


def template_mentions(name: str) -> bool:
    text = TEMPLATE.read_text(encoding="utf-8")
    referenced = {ref for ref, _ in preflight.env_references(text)}
    return name in template_environment() or name in referenced


# --- settings in step ------------------------------------------------------------------


def test_readme_settings_table_lists_every_variable_the_code_reads() -> None:
    read = names_read_by_code()
    documented = settings_rows()

    missing = sorted(read - set(documented))
    assert "WATCH_TARGETS" in read and "XDG_DATA_HOME" in read
    assert not missing, f"add a row to the README's Settings table for {missing}"


def test_readme_template_column_matches_template_yml() -> None:
    wrong = []
    for name, row in settings_rows().items():
        says_template = row.get("template.yml") != NOT_IN_TEMPLATE
        if says_template != template_mentions(name):
            wrong.append(f"{name} (README says {row.get('template.yml')!r})")

    assert not wrong, f"README's template.yml column disagrees with template.yml: {wrong}"


def test_template_environment_and_env_references_are_all_documented() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    used = set(template_environment()) | {name for name, _ in preflight.env_references(text)}
    settings = settings_rows()

    undocumented = sorted(used - set(readme_rows()))
    undeclared = sorted(set(template_environment()) - set(settings))
    assert not undocumented, f"template.yml uses {undocumented}; document them in the README"
    assert not undeclared, f"template.yml sets {undeclared}; add them to the Settings table"


def test_template_takes_secrets_only_from_the_deployers_environment() -> None:
    literal = []
    for name, value in template_environment().items():
        from_env = (f"${{env('{name}')}}", f"${{env('{name}', '')}}")
        if SECRET_NAME.search(name) and value not in from_env:
            literal.append(name)

    assert not literal, f"template.yml must read {literal} as ${{env('NAME', '')}} only"


def test_template_runs_the_packaged_handler_on_both_triggers() -> None:
    props = template_props()
    triggers = {t["triggerType"]: t["triggerConfig"] for t in props["triggers"]}
    index = ast.parse((ROOT / "functions" / "addon_watch" / "index.py").read_text())
    functions = {n.name for n in index.body if isinstance(n, ast.FunctionDef)}

    assert props["runtime"] == "python3.10"
    assert props["handler"] == "index.handler" and "handler" in functions
    assert Path(props["code"]).name == package.ZIP_NAME
    assert props["logConfig"]["project"] and props["logConfig"]["logstore"]
    assert triggers["timer"]["cronExpression"] == "${vars.schedule}"
    assert triggers["timer"]["enable"] is True
    assert triggers["http"] == {"authType": "function", "methods": ["GET", "POST"]}
    assert template_environment()["HTTP_AUTH"] == "function"


# --- RAM policy ------------------------------------------------------------------------


def cs_apis_called_by_code() -> set[str]:
    found = set()
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if CS_API.match(node.value):
                    found.add(node.value)
    return found


def readme_ram_actions() -> dict[str, str]:
    """The README's table from API to RAM action."""
    actions = {}
    for name, row in readme_rows().items():
        if "RAM action" in row.header:
            actions[name] = row.get("RAM action").strip("`")
    return actions


def granted_cs_actions() -> set[str]:
    document = json.loads((ROOT / "deploy" / "ram-policy.json").read_text())
    granted = set()
    for statement in document["Statement"]:
        granted |= {a for a in statement["Action"] if a.startswith("cs:")}
    return granted


def test_ram_policy_grants_the_action_of_every_cs_api_the_code_calls() -> None:
    called = cs_apis_called_by_code()
    mapping = readme_ram_actions()

    unmapped = sorted(called - set(mapping))
    assert "DescribeClusterAddonUpgradeStatus" in called
    assert not unmapped, f"the code calls {unmapped}; add API -> RAM action rows to the README"
    assert {mapping[api] for api in called} <= granted_cs_actions()


def test_ram_policy_grants_no_cs_action_the_readme_does_not_explain() -> None:
    assert granted_cs_actions() == set(readme_ram_actions().values())


def test_ram_policy_rendered_limits_oss_to_the_state_prefix() -> None:
    document = policy.render(
        {"STATE_STORE": "oss://team-state/ack-addon-watch", "DEPLOY_LOG_PROJECT": "team-logs"}
    )
    statements = document["Statement"]
    objects = next(s for s in statements if "oss:GetObject" in s["Action"])
    listing = next(s for s in statements if s["Action"] == ["oss:ListObjects"])
    logs = next(s for s in statements if s["Action"] == ["log:PostLogStoreLogs"])

    assert sorted(objects["Action"]) == ["oss:DeleteObject", "oss:GetObject", "oss:PutObject"]
    assert objects["Resource"] == ["acs:oss:*:*:team-state/ack-addon-watch/*"]
    assert listing["Resource"] == ["acs:oss:*:*:team-state"]
    assert listing["Condition"] == {"StringLike": {"oss:Prefix": ["ack-addon-watch/*"]}}
    assert logs["Resource"] == ["acs:log:*:*:project/team-logs/logstore/ack-addon-watch"]
    assert all("*" not in a for s in statements for a in s["Action"])
    assert all(r != "*" for s in statements for r in s["Resource"])
    assert "<" not in json.dumps(document)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        (
            {"STATE_STORE": "sqlite:///tmp/state.sqlite3", "DEPLOY_LOG_PROJECT": "p-1"},
            "STATE_STORE",
        ),
        ({"STATE_STORE": "oss://Bad_Bucket/x", "DEPLOY_LOG_PROJECT": "p-1"}, "STATE_STORE"),
        ({"STATE_STORE": "oss://team-state/x"}, "DEPLOY_LOG_PROJECT"),
    ],
)
def test_ram_policy_render_with_bad_setting_names_it(environ: dict[str, str], named: str) -> None:
    with pytest.raises(policy.PolicyError) as caught:
        policy.render(environ)

    assert str(caught.value).startswith(named)


# --- preflight -------------------------------------------------------------------------

DEPLOYER = {
    "WATCH_TARGETS": "c0123456789abcdef/metrics-server",
    "STATE_STORE": "sqlite:///var/lib/ack-addon-watch/state.sqlite3",
    "DEPLOY_ROLE_ARN": "acs:ram::1234567890123456:role/ack-addon-watch",
    "DEPLOY_LOG_PROJECT": "team-logs",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/secret-part",
}


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / package.ZIP_NAME).write_bytes(b"PK")
    return tmp_path


def test_preflight_with_complete_environment_finds_nothing(fake_root: Path) -> None:
    assert preflight.check(DEPLOYER, root=fake_root) == []


def test_preflight_names_every_missing_variable_at_once(fake_root: Path) -> None:
    problems = preflight.check({"SLACK_WEBHOOK_URL": DEPLOYER["SLACK_WEBHOOK_URL"]}, root=fake_root)

    assert problems == [
        "not set, and template.yml needs them (see README): "
        "DEPLOY_LOG_PROJECT, DEPLOY_ROLE_ARN, STATE_STORE, WATCH_TARGETS"
    ]


def test_preflight_runs_the_functions_own_validation_without_leaking_secrets(
    fake_root: Path,
) -> None:
    environ = dict(DEPLOYER, DEPLOY_ROLE_ARN="my-role")
    environ["SLACK_WEBHOOK_URL"] = "ftp://hooks.slack.com/services/T000/B000/secret-part"

    problems = preflight.check(environ, root=fake_root)

    assert len(problems) == 2
    assert problems[0].startswith("DEPLOY_ROLE_ARN should look like acs:ram::")
    assert problems[1].startswith("the function would not start: SLACK_WEBHOOK_URL is not a valid")
    assert "secret-part" not in " ".join(problems)


def test_preflight_reports_a_bad_target_as_the_function_would(fake_root: Path) -> None:
    problems = preflight.check(dict(DEPLOYER, WATCH_TARGETS="not a target"), root=fake_root)

    assert len(problems) == 1
    assert problems[0].startswith("the function would not start: WATCH_TARGETS has 'not a target'")


def test_preflight_with_too_many_targets_for_the_4kb_environment_says_so(
    fake_root: Path,
) -> None:
    targets = ",".join(f"c{n:031d}/metrics-server" for n in range(90))

    problems = preflight.check(dict(DEPLOYER, WATCH_TARGETS=targets), root=fake_root)

    assert len(problems) == 1
    assert problems[0].startswith("the function's environment variables hold 4")
    assert problems[0].endswith("allows 4096: shorten the longest (often WATCH_TARGETS)")


def test_preflight_without_package_says_to_build_it(tmp_path: Path) -> None:
    assert preflight.check(DEPLOYER, root=tmp_path) == [
        f"build/{package.ZIP_NAME} does not exist; run `make package`"
    ]


def test_preflight_gives_the_function_only_the_templates_environment() -> None:
    environ = dict(
        DEPLOYER, ALIBABA_CLOUD_ACCESS_KEY_SECRET="deployer-secret", ACK_REGION="cn-shanghai"
    )

    props = preflight.resolved_function(environ)
    environment = preflight.function_environment(props)

    assert props["region"] == "cn-shanghai"
    assert environment["FC_REGION"] == "cn-shanghai"
    assert environment["SLACK_WEBHOOK_URL"] == DEPLOYER["SLACK_WEBHOOK_URL"]
    assert environment["DINGTALK_SECRET"] == ""
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET" not in environment


# --- the package -----------------------------------------------------------------------


def test_write_zip_same_files_give_same_bytes_whatever_their_times(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for root, names in (
        (first, ["z.py", "pkg/m.py", "a.txt"]),
        (second, ["a.txt", "pkg/m.py", "z.py"]),
    ):
        for name in names:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"content of {name}\n")
        (root / "pkg" / "__pycache__").mkdir()
        (root / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    for index, path in enumerate(sorted(second.rglob("*.py"))):
        stamp = 1_700_000_000 + index * 3600
        os.utime(path, (stamp, stamp))

    package.write_zip(first, tmp_path / "a.zip")
    package.write_zip(second, tmp_path / "b.zip")

    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert archive.namelist() == ["a.txt", "pkg/m.py", "z.py"]
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_write_zip_takes_its_time_from_source_date_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.py").write_text("handler = None\n")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")

    package.write_zip(tmp_path / "src", tmp_path / "out.zip")

    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert archive.getinfo("index.py").date_time == (2026, 1, 1, 0, 0, 0)


def test_write_zip_with_malformed_source_date_epoch_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")

    with pytest.raises(package.PackageError) as caught:
        package.write_zip(tmp_path, tmp_path / "out.zip")

    assert str(caught.value).startswith("SOURCE_DATE_EPOCH is 'yesterday'")
    assert not (tmp_path / "out.zip").exists()


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The package, built once for the session: (staged folder, zip)."""
    out = tmp_path_factory.mktemp("package")
    package_dir, zip_path, _ = package.build(out)
    yield package_dir, zip_path


@pytest.mark.package
def test_package_imports_every_dependency_from_the_package_alone(
    built: tuple[Path, Path],
) -> None:
    package_dir, _ = built

    run = run_handler(
        package_dir,
        {},
        [],
        # The OSS SDK loads pycryptodome (abi3 libraries, fine on any CPython 3) and, for
        # its CRC-64 checks, crcmod (a CPython 3.10 extension, pure Python elsewhere).
        preload=(
            "alibabacloud_credentials.client",
            "jinja2.sandbox",
            "requests",
            "addon_watch.store.oss",
            "alibabacloud_oss_v2",
            "alibabacloud_oss_v2.crc",
        ),
    )

    assert run.foreign_modules == []


@pytest.mark.package
def test_package_handler_announces_a_finished_upgrade_in_isolation(
    built: tuple[Path, Path],
) -> None:
    package_dir, _ = built
    cluster = "c0123456789abcdef0123456789abcdef"
    with AckSimulator() as sim, WebhookReceiver() as hooks:
        sim.add_addon(cluster, "metrics-server", "v0.3.9")
        sim.start_task(cluster, "metrics-server", stamp(3), status="Upgrading")
        state = package_dir.parent / "state.sqlite3"
        environ = fake_environment(sim, hooks, f"{cluster}/metrics-server", state)
        timer = timer_event()
        first = run_handler(package_dir, environ, [timer])
        sim.finish_task(cluster, "metrics-server", "Success", stamp(), version="v0.3.10")
        second = run_handler(package_dir, environ, [timer])

    assert first.ticks[0]["summary"]["sent"] == 0
    assert second.ticks[0]["summary"]["sent"] == 2
    assert [len(hooks.delivered(c)) for c in ("dingtalk", "slack")] == [1, 1]
    assert "metrics-server" in json.dumps(hooks.delivered("slack")[0])
    assert '"event": "addon_watch.summary"' in second.log
    assert second.foreign_modules == []
    assert sim.access_key_secret not in first.log + second.log


@pytest.mark.package
def test_package_compiled_parts_target_cpython_310_on_linux_x86_64(
    built: tuple[Path, Path],
) -> None:
    package_dir, _ = built
    extensions = [p.name for p in package_dir.rglob("*.so")]
    tags = [
        line.split(":", 1)[1].strip()
        for wheel in package_dir.glob("*.dist-info/WHEEL")
        for line in wheel.read_text().splitlines()
        if line.startswith("Tag:")
    ]

    assert extensions, "expected compiled wheels (markupsafe, charset_normalizer, ...)"
    assert all(re.search(r"\.cpython-310-x86_64-linux-gnu\.so$|\.abi3\.so$", n) for n in extensions)
    runtime = re.compile(r"(py3|py2\.py3)-none-any|cp3\d+-(cp310|abi3)-manylinux\w*_x86_64")
    wrong = [tag for tag in tags if not runtime.fullmatch(tag)]
    assert not wrong, f"wheels not for the runtime: {wrong}"


@pytest.mark.package
def test_package_holds_code_and_templates_but_no_caches(built: tuple[Path, Path]) -> None:
    package_dir, zip_path = built
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        times = {info.date_time for info in archive.infolist()}
    staged = sorted(
        p.relative_to(package_dir).as_posix() for p in package_dir.rglob("*") if p.is_file()
    )
    templates = sorted(p.name for p in (ROOT / "templates").iterdir())

    assert names == sorted(names) == staged
    assert times == {package.DEFAULT_TIMESTAMP}
    assert "index.py" in names and "addon_watch/handler.py" in names
    assert (
        sorted(n.removeprefix("templates/") for n in names if n.startswith("templates/"))
        == templates
    )
    assert not [
        n
        for n in names
        if "__pycache__" in n or n.endswith(".pyc") or n.startswith(("bin/", "tests/"))
    ]
    assert zip_path.stat().st_size <= package.SIZE_GOAL
    records = "".join(r.read_text() for r in package_dir.glob("*.dist-info/RECORD"))
    assert "../bin/" not in records, "RECORD lists console scripts that were left out"
