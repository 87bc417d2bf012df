"""Defects a review of the safety and contract work found, each reproduced in process and now refused or fixed."""

from __future__ import annotations

import json

import pytest

from app.engine import Engine
from app.errors import KeyturnError
from tests.engine.fakes import FakeWorld, SimulatedCrash, installed_world, rotate

T = "ci-bot"


def _crash(world: FakeWorld, point: str) -> str:
    engine = world.engine()
    world.hooks.crash_at(point, 1)
    with pytest.raises(SimulatedCrash):
        rotate(engine, T)
    world.kill(engine)
    (record,) = [r for r in world.journal.all() if r.target == T and not r.finished]
    return record.rotation_id


def _as_an_older_keyturn_wrote_it(world: FakeWorld, rid: str) -> None:
    """Step ids as positions ("1-fake-store"), no format field: a journal from before stable ids."""
    path = world.journal_dir / f"{rid}.jsonl"
    lines = path.read_text().splitlines()
    steps = json.loads(lines[0])["plan"]["steps"]
    mapping = {s["id"]: f"{i + 1}-{s['kind']}" for i, s in enumerate(steps)}
    out = []
    for line in lines:
        d = json.loads(line)
        if d["event"] == "planned":
            for s in d["plan"]["steps"]:
                s["id"] = mapping[s["id"]]
        if "step" in d:
            d["step"] = mapping.get(d["step"], d["step"])
        d.pop("format", None)
        out.append(json.dumps(d))
    path.write_text("\n".join(out) + "\n")


def test_abort_of_an_older_journal_undoes_its_stores(tmp_path) -> None:
    with installed_world(tmp_path / "w") as world:
        target = world.add_target(T)
        rid = _crash(world, "after:verified")
        _as_an_older_keyturn_wrote_it(world, rid)
        engine = world.engine()
        _rotation, undone = engine.abort_rotation(rid)
        engine.close()
        assert len(undone) > 1, undone  # the store was undone, not only the token revoked
        assert target.stores[0].current == target.old[0].value, "consumers read the old token again"
        assert world.violations == []


def test_resume_of_an_older_journal_counts_its_steps_done(tmp_path) -> None:
    with installed_world(tmp_path / "w") as world:
        world.add_target(T)
        rid = _crash(world, "after:verified")
        _as_an_older_keyturn_wrote_it(world, rid)
        engine = world.engine()
        engine.open(rid).run_to_end()
        engine.close()
        world.check_done(T)


def test_abort_refuses_a_rotation_another_process_finished_meanwhile(tmp_path) -> None:
    with installed_world(tmp_path / "w") as world:
        world.add_target(T, old_tokens=0)
        rid = _crash(world, "after:verified")
        b = world.engine()
        original = Engine.lock
        finished = []

        def lock(self: Engine, name: str, rotation_id: str | None = None) -> None:
            if self is b and not finished:  # another process finishes it just before this one takes the lock
                finished.append(True)
                c = world.engine()
                c.open(rid).run_to_end()
                c.close()
            original(self, name, rotation_id)

        Engine.lock = lock  # type: ignore[method-assign]
        try:
            with pytest.raises(KeyturnError, match="is already done; nothing to abort"):
                b.abort_rotation(rid)
        finally:
            Engine.lock = original  # type: ignore[method-assign]
            b.close()
        assert world.journal.load(rid).state == "done"
        assert len(world.live(T)) == 1 and world.violations == []


def test_the_mint_step_is_seen_by_the_sequences_callbacks(tmp_path) -> None:
    with installed_world(tmp_path / "w") as world:
        world.add_target(T)
        engine = world.engine()
        rotation = engine.begin(engine.plan(T))
        seen: list[tuple[str, str]] = []
        rotation.run_until("verified", before=lambda s: seen.append(("before", s)), after=lambda s: seen.append(("after", s)))
        assert seen[:2] == [("before", "mint"), ("after", "mint")]
        assert ("after", "verify") in seen
        rotation.run_until("done")
        engine.close()
