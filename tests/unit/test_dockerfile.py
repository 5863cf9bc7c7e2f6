"""Static checks of the Dockerfile and .dockerignore (no Docker engine runs here).

The Dockerfile is parsed into stages and instructions the way Docker reads it (line continuations,
global ARG defaults in FROM), and .dockerignore is evaluated with Docker's matching rules, so these
tests check what a build would actually do rather than grepping for strings.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from paddle_kuscia import cli

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = re.compile(r"python:3\.11-slim(@sha256:[0-9a-f]{64})?")


@dataclasses.dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    result, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        name, _, args = current.partition(" ")
        result.append((name.upper(), args.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a continued instruction"
    return result


@functools.cache
def stages() -> list[Stage]:
    defaults: dict[str, str] = {}
    parsed: list[Stage] = []
    for name, args in instructions((ROOT / "Dockerfile").read_text()):
        if name == "ARG" and not parsed:
            key, _, value = args.partition("=")
            defaults[key] = value
        elif name == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults[m[1] or m[2]], args.split()[0])
            words = args.split()
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            parsed.append(Stage(image=image, name=alias))
        elif parsed:
            parsed[-1].instructions.append((name, args))
    return parsed


def env_of(stage: Stage) -> dict[str, str]:
    env = {}
    for args in stage.all("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def labels_of(stage: Stage) -> dict[str, str]:
    labels = {}
    for args in stage.all("LABEL"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            labels[key] = value
    return labels


def test_build_and_runtime_stages_use_python_311_slim() -> None:
    assert len(stages()) >= 2, "the image must be multi-stage"
    for stage in stages():
        assert BASE_IMAGE.fullmatch(stage.image), stage.image
    assert stages()[0].name, "the build stage needs a name for COPY --from"


def test_build_stage_installs_the_package_into_a_venv() -> None:
    build = stages()[0]
    runs = " ; ".join(build.all("RUN"))
    assert re.search(r"python -m venv /venv", runs)
    assert re.search(r"/venv/bin/pip install \.(\s|$)", runs), "expected a non-editable `pip install .`"
    assert " -e " not in runs and "--editable" not in runs
    copied = [shlex.split(args) for args in build.all("COPY")]
    sources = {source.rstrip("/") for words in copied for source in words[:-1] if not source.startswith("--")}
    assert sources >= {"pyproject.toml", "operator"}


def test_runtime_stage_copies_only_the_venv() -> None:
    final = stages()[-1]
    assert final.all("ADD") == []
    assert final.all("COPY") == [f"--from={stages()[0].name} /venv /venv"]
    assert not any("pip install" in run for run in final.all("RUN")), "no package installs in the final image"
    assert env_of(final)["PATH"].split(":")[0] == "/venv/bin"


def test_runs_as_numeric_non_root_user() -> None:
    users = stages()[-1].all("USER")
    assert users, "the final stage must set USER"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"USER {users[-1]} is not numeric, so runAsNonRoot cannot verify it"
    assert int(match[1]) != 0 and (match[2] is None or int(match[2]) != 0)


def test_python_runtime_environment() -> None:
    env = env_of(stages()[-1])
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_entrypoint_runs_the_console_script() -> None:
    final = stages()[-1]
    [entrypoint] = final.all("ENTRYPOINT")
    [cmd] = final.all("CMD")
    # Exec form (JSON) so signals reach the operator directly and kopf can shut down cleanly.
    assert json.loads(entrypoint) == ["paddle-kuscia", "run"]
    assert json.loads(cmd) == ["--all-namespaces"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "paddle-kuscia" in scripts
    # The image's default command line is one the CLI accepts.
    args = cli.parser().parse_args(json.loads(entrypoint)[1:] + json.loads(cmd))
    assert (args.command, args.all_namespaces) == ("run", True)


def test_oci_labels_describe_the_image() -> None:
    labels = labels_of(stages()[-1])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for key in ("title", "description", "licenses", "version", "revision"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.licenses"] == project["license"]


# ---- .dockerignore ------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go filepath.Match plus `**`) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1 : end] + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_excludes(path: str) -> bool:
    """Whether `docker build` leaves `path` (relative to the context) out: last match wins, `!` re-includes,
    and a path is excluded when it or any parent directory is."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern_regex(line.lstrip("!").strip("/"))))
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".venv",
        ".venv/bin/python",
        ".git",
        ".git/config",
        "tests/unit/test_x.py",
        "operator/paddle_kuscia/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache",
        "manifests/base",
    ],
)
def test_dockerignore_keeps_local_state_out_of_the_context(path: str) -> None:
    assert dockerignore_excludes(path)


def test_dockerignore_keeps_everything_the_build_copies() -> None:
    build = stages()[0]
    for args in build.all("COPY"):
        for source in shlex.split(args)[:-1]:
            assert (ROOT / source).exists(), f"COPY source {source} does not exist"
            assert not dockerignore_excludes(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    for path in sorted((ROOT / "operator").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        assert not dockerignore_excludes(relative), relative


def test_dockerignore_matcher_follows_docker_rules() -> None:
    """Guard the helper itself: wildcard depth, `**`, and negation."""
    assert _pattern_regex("*.log").fullmatch("a.log") and not _pattern_regex("*.log").fullmatch("d/a.log")
    assert _pattern_regex("**/*.log").fullmatch("d/e/a.log") and _pattern_regex("**/*.log").fullmatch("a.log")
    assert _pattern_regex("**/*.py[cod]").fullmatch("x/y.pyc")
