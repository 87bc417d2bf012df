from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app.errors import KeyturnError
from app.journal import RotationJournal
from app.secret import SecretValue


def test_append_replay_and_permissions(tmp_path: Path) -> None:
    j = RotationJournal(tmp_path / "journal")
    rid = j.new_rotation_id()
    j.append(rid, "planned", target="t", plan={"display_name": "x"})
    j.append(rid, "mint_attempt", attempt=1)
    j.append(rid, "minted", token={"id": "a1", "name": "x", "expires_at": None, "fingerprint": "sha256:abc"})
    j.append(rid, "step_done", step="1-keyring", token_id="a1", detail={"summary": "s"})
    j.append(rid, "stored")
    rec = j.load(rid)
    assert rec.state == "stored"
    assert rec.new_token and rec.new_token["id"] == "a1"
    assert "1-keyring" in rec.steps_done
    assert stat.S_IMODE((tmp_path / "journal").stat().st_mode) == 0o700
    assert stat.S_IMODE(rec.path.stat().st_mode) == 0o600
    assert [r.rotation_id for r in j.unfinished()] == [rid]
    assert j.load(rid[:8]).rotation_id == rid  # a prefix is enough


def test_step_done_counts_only_for_the_current_token(tmp_path: Path) -> None:
    j = RotationJournal(tmp_path)
    rid = j.new_rotation_id()
    j.append(rid, "planned", target="t", plan={})
    j.append(rid, "minted", token={"id": "a1", "name": "x"})
    j.append(rid, "step_done", step="s", token_id="a1")
    j.append(rid, "compensated", token_id="a1")
    assert j.load(rid).state == "planned"
    j.append(rid, "minted", token={"id": "a2", "name": "x"})
    assert j.load(rid).steps_done == {}


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    j = RotationJournal(tmp_path)
    rid = j.new_rotation_id()
    j.append(rid, "planned", target="t", plan={})
    with (tmp_path / f"{rid}.jsonl").open("a") as fh:
        fh.write('{"event": "minted", "tok')
    assert j.load(rid).state == "planned"


def test_values_are_refused(tmp_path: Path) -> None:
    j = RotationJournal(tmp_path)
    with pytest.raises(TypeError):
        j.append("r", "minted", token={"value": SecretValue("canary-journal")})
    assert not list(tmp_path.glob("*.jsonl"))  # refused before anything was written


def test_unknown_rotation(tmp_path: Path) -> None:
    with pytest.raises(KeyturnError, match="no rotation"):
        RotationJournal(tmp_path).load("deadbeef")


def test_secret_value_is_masked() -> None:
    v = SecretValue("canary-secret-1")
    for text in (str(v), repr(v), f"{v}", f"{v!r}", str([v]), str({"k": v})):
        assert "canary" not in text
    assert v.reveal() == "canary-secret-1"
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(v)
