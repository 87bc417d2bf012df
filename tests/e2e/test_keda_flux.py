"""Issue 4's acceptance path: a headless KEDA rotation updates the Flux secret in both environments."""

from __future__ import annotations

import base64
import os
import subprocess

import pytest

from app.sandbox import Sandbox
from app.sandbox.flux import sops_binary

BRANCH = "keyturn/rotate-keda-"


def git(repo, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def decrypt_on(sandbox: Sandbox, ref: str, rel: str) -> str:
    flux = sandbox.flux
    assert flux is not None
    blob = subprocess.run(["git", "show", f"{ref}:{rel}"], cwd=flux.clone, check=True, capture_output=True).stdout
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(flux.age_key)}
    out = subprocess.run(
        [sops_binary(), "decrypt", "--input-type", "yaml", "--output-type", "yaml", "--extract", '["data"]["personalAccessToken"]', "/dev/stdin"],
        input=blob, env=env, check=True, capture_output=True,
    ).stdout
    return base64.b64decode(out).decode()


def live_keda(sandbox: Sandbox) -> list:
    return [p for p in sandbox.state.pats() if p.display_name.startswith("keda-agent-pools") and not p.revoked]


def check_outcome(sandbox: Sandbox) -> str:
    """The branch holds the new value in both files, encrypted; the clone is back on a clean main. Returns the branch."""
    flux = sandbox.flux
    assert flux is not None
    new = newest_keda(sandbox)
    branches = git(flux.bare, "branch", "--list", f"{BRANCH}*").split()
    assert len(branches) == 1  # pushed
    branch = branches[0].lstrip("* ")
    assert git(flux.bare, "rev-list", "--count", f"main..{branch}") == "1"  # one commit
    for rel in flux.files:
        assert decrypt_on(sandbox, f"origin/{branch}", rel) == new.value
    for repo in (flux.clone, flux.bare):
        objects = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=repo, capture_output=True, check=True).stdout
        assert new.value.encode() not in objects and base64.b64encode(new.value.encode()) not in objects
    assert git(flux.clone, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(flux.clone, "status", "--porcelain") == ""
    return branch


def newest_keda(sandbox: Sandbox):
    return max(live_keda(sandbox), key=lambda p: p.valid_from)


@pytest.mark.parametrize("how", ["merge", "squash", "rebase"])
def test_headless_keda_revokes_only_once_the_pull_request_is_merged(sandbox: Sandbox, keyturn, how: str) -> None:
    """Issue 13: the old PAT survives until `main` (what Flux applies) holds the new value in cft and sds."""
    old = sandbox.state.pats_named("keda-agent-pools")[0]
    run = keyturn("rotate", "keda", "--no-input", "--json")
    assert run.code == 0, run.stderr
    out = run.json()
    assert out["state"] == "propagated"
    assert out["retire"]["waiting_for"] == ["pull request not merged (cft, sds)"]
    assert "waiting: revoke waits for: pull request not merged (cft, sds)" in run.stderr
    git(sandbox.flux.clone, "fetch", "-q", "origin")  # type: ignore[union-attr]
    branch = check_outcome(sandbox)
    assert not sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]
    (flux,) = [v for k, v in out["steps"].items() if k.startswith("flux-sops-secret-")]
    assert "pushed to origin" in flux

    status = keyturn("status")
    assert "revoke waits for: pull request not merged (cft, sds)" in status.stdout, status.stdout
    again = keyturn("resume", "--no-input", "--json")  # a schedule re-checking before the merge: still waiting
    assert again.code == 0, again.stderr
    assert again.json()["resumed"][0]["state"] == "propagated"
    assert not sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]

    merged = keyturn("sandbox", "merge", branch, "--dir", str(sandbox.directory), *([f"--{how}"] if how != "merge" else []))
    assert merged.code == 0, merged.stderr
    assert git(sandbox.flux.bare, "branch", "--list", branch) == ""  # type: ignore[union-attr]  # deleted, as GitHub does
    done = keyturn("resume", "--no-input", "--json")
    assert done.code == 0, done.stderr
    (row,) = done.json()["resumed"]
    assert row["state"] == "done" and row["retire"]["waiting_for"] == []
    assert sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]
    assert not sandbox.state.pat(newest_keda(sandbox).authorization_id).revoked  # type: ignore[union-attr]
    for rel in sandbox.flux.files:  # type: ignore[union-attr]
        assert decrypt_on(sandbox, "origin/main", rel) == newest_keda(sandbox).value
    journal = next((sandbox.directory / "journal").glob("*.jsonl")).read_text().splitlines()
    assert '"event": "done"' in journal[-1]
    assert keyturn("status").stdout.count("revoke waits for") == 0


def test_a_merge_of_only_one_environment_keeps_waiting(sandbox: Sandbox, keyturn) -> None:
    """Someone merges the change for cft only (a hand-edited main): sds still reads the old value, so nothing dies."""
    old = sandbox.state.pats_named("keda-agent-pools")[0]
    run = keyturn("rotate", "keda", "--no-input", "--json")
    assert run.code == 0, run.stderr
    flux = sandbox.flux
    assert flux is not None
    git(flux.clone, "fetch", "-q", "origin")
    branch = check_outcome(sandbox)
    git(flux.clone, "checkout", "-q", f"origin/{branch}", "--", flux.files[0])
    git(flux.clone, "-c", "user.name=r", "-c", "user.email=r@x", "commit", "-q", "-m", "cft only")
    git(flux.clone, "push", "-q", "origin", "HEAD:main")
    again = keyturn("resume", "--no-input", "--json")
    assert again.code == 0, again.stderr
    (row,) = again.json()["resumed"]
    assert row["state"] == "propagated" and row["retire"]["waiting_for"] == ["pull request not merged (sds)"]
    assert not sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]


def test_revoke_now_skips_the_gate_and_says_so(sandbox: Sandbox, keyturn) -> None:
    old = sandbox.state.pats_named("keda-agent-pools")[0]
    run = keyturn("rotate", "keda", "--no-input", "--revoke-now", "--json")
    assert run.code == 0, run.stderr
    assert run.json()["state"] == "done"
    assert "--revoke-now: revoking although the revoke waited for: pull request not merged (cft, sds)" in run.stderr
    assert sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]
    journal = next((sandbox.directory / "journal").glob("*.jsonl")).read_text()
    assert '"event": "gate_overridden"' in journal and '"by": "--revoke-now"' in journal


def test_dirty_clone_stops_before_minting(sandbox: Sandbox, keyturn) -> None:
    (sandbox.flux.clone / "README.md").write_text("edited\n")  # type: ignore[union-attr]
    before = len(sandbox.state.pats())
    run = keyturn("rotate", "keda", "--no-input")
    assert run.code == 2 and "uncommitted changes" in run.stderr
    assert len(sandbox.state.pats()) == before


def test_missing_decryption_key_stops_before_minting(sandbox: Sandbox, keyturn) -> None:
    sandbox.flux.age_key.unlink()  # type: ignore[union-attr]
    before = len(sandbox.state.pats())
    run = keyturn("rotate", "keda", "--no-input", env={"SOPS_AGE_KEY_FILE": "/nonexistent"})
    assert run.code == 2 and "no decryption key available" in run.stderr
    assert len(sandbox.state.pats()) == before


def test_a_merge_reverted_after_the_gate_passed_keeps_the_old_token_alive(sandbox: Sandbox, keyturn) -> None:
    """The gates passed and were journaled, then the process died before the revoke, then someone reverted main: the
    resume asks the Flux gate again (a follow-up's journaled pass is not trusted twice) and stops, saying why."""
    import signal

    old = sandbox.state.pats_named("keda-agent-pools")[0]
    flux = sandbox.flux
    assert flux is not None
    before = git(flux.bare, "rev-parse", "main")
    run = keyturn("rotate", "keda", "--no-input", "--json")
    assert run.code == 0 and run.json()["state"] == "propagated", run.stderr
    git(flux.clone, "fetch", "-q", "origin")
    branch = check_outcome(sandbox)
    assert keyturn("sandbox", "merge", branch, "--dir", str(sandbox.directory)).code == 0
    killed = keyturn("resume", "--no-input", env={"KEYTURN_TEST_KILL_AT": "after:gates_passed"})
    assert killed.code == -signal.SIGKILL, killed.stderr
    git(flux.clone, "fetch", "-q", "origin")
    git(flux.clone, "merge", "-q", "--ff-only", "origin/main")
    git(flux.clone, "checkout", "-q", before, "--", *flux.files)  # main as it was: the old value in both files
    git(flux.clone, "-c", "user.name=r", "-c", "user.email=r@x", "commit", "-q", "-m", "revert the rotation")
    git(flux.clone, "push", "-q", "origin", "HEAD:main")
    again = keyturn("resume", "--no-input")
    assert again.code == 2, again.stderr
    assert "holds another value now, not the new token; the old token stays alive" in again.stderr
    assert not sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]
