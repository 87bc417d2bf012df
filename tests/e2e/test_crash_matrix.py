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
    jenkins,
    keda,
    paste_new_api_token,
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
MATRIX = [(c, p) for c in CASES for p in (*STATE_POINTS, *c.extra_points)]


@pytest.mark.parametrize(("case", "point"), MATRIX, ids=[f"{c.target}-{p}" for c, p in MATRIX])
def test_kill_then_resume(sandbox: Sandbox, keyturn, case: Case, point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NEW_BK_ENV, raising=False)
    env = case.setup(sandbox)
    crashed = keyturn("rotate", case.target, "--no-input", *case.args, env={**env, "KEYTURN_TEST_KILL_AT": point})
    assert crashed.code == -signal.SIGKILL, f"never reached {point}: {crashed.stderr}"
    resumed = keyturn("resume", "--no-input", "--json", *case.args, env=env)
    assert resumed.code == 0, resumed.stderr
    assert [r["state"] for r in resumed.json()["resumed"]] == ["done"]
    new_value, _old = case.check(sandbox)
    journal_dir = sandbox.config_path.parent / "journal"
    assert list(RotationJournal(journal_dir).unfinished()) == [], "nothing left to resume"
    journal = "".join(p.read_text() for p in journal_dir.glob("*"))
    assert new_value not in journal, "the value reached the journal"
    assert [json.loads(x)["event"] for x in journal.splitlines()][-1] == "done"
    assert "Traceback" not in crashed.stderr + resumed.stderr


def test_the_matrix_covers_every_provider() -> None:
    platforms = {"daily-checks": "azure-devops", "keda": "azure-devops", "jenkins": "jenkins"}
    assert {c.target for c in CASES} >= set(platforms)
    assert sum(1 for c in CASES if c.target.startswith("buildkite")) == 3  # the three Buildkite kinds
    assert len(MATRIX) == 6 * len(STATE_POINTS) + 2
