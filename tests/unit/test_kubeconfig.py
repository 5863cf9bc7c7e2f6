"""Credentials as kubectl reads them: in-cluster, kubeconfig files (merged, relative paths, inline data), token
files that rotate, and exec credential plugins."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from paddle_kuscia.adapters import kubeconfig
from paddle_kuscia.adapters.kubeconfig import KubeconfigError, from_kubeconfig, load


def write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def config(
    *,
    cluster: dict[str, Any],
    user: dict[str, Any],
    current: str | None = "ctx",
    namespace: str | None = None,
) -> dict[str, Any]:
    context = {"cluster": "c", "user": "u", **({"namespace": namespace} if namespace else {})}
    return {
        **({"current-context": current} if current else {}),
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": context}],
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inline data as written where the kernel has no memfd (macOS): files in a private folder."""
    monkeypatch.setattr(kubeconfig, "IN_MEMORY", False)
    monkeypatch.setattr(kubeconfig, "_written", {})


def inline_user(tmp_path: Path) -> Path:
    return write(
        tmp_path / "config",
        config(
            cluster={"server": "https://127.0.0.1:6443", "certificate-authority-data": b64("CA PEM")},
            user={"client-certificate-data": b64("CERT PEM"), "client-key-data": b64("KEY PEM")},
            namespace="team-a",
        ),
    )


@pytest.mark.skipif(not kubeconfig.IN_MEMORY, reason="memfd is Linux's; the file fallback is tested below")
def test_inline_data_is_kept_in_memory_so_no_key_outlives_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubeconfig, "_written", {})
    creds = from_kubeconfig([inline_user(tmp_path)])
    assert creds.server == "https://127.0.0.1:6443" and creds.namespace == "team-a"
    for path, text in ((creds.ca_file, "CA PEM"), (creds.cert_file, "CERT PEM"), (creds.key_file, "KEY PEM")):
        assert path and Path(path).read_text() == text, "readable by path, as ssl wants it"
        assert os.readlink(path).startswith("/memfd:"), f"{path} is a memfd, on no file system"
    assert from_kubeconfig([inline_user(tmp_path)]).key_file == creds.key_file, "a second load reuses it"
    assert kubeconfig._private_dir.cache_info().currsize == 0, "no private folder was made"


@pytest.mark.usefixtures("on_disk")
def test_inline_data_is_written_to_private_files(tmp_path: Path) -> None:
    creds = from_kubeconfig([inline_user(tmp_path)])
    assert creds.server == "https://127.0.0.1:6443"
    assert creds.namespace == "team-a"
    assert creds.ca_file and Path(creds.ca_file).read_text() == "CA PEM"
    assert creds.cert_file and Path(creds.cert_file).read_text() == "CERT PEM"
    assert creds.key_file and Path(creds.key_file).read_text() == "KEY PEM"
    assert stat.S_IMODE(Path(creds.key_file).stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(creds.key_file).parent.stat().st_mode) == 0o700
    assert creds.bearer() is None
    kubeconfig.remove_private_files()


@pytest.mark.usefixtures("on_disk")
def test_private_files_can_be_removed_before_an_exit_that_skips_atexit(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config",
        config(cluster={"server": "https://127.0.0.1:6443"}, user={"client-key-data": b64("KEY PEM")}),
    )
    first = from_kubeconfig([path]).key_file
    assert first and Path(first).exists()
    kubeconfig.remove_private_files()
    assert not Path(first).parent.exists()
    kubeconfig.remove_private_files()  # nothing left to remove is fine
    again = from_kubeconfig([path]).key_file  # a later load writes to a new private folder
    assert again and Path(again).read_text() == "KEY PEM" and Path(again).parent != Path(first).parent
    kubeconfig.remove_private_files()


def test_paths_are_relative_to_the_kubeconfig_that_names_them(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    path = write(
        tmp_path / "config",
        config(
            cluster={"server": "https://127.0.0.1:1", "certificate-authority": "pki/ca.crt"},
            user={"client-certificate": "pki/client.crt", "client-key": "/abs/client.key", "token": "t0"},
        ),
    )
    creds = from_kubeconfig([path])
    assert creds.ca_file == str(tmp_path / "pki" / "ca.crt")
    assert creds.cert_file == str(tmp_path / "pki" / "client.crt")
    assert creds.key_file == "/abs/client.key"
    assert creds.bearer() == "t0"


def test_kubeconfig_files_merge_with_the_first_one_winning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write(
        tmp_path / "first",
        {"current-context": "ctx", "users": [{"name": "u", "user": {"token": "from-first"}}]},
    )
    second = write(
        tmp_path / "second",
        config(cluster={"server": "https://127.0.0.1:2"}, user={"token": "from-second"}, current="other"),
    )
    missing = tmp_path / "missing"
    monkeypatch.setenv("KUBECONFIG", f"{first}:{missing}:{second}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    creds = load()
    assert creds.server == "https://127.0.0.1:2"
    assert creds.bearer() == "from-first"


def test_a_token_file_is_read_again_as_it_rotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    path = write(
        tmp_path / "config", config(cluster={"server": "https://127.0.0.1:3"}, user={"tokenFile": "token"})
    )
    creds = from_kubeconfig([path])
    assert creds.bearer() == "first"
    token.write_text("second\n")
    assert creds.bearer() == "first"  # not re-read on every request
    monkeypatch.setattr(kubeconfig, "TOKEN_REREAD_SECONDS", 0.0)
    assert creds.bearer() == "second"


def exec_plugin(tmp_path: Path, status: dict[str, Any], *, code: int = 0) -> dict[str, Any]:
    """An exec credential plugin that counts its runs and records the exec info it was given."""
    script = tmp_path / "plugin.py"
    script.write_text(
        "import json, os, sys\n"
        f"runs = {str(tmp_path / 'runs')!r}\n"
        "open(runs, 'a').write(os.environ['KUBERNETES_EXEC_INFO'] + '\\n')\n"
        f"print(json.dumps({{'kind': 'ExecCredential', 'status': {status!r}}}))\n"
        "print('plugin says no', file=sys.stderr)\n"
        f"sys.exit({code})\n"
    )
    return {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(script)],
        "env": [{"name": "PLUGIN_MODE", "value": "test"}],
    }


def runs(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "runs").read_text().splitlines()]


def test_an_exec_plugin_token_is_cached_until_it_expires(tmp_path: Path) -> None:
    plugin = exec_plugin(tmp_path, {"token": "t1", "expirationTimestamp": "2999-01-01T00:00:00Z"})
    path = write(
        tmp_path / "config", config(cluster={"server": "https://127.0.0.1:4"}, user={"exec": plugin})
    )
    creds = from_kubeconfig([path])
    assert creds.bearer() == "t1"
    assert creds.bearer() == "t1"
    assert len(runs(tmp_path)) == 1
    assert runs(tmp_path)[0] == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }


def test_an_expired_exec_credential_is_fetched_again(tmp_path: Path) -> None:
    plugin = exec_plugin(tmp_path, {"token": "t1", "expirationTimestamp": "2000-01-01T00:00:00Z"})
    path = write(
        tmp_path / "config", config(cluster={"server": "https://127.0.0.1:5"}, user={"exec": plugin})
    )
    creds = from_kubeconfig([path])
    creds.bearer()
    creds.bearer()
    assert len(runs(tmp_path)) == 2


def test_an_exec_plugin_may_return_a_client_certificate(tmp_path: Path) -> None:
    plugin = exec_plugin(tmp_path, {"clientCertificateData": "CERT", "clientKeyData": "KEY"})
    path = write(
        tmp_path / "config", config(cluster={"server": "https://127.0.0.1:6"}, user={"exec": plugin})
    )
    creds = from_kubeconfig([path])
    assert creds.bearer() is None
    assert creds.cert_file and Path(creds.cert_file).read_text() == "CERT"
    assert creds.key_file and Path(creds.key_file).read_text() == "KEY"


def test_a_failing_exec_plugin_says_why(tmp_path: Path) -> None:
    plugin = exec_plugin(tmp_path, {"token": "t"}, code=3)
    path = write(
        tmp_path / "config", config(cluster={"server": "https://127.0.0.1:7"}, user={"exec": plugin})
    )
    with pytest.raises(KubeconfigError, match="exited with 3: plugin says no"):
        from_kubeconfig([path]).bearer()


def test_in_cluster_credentials_come_from_the_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_text("CA")
    (tmp_path / "namespace").write_text("paddle-kuscia-system")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    creds = load(service_account_dir=tmp_path)
    assert creds.server == "https://[fd00::1]:443"
    assert creds.ca_file == str(tmp_path / "ca.crt")
    assert creds.namespace == "paddle-kuscia-system"
    assert creds.bearer() == "sa-token"


@pytest.mark.parametrize(
    ("kubeconfig_text", "message"),
    [
        (
            yaml.safe_dump(config(cluster={"server": "https://x"}, user={}, current=None)),
            "no current-context",
        ),
        (
            yaml.safe_dump(
                {"current-context": "ctx", "contexts": [{"name": "ctx", "context": {"cluster": "nope"}}]}
            ),
            "refers to 'nope'",
        ),
        (yaml.safe_dump(config(cluster={}, user={})), "has no server"),
        ("{", "is not YAML"),
    ],
)
def test_unusable_kubeconfigs_are_refused_with_the_reason(
    tmp_path: Path, kubeconfig_text: str, message: str
) -> None:
    path = tmp_path / "config"
    path.write_text(kubeconfig_text)
    with pytest.raises(KubeconfigError, match=message):
        from_kubeconfig([path])
