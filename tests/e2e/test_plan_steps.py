"""Issue 12: step ids are stable across config edits; `resume` refuses when the follow-ups no longer match."""

from __future__ import annotations

import signal

from app.journal import RotationJournal
from app.sandbox import Sandbox

KV_STEP = '[[targets.daily-checks.follow_ups]]\nkind = "keyvault-secret-version"\nvault = "cftptl-intsvc"\nsecret = "azure-devops-token"\n'
MANUAL_STEP = '[[targets.daily-checks.follow_ups]]\nkind = "manual"\nname = "Tell the team"\ntext = "daily-checks rotated"\n'


def _set_follow_ups(sandbox: Sandbox, *blocks: str) -> None:
    text = sandbox.config_path.read_text()
    assert KV_STEP in text
    start = text.index(KV_STEP)
    rest = text[start + len(KV_STEP):]
    while rest.startswith(MANUAL_STEP) or rest.startswith("\n" + MANUAL_STEP):
        rest = rest[rest.index(MANUAL_STEP) + len(MANUAL_STEP):]
    sandbox.config_path.write_text(text[:start] + "\n".join(blocks) + rest)


def test_reordered_follow_ups_resume_where_they_were(sandbox: Sandbox, keyturn) -> None:
    _set_follow_ups(sandbox, KV_STEP, MANUAL_STEP)
    crashed = keyturn("rotate", "daily-checks", "--no-input", "--skip-manual", env={"KEYTURN_TEST_KILL_AT": "after:stored"})
    assert crashed.code == -signal.SIGKILL, crashed.stderr
    _set_follow_ups(sandbox, MANUAL_STEP, KV_STEP)  # the same steps, the other way round
    resumed = keyturn("resume", "--no-input", "--skip-manual", "--json")
    assert resumed.code == 0, resumed.stderr
    assert [r["state"] for r in resumed.json()["resumed"]] == ["done"]
    versions = [v for v in sandbox.state.secret_versions("cftptl-intsvc", "azure-devops-token") if (v.tags or {}).get("keyturn-rotation-id")]
    assert len(versions) == 1, "the Key Vault step counted as done: not written twice"


def test_resume_refuses_when_the_follow_ups_changed(sandbox: Sandbox, keyturn) -> None:
    crashed = keyturn("rotate", "daily-checks", "--no-input", env={"KEYTURN_TEST_KILL_AT": "after:stored"})
    assert crashed.code == -signal.SIGKILL, crashed.stderr
    (left,) = RotationJournal(sandbox.config_path.parent / "journal").unfinished()
    _set_follow_ups(sandbox, KV_STEP, MANUAL_STEP)
    run = keyturn("resume", "--no-input", "--skip-manual")
    assert run.code == 2
    (line,) = run.stderr.strip().splitlines()[-1:]
    assert f"rotation {left.rotation_id[:8]}: the follow-ups of daily-checks changed since it began (new: Tell the team)" in line
    assert f"`keyturn abort {left.rotation_id[:8]}`" in line
    _set_follow_ups(sandbox, KV_STEP)
    assert keyturn("resume", "--no-input", "--json").json()["resumed"][0]["state"] == "done"
