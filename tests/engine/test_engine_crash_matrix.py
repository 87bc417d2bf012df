"""The crash matrix, in process: a rotation ends ("the process dies") at every journal boundary and at the points
inside its follow-ups, then a new Engine over the same journal folder resumes it (``Engine.open(id).run_to_end()``).

Whatever the point, afterwards (``FakeWorld.check_done``): exactly one live token of the target, every store's and
consumer's *current* value is that token, the old tokens are revoked, the journal's last line is ``done`` for the
live token, no rotation is left unfinished or damaged, and no value is anywhere in the journal folder. At every
revocation the platform checks that the target keeps a live token and that no store still serves the revoked one.

The same boundaries are also crossed on the fault paths (an ambiguous mint, a refused store write, a write that lands
late, a revocation that answers without effect, ...): each path's own crash points are found by running it once.
The SIGKILL-in-a-child-process cases (tests/e2e/test_crash_matrix.py) stay the end-to-end proof.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.errors import KeyturnError
from tests.engine.fakes import FakeTarget, FakeWorld, SimulatedCrash, installed_world, journal_points, resume, rotate

# every event a rotation journals on its way (both sides of each are crash points)
EVENTS = ("planned", "mint_attempt", "minted", "step_started", "step_done", "stored", "verified", "propagated", "revoked", "old_retired", "done")
TARGET = "app"


@dataclass(frozen=True)
class Shape:
    id: str
    stores: tuple[str, ...]
    consumers: tuple[str, ...] = ()
    old_tokens: int = 1

    def make(self, world: FakeWorld) -> FakeTarget:
        return world.add_target(TARGET, stores=self.stores, consumers=self.consumers, old_tokens=self.old_tokens)

    def expected_trace(self) -> list[str]:
        """The crash points a clean rotation of this shape passes, in order."""
        out: list[str] = []

        def event(name: str) -> None:
            out.extend((f"before:{name}", f"after:{name}"))

        for name in ("planned", "mint_attempt", "minted"):
            event(name)
        for s in self.stores:
            event("step_started")
            out.append(f"fake-store:{TARGET}/{s}:written")
            event("step_done")
        event("stored")
        event("verified")
        for c in self.consumers:
            event("step_started")
            out.append(f"fake-consumer:{TARGET}/{c}:written")
            event("step_done")
        event("propagated")
        for _ in range(self.old_tokens):
            event("revoked")
        event("old_retired")
        event("done")
        return out


SHAPES = [
    Shape("one-store", ("vault",)),
    Shape("store+consumer", ("vault",), ("ci",)),
    Shape("no-old-token", ("vault",), old_tokens=0),
    Shape("two-stores-two-old", ("vault", "keyring"), old_tokens=2),
]
MATRIX = [(shape, point, n) for shape in SHAPES for point, n in journal_points(shape.expected_trace())]


def _done(world: FakeWorld) -> bool:
    return any(r.state == "done" for r in world.journal.all() if r.target == TARGET)


def settle(world: FakeWorld, *, tries: int = 1) -> list[str]:
    """What the operator does next, each time in a new process: `keyturn resume`, and `keyturn rotate` when nothing
    is left to resume and the target was not rotated (nothing was journaled, or the rotation was aborted). Returns
    the one-line errors of the runs that failed before one succeeded (at most ``tries`` runs)."""
    errors: list[str] = []
    for _ in range(tries):
        engine = world.engine()
        try:
            resume(engine)
            if not _done(world):
                rotate(engine, TARGET)
            return errors
        except KeyturnError as exc:
            errors.append(str(exc))
        finally:
            engine.close()
    raise AssertionError(f"still not rotated after {tries} runs: {errors}")


def crash(world: FakeWorld, point: str, occurrence: int) -> None:
    """A process that rotates the target and dies the ``occurrence``-th time it reaches ``point``."""
    engine = world.engine()
    world.hooks.crash_at(point, occurrence)
    try:
        with pytest.raises(SimulatedCrash):
            rotate(engine, TARGET)
    finally:
        world.kill(engine)


def test_the_matrix_covers_every_boundary(tmp_path: Path) -> None:
    """Each shape's clean rotation passes exactly the points the matrix crashes at (a new event shows up here)."""
    for shape in SHAPES:
        with installed_world(tmp_path / shape.id) as w:
            shape.make(w)
            engine = w.engine()
            rotate(engine, TARGET)
            engine.close()
            assert w.hooks.trace == shape.expected_trace(), shape.id
            w.check_done(TARGET)
    covered = {p.split(":", 1)[1] for _, p, _ in MATRIX if p.startswith(("before:", "after:"))}
    assert covered == set(EVENTS)
    assert len(MATRIX) == 102


@pytest.mark.parametrize("repeat", [1, 2], ids=["crash-once", "crash-again-on-resume"])
@pytest.mark.parametrize(("shape", "point", "occurrence"), MATRIX, ids=[f"{s.id}-{p}#{n}" for s, p, n in MATRIX])
def test_crash_then_resume(world: FakeWorld, shape: Shape, point: str, occurrence: int, repeat: int) -> None:
    shape.make(world)
    crash(world, point, occurrence)
    assert world.hooks.crashed == [f"{point}#{occurrence}"]
    for _ in range(repeat - 1):  # the resume dies at the same point too (when it passes it again)
        engine = world.engine()
        world.hooks.crash_at(point, 1)
        try:
            resume(engine)
            if not _done(world):
                rotate(engine, TARGET)
        except SimulatedCrash:
            pass
        finally:
            world.kill(engine)
    assert settle(world) == []
    world.check_done(TARGET)


# -- the fault paths, crashed at each of their own points --------------------------------------------------------


def _nothing(world: FakeWorld, target: FakeTarget) -> None:
    return None


@dataclass(frozen=True)
class Scenario:
    id: str
    setup: Callable[[FakeWorld, FakeTarget], None]  # faults for the first process
    between: Callable[[FakeWorld, FakeTarget], None] = _nothing  # what happens in the world after each process
    shape: Shape = SHAPES[1]
    first_fails: bool = False  # the first process ends with a one-line error (no crash)
    expect: tuple[str, ...] = ()  # events its journal must show (the fault path was taken)
    tries: int = 3


def _mint(*faults: str) -> Callable[[FakeWorld, FakeTarget], None]:
    def setup(world: FakeWorld, target: FakeTarget) -> None:
        world.platform.mint_faults = list(faults)

    return setup


def _store_refuses(world: FakeWorld, target: FakeTarget) -> None:
    target.stores[0].fail_writes = 1


def _store_late(world: FakeWorld, target: FakeTarget) -> None:
    target.stores[0].late_writes = 1


def _land(world: FakeWorld, target: FakeTarget) -> None:
    for store in target.stores:
        store.land_late()


def _old_revoke_noop(world: FakeWorld, target: FakeTarget) -> None:
    for token in target.old:
        world.platform.ignore_revoke[token.id] = 1


def _revoked_by_hand(world: FakeWorld, target: FakeTarget) -> None:
    # "old token ... is still active after revocation (check it in the portal, then `keyturn resume`)": the person does,
    # once keyturn said so (the journal holds the revocation that had no effect)
    said = any(e["event"] == "revoked" and e.get("role") == "old" for r in world.journal.all() for e in r.events)
    for token in target.old if said else ():
        token.active = False


def _consumer_refuses(world: FakeWorld, target: FakeTarget) -> None:
    target.consumers[0].fail_writes = 1


def _outside_write_after_verified(world: FakeWorld, target: FakeTarget) -> None:
    old = target.old[0].value
    world.hooks.at("after:verified", lambda _: target.stores[0].set_outside(old))


SCENARIOS = [
    Scenario("ambiguous-mint-that-created", _mint("ambiguous-created"), expect=("error", "revoked")),
    Scenario("ambiguous-mint-that-did-not", _mint("ambiguous-lost"), expect=("error",)),
    Scenario("mint-refused-then-resume", _mint("refuse"), first_fails=True, expect=("mint_failed",)),
    Scenario("slow-mint", _mint("slow")),
    Scenario("store-refuses-then-rotate-again", _store_refuses, first_fails=True, expect=("aborted",)),
    Scenario("store-write-lands-after-the-abort", _store_late, between=_land, first_fails=True, expect=("aborted",)),
    Scenario("consumer-refuses-then-resume", _consumer_refuses, first_fails=True, expect=("error",)),
    Scenario("revoke-without-effect-then-by-hand", _old_revoke_noop, between=_revoked_by_hand, first_fails=True),
    Scenario("outside-write-after-verification", _outside_write_after_verified, expect=("step_done",)),
]


def _run(world: FakeWorld, scenario: Scenario, target: FakeTarget, crash_at: tuple[int, str, int] | None) -> list[list[str]]:
    """The scenario, process by process: the first rotates (with the faults), then new processes resume/rotate until
    the target is rotated; after each, the world moves on (``between``: a held write lands, the person acts). ``crash_at`` = (process, point, occurrence) kills
    that process there. Returns each process's crash points."""
    traces: list[list[str]] = []
    errors: list[str] = []
    for k in range(scenario.tries + 2):
        if k and _done(world) and not world.journal.unfinished():
            break
        engine = world.engine()
        if k == 0:
            scenario.setup(world, target)
        if crash_at and crash_at[0] == k:
            world.hooks.crash_at(crash_at[1], crash_at[2])
        start = len(world.hooks.trace)
        try:
            if k:
                resume(engine)
            if not _done(world):
                rotate(engine, TARGET)
            engine.close()
        except KeyturnError as exc:
            assert len(str(exc).splitlines()) == 1
            errors.append(f"process {k}: {exc}")
            engine.close()
        except SimulatedCrash:
            world.kill(engine)
        traces.append(world.hooks.trace[start:])
        scenario.between(world, target)
    if crash_at is None:
        assert bool(errors) == scenario.first_fails and (not errors or errors[0].startswith("process 0")), errors
    return traces


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_fault_path_crashed_at_each_of_its_points(tmp_path: Path, scenario: Scenario) -> None:
    with installed_world(tmp_path / "clean") as world:
        target = scenario.shape.make(world)
        traces = _run(world, scenario, target, None)
        events = [e["event"] for r in world.journal.all() for e in r.events]
        for event in scenario.expect:
            assert event in events, f"the fault path was not taken: {events}"
        world.check_done(TARGET)
    points = [(k, point, n) for k, trace in enumerate(traces) for point, n in journal_points(trace)]
    failures: list[str] = []
    for i, (k, point, n) in enumerate(points):
        with installed_world(tmp_path / f"crash-{i}") as world:
            target = scenario.shape.make(world)
            try:
                _run(world, scenario, target, (k, point, n))
                assert world.hooks.crashed == [f"{point}#{n}"], f"never reached (crashed at {world.hooks.crashed})"
                world.check_done(TARGET)
            except AssertionError as exc:
                failures.append(f"process {k} at {point}#{n}: {exc}")
    assert not failures, f"{len(failures)} of {len(points)} crash points failed:\n" + "\n".join(failures)
    assert len(points) >= 20
