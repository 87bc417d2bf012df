"""Kill the headless rotation (SIGKILL) at every state boundary, then `keyturn resume`.

Whatever the point, the outcome is exactly one live new token, stored in Key Vault, and the old
token revoked: never an orphan, never a second live token.
"""

from __future__ import annotations

import json
import signal

import pytest

from app.sandbox import Sandbox

KILL_POINTS = [
    "after:planned",
    "after:mint_attempt",  # before the create call
    "before:minted",  # the PAT exists on the server, the journal does not know it
    "after:minted",  # the value was only in memory: lost
    "before:step_done",  # Key Vault has the version, the journal does not know it
    "after:step_done",
    "after:stored",
    "after:verified",
    "after:propagated",
    "before:revoked",  # the old PAT is revoked on the server, not in the journal
    "after:old_retired",
]


def live_target_pats(sandbox: Sandbox) -> list:
    return [p for p in sandbox.state.pats() if p.display_name.startswith("daily-checks") and not p.revoked]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_then_resume(sandbox: Sandbox, keyturn, point: str) -> None:
    old = next(p for p in sandbox.state.pats() if p.display_name == "daily-checks")
    crashed = keyturn("rotate", "daily-checks", "--no-input", "--json", env={"KEYTURN_TEST_KILL_AT": point})
    assert crashed.code == -signal.SIGKILL, crashed.stderr

    resumed = keyturn("resume", "--no-input", "--json")
    assert resumed.code == 0, resumed.stderr
    assert [r["state"] for r in resumed.json()["resumed"]] == ["done"]

    live = live_target_pats(sandbox)
    assert len(live) == 1, [(p.display_name, p.authorization_id) for p in live]
    new = live[0]
    assert new.authorization_id != old.authorization_id
    assert sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]
    latest = sandbox.state.secret_versions("cftptl-intsvc", "azure-devops-token")[-1]
    assert latest.value == new.value
    assert latest.tags and latest.tags["keyturn-token-id"] == new.authorization_id
    # exactly one Key Vault version per live token: a resumed store never writes twice
    ours = [v for v in sandbox.state.secret_versions("cftptl-intsvc", "azure-devops-token") if (v.tags or {}).get("keyturn-token-id") == new.authorization_id]
    assert len(ours) == 1
    # nothing left to resume, and the value never reached the journal
    again = keyturn("resume", "--no-input", "--json")
    assert again.code == 0 and again.json() == {"resumed": []}
    journal = "".join(p.read_text() for p in (sandbox.config_path.parent / "journal").glob("*"))
    assert new.value not in journal
    events = [json.loads(line)["event"] for line in journal.splitlines()]
    assert events[-1] == "done"
