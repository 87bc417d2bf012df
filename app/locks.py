"""One writer per target: an OS lock (``flock``) on a file in the journal folder.

The kernel releases the lock when its process dies, however it dies (SIGKILL included), so a
crash never leaves a stale lock behind the way a pid file would. The file also says who holds
it (pid, host, since when, which rotation), so a refused second run can name the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from app.errors import KeyturnError
from app.journal import ensure_private_dir, utcnow


class TargetBusyError(KeyturnError):
    """Another live process drives this target."""

    def __init__(self, message: str, *, hint: str | None = None, holder: str = "") -> None:
        super().__init__(message, hint=hint)
        self.holder = holder  # "pid N on HOST since ..." (who, where, when; never a secret)


@dataclass(frozen=True)
class Holder:
    pid: int | None
    host: str
    since: str
    rotation: str | None

    def describe(self) -> str:
        since = self.since[:19].replace("T", " ") + " UTC" if self.since else "an unknown time"
        who = f"pid {self.pid} on {self.host}" if self.pid else "another keyturn process"
        return f"{who} since {since}" + (f" (rotation {self.rotation[:8]})" if self.rotation else "")


class TargetLock:
    """An exclusive, non-blocking lock on one target, held until ``release`` or the process's death."""

    def __init__(self, directory: Path, target: str) -> None:
        self.path = directory / f"{target}.lock"
        self.target = target
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> Holder | None:
        """Who holds the lock now (None when nobody does). Reads without taking it."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._read(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    @staticmethod
    def _read(fd: int) -> Holder:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            info = {}
        if not isinstance(info, dict):
            info = {}
        pid = info.get("pid")
        return Holder(pid if isinstance(pid, int) else None, str(info.get("host", "")), str(info.get("since", "")), info.get("rotation"))

    def acquire(self, rotation: str | None = None) -> None:
        if self._fd is not None:
            self.note(rotation)
            return
        ensure_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            for _ in range(20):  # the holder writes who it is right after it took the lock
                if holder.pid:
                    break
                time.sleep(0.025)
                holder = self._read(fd)
            os.close(fd)
            raise TargetBusyError(
                f"target {self.target} is being rotated by {holder.describe()}",
                hint="wait for it to finish or stop that process; this run changed nothing",
                holder=holder.describe(),
            ) from None
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._since = utcnow().isoformat(timespec="seconds")
        self.note(rotation)

    def note(self, rotation: str | None) -> None:
        """Record which rotation the holder drives (a plan gets its id before it is journaled)."""
        if self._fd is None:
            return
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": self._since, "rotation": rotation}
        data = json.dumps(info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None
