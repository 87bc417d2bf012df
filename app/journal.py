"""The rotation journal: append-only JSONL, one file per rotation, fsync'd, 0600 in a 0700 folder.

Every state transition is written here *before* the next side effect. Records hold ids, names,
timestamps, states and fingerprints; a value never reaches this file (see ``_refuse_values``).
Each line carries the journal's ``format``; a file this version cannot read (damaged, or written by
a newer keyturn) isolates that one rotation (``scan``), never the others.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.errors import KeyturnError
from app.secret import SecretValue

# The protocol's states, in order. `aborted` is terminal too.
STATES = ("planned", "minted", "stored", "verified", "propagated", "old_retired", "done")
TERMINAL = frozenset({"done", "aborted"})

# The journal line format this version writes and reads. Lines without the field (keyturn before it
# existed) are format 1. Raise it only for a change an older keyturn would misread.
JOURNAL_FORMAT = 1


_TOUCHED: dict[str, str] = {}  # rotation id -> last event this process journaled


def touched() -> list[str]:
    """Rotations this process journaled that it left unfinished (what an interrupt message may offer to resume)."""
    return [rid for rid, ev in _TOUCHED.items() if ev not in TERMINAL]


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents 0700 whatever the umask; a folder that already exists is used as it is
    and never chmodded: it is not keyturn's. Raises OSError."""
    missing, folder = [], path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another process: not created here, so not chmodded here
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask (0o277 would leave it 0500)


def ensure_private_dir(path: Path) -> Path:
    """``path`` as keyturn's folder (``make_private_dirs``); a file in the way, or a folder it cannot make, is one line."""
    try:
        make_private_dirs(path)
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    except OSError as exc:
        raise KeyturnError(
            f"{path}: cannot use it as keyturn's private folder ({exc.strerror or exc.__class__.__name__})",
            hint="set settings.journal_dir to a folder you can write",
        ) from None
    return path


CRASH_HOOK: Callable[[str], None] | None = None  # in-process tests: called first at every crash point (may raise)


def crash_point(where: str) -> None:
    """Fault injection for the crash tests: KEYTURN_TEST_KILL_AT=after:minted (a journal event) or a named point
    inside a follow-up (e.g. ``flux:committed``) SIGKILLs this process there. In-process tests set ``CRASH_HOOK``
    instead: it is called with the point's name first, and may raise (a ``BaseException``, so no handler of the
    engine's catches it) to end the "process" there."""
    if CRASH_HOOK is not None:
        CRASH_HOOK(where)
    if os.environ.get("KEYTURN_TEST_PAUSE_AT") == where:
        # the concurrency tests start a second process while this one stands here (it says so in a marker file)
        # KEYTURN_TEST_PAUSE_UNTIL=FILE: stand here until the test creates FILE (at most KEYTURN_TEST_PAUSE_S), so the
        # second process is known to have run while this one stood here, however slow the machine
        Path(os.environ["KEYTURN_TEST_PAUSE_FILE"]).write_text(where)
        pause_s = float(os.environ.get("KEYTURN_TEST_PAUSE_S", "2"))
        until = os.environ.get("KEYTURN_TEST_PAUSE_UNTIL")
        if until:
            deadline = time.monotonic() + pause_s
            while not Path(until).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        else:
            time.sleep(pause_s)
    if os.environ.get("KEYTURN_TEST_KILL_AT") == where:
        # KEYTURN_TEST_SIGNAL=TERM sends SIGTERM instead (CI cancellation, `timeout`): the run must end like Ctrl-C
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("KEYTURN_TEST_SIGNAL", "KILL")))


def _refuse_values(obj: Any) -> None:
    if isinstance(obj, SecretValue):
        raise TypeError("a SecretValue must never be journaled; journal its fingerprint")
    if isinstance(obj, dict):
        for v in obj.values():
            _refuse_values(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _refuse_values(v)


# What replaying an event reads from its line (key -> type): a line without it is damaged here, rather than
# an AttributeError/KeyError later in `status` or `resume`. Events not listed need nothing but the common keys.
_COMMON: dict[str, type] = {"event": str, "ts": str}
_NEEDS: dict[str, dict[str, type]] = {
    "planned": {"target": str, "plan": dict},
    "mint_attempt": {"attempt": int},
    "minted": {"token": dict},
    "step_done": {"step": str},
    "revoked": {"token_id": str},
    "retire_scheduled": {"at": str},
    "error": {"message": str},
}
_JSON_KINDS = {list: "list", str: "string", int: "number", float: "number", bool: "true/false", type(None): "null"}


class _Damaged(Exception):
    """Why one journal line cannot be replayed (one line; never the line's content, which could be anything)."""


class _NewerFormat(_Damaged):
    def __init__(self, fmt: int, n: int) -> None:
        super().__init__(
            f"written by a newer keyturn (format {fmt}) at line {n}; this keyturn reads format {JOURNAL_FORMAT}"
        )
        self.format = fmt


def _check_line(rec: Any, n: int) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise _Damaged(f"damaged journal line {n} (a JSON {_JSON_KINDS.get(type(rec), 'value')}, not an object)")
    fmt = rec.get("format", 1)
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        raise _Damaged(f"damaged journal line {n} (its format is not a version number)")
    if fmt > JOURNAL_FORMAT:
        raise _NewerFormat(fmt, n)
    event = rec.get("event")
    known = isinstance(event, str) and (event in _NEEDS or event in STATES or event == "aborted")
    needs = {**_COMMON, **_NEEDS.get(event, {})} if isinstance(event, str) else _COMMON
    what = f"event {event!r}" if known else "the line"  # an event name of ours; never text from the file
    for key, kind in needs.items():
        if key not in rec:
            raise _Damaged(f"damaged journal line {n} ({what} lacks {key!r})")
        value = rec[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _Damaged(f"damaged journal line {n} ({key!r} of {what} has the wrong type)")
    if event == "minted" and not isinstance(rec["token"].get("id"), str):
        raise _Damaged(f"damaged journal line {n} (the minted token has no id)")
    if event == "step_done" and not isinstance(rec.get("detail", {}), dict):
        raise _Damaged(f"damaged journal line {n} ('detail' of event 'step_done' has the wrong type)")
    if n == 1 and event != "planned":
        raise _Damaged("damaged journal line 1 (a rotation's journal starts with its plan)")
    return rec


@dataclass(frozen=True)
class DamagedJournal:
    """A rotation's journal that this keyturn cannot replay. Only that rotation is refused; the others carry on.

    ``reason`` and ``fix`` are one line each and never quote the file's content. ``target`` is the rotation's target
    when its plan (line 1) was readable, else None. ``newer_format`` is set when a newer keyturn wrote the file: it is
    not damaged, just not for this version (upgrade; do not move it aside)."""

    rotation_id: str
    path: Path
    reason: str
    fix: str
    target: str | None = None
    newer_format: int | None = None

    @property
    def message(self) -> str:
        """The one line to show: the file, what is wrong, what to do."""
        return f"{self.path}: {self.reason}; {self.fix}"


def _fix_for(path: Path, record: RotationRecord | None) -> str:
    aside = f"mv {shlex.quote(str(path))} {shlex.quote(str(path) + '.damaged')}"
    if record is None or not record.target:
        return f"move it aside ({aside}) after checking the platform for a token this rotation may have minted"
    token = record.new_token
    if token is not None:
        look = f"token {token.get('name', '')!r} ({token['id']}) was minted: revoke it if no store holds it"
    else:
        name = record.plan.get("display_name") if isinstance(record.plan, dict) else None
        look = f"look for a token named {name!r} and revoke it if no store holds it" if name else "check the platform"
    return f"{look} (target {record.target}), then move the file aside ({aside}) and rotate again"


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
        if "format" in fields:
            raise TypeError("'format' is the journal's own field")
        rec = {
            "ts": utcnow().isoformat(timespec="milliseconds"),
            "format": JOURNAL_FORMAT,
            "rotation_id": rotation_id,
            "event": event,
            **fields,
        }
        line = (json.dumps(rec, sort_keys=True, default=str) + "\n").encode()
        path = self._path(rotation_id)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
            _TOUCHED[rotation_id] = event
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
        """The rotation (``rotation_id`` or a unique prefix of 6+ characters), replayed. A damaged journal, or one a
        newer keyturn wrote, raises KeyturnError (the file, why, the fix; one line): it is never resumed from here."""
        path = self._path(rotation_id)
        if not path.exists():
            matches = [p for p in self._files() if p.stem.startswith(rotation_id)] if len(rotation_id) >= 6 else []
            if len(matches) != 1:
                raise KeyturnError(
                    f"no rotation {rotation_id!r} in {self.directory}", hint="run `keyturn resume` to list them"
                )
            path = matches[0]
        got = self._read(path)
        if isinstance(got, DamagedJournal):
            raise KeyturnError(got.message)
        return got

    def _read(self, path: Path) -> RotationRecord | DamagedJournal:
        record = RotationRecord(rotation_id=path.stem, path=path)
        lines = 0
        try:
            with path.open("rb") as fh:
                for n, raw in enumerate(fh, 1):
                    if not raw.endswith(b"\n"):
                        break  # a torn last line from a crash mid-write: the step it announced did not happen
                    try:
                        rec = _check_line(json.loads(raw), n)
                    except (ValueError, RecursionError):  # not JSON (or not UTF-8, or absurdly nested)
                        raise _Damaged(f"damaged journal line {n} (not JSON)") from None
                    try:
                        record.apply(rec)
                    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # what _check_line missed
                        raise _Damaged(
                            f"damaged journal line {n} (cannot be replayed: {exc.__class__.__name__})"
                        ) from None
                    lines = n
        except _NewerFormat as exc:
            return DamagedJournal(
                path.stem,
                path,
                str(exc),
                f"resume or abort it with a keyturn that reads format {exc.format} (upgrade); this one leaves it alone",
                target=record.target or None,
                newer_format=exc.format,
            )
        except _Damaged as exc:
            return DamagedJournal(path.stem, path, str(exc), _fix_for(path, record), target=record.target or None)
        except OSError as exc:
            reason = f"cannot read this rotation's journal ({exc.strerror or exc.__class__.__name__})"
            return DamagedJournal(path.stem, path, reason, "make it readable (chmod 600) or move it aside")
        if lines == 0:
            reason = "empty journal (no complete line: a crash as the rotation began?)"
            return DamagedJournal(path.stem, path, reason, _fix_for(path, None))
        return record

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []

        def mtime(p: Path) -> float:
            try:
                return p.stat().st_mtime
            except OSError:  # gone since the listing: sorted first, then read as unreadable
                return 0.0

        return sorted(self.directory.glob("*.jsonl"), key=mtime)

    def scan(self) -> tuple[list[RotationRecord], list[DamagedJournal]]:
        """Every rotation in the folder (oldest first): the ones that replay, and the ones that do not (each with
        its reason and fix), so a damaged file is reported for its own rotation and the rest carry on."""
        records: list[RotationRecord] = []
        damaged: list[DamagedJournal] = []
        for path in self._files():
            got = self._read(path)
            if isinstance(got, DamagedJournal):
                damaged.append(got)
            else:
                records.append(got)
        return records, damaged

    def all(self) -> Iterator[RotationRecord]:
        """The rotations that replay, oldest first; damaged ones are skipped (``scan`` lists them)."""
        for path in self._files():
            got = self._read(path)
            if isinstance(got, RotationRecord):
                yield got

    def unfinished(self) -> list[RotationRecord]:
        return [r for r in self.all() if not r.finished]

    def last_done(self, target: str) -> RotationRecord | None:
        done = [r for r in self.all() if r.target == target and r.state == "done"]
        return done[-1] if done else None
