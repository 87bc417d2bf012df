"""Issue 11's concurrency matrix: two keyturn processes on the same target, at the same time.

Two `rotate`, and `rotate` + `resume`, started together and with the second started while the first stands at each
state boundary, against a sandbox that slows the mint and the store. Whatever the interleaving, afterwards: exactly
one live token of the target, every store's current value is that token, the journal holds no unfinished rotation,
one `done` per run that said it succeeded, and every refused run named the process that held the target.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.journal import RotationJournal
from app.sandbox import Sandbox
from tests.e2e.support.proc import spawn_keyturn
from tests.e2e.support.targets import KV

# not about the waiting: the consumers follow at once, so each rotation passes its gates in one run
pytestmark = pytest.mark.usefixtures("prompt_consumers")

PATS = "/{org}/_apis/tokens/pats"


def live_daily(sb: Sandbox) -> str:
    live = [p for p in sb.state.pats() if p.display_name.startswith("daily-checks") and not p.revoked and p.active(sb.state.now())]
    assert len(live) == 1, f"{len(live)} live daily-checks tokens"
    assert sb.state.secret_versions(KV, "azure-devops-token")[-1].value == live[0].value, "Key Vault's current value is not the live token"
    return live[0].value


def live_cluster(sb: Sandbox) -> str:
    live = [t for t in sb.buildkite.cluster_tokens() if t.description.startswith("Default cluster agents")]
    assert len(live) == 1, f"{len(live)} live cluster agent tokens"
    assert sb.state.secret_versions(KV, "buildkite-agent-token")[-1].value == live[0].value, "Key Vault's current value is not the live token"
    return live[0].value


@dataclass(frozen=True)
class Target:
    name: str
    check: Callable[[Sandbox], str]
    slow: tuple[tuple[str, str], ...]  # (service, call) slowed down per request
    args: tuple[str, ...] = ()


DAILY = Target("daily-checks", live_daily, (("vssps", f"POST {PATS}"), ("vault:*", "PUT /secrets/{name}")))
CLUSTER = Target("buildkite-cluster", live_cluster, (("buildkite-graphql", "ClusterAgentTokenCreate"), ("vault:*", "PUT /secrets/{name}")), ("--skip-manual",))

BOUNDARIES = [
    "after:planned",
    "after:mint_attempt",  # the slowed create call is under way
    "after:minted",
    "after:step_done",
    "after:stored",
    "after:verified",
    "after:propagated",
    "before:revoked",
]
CASES = [
    *[(DAILY, second, at) for second in ("rotate", "resume") for at in ("together", *BOUNDARIES)],
    *[(CLUSTER, second, at) for second in ("rotate", "resume") for at in ("together", "after:mint_attempt", "after:stored", "before:revoked")],
]


@pytest.mark.parametrize(("target", "second", "at"), CASES, ids=[f"{t.name}-rotate+{s}-{a}" for t, s, a in CASES])
def test_two_processes_one_target(sandbox: Sandbox, tmp_path: Path, target: Target, second: str, at: str) -> None:
    for service, call in target.slow:
        sandbox.state.set_delay(0.4, service=service, call=call)
    home = tmp_path / "home"
    marker = tmp_path / "paused"
    release = tmp_path / "go-on"
    # The first run stands at `at` until the second has ended (the release file), so "the second ran while the first
    # held the target" holds on a loaded machine too; 60 s is only a bound.
    first_env = {} if at == "together" else {
        "KEYTURN_TEST_PAUSE_AT": at, "KEYTURN_TEST_PAUSE_FILE": str(marker), "KEYTURN_TEST_PAUSE_S": "60",
        "KEYTURN_TEST_PAUSE_UNTIL": str(release),
    }
    second_args = ("rotate", target.name, "--no-input", *target.args) if second == "rotate" else ("resume", "--no-input", *target.args)
    first = spawn_keyturn(sandbox, home, "rotate", target.name, "--no-input", *target.args, env=first_env)
    if at != "together":
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert first.poll() is None, f"the first run ended before {at}: {first.communicate()[1]}"
            assert time.monotonic() < deadline, f"the first run never reached {at}"
            time.sleep(0.02)
    other = spawn_keyturn(sandbox, home, *second_args)
    runs = {"first": first, "second": other}
    out = {"second": other.communicate(timeout=120)}
    release.write_text("")
    out["first"] = first.communicate(timeout=120)
    codes = {k: p.returncode for k, p in runs.items()}

    hits = sandbox.state.delay_hits()
    assert all(hits[(service, call)] > 0 for service, call in target.slow), f"a delay slowed nothing: {hits}"
    target.check(sandbox)  # exactly one live token, and every store's current value is it
    journal = RotationJournal(sandbox.config_path.parent / "journal")
    records, damaged = journal.scan()
    assert damaged == []
    assert [r.rotation_id for r in records if not r.finished] == [], "nothing left unfinished"
    done = [r for r in records if r.state == "done"]
    rotated_ok = [k for k in runs if codes[k] == 0 and (k == "first" or second == "rotate")]
    assert len(done) == len(rotated_ok), (codes, [r.state for r in records], {k: v[1] for k, v in out.items()})
    for k, (_stdout, stderr) in out.items():
        if codes[k] != 0:
            assert codes[k] == 2, stderr
            last = stderr.strip().splitlines()[-1]
            assert f"target {target.name} is being rotated by pid " in last, last
    if at != "together":
        assert codes["first"] == 0, out["first"][1]
        if second == "rotate":
            assert codes["second"] == 2, "a second rotate while the first holds the target is refused"
        else:
            assert codes["second"] == 0 and ("skipping rotation" in out["second"][1] or "no unfinished rotation" in out["second"][1])
