"""`paddle-kuscia run`'s flags and environment become one Config; its defaults are the parser's defaults."""

from __future__ import annotations

import dataclasses

import pytest

from paddle_kuscia import cli
from paddle_kuscia.runtime.context import ENVIRONMENT, Config


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ENVIRONMENT.values():
        monkeypatch.delenv(variable, raising=False)


def config(*argv: str) -> Config:
    return cli.config_from(cli.parser().parse_args(["run", *argv]))


def test_no_flags_give_configs_defaults() -> None:
    assert config() == Config()


def test_every_setting_has_a_flag() -> None:
    """Each field is set by its flag: a new setting without a flag (or a flag that is ignored) fails here."""
    given = config(
        "-n",
        "a",
        "--workers=3",
        "--kuscia-url=https://k:8082",
        "--kuscia-credentials-dir=/c",
        "--bfia-url=http://b",
        "--mirror-kuscia-resources",
        "--kuscia-poll-interval=2",
        "--kuscia-timeout=3",
        "--backoff-base=0.5",
        "--backoff-max=9",
        "--leader-elect",
        "--leader-election-namespace=ns",
        "--leader-election-name=shard-a",
        "--liveness=http://0.0.0.0:1/healthz",
        "--metrics-port=9",
        "--metrics-address=127.0.0.1",
        "--log-format=json",
        "--verbose",
    )
    unchanged = [
        f.name for f in dataclasses.fields(Config) if getattr(given, f.name) == getattr(Config(), f.name)
    ]
    assert unchanged == []


# field -> (what the environment says, the flag, what the flag says); the value as Config holds it.
ENVIRONMENT_CASES = {
    "kuscia_url": ("https://env:8082", "--kuscia-url", "https://flag:8082"),
    "kuscia_credentials_dir": ("/env", "--kuscia-credentials-dir", "/flag"),
    "bfia_url": ("http://env", "--bfia-url", "http://flag"),
    "kuscia_timeout": (7.0, "--kuscia-timeout", 8.0),
    "leader_election_namespace": ("env", "--leader-election-namespace", "flag"),
    "log_format": ("json", "--log-format", "plain"),
}


def test_every_variable_has_a_case() -> None:
    assert ENVIRONMENT_CASES.keys() == ENVIRONMENT.keys()


@pytest.mark.parametrize("field", sorted(ENVIRONMENT_CASES))
def test_the_environment_sets_a_default_and_the_flag_wins(
    field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env, flag, from_flag = ENVIRONMENT_CASES[field]
    monkeypatch.setenv(ENVIRONMENT[field], str(from_env))
    assert getattr(config(), field) == from_env
    assert getattr(config(f"{flag}={from_flag}"), field) == from_flag


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ENVIRONMENT.values():
        monkeypatch.setenv(variable, "")
    assert config() == Config()


def test_the_lease_is_used_only_with_leader_election(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "operators")
    assert config().lease_namespace is None
    assert config("--leader-elect").lease_namespace == "operators"


def test_namespaces_are_listed_one_by_one_unless_all_or_globbed() -> None:
    assert config().namespaces == () and config().listed_namespaces is None
    assert config("-A").listed_namespaces is None
    assert config("-n", "a", "-n", "b").listed_namespaces == ["a", "b"]
    assert config("-n", "a", "-n", "team-*").listed_namespaces is None


def test_standalone_is_still_accepted_and_kopf_peering_flags_are_gone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert config("--standalone") == Config()
    for flag in ("--priority=1", "--peering-name=x"):
        with pytest.raises(SystemExit):
            config(flag)
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("namespaces", "inside", "outside"),
    [
        ((), ["default", "team-a"], []),
        (("team-a",), ["team-a"], ["team-ab", "team-b"]),
        (("team-[a-m]*", "ops"), ["team-a", "team-mx", "ops"], ["team-n", "ops-2", "default"]),
    ],
)
def test_a_shard_serves_only_its_namespaces(
    namespaces: tuple[str, ...], inside: list[str], outside: list[str]
) -> None:
    cfg = Config(namespaces=namespaces)
    assert [n for n in inside + outside if cfg.watches(n)] == inside
