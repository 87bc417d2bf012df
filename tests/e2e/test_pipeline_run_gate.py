"""Issue 13 item 6: the daily-checks pipeline as a consumer gate, the real CLI against the sandbox over loopback HTTPS.

The sandbox's daily-checks target queues a run of the emulated daily-checks pipeline once Key Vault holds the new
PAT; the pipeline reads the latest azure-devops-token and calls the agent pools API with it; the old PAT is revoked
only once such a run succeeded."""

from __future__ import annotations

import base64
import json
import signal
import time
from datetime import timedelta
from typing import Any

import httpx

from app.journal import RotationJournal
from app.sandbox import Sandbox

PIPELINE = 12
GATE = "azure-pipelines-run-contoso-sandbox-platops-12"
WAIT_60 = 'rotation_variable = "KEYTURN_ROTATION"\ntimeout_s = 60'


def journal_text(sandbox: Sandbox) -> str:
    return "".join(p.read_text() for p in (sandbox.config_path.parent / "journal").glob("*"))


def journal_events(sandbox: Sandbox) -> list[dict[str, Any]]:
    (f,) = sorted((sandbox.config_path.parent / "journal").glob("*.jsonl"))
    return [json.loads(line) for line in f.read_text().splitlines()]


def set_timeout(sandbox: Sandbox, seconds: int) -> None:
    text = sandbox.config_path.read_text()
    assert WAIT_60 in text
    sandbox.config_path.write_text(text.replace(WAIT_60, WAIT_60.replace("60", str(seconds)), 1))


def old_daily(sandbox: Sandbox) -> str:
    (old,) = sandbox.state.pats_named("daily-checks")
    return old.authorization_id


def runner_pat(sandbox: Sandbox) -> str:
    (pat,) = sandbox.state.pats_named("pipelines-runner")
    return pat.value


def rerun_by_hand(sandbox: Sandbox) -> int:
    """What the engineer does in Azure DevOps: run the pipeline again (here over the REST API, as the runner)."""
    auth = base64.b64encode(f":{runner_pat(sandbox)}".encode()).decode()
    with httpx.Client(verify=sandbox.client_ssl_context(), headers={"Authorization": f"Basic {auth}"}) as http:
        resp = http.post(f"{sandbox.urls['devops']}/{sandbox.state.org}/platops/_apis/pipelines/{PIPELINE}/runs",
                         params={"api-version": "7.1"}, json={})
    assert resp.status_code == 200, resp.text
    return int(resp.json()["id"])


def wait_runs_done(sandbox: Sandbox, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while any(r.state_at(sandbox.state.time()) != "completed" for r in sandbox.state.pipeline_runs(PIPELINE)):
        assert time.monotonic() < end, "the emulated runs never ended"
        time.sleep(0.1)


def assert_no_values(sandbox: Sandbox, *texts: str) -> None:
    """Canary: no PAT value of this world (the new one, the old one, the runner's) in output or journal."""
    seen = "".join(texts) + journal_text(sandbox)
    for pat in sandbox.state.pats():
        assert pat.value not in seen, f"the value of PAT {pat.display_name} leaked"


def test_rotate_waits_for_the_run_and_revokes_once_it_succeeded(sandbox: Sandbox, keyturn) -> None:
    old_id = old_daily(sandbox)
    run = keyturn("rotate", "daily-checks", "--no-input", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["state"] == "done"
    assert sandbox.state.pat(old_id).revoked  # type: ignore[union-attr]
    assert result["steps"][GATE].startswith("queued run 42 (") and result["steps"][GATE].endswith("; it succeeded")
    assert result["retire"]["waiting_for"] == [] and result["retire"]["outcome"] == "revoked 1 old token(s)"
    assert "pipeline daily-checks: run 42 queued; waiting for it (up to 60 s)" in run.stderr

    # the run carries the rotation id, and the emulated consumer used the new PAT
    *_, ours = sandbox.state.pipeline_runs(PIPELINE)
    assert ours.id == 42 and ours.result == "succeeded" and ours.ref_name == "refs/heads/main"
    assert ours.variables == {"KEYTURN_ROTATION": result["rotation_id"]}
    assert ours.checked_token == result["token"]["id"]
    assert ours.queued_by == sandbox.state.pats_named("pipelines-runner")[0].authorization_id

    # the journal holds ids, never values; the plan named the gate
    (done,) = [e for e in journal_events(sandbox) if e["event"] == "step_done" and e["step"] == GATE]
    assert done["detail"]["run_id"] == 42 and done["detail"]["pipeline_name"] == "daily-checks"
    assert_no_values(sandbox, run.stdout, run.stderr)


def test_dry_run_names_the_gate(sandbox: Sandbox, keyturn) -> None:
    run = keyturn("rotate", "daily-checks", "--no-input", "--dry-run")
    assert run.code == 0, run.stderr
    assert "follow-up: queue a run of pipeline daily-checks (id 12, contoso-sandbox/platops) on refs/heads/main" in run.stdout
    assert "once pipeline daily-checks run succeeds" in run.stdout
    assert [r.id for r in sandbox.state.pipeline_runs(PIPELINE)] == [40, 41]  # a plan queues nothing


def test_a_run_still_going_leaves_the_rotation_propagated_until_resume(sandbox: Sandbox, keyturn) -> None:
    set_timeout(sandbox, 0)
    sandbox.state.set_pipeline(PIPELINE, run_duration_s=120)  # a long pipeline (the clock is moved on below)
    old_id = old_daily(sandbox)
    run = keyturn("rotate", "daily-checks", "--no-input", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["state"] == "propagated"
    assert result["retire"]["waiting_for"] == ["pipeline daily-checks run 42 still running"]
    (gate,) = result["retire"]["gates"]
    assert gate["gate"] == GATE and not gate["passed"] and gate["url"].endswith("/_build/results?buildId=42")
    assert result["retire"]["resume"] == f"keyturn resume {result['rotation_id'][:8]}"
    assert not sandbox.state.pat(old_id).revoked  # type: ignore[union-attr]
    events = journal_events(sandbox)
    assert events[-1]["event"] == "retire_waiting"
    assert events[-1]["waiting_for"] == ["pipeline daily-checks run 42 still running"]

    status = keyturn("status", "--json")
    (row,) = [r for r in status.json()["targets"] if r["target"] == "daily-checks"]
    assert row["unfinished_rotations"] == [result["rotation_id"]]
    assert row["revoke_waits_for"] == ["pipeline daily-checks run 42 still running"]

    early = keyturn("resume", "--no-input", "--json")  # still running: nothing changes, nothing queued again
    assert early.code == 0, early.stderr
    assert early.json()["resumed"][0]["state"] == "propagated"
    assert not sandbox.state.pat(old_id).revoked  # type: ignore[union-attr]

    sandbox.state.advance_clock(121)
    resumed = keyturn("resume", "--no-input", "--json")
    assert resumed.code == 0, resumed.stderr
    (again,) = resumed.json()["resumed"]
    assert again["state"] == "done" and again["retire"]["outcome"] == "revoked 1 old token(s)"
    assert sandbox.state.pat(old_id).revoked  # type: ignore[union-attr]
    assert [r.id for r in sandbox.state.pipeline_runs(PIPELINE)] == [40, 41, 42]  # one run for the whole rotation
    assert_no_values(sandbox, run.stdout, run.stderr, early.stdout, early.stderr, resumed.stdout, resumed.stderr, status.stdout)


def test_a_failing_consumer_keeps_the_old_token_alive_and_says_why(sandbox: Sandbox, keyturn) -> None:
    # the consumer's checks need Code: Read, which the daily-checks preset does not grant: the new PAT cannot do them
    sandbox.state.set_pipeline(PIPELINE, needs=["vso.agentpools", "vso.build", "vso.code"])
    old_id = old_daily(sandbox)
    run = keyturn("rotate", "daily-checks", "--no-input", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["state"] == "propagated"
    (waiting,) = result["retire"]["waiting_for"]
    assert waiting.startswith("pipeline daily-checks run 42 failed: the consumer did not work with the new token")
    assert "re-run the pipeline: a run queued after run 42 counts" in waiting
    assert result["steps"][GATE].endswith("it failed: the old token waits for a run that succeeds")
    assert not sandbox.state.pat(old_id).revoked  # type: ignore[union-attr]
    assert f"revoke waits for: {waiting}" in run.stderr
    (failed,) = [r for r in sandbox.state.pipeline_runs(PIPELINE) if r.id == 42]
    assert failed.result == "failed" and "vso.code" in failed.reason  # it really used the new PAT and lacked a scope

    again = keyturn("resume", "--no-input", "--json")  # not re-queued by keyturn: the same failure, said again
    assert again.code == 0, again.stderr
    assert again.json()["resumed"][0]["retire"]["waiting_for"] == [waiting]
    assert [r.id for r in sandbox.state.pipeline_runs(PIPELINE)] == [40, 41, 42]
    assert not sandbox.state.pat(old_id).revoked  # type: ignore[union-attr]

    # the engineer mends the consumer (here: its checks no longer need Code) and re-runs the pipeline
    sandbox.state.set_pipeline(PIPELINE, needs=["vso.agentpools", "vso.build"])
    assert rerun_by_hand(sandbox) == 43
    wait_runs_done(sandbox)
    mended = keyturn("resume", "--no-input", "--json")
    assert mended.code == 0, mended.stderr
    (final,) = mended.json()["resumed"]
    assert final["state"] == "done"
    assert sandbox.state.pat(old_id).revoked  # type: ignore[union-attr]
    assert "pipeline daily-checks run 43 (queued after run 42, which failed) succeeded" in mended.stderr
    assert_no_values(sandbox, run.stdout, run.stderr, again.stdout, again.stderr, mended.stdout, mended.stderr)


def test_a_crash_after_queueing_does_not_queue_again(sandbox: Sandbox, keyturn) -> None:
    crashed = keyturn("rotate", "daily-checks", "--no-input", env={"KEYTURN_TEST_KILL_AT": "pipeline:queued"})
    assert crashed.code == -signal.SIGKILL, crashed.stderr
    (left,) = RotationJournal(sandbox.config_path.parent / "journal").unfinished()
    assert GATE not in left.steps_done  # queued, never journaled
    resumed = keyturn("resume", "--no-input", "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["resumed"][0]["state"] == "done"
    ours = [r for r in sandbox.state.pipeline_runs(PIPELINE) if r.variables.get("KEYTURN_ROTATION") == left.rotation_id]
    assert [r.id for r in ours] == [42]  # found by its variable, not queued twice
    assert "run 42 was queued earlier by this rotation" in resumed.stderr
    assert_no_values(sandbox, crashed.stdout, crashed.stderr, resumed.stdout, resumed.stderr)


def test_a_runner_token_that_cannot_read_the_pipeline_stops_before_minting(sandbox: Sandbox, keyturn) -> None:
    """The preflight reads the pipeline; a token that cannot even read it stops the rotation before anything is minted,
    in one line that names the scope."""
    weak = sandbox.state.add_pat("weak-runner", "vso.code", sandbox.state.now() + timedelta(days=3))
    sandbox.state.set_secret("rpe-prod", "daily-checks-runner-pat", weak.value)
    before = len(sandbox.state.pats())
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert run.code == 2
    (line,) = [ln for ln in run.stderr.splitlines() if "error" in ln]
    assert "reading pipeline 12 refused (HTTP 403)" in line and "Build: Read (vso.build)" in line
    assert len(sandbox.state.pats()) == before  # nothing minted
    assert_no_values(sandbox, run.stdout, run.stderr)
