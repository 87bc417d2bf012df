"""Issue 5, headless: the three Buildkite token kinds rotate end to end in the sandbox."""

from __future__ import annotations

import json
import time
from datetime import datetime

from app.sandbox import Sandbox


def cycle_agents(sandbox: Sandbox, **which: object) -> int:
    """The engineer cycles the agents: from the second after the store on (Buildkite's connectedAt has whole
    seconds), each registers again with what its store now holds."""
    (journal,) = (sandbox.config_path.parent / "journal").glob("*.jsonl")
    stored = next(e for e in map(json.loads, journal.read_text().splitlines()) if e["event"] == "stored")
    while sandbox.state.time() < int(datetime.fromisoformat(stored["ts"]).timestamp()) + 1:
        time.sleep(0.05)
    return sandbox.buildkite.reconnect_agents(**which)  # type: ignore[arg-type]


def test_cluster_agent_token(sandbox: Sandbox, keyturn) -> None:
    bk = sandbox.buildkite
    old = next(t for t in bk.cluster_tokens() if t.description == "Default cluster agents")
    # no manual step any more: headless needs no --skip-manual; the revoke waits for the agents that cache the old token
    run = keyturn("rotate", "buildkite-cluster", "--no-input", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["state"] == "propagated"
    assert not [text for text in result["steps"].values() if "SKIPPED" in text]
    assert "Cycle agents" not in run.stdout + run.stderr
    assert not bk.cluster_tokens(include_revoked=True)[0].revoked and bk.token_status(old.value) == "active"
    live = [t for t in bk.cluster_tokens() if t.description.startswith("Default cluster agents-")]
    assert len(live) == 1
    stored = sandbox.state.secret_versions("cftptl-intsvc", "buildkite-agent-token")[-1]
    assert stored.value == live[0].value
    assert cycle_agents(sandbox, cluster="Default cluster") == 2
    done = keyturn("resume", "--no-input", "--json")
    assert done.code == 0, done.stderr
    assert done.json()["resumed"][0]["state"] == "done"
    tokens = {t.uuid: t for t in bk.cluster_tokens(include_revoked=True)}
    assert tokens[old.uuid].revoked
    assert "does not stop agents that are already connected" in done.stderr  # the retire notice
    assert live[0].value not in run.stdout + run.stderr + done.stdout + done.stderr


def test_unclustered_agent_token(sandbox: Sandbox, keyturn) -> None:
    bk = sandbox.buildkite
    old = next(t for t in bk.agent_tokens() if t.description == "Legacy macOS agents")
    run = keyturn("rotate", "buildkite-unclustered", "--no-input", "--json")
    assert run.code == 0, run.stderr
    assert run.json()["state"] == "propagated" and not bk.agent_token(old.uuid).revoked  # type: ignore[union-attr]
    assert run.stderr.count("are a deprecated Buildkite feature") == 1  # said once, before minting
    assert cycle_agents(sandbox, unclustered=True) == 1
    done = keyturn("resume", "--no-input", "--json")
    assert done.code == 0, done.stderr
    after = bk.agent_token(old.uuid)
    assert after is not None and after.revoked
    assert run.json()["rotation_id"] in (after.revoked_reason or "")
    assert "are a deprecated Buildkite feature" not in done.stderr


def test_api_access_token_for_conductorone(sandbox: Sandbox, keyturn) -> None:
    bk = sandbox.buildkite
    old_value = bk.seeded.connector_token  # type: ignore[union-attr]
    # no API creates one: the engineer makes it on the page and hands it over
    new = bk.create_api_token(("read_teams", "read_organizations", "read_user"), graphql=True, description="ConductorOne Buildkite connector")
    run = keyturn("rotate", "buildkite-conductorone", "--no-input", "--json", env={"KT_NEW_BK_TOKEN": new.value})
    assert run.code == 2 and "new_token" in run.stderr  # --no-input needs to be told where the new value is
    text = sandbox.config_path.read_text().replace('old_token = "vault:', 'new_token = "env:KT_NEW_BK_TOKEN"\nold_token = "vault:', 1)
    sandbox.config_path.write_text(text)
    run = keyturn("rotate", "buildkite-conductorone", "--no-input", "--json", env={"KT_NEW_BK_TOKEN": new.value})
    assert run.code == 0, run.stderr
    assert bk.api_token(old_value).revoked  # type: ignore[union-attr]
    connector = sandbox.conductorone.connector()
    assert connector is not None and connector.api_token == new.value
    assert sandbox.state.secret_versions("cftptl-intsvc", "buildkite-conductorone-token")[-1].value == new.value
    assert new.value not in run.stdout + run.stderr


def test_agent_token_pasted_as_api_token(sandbox: Sandbox, keyturn) -> None:
    agent_value = sandbox.buildkite.cluster_tokens()[0].value
    text = sandbox.config_path.read_text().replace('old_token = "vault:', 'new_token = "env:KT_NEW_BK_TOKEN"\nold_token = "vault:', 1)
    sandbox.config_path.write_text(text)
    run = keyturn("rotate", "buildkite-conductorone", "--no-input", env={"KT_NEW_BK_TOKEN": agent_value})
    assert run.code != 0
    line = next(x for x in run.stderr.splitlines() if x.startswith("keyturn: error:"))
    assert "agent token" in line.lower()
    assert agent_value not in run.stderr


def test_unclustered_token_that_may_not_be_revoked_stops_before_minting(sandbox: Sandbox, keyturn) -> None:
    bk = sandbox.buildkite
    old = next(t for t in bk.agent_tokens() if t.description == "Legacy macOS agents")
    bk.set_revoke_allowed(old.uuid, False)
    before = len(bk.agent_tokens())
    run = keyturn("rotate", "buildkite-unclustered", "--no-input")
    assert run.code == 2
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("keyturn: error:")]
    assert "does not allow revoking agent token" in line and "nothing was minted" in line
    assert len(bk.agent_tokens()) == before and not bk.agent_token(old.uuid).revoked  # type: ignore[union-attr]
