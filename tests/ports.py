"""Loopback ports for the servers tests start (and restart on the same port), that no other process is handed.

`bind(("127.0.0.1", 0))` gives a port that is free now, from the kernel's ephemeral range: when the test's
server stops (the restart and fault tests stop it and start it again on the same port), the kernel may hand
that port to any process's next outgoing connection or `bind(0)` — under pytest-xdist, another worker's, and
on a shared machine, another test run's. So each test process claims, for its lifetime, a block of ports
below the ephemeral range (an exclusive `flock` on a lock file per block; the kernel drops the lock when
the process exits, however it exits) and hands its ports out in turn, skipping any that something holds.
Nothing in the kernel allocates from that range on its own, and no other test process owns the block.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
from pathlib import Path

LOWEST = 20_000
BLOCK = 250  # ports per test process: the e2e tiers use ~3 per test and a block is used round-robin
LOCK_DIR = Path(tempfile.gettempdir()) / "zapgate-test-ports"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; elsewhere the range below it is as unused


class _Block:
    def __init__(self) -> None:
        self.start = 0  # 0: no block claimed (all taken, or no room below the ephemeral range): bind(0)
        self.next = 0
        self._lock_fd: int | None = None
        self._owner = 0

    def claim(self) -> None:
        self._owner = os.getpid()  # a forked child claims its own block instead of sharing the parent's
        blocks = (_ephemeral_low() - LOWEST) // BLOCK
        if blocks <= 0:
            return
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        first = (os.getpid() // 7) % blocks  # spread concurrent runs, so they rarely try the same lock first
        for i in range(blocks):
            n = (first + i) % blocks
            fd = os.open(LOCK_DIR / f"block-{n}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._lock_fd, self.start, self.next = fd, LOWEST + n * BLOCK, 0
            return

    def port(self) -> int:
        if self._owner != os.getpid():
            self.claim()
        for _ in range(BLOCK if self.start else 0):
            port = self.start + self.next
            self.next = (self.next + 1) % BLOCK
            if _bindable(port):
                return port
        return _any_free_port()


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_block = _Block()


def free_port() -> int:
    """A loopback port nothing listens on, that only this process hands out (safe to stop and rebind)."""
    return _block.port()
