"""Issue 11's invariants that the engine enforces, in process over the fakes (tests/e2e/test_safety_invariants.py
proves the same through the real CLI in a child process against the sandbox).

1. one writer per target (an OS lock: two Engine objects in one process each open their own descriptor, so the
   second is refused exactly as a second process is), 2. no new rotation over an unfinished one, and `abort` undoes,
3. every store's *current* value is the live token before the old one dies and before `done` (late writes are
   found and written over, or put back after an abort), 4. never a value held by no one, 8. a damaged journal
isolates its rotation, 10. an interrupt offers `resume` only when something was journaled.
"""

from __future__ import annotations

import json
import os
import re
import socket

import pytest

import app.journal
from app.errors import ConfigError, KeyturnError
from app.locks import TargetBusyError
from tests.engine.fakes import FakeWorld, SimulatedCrash, resume, rotate

T = "app"


def _crash(world: FakeWorld, point: str, occurrence: int = 1, target: str = T) -> str:
    """A process that rotates ``target`` and dies at ``point``; returns the rotation's id."""
    engine = world.engine()
    world.hooks.crash_at(point, occurrence)
    with pytest.raises(SimulatedCrash):
        rotate(engine, target)
    world.kill(engine)
    (record,) = [r for r in world.journal.all() if r.target == target and not r.finished]
    return record.rotation_id


def _busy_line(exc: BaseException, rid: str | None = None) -> None:
    line = str(exc)
    assert len(line.splitlines()) == 1
    assert f"target {T} is being rotated by pid {os.getpid()} on {socket.gethostname()} since " in line, line
    assert " UTC" in line
    if rid:
        assert f"(rotation {rid[:8]})" in line
    assert "this run changed nothing" in line


# -- 1. one writer per target --------------------------------------------------------------------------------------

# what the second engine tries, while the first has planned (holds the target, nothing journaled) or is mid-rotation
SECOND = [("planned-not-begun", "rotate"), ("planned-not-begun", "lock"),
          *[("mid-rotation", s) for s in ("rotate", "resume", "abort", "lock")]]


@pytest.mark.parametrize(("first_at", "second"), SECOND, ids=[f"{a}-{b}" for a, b in SECOND])
def test_a_second_engine_on_the_same_target_is_refused(world: FakeWorld, first_at: str, second: str) -> None:
    world.add_target(T, consumers=("ci",))
    a, b = world.engine(), world.engine()
    plan = a.plan(T)
    rid = plan.rotation_id
    if first_at == "mid-rotation":
        rotation = a.begin(plan)
        rotation.mint()
        rotation.store()
    mints, journal = world.platform.calls["mint"], world.journal_text()
    assert b.holder(T) is not None and f"pid {os.getpid()}" in (b.holder(T) or "")
    with pytest.raises(TargetBusyError) as refused:
        if second == "rotate":
            b.plan(T)
        elif second == "resume":
            b.open(rid)
        elif second == "abort":
            b.abort_rotation(rid)
        else:
            b.lock(T)
    _busy_line(refused.value, rid if first_at == "mid-rotation" else None)
    assert world.platform.calls["mint"] == mints and world.journal_text() == journal, "the refused engine changed something"
    assert a.holder(T) is None, "the holder does not refuse itself"
    if first_at == "mid-rotation":
        rotation.run_to_end()
    else:
        a.begin(plan).run_to_end()
    assert b.holder(T) is None, "a finished rotation lets go of its target"
    rotate(b, T)  # and the second engine may rotate it now
    a.close()
    b.close()
    world.check_done(T, done=2)


def test_the_lock_goes_with_a_dead_holder_and_is_per_target(world: FakeWorld) -> None:
    world.add_target(T)
    world.add_target("other")
    rid = _crash(world, "after:stored")  # killed: no cleanup ran, the kernel closed its lock
    b = world.engine()
    assert b.holder(T) is None
    c = world.engine()
    c.lock(T)  # a live holder of app ...
    rotate(b, "other")  # ... does not stop another target
    with pytest.raises(TargetBusyError):
        b.open(rid)
    c.release_all()  # the wizard went back to its start: the target is free again
    assert [r.state for r in resume(b)] == ["done"]
    b.close()
    c.close()
    world.check_done(T)
    world.check_done("other")


# -- 2. no new rotation over an unfinished one; abort ------------------------------------------------------------

UNFINISHED = ["after:mint_attempt", "before:minted", "after:minted", "after:step_done", "after:stored",
              "after:verified", "after:propagated", "after:revoked", "after:old_retired"]
STATE_OF = {"after:planned": "planned", "after:mint_attempt": "planned", "before:minted": "planned", "after:minted": "minted",
            "after:step_done": "minted", "after:stored": "stored", "after:verified": "verified", "after:propagated": "propagated",
            "after:revoked": "propagated", "after:old_retired": "old_retired"}


@pytest.mark.parametrize("point", UNFINISHED)
def test_an_unfinished_rotation_refuses_a_new_one(world: FakeWorld, point: str) -> None:
    world.add_target(T)
    rid = _crash(world, point)
    engine = world.engine()
    mints = world.platform.calls["mint"]
    with pytest.raises(KeyturnError) as refused:
        engine.plan(T)
    line = str(refused.value)
    assert line.startswith(f"target {T} has an unfinished rotation {rid[:8]} (state {STATE_OF[point]}, started "), line
    assert f"`keyturn resume {rid[:8]}`" in line and f"`keyturn abort {rid[:8]}`" in line
    assert world.platform.calls["mint"] == mints, "the refused rotation minted"
    engine.close()  # the refusal let go of nothing it should keep: a new engine resumes
    again = world.engine()
    assert [r.state for r in resume(again)] == ["done"]
    again.close()
    world.check_done(T)


@pytest.mark.parametrize("how", ["mint-refused", "killed-before-minting"])
def test_a_rotation_that_minted_nothing_blocks_nothing(world: FakeWorld, how: str) -> None:
    world.add_target(T)
    if how == "mint-refused":
        world.platform.mint_faults = ["refuse"]
        engine = world.engine()
        with pytest.raises(KeyturnError, match="refused to create the token"):
            rotate(engine, T)
    else:
        _crash(world, "after:planned")
        engine = world.engine()
    (left,) = world.journal.unfinished()
    assert left.state == "planned"
    rotate(engine, T)  # not refused: it provably made nothing (no mint attempt, or every one refused outright)
    engine.close()
    assert world.journal.load(left.rotation_id).state == "aborted", "the empty rotation was closed"
    world.check_done(T)


ABORTABLE = ["after:mint_attempt", "before:minted", "after:minted", "fake-store:app/vault:written", "after:step_done",
             "after:stored", "after:verified", "after:step_done#2", "after:propagated"]


@pytest.mark.parametrize("at", ABORTABLE)
def test_abort_undoes_an_unfinished_rotation(world: FakeWorld, at: str) -> None:
    target = world.add_target(T, consumers=("ci",))
    point, _, n = at.partition("#")
    rid = _crash(world, point, int(n or 1))
    engine = world.engine()
    rotation, undone = engine.abort_rotation(rid[:8])
    engine.close()
    assert rotation.state == "aborted"
    assert all(len(u.splitlines()) == 1 for u in undone)
    world.check_untouched(T)  # only the old token lives, and every store serves it again
    minted = world.journal.load(rid).new_token
    if minted:
        assert undone[0] == f"revoked the new token {minted['id']}"
        if point in ("after:step_done", "fake-store:app/vault:written", "after:stored", "after:verified", "after:propagated") or n:
            assert any("restored the previous value" in u for u in undone), undone
    elif point == "before:minted":  # made on the platform, never journaled: found by its name and revoked
        assert undone == ["revoked 1 token(s) an interrupted mint had made"]
    if n or point == "after:propagated":  # the consumer was given the new token: a person puts the old one back
        assert any("put the old one back by hand" in u for u in undone), undone
        target.consumers[0].set(target.old[0].value)
    again = world.engine()
    with pytest.raises(KeyturnError, match="already aborted; nothing to abort"):
        again.abort_rotation(rid)
    rotate(again, T)  # the target is free for a new rotation
    again.close()
    world.check_done(T)


@pytest.mark.parametrize("point", ["after:revoked", "before:old_retired", "after:old_retired"])
def test_abort_is_refused_once_the_old_token_is_revoked(world: FakeWorld, point: str) -> None:
    world.add_target(T)
    rid = _crash(world, point)
    engine = world.engine()
    with pytest.raises(KeyturnError) as refused:
        engine.abort_rotation(rid)
    assert "already revoked the old token; aborting now would leave no live token" in str(refused.value)
    assert f"`keyturn resume {rid[:8]}`" in str(refused.value)
    assert len(world.live(T)) == 1, "the new token was left alive"
    assert [r.state for r in resume(engine)] == ["done"]
    engine.close()
    world.check_done(T)


def test_abort_works_when_the_target_was_removed(world: FakeWorld) -> None:
    world.add_target(T)
    rid = _crash(world, "after:verified")
    world.write_config(without=(T,))
    engine = world.engine()
    with pytest.raises(ConfigError) as refused:
        engine.open(rid)
    assert "no longer in" in str(refused.value) and f"`keyturn abort {rid[:8]}`" in str(refused.value)
    _, undone = engine.abort_rotation(rid)
    engine.close()
    assert undone[0].startswith("revoked the new token")
    world.check_untouched(T)


# -- 3. every store's current value is the live token --------------------------------------------------------------


def test_an_outside_write_after_verification_is_written_over_before_done(world: FakeWorld) -> None:
    target = world.add_target(T)
    _crash(world, "after:verified")
    target.stores[0].set_outside(target.old[0].value)  # a write in flight lands late: the old token is newest again
    engine = world.engine()
    resume(engine)
    engine.close()
    assert any("holds another value now, not the new token" in text for _, text in world.events)
    assert any(text.endswith("(written again)") for _, text in world.events)
    world.check_done(T)


def test_a_held_write_that_lands_before_the_resume_gives_the_value_back(world: FakeWorld) -> None:
    target = world.add_target(T)
    target.stores[0].late_writes = 1
    _crash(world, "fake-store:app/vault:held")  # killed while the store holds the write
    assert target.stores[0].land_late() == 1
    mints = world.platform.calls["mint"]
    engine = world.engine()
    resume(engine)
    engine.close()
    assert any(text == "read the new value back from fake store app/vault" for _, text in world.events)
    assert world.platform.calls["mint"] == mints, "nothing minted again"
    world.check_done(T)


def test_a_held_write_of_a_compensated_token_is_written_over_before_the_old_token_dies(world: FakeWorld) -> None:
    target = world.add_target(T)
    target.stores[0].late_writes = 1
    _crash(world, "fake-store:app/vault:held")
    # the resume finds the value nowhere: it revokes that token and mints another; the held write of the revoked one
    # lands while the resume stands after propagation
    engine = world.engine()
    world.hooks.at("after:propagated", lambda _: target.stores[0].land_late())
    resume(engine)
    engine.close()
    assert not target.stores[0].held
    texts = [text for _, text in world.events]
    assert any("revoking it and minting again" in t for t in texts)
    assert any("holds another value now" in t for t in texts) and any(t.endswith("(written again)") for t in texts)
    world.check_done(T)


@pytest.mark.parametrize("next_run", ["rotate", "resume-cli"])
def test_a_write_given_up_on_that_lands_after_the_abort_is_put_back(world: FakeWorld, in_process_cli, next_run: str) -> None:
    target = world.add_target(T)
    old = target.old[0].value
    target.stores[0].late_writes = 1
    engine = world.engine()
    with pytest.raises(KeyturnError) as failed:
        rotate(engine, T)
    engine.close()
    assert "may still land" in str(failed.value) and "the old token is untouched" in str(failed.value)
    (aborted,) = world.journal.all()
    assert aborted.state == "aborted"
    assert target.stores[0].land_late() == 1
    assert target.stores[0].current != old, "the late write gave consumers the revoked token"
    if next_run == "rotate":
        again = world.engine()
        rotate(again, T)  # planning under the target's lock puts the old value back first
        again.close()
        world.check_done(T)
    else:
        result = in_process_cli(world, "resume", "--no-input", "--json")
        assert result.exit_code == 0, result.output
        assert f"held the revoked token of aborted rotation {aborted.rotation_id[:8]}" in result.stderr
        assert target.stores[0].current == old, "consumers read the live old token again"
        world.check_untouched(T)
    assert any(e["event"] == "healed" for e in world.journal.load(aborted.rotation_id).events)


def test_a_store_emptied_behind_keyturns_back_stops_before_the_old_token_dies(world: FakeWorld) -> None:
    target = world.add_target(T)
    _crash(world, "after:propagated")  # the value was only in that process, and in the store
    for v in target.stores[0].versions:
        v.enabled = False
    engine = world.engine()
    with pytest.raises(KeyturnError) as refused:
        resume(engine)
    engine.close()
    assert "holds no readable value, not the new token, and the new value is not available" in str(refused.value)
    assert any("holds no readable value now, not the new token" in text for _, text in world.events)
    assert all(t.active for t in target.old), "the old token is still alive"
    assert world.journal.unfinished(), "not done"


def test_a_consumer_changed_behind_keyturns_back_keeps_the_old_token_alive(world: FakeWorld) -> None:
    target = world.add_target(T, consumers=("ci",))
    _crash(world, "after:propagated")
    target.consumers[0].set("someone-else's-value")
    engine = world.engine()
    with pytest.raises(KeyturnError) as refused:
        resume(engine)
    engine.close()
    assert "holds another value now, not the new token; the old token stays alive" in str(refused.value)
    assert all(t.active for t in target.old)


# -- 4. never a value held by no one --------------------------------------------------------------------------------


def test_a_target_nothing_keeps_is_refused_before_minting(world: FakeWorld, in_process_cli) -> None:
    world.add_target("bare", stores=())
    result = in_process_cli(world, "rotate", "bare", "--no-input")
    assert result.exit_code == 2
    assert "it would be held by no one" in result.stderr and "--reveal" in result.stderr
    assert world.platform.calls["mint"] == 0 and list(world.journal.all()) == []
    revealed = in_process_cli(world, "rotate", "bare", "--no-input", "--reveal")
    assert revealed.exit_code == 0, revealed.stderr
    (live,) = world.live("bare")
    assert revealed.stdout.strip() == live.value
    assert "warning: no store follow-up" in revealed.stderr
    world.check_no_value_in_journal()  # nor in keyturn.log, which the CLI writes there


@pytest.mark.parametrize("point", ["after:minted", "after:step_started", "fake-consumer:bare/ci:written"])
def test_a_value_lost_before_anyone_held_it_is_revoked_not_left_live(world: FakeWorld, point: str) -> None:
    world.add_target("bare", stores=(), consumers=("ci",))
    _crash(world, point, target="bare")
    engine = world.engine()
    resume(engine)
    engine.close()
    (compensated,) = [e for r in world.journal.all() for e in r.events if e["event"] == "compensated"]
    (lost,) = [t for t in world.platform.tokens.values() if t.id == compensated["token_id"]]
    assert not lost.active
    world.check_done("bare")


def test_a_lost_tokens_revocation_without_effect_is_noticed(world: FakeWorld) -> None:
    world.add_target(T)
    _crash(world, "after:minted")  # the value is lost: the resume revokes that token and mints another
    (minted,) = [r.new_token for r in world.journal.all()]
    assert minted is not None
    world.platform.ignore_revoke[minted["id"]] = 1  # the platform answers 200 without revoking it
    engine = world.engine()
    try:
        resume(engine)
    except KeyturnError:
        pass  # refusing with one line would do too, as long as the token is not silently left live
    engine.close()
    assert not world.platform.tokens[minted["id"]].active or world.journal.unfinished(), "a live token nobody holds"


# -- 8. a damaged journal isolates its rotation ----------------------------------------------------------------------

DAMAGE = {
    "non-object-line": b"[1, 2]\n",
    "not-json": b"{garbled\n",
    "minted-without-id": b'{"event": "minted", "format": 1, "ts": "2026-01-01T00:00:00", "token": {}}\n',
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_journal_isolates_its_rotation(world: FakeWorld, damage: str) -> None:
    world.add_target(T)
    world.add_target("other")
    rid = _crash(world, "after:minted")
    path = world.journal_dir / f"{rid}.jsonl"
    path.write_bytes(path.read_bytes() + DAMAGE[damage])
    engine = world.engine()
    rows = {r.target: r for r in engine.status()}
    (line,) = rows[T].damaged
    assert str(path) in line and f"mv {path} {path}.damaged" in line
    assert rows["other"].damaged == [] and rows["other"].state == "ok"
    mints = world.platform.calls["mint"]
    with pytest.raises(KeyturnError, match=re.escape(f"rotation {rid[:8]} cannot be read")):
        engine.plan(T)
    with pytest.raises(KeyturnError, match=re.escape(str(path))):
        engine.open(rid)
    assert world.platform.calls["mint"] == mints, "a damaged rotation was never resumed by minting"
    assert resume(engine) == [], "resume skips it"
    rotate(engine, "other")  # every other target carries on
    engine.close()
    world.check_done("other")


def test_a_journal_from_a_newer_keyturn_is_refused_not_resumed(world: FakeWorld) -> None:
    world.add_target(T)
    rid = _crash(world, "after:planned")
    path = world.journal_dir / f"{rid}.jsonl"
    line = json.loads(path.read_text().splitlines()[-1])
    path.write_text(path.read_text() + json.dumps({**line, "format": 99, "event": "mint_attempt", "attempt": 1}) + "\n")
    engine = world.engine()
    with pytest.raises(KeyturnError, match="written by a newer keyturn"):
        engine.open(rid)
    (damaged,) = engine.journal.scan()[1]
    assert damaged.newer_format == 99 and "upgrade" in damaged.fix
    with pytest.raises(KeyturnError):
        engine.plan(T)
    engine.close()
    assert world.platform.calls["mint"] == 0
    world.check_untouched(T)


# -- 10. an interrupt offers resume only when something was journaled -----------------------------------------------


@pytest.mark.parametrize(("point", "says_resume"), [("before:planned", False), ("after:minted", True)])
def test_an_interrupt_offers_resume_only_when_something_was_journaled(world: FakeWorld, in_process_cli, monkeypatch, point: str, says_resume: bool) -> None:
    monkeypatch.setattr(app.journal, "_TOUCHED", {})  # what "this process" journaled: this test's run only
    world.add_target(T)

    def interrupt(where: str) -> None:
        raise KeyboardInterrupt

    world.hooks.at(point, interrupt)
    result = in_process_cli(world, "rotate", T, "--no-input")
    assert result.exit_code == 130, result.output
    last = result.stderr.strip().splitlines()[-1]
    if says_resume:
        (rid,) = [r.rotation_id for r in world.journal.unfinished()]
        assert last == f"keyturn: error: interrupted; `keyturn resume {rid[:8]}` continues from the last journaled step"
        done = in_process_cli(world, "resume", "--no-input", "--json")
        assert [r["state"] for r in json.loads(done.stdout)["resumed"]] == ["done"]
        world.check_done(T)
    else:
        assert last == "keyturn: error: interrupted; nothing was changed"
        world.check_untouched(T)
