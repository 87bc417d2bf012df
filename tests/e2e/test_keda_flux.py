"""Issue 4's acceptance path: a headless KEDA rotation updates the Flux secret in both environments."""

from __future__ import annotations

import base64
import os
import subprocess

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


def check_outcome(sandbox: Sandbox) -> None:
    flux = sandbox.flux
    assert flux is not None
    (new,) = live_keda(sandbox)
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


def test_headless_keda_rotation_updates_both_environments(sandbox: Sandbox, keyturn) -> None:
    old = sandbox.state.pats_named("keda-agent-pools")[0]
    run = keyturn("rotate", "keda", "--no-input", "--json")
    assert run.code == 0, run.stderr
    git(sandbox.flux.clone, "fetch", "-q", "origin")  # type: ignore[union-attr]
    check_outcome(sandbox)
    assert sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]
    (flux,) = [v for k, v in run.json()["steps"].items() if k.startswith("flux-sops-secret-")]
    assert "pushed to origin" in flux


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
