"""Issue 11: keyturn never chmods a folder it did not create (invariant 7), and a damaged journal isolates its own
rotation, never the tool (invariant 8)."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import KeyturnError
from app.journal import JOURNAL_FORMAT, DamagedJournal, RotationJournal, ensure_private_dir
from app.logs import log_path, setup_logging


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.fixture
def keyturn_logger() -> Iterator[None]:
    """setup_logging adds a file handler to the `keyturn` logger: take it off again after the test."""
    root = logging.getLogger("keyturn")
    before, propagate, level = list(root.handlers), root.propagate, root.level
    yield
    for h in [h for h in root.handlers if h not in before]:
        root.removeHandler(h)
        h.close()
    root.propagate, root.level = propagate, level


def folder(p: Path, m: int) -> Path:
    p.mkdir()
    p.chmod(m)
    return p


# -- invariant 7: never touch what keyturn did not create ------------------------------------------------


def test_an_existing_parent_keeps_its_mode(tmp_path: Path, umask: int, keyturn_logger: None) -> None:
    """journal_dir = /home/me/work/journal must not chmod /home/me/work (it did, through the log beside it)."""
    work = folder(tmp_path / "work", 0o755)
    journal_dir = work / "journal"
    j = RotationJournal(journal_dir)
    j.append(j.new_rotation_id(), "planned", target="t", plan={})
    log = setup_logging(log_path(journal_dir))
    logging.getLogger("keyturn.test").info("a line")
    assert mode(work) == 0o755
    assert mode(journal_dir) == 0o700  # created by keyturn, whatever the umask
    assert log.parent == journal_dir and log.is_file() and mode(log) == 0o600
    assert not (work / "keyturn.log").exists()  # nothing written into the engineer's folder


def test_an_existing_journal_dir_keeps_its_mode(tmp_path: Path, umask: int, keyturn_logger: None) -> None:
    journal_dir = folder(tmp_path / "journal", 0o750)
    j = RotationJournal(journal_dir)
    rid = j.new_rotation_id()
    j.append(rid, "planned", target="t", plan={})
    log = setup_logging(log_path(journal_dir))
    assert mode(journal_dir) == 0o750
    assert mode(j.load(rid).path) == 0o600 and mode(log) == 0o600


def test_folders_keyturn_creates_are_private(tmp_path: Path, umask: int, keyturn_logger: None) -> None:
    base = folder(tmp_path / "base", 0o755)
    ensure_private_dir(base / "a" / "b" / "journal")
    for p in (base / "a", base / "a" / "b", base / "a" / "b" / "journal"):
        assert mode(p) == 0o700, (p, oct(mode(p)))
    assert mode(base) == 0o755
    log = setup_logging(base / "logs" / "keyturn.log")  # the default case: keyturn makes the log folder
    assert mode(log.parent) == 0o700 and mode(log) == 0o600 and mode(base) == 0o755


def test_log_path_keeps_its_signature() -> None:
    assert log_path(Path("/srv/kt/journal")) == Path("/srv/kt/journal/keyturn.log")
    assert log_path(None).name == "keyturn.log"


def test_an_existing_log_is_made_private_again(tmp_path: Path, keyturn_logger: None) -> None:
    log = tmp_path / "journal" / "keyturn.log"
    log.parent.mkdir(mode=0o700)
    log.write_text("old line\n")
    log.chmod(0o644)
    setup_logging(log)
    assert mode(log) == 0o600 and log.read_text().startswith("old line")


def test_a_symlink_at_the_log_is_refused_not_followed(tmp_path: Path, keyturn_logger: None) -> None:
    elsewhere = tmp_path / "someone-elses-file"
    elsewhere.write_text("theirs\n")
    elsewhere.chmod(0o644)
    journal_dir = folder(tmp_path / "journal", 0o700)
    (journal_dir / "keyturn.log").symlink_to(elsewhere)
    with pytest.raises(KeyturnError, match="cannot write keyturn's log") as err:
        setup_logging(log_path(journal_dir))
    assert "\n" not in str(err.value)
    assert mode(elsewhere) == 0o644 and elsewhere.read_text() == "theirs\n"


def test_a_file_in_the_way_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "journal").write_text("not a folder")
    with pytest.raises(KeyturnError, match="cannot use it as keyturn's private folder"):
        RotationJournal(tmp_path / "journal").append("r", "planned", target="t", plan={})


# -- invariant 8 (a): a format version in every line -------------------------------------------------------


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_every_line_carries_the_format(tmp_path: Path) -> None:
    j = RotationJournal(tmp_path)
    rid = j.new_rotation_id()
    j.append(rid, "planned", target="t", plan={})
    j.append(rid, "minted", token={"id": "a1", "name": "x"})
    assert [x["format"] for x in lines(j.load(rid).path)] == [JOURNAL_FORMAT, JOURNAL_FORMAT] == [1, 1]
    with pytest.raises(TypeError):
        j.append(rid, "error", message="m", format=2)  # the journal's own field


def test_lines_without_a_format_read_as_format_1(tmp_path: Path) -> None:
    """What today's keyturn wrote (no `format`) still replays."""
    rid = "0ld00000-0000-4000-8000-000000000000"
    old_lines = [
        {"event": "planned", "plan": {}, "rotation_id": rid, "target": "t", "ts": "2026-01-01T00:00:00.000+00:00"},
        {"event": "minted", "rotation_id": rid, "token": {"id": "a1"}, "ts": "2026-01-01T00:00:01.000+00:00"},
    ]
    (tmp_path / f"{rid}.jsonl").write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in old_lines))
    j = RotationJournal(tmp_path)
    assert j.load(rid).state == "minted"
    assert j.scan() == ([j.load(rid)], [])


@pytest.mark.parametrize("where", ["first", "later"])
def test_a_newer_format_refuses_that_rotation(tmp_path: Path, where: str) -> None:
    j = RotationJournal(tmp_path)
    good = j.new_rotation_id()
    j.append(good, "planned", target="ok", plan={})
    newer = "9e0e0000-0000-4000-8000-000000000000"
    if where == "later":
        j.append(newer, "planned", target="t-new", plan={"display_name": "kt-new"})
    with (tmp_path / f"{newer}.jsonl").open("a") as fh:
        fh.write(json.dumps({"format": 2, "event": "minted", "ts": "t", "token": {"id": "x"}, "new_field": [1]}) + "\n")
    with pytest.raises(KeyturnError) as err:
        j.load(newer)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / f"{newer}.jsonl") in msg
    assert "written by a newer keyturn (format 2)" in msg and "upgrade" in msg
    with pytest.raises(KeyturnError, match="newer keyturn"):
        j.load(newer[:8])  # by prefix too: `keyturn resume 9e0e0000` never mints for it
    assert [r.rotation_id for r in j.all()] == [good]
    assert [r.rotation_id for r in j.unfinished()] == [good]
    records, damaged = j.scan()
    assert [r.rotation_id for r in records] == [good]
    (d,) = damaged
    assert d.rotation_id == newer and d.newer_format == 2
    assert d.target == ("t-new" if where == "later" else None)


# -- invariant 8 (b): a damaged file isolates its rotation ---------------------------------------------------

CANARY = "canary-journal-damage-5f3a"  # content of a damaged line must never reach a message

PLAN = {"event": "planned", "ts": "2026-01-01T00:00:00Z", "target": "t-bad", "plan": {"display_name": "kt-bad"}}

# id -> (the file's bytes, the target scan() should report)
DAMAGE: dict[str, tuple[bytes, str | None]] = {
    "empty-file": (b"", None),
    "torn-only-line": (b'{"event": "planned", "tar', None),  # a crash while the rotation's first line was written
    "garbled-first-line": (b"{not json " + CANARY.encode() + b"\n", None),
    "garbled-line": (json.dumps(PLAN).encode() + b"\n{" + CANARY.encode() + b"\n", "t-bad"),
    "blank-line": (json.dumps(PLAN).encode() + b"\n\n", "t-bad"),
    "not-utf8": (json.dumps(PLAN).encode() + b'\n{"event": "\xff\xfe"}\n', "t-bad"),
    "json-list": (json.dumps(PLAN).encode() + b"\n[1, 2]\n", "t-bad"),
    "json-string": (json.dumps(PLAN).encode() + b'\n"' + CANARY.encode() + b'"\n', "t-bad"),
    "json-number": (json.dumps(PLAN).encode() + b"\n42\n", "t-bad"),
    "json-null": (json.dumps(PLAN).encode() + b"\nnull\n", "t-bad"),
    "no-event": (json.dumps(PLAN).encode() + b'\n{"ts": "t"}\n', "t-bad"),
    "event-not-a-string": (json.dumps(PLAN).encode() + b'\n{"event": ["minted"], "ts": "t"}\n', "t-bad"),
    "minted-without-token": (json.dumps(PLAN).encode() + b'\n{"event": "minted", "ts": "t"}\n', "t-bad"),
    "minted-token-not-object": (
        json.dumps(PLAN).encode() + b'\n{"event": "minted", "ts": "t", "token": "' + CANARY.encode() + b'"}\n',
        "t-bad",
    ),
    "minted-token-without-id": (
        json.dumps(PLAN).encode() + b'\n{"event": "minted", "ts": "t", "token": {}}\n',
        "t-bad",
    ),
    "step-detail-not-object": (
        json.dumps(PLAN).encode()
        + b'\n{"event": "minted", "ts": "t", "token": {"id": "a"}}\n{"event": "step_done", "ts": "t", "step": "s", "token_id": "a", "detail": [1]}\n',
        "t-bad",
    ),
    "planned-without-target": (b'{"event": "planned", "ts": "t", "plan": {}}\n', None),
    "plan-not-object": (b'{"event": "planned", "ts": "t", "target": "t-bad", "plan": [1]}\n', None),
    "first-line-not-the-plan": (b'{"event": "stored", "ts": "t"}\n', None),
    "format-not-a-number": (json.dumps(PLAN).encode() + b'\n{"format": "2", "event": "stored", "ts": "t"}\n', "t-bad"),
    "attempt-is-bool": (
        json.dumps(PLAN).encode() + b'\n{"event": "mint_attempt", "ts": "t", "attempt": true}\n',
        "t-bad",
    ),
}

BAD = "badbad00-0000-4000-8000-000000000000"


def damaged_journal(tmp_path: Path, content: bytes) -> tuple[RotationJournal, str]:
    j = RotationJournal(tmp_path / "journal")
    good = j.new_rotation_id()
    j.append(good, "planned", target="t-good", plan={})
    j.append(good, "minted", token={"id": "g1", "name": "kt-good"})
    (j.directory / f"{BAD}.jsonl").write_bytes(content)
    return j, good


@pytest.mark.parametrize("case", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_journal_isolates_one_rotation(tmp_path: Path, case: str) -> None:
    content, target = DAMAGE[case]
    j, good = damaged_journal(tmp_path, content)
    path = j.directory / f"{BAD}.jsonl"

    # status and resume (every target) carry on with the readable rotations
    assert [r.rotation_id for r in j.all()] == [good]
    assert [r.rotation_id for r in j.unfinished()] == [good]
    assert j.last_done("t-good") is None

    records, damaged = j.scan()
    assert [r.rotation_id for r in records] == [good]
    (d,) = damaged
    assert isinstance(d, DamagedJournal)
    assert (d.rotation_id, d.path, d.target, d.newer_format) == (BAD, path, target, None)
    for text in (d.reason, d.fix, d.message):
        assert text and "\n" not in text and CANARY not in text
    assert f"mv {path} {path}.damaged" in d.fix

    # that one rotation is refused by id: one line, the file, why, the fix
    with pytest.raises(KeyturnError) as err:
        j.load(BAD)
    msg = str(err.value)
    assert "\n" not in msg and CANARY not in msg
    assert str(path) in msg and d.reason in msg and d.fix in msg


def test_damaged_lines_name_the_line(tmp_path: Path) -> None:
    """The wording the CLI already promised (`damaged journal line`), with the line number."""
    j, _ = damaged_journal(tmp_path, DAMAGE["garbled-line"][0])
    (d,) = j.scan()[1]
    assert d.reason == "damaged journal line 2 (not JSON)"
    assert "kt-bad" in d.fix  # the plan was readable: which token to look for


def test_the_fix_names_a_minted_token(tmp_path: Path) -> None:
    minted = json.dumps({"event": "minted", "ts": "t", "token": {"id": "tok-123", "name": "kt-bad"}}).encode()
    j, _ = damaged_journal(tmp_path, json.dumps(PLAN).encode() + b"\n" + minted + b"\n[1]\n")
    (d,) = j.scan()[1]
    assert "tok-123" in d.fix and "t-bad" in d.fix


def test_an_unreadable_journal_isolates_its_rotation(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a 0000 file")
    j, good = damaged_journal(tmp_path, json.dumps(PLAN).encode() + b"\n")
    (j.directory / f"{BAD}.jsonl").chmod(0)
    try:
        assert [r.rotation_id for r in j.all()] == [good]
        (d,) = j.scan()[1]
        assert "cannot read" in d.reason
    finally:
        (j.directory / f"{BAD}.jsonl").chmod(0o600)


def test_a_torn_last_line_is_still_tolerated(tmp_path: Path) -> None:
    j, good = damaged_journal(tmp_path, json.dumps(PLAN).encode() + b'\n{"event": "minted", "tok')
    records, damaged = j.scan()
    assert damaged == []
    assert sorted(r.rotation_id for r in records) == sorted([good, BAD])
    assert j.load(BAD).state == "planned" and j.load(BAD).target == "t-bad"
