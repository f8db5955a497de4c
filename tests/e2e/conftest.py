"""E2E fixtures: the `zapgate` command run as a subprocess, as a user would run it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest

from tests.conftest import url_of
from tests.ports import free_port

ZAPGATE = [sys.executable, "-m", "gateway.cli"]
CHECKOUT = Path(__file__).resolve().parents[2]
BANNER_PASSWORD = re.compile(r"password:\s+(\S+)\s+\(change it")
BANNER_URL = re.compile(r"zapgate is running at (\S+)")


@attrs.define
class Process:
    proc: subprocess.Popen[str]
    port: int
    lines: list[str] = attrs.field(factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.output())
            if match:
                return match
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader thread drain
                raise AssertionError(f"zapgate exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {pattern.pattern!r}:\n{self.output()}")

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"zapgate exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.1)
        raise AssertionError(f"zapgate did not become healthy:\n{self.output()}")

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def start_zapgate(args: list[str], env: dict[str, str], cwd: Path, port: int | None = None) -> Process:
    port = port or free_port()
    # The process gets Redis only when the test gives it one: a REDIS_URL inherited from the test run (CI sets
    # it) would join every zapgate of every test running at once (pytest-xdist workers) on one pub/sub channel.
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("REDIS_")}
    full_env = {**inherited, **env, "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    # the code of this checkout, not the one the virtualenv's editable install points at (a git worktree)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(CHECKOUT), os.environ.get("PYTHONPATH"))))
    proc = subprocess.Popen(ZAPGATE + args, env=full_env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    process = Process(proc, port)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            process.lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return process


@pytest.fixture
def zapgate(tmp_path: Path) -> Iterator[callable]:
    """Start `zapgate <args>` processes; all are stopped (SIGTERM, then SIGKILL) at the end."""
    started: list[Process] = []

    def start(args: list[str], env: dict[str, str] | None = None, port: int | None = None) -> Process:
        process = start_zapgate(args, {"ZAPGATE_DATA_DIR": str(tmp_path / "data"), "BCRYPT_ROUNDS": "4",
                                       **(env or {})}, tmp_path, port)
        started.append(process)
        return process

    yield start
    for process in started:
        try:
            process.terminate(30)
        except subprocess.TimeoutExpired:
            process.proc.kill()
            process.proc.wait()


@pytest.fixture
def external_db_env(database_url: str) -> dict[str, str]:
    """Environment pointing zapgate at a fresh test database."""
    return {"DATABASE_URL": url_of(database_url)}


def wait_until(check, timeout: float = 30, what: str = ""):  # type: ignore[no-untyped-def]
    """Poll `check()` every 0.1 s until it returns something true (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
