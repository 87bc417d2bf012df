"""The rotation journal: append-only JSONL, one file per rotation, fsync'd, 0600 in a 0700 folder.

Every state transition is written here *before* the next side effect. Records hold ids, names,
timestamps, states and fingerprints; a value never reaches this file (see ``_refuse_values``).
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.errors import KeyturnError
from app.secret import SecretValue

# The protocol's states, in order. `aborted` is terminal too.
STATES = ("planned", "minted", "stored", "verified", "propagated", "old_retired", "done")
TERMINAL = frozenset({"done", "aborted"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def ensure_private_dir(path: Path) -> Path:
    """``path`` as a 0700 folder; the folders created on the way are 0700 too (XDG), whatever the umask."""
    try:
        missing, folder = [], path
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)
        path.mkdir(exist_ok=True, mode=0o700)  # raises if path is a file
        os.chmod(path, 0o700)
    except OSError as exc:
        raise KeyturnError(
            f"{path}: cannot use it as keyturn's private folder ({exc.strerror or exc.__class__.__name__})",
            hint="set settings.journal_dir to a folder you can write",
        ) from None
    return path


def crash_point(where: str) -> None:
    """Fault injection for the crash tests: KEYTURN_TEST_KILL_AT=after:minted (a journal event) or a named point
    inside a follow-up (e.g. ``flux:committed``) SIGKILLs this process there."""
    if os.environ.get("KEYTURN_TEST_KILL_AT") == where:
        os.kill(os.getpid(), signal.SIGKILL)


def _refuse_values(obj: Any) -> None:
    if isinstance(obj, SecretValue):
        raise TypeError("a SecretValue must never be journaled; journal its fingerprint")
    if isinstance(obj, dict):
        for v in obj.values():
            _refuse_values(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _refuse_values(v)


@dataclass
class RotationRecord:
    """A rotation's state, rebuilt by replaying its journal file."""

    rotation_id: str
    path: Path
    state: str = "planned"
    target: str = ""
    plan: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    new_token: dict[str, Any] | None = None  # id, name, expires_at, fingerprint
    steps_done: dict[str, dict[str, Any]] = field(default_factory=dict)  # step id -> detail (for new_token)
    revoked: list[str] = field(default_factory=list)
    retire_at: str | None = None
    started_at: str = ""
    updated_at: str = ""
    error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def apply(self, rec: dict[str, Any]) -> None:
        self.events.append(rec)
        ev = rec["event"]
        self.updated_at = rec["ts"]
        if ev == "planned":
            self.target = rec["target"]
            self.plan = rec["plan"]
            self.started_at = rec["ts"]
        elif ev == "mint_attempt":
            self.attempt = rec["attempt"]
        elif ev == "minted":
            self.new_token = rec["token"]
            self.steps_done = {}
        elif ev == "step_done":
            if self.new_token and rec.get("token_id") == self.new_token["id"]:
                self.steps_done[rec["step"]] = rec.get("detail", {})
        elif ev == "compensated":
            # the new token was revoked because its value was lost; start over from minting
            self.new_token = None
            self.steps_done = {}
            self.state = "planned"
        elif ev == "revoked":
            self.revoked.append(rec["token_id"])
        elif ev == "retire_scheduled":
            self.retire_at = rec["at"]
        elif ev == "error":
            self.error = rec["message"]
        if ev in STATES or ev == "aborted":
            self.state = ev
            if ev != "planned":
                self.error = None


class RotationJournal:
    """The folder of rotation journals."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, rotation_id: str) -> Path:
        return self.directory / f"{rotation_id}.jsonl"

    def new_rotation_id(self) -> str:
        return str(uuid.uuid4())

    def append(self, rotation_id: str, event: str, **fields: Any) -> dict[str, Any]:
        _refuse_values(fields)
        crash_point(f"before:{event}")
        ensure_private_dir(self.directory)
        rec = {"ts": utcnow().isoformat(timespec="milliseconds"), "rotation_id": rotation_id, "event": event, **fields}
        line = (json.dumps(rec, sort_keys=True, default=str) + "\n").encode()
        path = self._path(rotation_id)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        crash_point(f"after:{event}")
        return rec

    def load(self, rotation_id: str) -> RotationRecord:
        path = self._path(rotation_id)
        if not path.exists():
            matches = [p for p in self._files() if p.stem.startswith(rotation_id)] if len(rotation_id) >= 6 else []
            if len(matches) != 1:
                raise KeyturnError(f"no rotation {rotation_id!r} in {self.directory}", hint="run `keyturn resume` to list them")
            path = matches[0]
        record = RotationRecord(rotation_id=path.stem, path=path)
        with path.open("rb") as fh:
            for n, raw in enumerate(fh, 1):
                if not raw.endswith(b"\n"):
                    break  # a torn last line from a crash mid-write: the step it announced did not happen
                try:
                    record.apply(json.loads(raw))
                except (ValueError, KeyError) as exc:
                    raise KeyturnError(f"{path}:{n}: damaged journal line ({exc.__class__.__name__})") from None
        return record

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)

    def all(self) -> Iterator[RotationRecord]:
        for path in self._files():
            yield self.load(path.stem)

    def unfinished(self) -> list[RotationRecord]:
        return [r for r in self.all() if not r.finished]

    def last_done(self, target: str) -> RotationRecord | None:
        done = [r for r in self.all() if r.target == target and r.state == "done"]
        return done[-1] if done else None
