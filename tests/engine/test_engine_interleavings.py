"""Two engines on one target, interleaved (issue 11's concurrency matrix, in process).

The first engine (A) goes step by step, or stands at every crash point of its rotation (the hook runs the second
engine there), or dies at one; the second (B) tries to rotate, resume, abort. Whatever the interleaving: B is
refused with one line naming A while A is alive, B changes nothing then, another target is never blocked, and in
the end there is exactly one live token of the target, every store and consumer holds it, and the journal is done.
Two threads starting together, over a slow mint, end the same way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest

from app.engine import Engine, Rotation, nothing_minted
from app.errors import KeyturnError
from app.locks import TargetBusyError
from tests.engine.fakes import FakeWorld, SimulatedCrash, journal_points, resume, rotate

T = "app"
OTHER = "other"


def _tries(world: FakeWorld, b: Engine, rid: str | None) -> list[str]:
    """Everything B may try on the target A drives: each is refused, names A, and changes nothing."""
    before = (world.platform.calls["mint"], world.platform.calls["revoke"], world.journal_text())
    refused = []
    attempts: list[tuple[str, Callable[[], object]]] = [("rotate", lambda: b.plan(T)), ("lock", lambda: b.lock(T))]
    if rid:
        attempts += [("resume", lambda: b.open(rid)), ("abort", lambda: b.abort_rotation(rid))]
    for what, attempt in attempts:
        with pytest.raises(TargetBusyError) as exc:
            attempt()
        line = str(exc.value)
        assert f"target {T} is being rotated by pid {os.getpid()}" in line and len(line.splitlines()) == 1
        refused.append(what)
    assert f"pid {os.getpid()}" in (b.holder(T) or ""), "B names who holds the target"
    assert (world.platform.calls["mint"], world.platform.calls["revoke"], world.journal_text()) == before
    return refused


STEPS: list[tuple[str, Callable[[Rotation], object]]] = [
    ("mint", lambda r: r.mint()),
    ("store", lambda r: r.store()),
    ("verify", lambda r: r.verify()),
    ("propagate", lambda r: r.propagate()),
    ("retire", lambda r: r.schedule_or_retire(now=True)),
    ("finish", lambda r: r.finish()),
]


def test_two_engines_alternating_steps(world: FakeWorld) -> None:
    """A plans, B tries; A begins, B tries; A mints, B tries; ... A finishes, B rotates (a second rotation)."""
    world.add_target(T, consumers=("ci",))
    world.add_target(OTHER)
    a, b = world.engine(), world.engine()
    plan = a.plan(T)
    assert _tries(world, b, None) == ["rotate", "lock"]
    rotation = a.begin(plan)
    assert _tries(world, b, rotation.id) == ["rotate", "lock", "resume", "abort"]
    rotate(b, OTHER)  # another target is never blocked
    for name, step in STEPS:
        step(rotation)
        if name != "finish":
            assert len(_tries(world, b, rotation.id)) == 4, name
    assert rotation.state == "done"
    assert b.holder(T) is None
    second = rotate(b, T)
    assert second.state == "done"
    a.close()
    b.close()
    world.check_done(T, done=2)
    world.check_done(OTHER)


def test_the_second_engine_tries_at_every_crash_point_of_the_first(world: FakeWorld) -> None:
    """The hook stops A at every crash point (journal boundaries and inside its follow-ups, and inside its slow
    mint); there B tries everything on the target, and rotates another target."""
    world.add_target(T, stores=("vault", "keyring"), consumers=("ci",))
    world.add_target(OTHER)
    a, b = world.engine(), world.engine()
    seen: list[str] = []

    def second(where: str) -> None:
        journaled = [r for r in world.journal.all() if r.target == T]
        rid = journaled[-1].rotation_id if journaled and not journaled[-1].finished else None
        if where == "before:planned":
            rid = None  # the plan holds the target; nothing is journaled yet
        if where == "after:done":
            assert b.holder(T) is not None, "A still stands inside its last journal write"
        _tries(world, b, rid)
        rotate(b, OTHER)
        seen.append(where)

    world.hooks.at("*", second, occurrence=None)

    def inside_the_mint() -> None:
        if world.hooks.is_off:
            return  # B's own mint (of the other target), inside the hook
        with world.hooks.off():
            second("inside the mint")

    world.platform.during_mint = inside_the_mint
    rotate(a, T)
    world.platform.during_mint = None
    world.hooks.rules.clear()
    assert len(seen) >= 30 and "inside the mint" in seen
    a.close()
    second_rotation = rotate(b, T)
    assert second_rotation.state == "done"
    b.close()
    world.check_done(T, done=2)
    world.check_done(OTHER, done=len(seen))


def _clean_trace(world: FakeWorld) -> list[tuple[str, int]]:
    engine = world.engine()
    rotate(engine, T)
    engine.close()
    return journal_points(world.hooks.trace)


@pytest.mark.parametrize("second", ["rotate", "resume"])
def test_the_first_dies_at_each_point_and_the_second_takes_over(world: FakeWorld, tmp_path, second: str) -> None:
    """A dies at a point; B (already running) either tries a new rotation (refused while A's is unfinished and
    offers resume/abort, then resumes it) or resumes it. Checked at every point of A's rotation."""
    from tests.engine.fakes import installed_world

    with installed_world(tmp_path / "trace") as w:
        w.add_target(T, consumers=("ci",))
        points = _clean_trace(w)
    failures: list[str] = []
    for i, (point, n) in enumerate(points):
        with installed_world(tmp_path / f"{i}") as w:
            w.add_target(T, consumers=("ci",))
            a, b = w.engine(), Engine(w.config())  # B started before A died
            w.hooks.crash_at(point, n)
            try:
                with pytest.raises(SimulatedCrash):
                    rotate(a, T)
                w.kill(a)
                w.hooks.rules.clear()
                unfinished = w.journal.unfinished()
                if second == "rotate" and unfinished and not nothing_minted(unfinished[0]):
                    with pytest.raises(KeyturnError, match="has an unfinished rotation"):
                        b.plan(T)
                resume(b)
                if not any(r.state == "done" for r in w.journal.all()):
                    rotate(b, T)
                b.close()
                w.check_done(T)
            except AssertionError as exc:
                failures.append(f"{point}#{n}: {exc}")
    assert not failures, "\n".join(failures)
    assert len(points) >= 25


@pytest.mark.parametrize("round_", range(5))
def test_two_threads_start_together(world: FakeWorld, round_: int) -> None:
    """Two engines in two threads rotate the same target at once: whichever takes the target first rotates it (its
    mint is slow: it waits there until the other was refused), the other is refused at once (it never waits, never
    mints), and the outcome holds the invariants."""
    world.add_target(T, consumers=("ci",))
    refused = threading.Event()
    world.platform.during_mint = lambda: refused.wait(10)
    engines = [world.engine(), world.engine()]
    start = threading.Barrier(2)
    results: list[str] = []
    lock = threading.Lock()

    def run(engine: Engine) -> None:
        start.wait()
        try:
            rotation = rotate(engine, T)
            outcome = rotation.state
        except TargetBusyError as exc:
            outcome = "refused: " + str(exc)
            refused.set()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for e in engines:
        e.close()
    assert sorted(r.split(":")[0] for r in results) == ["done", "refused"], results
    assert world.platform.calls["mint"] == 1
    world.check_done(T)


def test_a_rotation_whose_engine_let_go_of_the_target_cannot_write(world: FakeWorld) -> None:
    """The wizard lets go of every target when it goes back to its start. If a Rotation object of that engine were
    driven afterwards (while another engine resumed and finished the rotation), it would journal past `done`: a
    journal write should need the target's lock (or take it again, refusing when another process holds it)."""
    world.add_target(T)
    a, b = world.engine(), world.engine()
    rotation = a.begin(a.plan(T))
    rotation.mint()
    rotation.store()
    a.release_all()
    assert [r.state for r in resume(b)] == ["done"]
    with pytest.raises(KeyturnError):
        rotation.verify()
    events = [e["event"] for e in world.journal.load(rotation.id).events]
    assert events[-1] == "done" and events.count("done") == 1
