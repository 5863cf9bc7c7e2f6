"""The README and docs/ stay true of the tree: documented flags, defaults, paths and links exist."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
CONFIGURATION = ROOT / "docs" / "configuration.md"

# A repository path as the docs write it: a top-level directory, then a path (no globs or placeholders).
REPO_PATH = re.compile(r"(?<![\w./~-])((?:operator|hack|manifests|crds|tests|docs)/[\w./-]*|Dockerfile)")
# A path inside the package, as architecture.md writes it: `runtime/cache.py`.
PACKAGE_PATH = re.compile(
    r"`((?:adapters|builders|describe|handlers|models|reconcile|runtime|status)/[\w./]*)`"
)
PACKAGE = ROOT / "operator" / "paddle_kuscia"
LINK = re.compile(r"\]\(([^)\s]+)\)")
NONE = "\N{EN DASH}"  # what the docs write for "no default"
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
ENV_VAR = re.compile(r"`([A-Z][A-Z0-9_]{2,})`")


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", page.read_text(), re.MULTILINE)}


def test_readme_opens_with_the_two_commands_and_stays_short() -> None:
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail to docs/"
    body = [line for line in lines[1:] if line.strip()]
    assert lines[0].startswith("# ") and body[0].startswith("```"), "the two commands come first"
    first_block = text.split("```")[1]
    assert "hack/demo.sh" in first_block and "hack/test.sh" in first_block


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_repository_path_in_the_docs_exists(page: Path) -> None:
    missing = set()
    for match in REPO_PATH.finditer(page.read_text()):
        path = match.group(1).rstrip(".,:;")
        if not (ROOT / path).exists():
            missing.add(path)
    for match in PACKAGE_PATH.finditer(page.read_text()):
        if not (PACKAGE / match.group(1)).exists():
            missing.add(match.group(1))
    assert not missing, f"{page.name} names paths that do not exist: {sorted(missing)}"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for match in LINK.finditer(page.read_text()):
        target = match.group(1)
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        missing_anchor = anchor and file.suffix == ".md" and file.exists() and anchor not in _anchors(file)
        if not file.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{page.name} has broken links: {broken}"


def _flag_table() -> list[tuple[set[str], str]]:
    """(flags, default) for each row of the `paddle-kuscia run` table in docs/configuration.md."""
    section = CONFIGURATION.read_text().split("## `paddle-kuscia run`", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) < 3 or not cells[0].startswith("`-"):
            continue
        rows.append((set(FLAG.findall(cells[0])), cells[1]))
    assert rows, "no flag table found in docs/configuration.md"
    return rows


@cache
def _run_help() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "paddle_kuscia.cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return out.stdout


def test_the_flag_table_matches_run_help() -> None:
    documented = set().union(*(flags for flags, _ in _flag_table()))
    actual = set(FLAG.findall(_run_help().split("options:", 1)[-1])) - {"-h", "--help"}
    assert documented - actual == set(), "documented flags that `paddle-kuscia run` lacks"
    assert actual - documented == set(), "flags of `paddle-kuscia run` missing from docs/configuration.md"


def _run_defaults() -> dict[str, object]:
    from paddle_kuscia import cli

    return vars(cli.parser().parse_args(["run"]))


def _dest(flags: set[str]) -> str:
    return max(flags, key=len).lstrip("-").replace("-", "_")


def _literal(text: str) -> str:
    return text.strip().strip("`")


def _same(actual: object, documented: str) -> bool:
    if isinstance(actual, bool) or actual is None:
        return False
    if isinstance(actual, int | float):
        try:
            return float(documented) == float(actual)
        except ValueError:
            return False
    return str(actual) == documented


def test_the_documented_defaults_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _flag_table()
    env_vars = {v for _, default in rows for v in ENV_VAR.findall(default)}
    for var in env_vars:
        monkeypatch.delenv(var, raising=False)
    defaults = _run_defaults()
    wrong = []
    for flags, default in rows:
        dest = _dest(flags)
        actual = defaults[dest]
        env, _, fallback = default.partition(", else ")
        if ENV_VAR.fullmatch(env.strip()):
            default = fallback or NONE
        if default in ("off", NONE):
            ok = actual in (False, None)
        elif default.startswith("on when"):
            ok = True  # -A is implied by main(), not by a parser default
        else:
            ok = _same(actual, _literal(default))
        if not ok:
            wrong.append(f"{sorted(flags)}: documented {default!r}, actual {actual!r}")
    assert not wrong, "docs/configuration.md defaults differ from the parser:\n" + "\n".join(wrong)


def test_the_documented_environment_variables_set_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [(flags, ENV_VAR.fullmatch(d.partition(", else ")[0].strip())) for flags, d in _flag_table()]
    rows = [(flags, m.group(1)) for flags, m in rows if m]
    assert rows, "the flag table names no environment variables"
    for _, var in rows:
        monkeypatch.setenv(var, "7")
    defaults = _run_defaults()
    wrong = [
        f"{var} does not set {sorted(flags)}"
        for flags, var in rows
        if str(defaults[_dest(flags)]) not in ("7", "7.0")
    ]
    assert not wrong, "\n".join(wrong)


def test_the_architecture_page_lists_the_layers_of_the_import_contract() -> None:
    """docs/architecture.md's package table is .importlinter's layers contract, in the same order."""
    import configparser

    contracts = configparser.ConfigParser()
    contracts.read(ROOT / ".importlinter")
    layers = [
        line.strip().removeprefix("paddle_kuscia.")
        for line in contracts["importlinter:contract:layers"]["layers"].split()
    ]
    section = (ROOT / "docs" / "architecture.md").read_text().split("## Packages", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)
    assert documented == layers, "docs/architecture.md's package table differs from .importlinter's layers"


DOTTED = re.compile(r"`((?:adapters|builders|describe|handlers|models|reconcile|runtime|status)(?:\.\w+)+)`")


def _resolves(dotted: str) -> bool:
    """`builders.knative.build_knative_service` names a module of paddle_kuscia, or something in one."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            thing: object = importlib.import_module("paddle_kuscia." + ".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(thing, attribute):
                return False
            thing = getattr(thing, attribute)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_module_and_function_the_docs_name_exists(page: Path) -> None:
    names = set(DOTTED.findall(page.read_text()))
    # `status.url` is an object's field, not the status package: only names of its modules count there.
    names = {
        n
        for n in names
        if not n.startswith("status.") or (PACKAGE / "status" / f"{n.split('.')[1]}.py").exists()
    }
    missing = sorted(n for n in names if not _resolves(n))
    assert not missing, f"{page.name} names modules or functions that do not exist: {missing}"
