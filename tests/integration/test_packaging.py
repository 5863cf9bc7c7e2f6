"""What the container image does, without a Docker engine: build the wheel, install it into a clean virtualenv,
and run the image's entrypoint (`paddle-kuscia run`) against the real control plane until it stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from support.control_plane import ROOT, ControlPlane, wait_for
from support.operator import free_port


def test_wheel_installs_into_a_clean_virtualenv_and_the_entrypoint_starts_and_stops(
    control_plane: ControlPlane, operator_rbac: None, tmp_path: Path
) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        timeout=600,
    )
    wheels = list((tmp_path / "dist").glob("paddle_kuscia_operator-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheels[0])], check=True, timeout=900)
    entrypoint = venv / "bin" / "paddle-kuscia"
    assert entrypoint.exists()

    port = free_port()
    env = control_plane.env(control_plane.operator_kubeconfig) | {"PYTHONUNBUFFERED": "1"}
    log = tmp_path / "entrypoint.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(entrypoint),
                "run",
                "--all-namespaces",
                "--standalone",
                f"--liveness=http://127.0.0.1:{port}/healthz",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
        try:

            def healthy() -> bool:
                assert proc.poll() is None, log.read_text()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                        return resp.status == 200
                except OSError:
                    return False

            wait_for(healthy, timeout=60, what="the installed entrypoint to serve /healthz")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and "Started paddle-kuscia operator" in text
