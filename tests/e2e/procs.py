"""`imagedrop serve` as a real subprocess, for crash, CLI and shutdown tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import FAST, free_port


def serve_env(**extra: str) -> dict[str, str]:
    """The process environment without the developer's settings, plus fast test timings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COS_", "OPENAI_", "IMAGEDROP_"))}
    env.update(FAST)
    env.update(extra)
    return env


class ServeProcess:
    """`imagedrop serve` in a subprocess; always stopped by the test."""

    def __init__(self, env: dict[str, str], log: Path, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imagedrop", "serve", "--host", host,
             "--port", str(self.port)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"imagedrop serve exited with {self.proc.returncode}; "
                                     f"its log ends:\n{self._log_tail()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"imagedrop serve did not become healthy; its log ends:\n"
                             f"{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture(name="serve")
def _serve(tmp_path):
    started: list[ServeProcess] = []

    def start(env: dict[str, str], host: str = "127.0.0.1") -> ServeProcess:
        proc = ServeProcess(env, tmp_path / "serve.log", host)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


