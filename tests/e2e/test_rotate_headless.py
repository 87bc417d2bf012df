"""The issue's acceptance path: a headless rotation of daily-checks in the sandbox, then status."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from app.sandbox import Sandbox

# not about the waiting: the consumers follow at once, so each rotation passes its gates in one run
pytestmark = pytest.mark.usefixtures("prompt_consumers")

DAILY_SCOPES = {"vso.agentpools", "vso.build", "vso.pipelineresources_use", "vso.release"}


def journal_states(sandbox: Sandbox) -> list[list[str]]:
    out = []
    for f in sorted((sandbox.config_path.parent / "journal").glob("*.jsonl")):
        out.append([json.loads(line)["event"] for line in f.read_text().splitlines()])
    return out


def test_rotate_daily_checks_end_to_end(sandbox: Sandbox, keyturn) -> None:
    state = sandbox.state
    old = [p for p in state.pats() if p.display_name == "daily-checks"]
    assert len(old) == 1 and not old[0].revoked
    versions_before = len(state.secret_versions("cftptl-intsvc", "azure-devops-token"))

    run = keyturn("rotate", "daily-checks", "--no-input", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["state"] == "done"
    new_id = result["token"]["id"]

    new = state.pat(new_id)
    assert new is not None and not new.revoked
    assert set(new.scopes) == DAILY_SCOPES and len(new.scopes) == 4
    assert new.target_accounts is not None  # one organization, not all
    assert new.uses == 2  # the verification, and the daily-checks pipeline run that reads it from Key Vault (the gate)
    assert state.pat(old[0].authorization_id).revoked  # type: ignore[union-attr]

    versions = state.secret_versions("cftptl-intsvc", "azure-devops-token")
    assert len(versions) == versions_before + 1
    latest = versions[-1]
    assert latest.value == new.value
    assert latest.tags is not None
    assert latest.tags["keyturn-rotation-id"] == result["rotation_id"]
    assert latest.tags["keyturn-token-id"] == new_id
    assert latest.tags["keyturn-state"] == "active"
    assert latest.expires == int(new.valid_to.timestamp())

    (events,) = journal_states(sandbox)
    assert events[0] == "planned" and events[-1] == "done"
    assert [e for e in events if e in ("minted", "stored", "verified", "propagated", "old_retired", "done")] == [
        "minted", "stored", "verified", "propagated", "old_retired", "done"]

    # the value reached the store and nowhere else we can see
    assert new.value not in run.stdout + run.stderr
    journal_text = "".join(p.read_text() for p in (sandbox.config_path.parent / "journal").glob("*"))
    assert new.value not in journal_text

    status = keyturn("status", "--json")
    rows = {r["target"]: r for r in status.json()["targets"]}
    assert rows["daily-checks"]["token_id"] == new_id
    assert datetime.fromisoformat(rows["daily-checks"]["expires_at"]) == new.valid_to
    assert rows["daily-checks"]["state"] == "ok"
    assert rows["keda"]["state"] == "expiring"  # seeded to expire within a week
    assert status.code == 1  # something needs attention


def test_dry_run_changes_nothing(sandbox: Sandbox, keyturn) -> None:
    before = [(p.authorization_id, p.revoked) for p in sandbox.state.pats()]
    run = keyturn("rotate", "daily-checks", "--no-input", "--dry-run")
    assert run.code == 0, run.stderr
    assert "Plan for daily-checks" in run.stdout
    assert "Agent Pools: Read (vso.agentpools)" in run.stdout
    assert "retire: revoke 'daily-checks'" in run.stdout
    assert [(p.authorization_id, p.revoked) for p in sandbox.state.pats()] == before
    assert not list((sandbox.config_path.parent / "journal").glob("*.jsonl"))


def test_reveal_prints_only_the_value(sandbox: Sandbox, keyturn) -> None:
    run = keyturn("rotate", "daily-checks", "--no-input", "--reveal")
    assert run.code == 0, run.stderr
    value = run.stdout.strip()
    assert len(run.stdout.splitlines()) == 1
    assert any(p.value == value and not p.revoked for p in sandbox.state.pats())
    assert value not in run.stderr


def test_status_text_and_exit_code(sandbox: Sandbox, keyturn) -> None:
    run = keyturn("status")
    assert run.code == 1
    assert "keda" in run.stdout and "expiring" in run.stdout


def test_manual_steps_refused_headless_unless_skipped(sandbox: Sandbox, keyturn) -> None:
    text = sandbox.config_path.read_text()
    text += '\n[[targets.daily-checks.follow_ups]]\nkind = "manual"\nname = "Tell the team"\ntext = "Post in #platops: {target} rotated, token {token_id}, expires {expires_at}"\n'
    sandbox.config_path.write_text(text)
    before = len(sandbox.state.pats())
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert run.code == 2
    assert run.stderr.count("\n") == 1 and "manual step 'Tell the team'" in run.stderr and "--skip-manual" in run.stderr
    assert len(sandbox.state.pats()) == before  # nothing minted
    run = keyturn("rotate", "daily-checks", "--no-input", "--skip-manual", "--json")
    assert run.code == 0, run.stderr
    (step,) = [v for k, v in run.json()["steps"].items() if k.startswith("manual-")]
    assert step.startswith("SKIPPED (--skip-manual), still to do: Post in #platops: daily-checks rotated, token ")
    assert run.json()["token"]["id"] in step
    (skipped,) = [s for s in run.json()["step_results"] if s["kind"] == "manual"]
    assert skipped["status"] == "skipped" and skipped["summary"] == step and skipped["title"] == "Tell the team"


def test_follow_up_preflight_refuses_before_minting(sandbox: Sandbox, keyturn, tmp_path: Path) -> None:
    """A follow-up that cannot work (here: AWS SSM unreachable) stops the rotation before anything is minted."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    creds = tmp_path / "aws"
    creds.write_text("[default]\naws_access_key_id = x\naws_secret_access_key = y\n")
    text = sandbox.config_path.read_text()
    text += f'\n[[targets.daily-checks.follow_ups]]\nkind = "aws-ssm-parameter"\nname = "SSM copy"\nparameter = "/ci/ado-token"\nendpoint_url = "http://127.0.0.1:{port}"\ncredentials_file = "{creds}"\n'
    sandbox.config_path.write_text(text)
    before = len(sandbox.state.pats())
    run = keyturn("rotate", "daily-checks", "--no-input", env={"AWS_MAX_ATTEMPTS": "1"})
    assert run.code == 2
    assert "SSM copy: reading the parameter failed" in run.stderr
    assert len(sandbox.state.pats()) == before


def test_key_vault_content_type_and_disable_previous(sandbox: Sandbox, keyturn) -> None:
    text = sandbox.config_path.read_text().replace('secret = "azure-devops-token"', 'secret = "azure-devops-token"\ncontent_type = "azure-devops-pat"\ndisable_previous = true', 1)
    sandbox.config_path.write_text(text)
    run = keyturn("rotate", "daily-checks", "--no-input", "--json")
    assert run.code == 0, run.stderr
    *earlier, latest = sandbox.state.secret_versions("cftptl-intsvc", "azure-devops-token")
    assert latest.content_type == "azure-devops-pat" and latest.enabled
    assert earlier and not earlier[-1].enabled  # it held the old, now revoked, token
    assert "disabled previous version" in run.stderr
