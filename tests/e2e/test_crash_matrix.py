"""Issue 7's crash matrix: every provider's headless rotation SIGKILLed at every state boundary and inside its
follow-ups, then `keyturn resume`. The outcome must always be exactly one live new token, in every store, the old
token revoked, nothing stored twice, no orphan, and the journal ending in `done` with no value in it.

Kill points are journal events (``before:``/``after:``) plus named points inside a follow-up (``flux:*``). Each
target has a checker that reads the emulated platform and stores directly.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from app.journal import RotationJournal
from app.sandbox import Sandbox
from tests.e2e.support.targets import (
    NEW_BK_ENV,
    buildkite_cluster,
    buildkite_conductorone,
    buildkite_unclustered,
    daily_checks,
    drive_to,
    jenkins,
    keda,
    paste_new_api_token,
    resume_to_done,
)

STATE_POINTS = [
    "after:planned",
    "after:mint_attempt",  # before the create call
    "before:minted",  # the token exists on the platform, the journal does not know it
    "after:minted",  # the value was only in memory: lost
    "before:step_done",  # the first store has it, the journal does not know
    "after:step_done",
    "after:stored",
    "after:verified",
    "after:propagated",
    "before:revoked",  # the old token is revoked on the platform, not in the journal
    "after:old_retired",
]
KV = "cftptl-intsvc"


@dataclass
class Case:
    target: str
    check: Callable[[Sandbox], tuple[str, str]]
    args: tuple[str, ...] = ()
    extra_points: tuple[str, ...] = ()
    setup: Callable[[Sandbox], dict[str, str]] = field(default=lambda sb: {})


CASES = [
    Case("daily-checks", daily_checks),
    Case("keda", keda, extra_points=("flux:file-set", "flux:committed")),
    Case("buildkite-cluster", buildkite_cluster, args=("--skip-manual",)),
    Case("buildkite-unclustered", buildkite_unclustered, args=("--skip-manual",)),
    Case("buildkite-conductorone", buildkite_conductorone, setup=paste_new_api_token),
    Case("jenkins", jenkins),
]
# The in-process crash matrix (tests/engine/test_engine_crash_matrix.py) raises at every boundary of every target
# shape in seconds; these real SIGKILLs of a child process keep the end-to-end proof against the real emulators and
# stores, at the points whose recovery paths differ: a token the journal never heard of (reconciled), a value lost
# (revoked and minted again), a revocation the journal never heard of, and the Flux step's own points.
E2E_POINTS = ("before:minted", "after:minted", "before:revoked")
MATRIX = [(c, p) for c in CASES for p in (*E2E_POINTS, *c.extra_points)]


@pytest.mark.parametrize(("case", "point"), MATRIX, ids=[f"{c.target}-{p}" for c, p in MATRIX])
def test_kill_then_resume(sandbox: Sandbox, keyturn, case: Case, point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NEW_BK_ENV, raising=False)
    env = case.setup(sandbox)
    crashed = drive_to(sandbox, keyturn, case.target, *case.args, env={**env, "KEYTURN_TEST_KILL_AT": point})
    assert crashed.code == -signal.SIGKILL, f"never reached {point}: {crashed.stderr}"
    resumed = resume_to_done(sandbox, keyturn, *case.args, env=env)
    assert resumed.code == 0, resumed.stderr
    assert [r["state"] for r in resumed.json()["resumed"]] == ["done"]
    new_value, _old = case.check(sandbox)
    journal_dir = sandbox.config_path.parent / "journal"
    assert list(RotationJournal(journal_dir).unfinished()) == [], "nothing left to resume"
    everything = "".join(p.read_text() for p in journal_dir.glob("*"))  # the journals and the targets' lock files
    assert new_value not in everything, "the value reached the journal folder"
    journal = "".join(p.read_text() for p in journal_dir.glob("*.jsonl"))
    assert [json.loads(x)["event"] for x in journal.splitlines()][-1] == "done"
    assert "Traceback" not in crashed.stderr + resumed.stderr


def test_the_matrix_covers_every_provider() -> None:
    platforms = {"daily-checks": "azure-devops", "keda": "azure-devops", "jenkins": "jenkins"}
    assert {c.target for c in CASES} >= set(platforms)
    assert sum(1 for c in CASES if c.target.startswith("buildkite")) == 3  # the three Buildkite kinds
    assert len(MATRIX) == 6 * len(E2E_POINTS) + 2
    from tests.engine.test_engine_crash_matrix import EVENTS  # every boundary is crashed in process

    assert {p.split(":", 1)[1] for p in STATE_POINTS} <= set(EVENTS)


# -- a store write the vault holds while keyturn is killed, landing after it gave up (invariant 3) -----------------

HELD_CASES = [c for c in CASES if c.target in ("daily-checks", "buildkite-cluster", "jenkins")]


@pytest.mark.parametrize("case", HELD_CASES, ids=[c.target for c in HELD_CASES])
def test_kill_while_the_vault_holds_the_store_write_then_it_lands(
    sandbox: Sandbox, keyturn, case: Case, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from tests.e2e.support.proc import spawn_keyturn

    monkeypatch.delenv(NEW_BK_ENV, raising=False)
    env = case.setup(sandbox)
    sandbox.state.inject_fault("PUT /secrets/{name}", "late", times=1, service="vault:*", hold=1.5)
    first = spawn_keyturn(sandbox, tmp_path / "home", "rotate", case.target, "--no-input", *case.args, env=env)
    deadline = time.monotonic() + 60
    while sandbox.state.late_held < 1:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert sandbox.state.wait_late_landed(1, timeout=30), "the held write landed after its client died"
    resumed = spawn_keyturn(sandbox, tmp_path / "home", "resume", "--no-input", "--json", *case.args, env=env)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    assert [r["state"] for r in json.loads(stdout)["resumed"]] in (["done"], ["propagated"])  # or waiting for consumers
    assert "read the new value back from" in stderr, "the landed write is where the value came back from"
    final = resume_to_done(sandbox, keyturn, *case.args, env=env)
    assert final.code == 0, final.stderr
    case.check(sandbox)
    assert list(RotationJournal(sandbox.config_path.parent / "journal").unfinished()) == []
