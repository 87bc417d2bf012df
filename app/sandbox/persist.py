"""A sandbox world kept on disk (``Sandbox(directory, persist=True)``): the demo resumes against what it left.

The world is every emulator's records (users, PATs, Entra tokens, Key Vault versions, Buildkite, Jenkins and
ConductorOne records, the emulators' clock offset), the CA and server certificate, and the ports the last run
listened on (to rewrite keyturn.toml). It is one file, ``D/sandbox-world.pickle`` (0600 in a 0700 folder),
written after every request that changed it and before that request's answer leaves (temp file, fsync,
``os.replace``), so a crash loses nothing the emulators handed out. Its secrets are fake values of the emulated
world. Pickle, because the records are plain dataclasses that change with the emulators; it is read with an
allow-list (the sandbox's own classes, a few stdlib types, the reconstructors below), never as general pickle.

Faults, delays, request counters and emulator-bug reports are not part of the world: they belong to a run.
``D/.sandbox.lock`` (flock) keeps two processes from driving one world.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pickle
import shutil
import stat
import threading
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.errors import KeyturnError

WORLD_FILE = "sandbox-world.pickle"
LOCK_FILE = ".sandbox.lock"
WORLD_FORMAT = 1  # bump when a saved world can no longer be read by these emulators

# What the sandbox writes in its folder, the journal of the config it writes included: ``discard_world``
# removes these and nothing else (``--dir`` may name a folder that holds other things too).
SANDBOX_ENTRIES = (
    WORLD_FILE,
    "keyturn.toml",
    "ca.pem",
    "sandbox-sp.secret",
    "sandbox-c1.secret",
    "sandbox-buildkite.token",
    "sandbox-jenkins.token",
    "sandbox-jenkins.password",
    "aws-credentials",
    "age.key",
    "flux-config",
    "flux-config.git",
    "journal",
)

_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))
_BOUND_METHODS = frozenset({"time", "connector_token_check"})  # world.clock, c1.token_check
_STDLIB = frozenset(
    {
        ("datetime", "datetime"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("collections", "Counter"),
        ("collections", "OrderedDict"),
        ("collections", "deque"),
    }
)


class SandboxBusyError(KeyturnError):
    """Another process runs the sandbox world of this folder."""


class WorldUnreadableError(KeyturnError):
    """The saved world is damaged, foreign, or from emulators that no longer read it."""


# -- reconstructors (the only functions a saved world may name) -----------------------------------------


def _new_rlock() -> Any:
    return threading.RLock()


def _new_lock() -> Any:
    return threading.Lock()


def _bound_method(owner: object, name: str) -> Any:
    if name not in _BOUND_METHODS:
        raise pickle.UnpicklingError(f"a sandbox world binds no method {name!r}")
    return getattr(owner, name)


def _ed25519_public_key(raw: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


_RECONSTRUCTORS = {f.__name__: f for f in (_new_rlock, _new_lock, _bound_method, _ed25519_public_key)}


class _WorldPickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _LOCK_TYPES):  # a lock is saved as a new, free one
            return (_new_rlock if isinstance(obj, _LOCK_TYPES[1]) else _new_lock, ())
        if isinstance(obj, types.MethodType):
            if obj.__name__ not in _BOUND_METHODS:
                raise pickle.PicklingError(f"the sandbox world cannot keep the method {obj.__qualname__}")
            return (_bound_method, (obj.__self__, obj.__name__))
        if type(obj).__module__.startswith("cryptography."):
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

            if isinstance(obj, Ed25519PublicKey):  # ConductorOne API clients' keys
                return (_ed25519_public_key, (obj.public_bytes(Encoding.Raw, PublicFormat.Raw),))
            raise pickle.PicklingError(f"the sandbox world cannot keep a {type(obj).__qualname__}")
        return NotImplemented


class _WorldUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name in _RECONSTRUCTORS:
            return _RECONSTRUCTORS[name]
        if (module, name) in _STDLIB:
            return super().find_class(module, name)
        if module.startswith("app.sandbox.") and name.isidentifier():
            found = super().find_class(module, name)
            if isinstance(found, type) and found.__module__ == module:  # a class of the sandbox, not a re-export
                return found
        raise pickle.UnpicklingError(f"a sandbox world holds no {module}.{name}")


def dumps(world: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    _WorldPickler(buf, protocol=5).dump(world)
    return buf.getvalue()


def loads(data: bytes) -> dict[str, Any]:
    world = _WorldUnpickler(io.BytesIO(data)).load()
    if not isinstance(world, dict):
        raise pickle.UnpicklingError("not a sandbox world")
    return world


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` to ``path`` (0600): a temp file beside it, fsync, rename over, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class WorldStore:
    """The world file of one folder: lock it, load it, save snapshots (only when they changed)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / WORLD_FILE
        self._lock_fd: int | None = None
        self._save_lock = threading.Lock()
        self._last: bytes | None = None
        self.saves = 0  # how many times the file was written (tests, the benchmark)

    def exists(self) -> bool:
        return self.path.exists()

    def lock(self) -> None:
        """Take ``D/.sandbox.lock`` (held until ``unlock`` or the process's death)."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise SandboxBusyError(
                f"the sandbox world in {self.directory} is in use" + (f" by pid {holder}" if holder.isdigit() else ""),
                hint="quit the other keyturn demo (or sandbox) first, or use another folder",
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> dict[str, Any]:
        """The saved world; WorldUnreadableError when it is not one these emulators can use."""
        hint = "start afresh: keyturn demo --fresh (or delete the folder)"
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise WorldUnreadableError(
                f"{self.path}: cannot read the saved sandbox world ({exc.strerror})", hint=hint
            ) from None
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise WorldUnreadableError(
                    f"{self.path}: the saved sandbox world is not yours alone (owner or mode); not loaded", hint=hint
                )
            data = fh.read()
        try:
            world = loads(data)
        except Exception as exc:  # damaged, or classes these emulators no longer have
            raise WorldUnreadableError(
                f"{self.path}: the saved sandbox world cannot be read ({exc.__class__.__name__})", hint=hint
            ) from None
        if world.get("format") != WORLD_FORMAT:
            raise WorldUnreadableError(
                f"{self.path}: the saved sandbox world is of format {world.get('format')!r}, these emulators read {WORLD_FORMAT}",
                hint=hint,
            )
        self._last = data
        return world

    def save(self, world: dict[str, Any], locks: Iterable[Any]) -> bool:
        """Write ``world`` if it changed since the last save; True when written.

        ``locks`` (taken in that order, the order the emulators nest them) keep every record still while it is
        pickled; the save lock keeps snapshots in order (a later snapshot is never overwritten by an earlier one).
        """
        with self._save_lock:
            for attempt in range(3):
                try:
                    with contextlib.ExitStack() as stack:
                        for lock in locks:
                            stack.enter_context(lock)
                        data = dumps(world)
                    break
                except RuntimeError:  # a record changed under a handler that holds no lock: take it again
                    if attempt == 2:
                        raise
            if data == self._last:
                return False
            _write_atomically(self.path, data)
            self._last = data
            self.saves += 1
            return True


def discard_world(directory: Path) -> list[str]:
    """Remove the sandbox's own files from ``directory`` (the world, its config, repos, journal); names removed."""
    removed = []
    for name in SANDBOX_ENTRIES:
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    for leftover in directory.glob(f".{WORLD_FILE}.*.tmp"):  # a save cut short by a crash
        leftover.unlink()
    return removed
