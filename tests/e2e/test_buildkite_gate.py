"""Issue 13 (item 3, item 8): the Buildkite agent-token consumer gate, end to end.

The real `keyturn` CLI in a child process against the sandbox over loopback HTTPS. The sandbox seeds agents that
connected with the then-current agent tokens days ago (two in the Default cluster, one unclustered legacy macOS
agent): the old token is revoked only once none of them is still connected, i.e. after they were cycled
(``reconnect_agents``: each registers again as a new agent with what its store now holds).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from app.sandbox import Sandbox

KV = "cftptl-intsvc"
FAST = {"KEYTURN_RETRY_SLEEP_SCALE": "0", "KEYTURN_HTTP_TIMEOUT": "10"}


def journal(sandbox: Sandbox) -> list[dict[str, object]]:
    (path,) = sorted((sandbox.config_path.parent / "journal").glob("*.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def journal_text(sandbox: Sandbox) -> str:
    return "".join(p.read_text() for p in (sandbox.config_path.parent / "journal").rglob("*") if p.is_file())


def status_row(keyturn, target: str) -> dict[str, Any]:
    run = keyturn("status", "--json")
    assert run.code in (0, 1), run.stderr
    return next(r for r in run.json()["targets"] if r["target"] == target)


def after_the_store(sandbox: Sandbox) -> None:
    """Buildkite's connectedAt has whole seconds, and one in the very second of the store counts as before it:
    cycle the agents from the next second on (as any real cycling is)."""
    stored = next(e for e in journal(sandbox) if e["event"] == "stored")
    at = datetime.fromisoformat(str(stored["ts"])).timestamp()
    while sandbox.state.time() < int(at) + 1:
        time.sleep(0.05)


def canary(sandbox: Sandbox, outputs: list[str], *values: str) -> None:
    said = "\n".join(outputs) + journal_text(sandbox)
    for v in values:
        assert v and v not in said, "a token value reached an output or the journal"


def test_cluster_revoke_waits_for_the_agents_then_resume_revokes(sandbox: Sandbox, keyturn) -> None:
    bk = sandbox.buildkite
    (old,) = [t for t in bk.cluster_tokens("Default cluster") if t.description == "Default cluster agents"]
    before = bk.agents("Default cluster")
    assert [a.token_uuid for a in before] == [old.uuid, old.uuid]

    run = keyturn("rotate", "buildkite-cluster", "--no-input", "--json")  # no manual step any more: no --skip-manual
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["state"] == "propagated"
    (waiting,) = result["retire"]["waiting_for"]
    assert waiting.startswith("2 agents still connected since before the new token was stored (cluster Default cluster)")
    (gate,) = result["retire"]["gates"]
    assert gate["gate"] == "buildkite-agents" and gate["passed"] is False and gate["title"] == "Agents of cluster Default cluster"
    assert gate["progress"].startswith("2 left of 2 agents connected")
    assert result["retire"]["resume"] == f"keyturn resume {result['rotation_id'][:8]}"
    assert "waiting: revoke waits for: 2 agents still connected" in run.stderr
    assert not [text for text in result["steps"].values() if "SKIPPED" in str(text)]
    (new,) = [t for t in bk.cluster_tokens("Default cluster") if t.description.startswith("Default cluster agents-")]
    # the same facts as ids, for scripts (issue 15, item 6)
    retire = result["retire"]
    assert retire["status"] == "waiting" and retire["waiting_for_gates"] == ["buildkite-agents"] and retire["revoked"] == []
    assert result["token"]["display_id"] == new.uuid and [t["display_id"] for t in result["old_tokens"]] == [old.uuid]
    assert [(s["kind"], s["status"]) for s in result["step_results"]] == [("keyvault-secret-version", "done")]
    assert result["step_results"][0]["summary"] == result["steps"][result["step_results"][0]["id"]]
    assert bk.token_status(old.value) == "active" and bk.token_status(new.value) == "active"  # the old one waits
    assert sandbox.state.secret_versions(KV, "buildkite-agent-token")[-1].value == new.value

    row = status_row(keyturn, "buildkite-cluster")
    (waits,) = row["revoke_waits_for"]
    assert waits.startswith("2 agents still connected since before the new token was stored (cluster Default cluster)")
    assert "default-agent-1" in waits and "default-agent-2" in waits
    assert row["unfinished_rotations"] == [result["rotation_id"]]

    still = keyturn("resume", "--no-input", "--json")  # nothing changed: it checks again and keeps waiting
    assert still.code == 0, still.stderr
    (resumed,) = still.json()["resumed"]
    assert resumed["state"] == "propagated" and resumed["retire"]["waiting_for"] == [waiting]
    assert bk.token_status(old.value) == "active"

    after_the_store(sandbox)
    held = sandbox.state.secret_versions(KV, "buildkite-agent-token")[-1].value  # what the agents read at boot
    assert bk.reconnect_agents("Default cluster", token=held) == 2
    assert {a.token_uuid for a in bk.agents("Default cluster")} == {new.uuid}
    assert len(bk.agents("Default cluster", include_disconnected=True)) == 4  # the old registrations stay, disconnected

    done = keyturn("resume", "--no-input", "--json")
    assert done.code == 0, done.stderr
    (resumed,) = done.json()["resumed"]
    assert resumed["state"] == "done" and resumed["retire"]["outcome"] == "revoked 1 old token(s)"
    assert resumed["retire"]["waiting_for"] == [] and resumed["retire"]["gates"][0]["passed"] is True
    assert resumed["retire"]["status"] == "revoked" and resumed["retire"]["waiting_for_gates"] == []
    assert resumed["retire"]["revoked"] == [t["id"] for t in result["old_tokens"]]
    assert bk.token_status(old.value) == "revoked" and bk.token_status(new.value) == "active"
    events = [e["event"] for e in journal(sandbox)]
    assert events[-1] == "done" and "retire_waiting" in events and "gate_overridden" not in events
    assert events.index("retire_waiting") < events.index("old_retired")
    assert status_row(keyturn, "buildkite-cluster")["revoke_waits_for"] == []
    assert "does not stop agents that are already connected" in done.stderr  # the retire notice, said before revoking
    canary(sandbox, [run.stdout, run.stderr, still.stdout, still.stderr, done.stdout, done.stderr],
           old.value, new.value, bk.seeded.keyturn_token)  # type: ignore[union-attr]


def test_unclustered_revoke_waits_for_the_legacy_agent(sandbox: Sandbox, keyturn) -> None:
    bk = sandbox.buildkite
    (old,) = [t for t in bk.agent_tokens() if t.description == "Legacy macOS agents"]
    assert [a.name for a in bk.agents(unclustered=True)] == ["legacy-mac-1"]

    run = keyturn("rotate", "buildkite-unclustered", "--no-input", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["state"] == "propagated"
    assert result["retire"]["waiting_for"] == [
        "1 agent still connected since before the new token was stored (unclustered, contoso-sandbox): legacy-mac-1"]
    assert not bk.agent_token(old.uuid).revoked  # type: ignore[union-attr]
    (waits,) = status_row(keyturn, "buildkite-unclustered")["revoke_waits_for"]
    assert "legacy-mac-1" in waits and "unclustered" in waits

    after_the_store(sandbox)
    held = sandbox.state.secret_versions(KV, "buildkite-legacy-agent-token")[-1].value
    assert bk.reconnect_agents(unclustered=True, token=held) == 1
    assert len(bk.agents("Default cluster")) == 2  # the cluster's agents were left alone

    done = keyturn("resume", "--no-input", "--json")
    assert done.code == 0, done.stderr
    assert done.json()["resumed"][0]["state"] == "done"
    after = bk.agent_token(old.uuid)
    assert after is not None and after.revoked and result["rotation_id"] in (after.revoked_reason or "")
    assert journal(sandbox)[-1]["event"] == "done"
    new_value = sandbox.state.secret_versions(KV, "buildkite-legacy-agent-token")[-1].value
    canary(sandbox, [run.stdout, run.stderr, done.stdout, done.stderr], old.value, new_value, bk.seeded.keyturn_token)  # type: ignore[union-attr]


def test_skip_manual_changes_nothing_and_the_revoke_still_waits(sandbox: Sandbox, keyturn) -> None:
    bk = sandbox.buildkite
    (old,) = [t for t in bk.cluster_tokens("Default cluster") if t.description == "Default cluster agents"]
    run = keyturn("rotate", "buildkite-cluster", "--no-input", "--json", "--skip-manual")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["state"] == "propagated" and bk.token_status(old.value) == "active"
    assert not [text for text in result["steps"].values() if "SKIPPED" in str(text)]  # there is no manual step
    assert "Cycle agents" not in run.stdout + run.stderr
    resumed = keyturn("resume", "--no-input", "--json", "--skip-manual")
    assert resumed.code == 0 and resumed.json()["resumed"][0]["state"] == "propagated"
    assert bk.token_status(old.value) == "active"


def test_plan_says_what_the_revoke_waits_for(sandbox: Sandbox, keyturn) -> None:
    run = keyturn("rotate", "buildkite-cluster", "--dry-run", "--json")
    assert run.code == 0, run.stderr
    retire = next(line for line in run.json()["plan"] if ". retire: " in line)
    assert "once no agent of cluster Default cluster that connected before the new token was stored is still connected" in retire
    assert not [line for line in run.json()["plan"] if "Cycle agents" in line]


def test_agents_that_connected_after_the_store_let_the_revoke_go(sandbox: Sandbox, keyturn) -> None:
    bk = sandbox.buildkite
    run = keyturn("rotate", "buildkite-cluster", "--no-input", "--json")
    assert run.code == 0 and run.json()["state"] == "propagated", run.stderr
    after_the_store(sandbox)
    # the old agents are gone for good (one stopped, one lost), and a new one came up with the new token
    assert bk.disconnect_agents("Default cluster") == 2
    new_value = sandbox.state.secret_versions(KV, "buildkite-agent-token")[-1].value
    assert bk.connect_agent("default-agent-3", token=new_value) is not None
    done = keyturn("resume", "--no-input", "--json")
    assert done.code == 0, done.stderr
    assert done.json()["resumed"][0]["state"] == "done"


def test_an_agent_list_that_fails_holds_the_revoke(sandbox: Sandbox, keyturn) -> None:
    bk = sandbox.buildkite
    (old,) = [t for t in bk.cluster_tokens("Default cluster") if t.description == "Default cluster agents"]
    run = keyturn("rotate", "buildkite-cluster", "--no-input", "--json")
    assert run.code == 0 and run.json()["state"] == "propagated", run.stderr
    after_the_store(sandbox)
    bk.reconnect_agents("Default cluster")  # the gate would pass now, if it could look
    sandbox.state.inject_fault("ListAgents", "503", times=3, service="buildkite-graphql")  # every attempt of one listing
    failed = keyturn("resume", "--no-input", "--json", env=FAST)
    assert failed.code == 0, failed.stderr
    (resumed,) = failed.json()["resumed"]
    assert resumed["state"] == "propagated"
    (waiting,) = resumed["retire"]["waiting_for"]
    assert "could not be listed" in waiting
    assert bk.token_status(old.value) == "active"
    (waits,) = status_row(keyturn, "buildkite-cluster")["revoke_waits_for"]
    assert "could not be listed" in waits and "503" in waits
    done = keyturn("resume", "--no-input", "--json")  # Buildkite answers again
    assert done.code == 0 and done.json()["resumed"][0]["state"] == "done", done.stderr
    assert bk.token_status(old.value) == "revoked"


def test_agents_restarted_with_the_old_token_after_the_revoke_cannot_register(sandbox: Sandbox, keyturn) -> None:
    """What the gate prevents, shown by the emulator: the revoke does not disconnect agents, but one that restarts
    with the revoked token can no longer register."""
    bk = sandbox.buildkite
    (old,) = [t for t in bk.cluster_tokens("Default cluster") if t.description == "Default cluster agents"]
    run = keyturn("rotate", "buildkite-cluster", "--no-input", "--json", "--revoke-now")
    assert run.code == 0 and run.json()["state"] == "done", run.stderr
    assert "--revoke-now: revoking although the revoke waited for: 2 agents still connected" in run.stderr
    assert any(e["event"] == "gate_overridden" and e["gate"] == "buildkite-agents" for e in journal(sandbox))
    assert bk.token_status(old.value) == "revoked"
    assert len(bk.agents("Default cluster")) == 2  # still connected: revoking disconnects no one
    assert bk.reconnect_agents("Default cluster", token=old.value) == 0  # a restart with the old token fails
    assert bk.agents("Default cluster") == []

