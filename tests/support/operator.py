"""Run `paddle-kuscia run` for real, as a subprocess, against the local control plane."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from .control_plane import ControlPlane, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    def __init__(
        self,
        plane: ControlPlane,
        log_path: Path,
        *,
        args: list[str] | None = None,
        kubeconfig: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.plane = plane
        self.log_path = log_path
        self.args = args or []
        self.kubeconfig = kubeconfig or plane.operator_kubeconfig
        self.env = env or {}
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> OperatorProcess:
        env = self.plane.env(self.kubeconfig) | self.env
        cmd = [
            sys.executable,
            "-m",
            "paddle_kuscia.cli",
            "run",
            "--standalone",
            "--verbose",
            f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
            f"--metrics-port={self.metrics_port}",
            "--metrics-address=127.0.0.1",
            "--backoff-base=0.5",
            "--backoff-max=10",
            *self.args,
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        if wait:
            wait_for(self.healthy, timeout=60, what=f"operator liveness (log: {self.log_path})")
        return self

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(
                f"operator exited with {self.proc and self.proc.returncode}; log: {self.log()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc is not None:
            self._log.close()
            self.proc = None

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
