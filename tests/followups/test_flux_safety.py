"""flux-sops-secret safety (issue 11, invariants 5 and 6), with the real sops and git binaries.

Never a secret in clear in git: preflight refuses sops rules that would leave the key unencrypted, and a value
readable in a file after `sops set` is never committed. Nothing minted that cannot finish: a branch name git accepts,
cut from the remote's default branch, one per rotation, and a failed push that says the commit is only local.
"""

from __future__ import annotations

import base64
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.config import parse_config
from app.errors import FollowUpError
from app.followups import StepContext
from app.followups.flux_sops import FluxSopsStep
from app.sandbox.flux import FluxRepo, create_flux_repo, sops_binary
from app.secret import SecretValue
from providers.base import Interaction, TokenInfo

CANARY = "canary+flux/value0123456789abcdefghijklmnopqrstuvwxyz~?"  # '+', '/' and padding differ between base64s
DATE = "20261122"
IDENT = ("-c", "user.name=test", "-c", "user.email=test@keyturn.invalid")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *IDENT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def sops(flux: FluxRepo, *args: str) -> str:
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(flux.age_key), "SOPS_DISABLE_VERSION_CHECK": "1"}
    return subprocess.run([sops_binary(), *args], cwd=flux.clone, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def flux(tmp_path: Path) -> FluxRepo:
    return create_flux_repo(tmp_path, "old-token-value")


def make(
    tmp_path: Path, flux: FluxRepo, *, target: str = "keda", rotation: str = "rot-5678", value: str = CANARY, **spec_kw: Any
) -> tuple[FluxSopsStep, StepContext]:
    spec = {
        "kind": "flux-sops-secret", "repo": str(flux.clone), "files": list(flux.files), "key": "personalAccessToken",
        "age_key_file": str(flux.age_key), **spec_kw,
    }
    data = {
        "accounts": {"bot": {"platform": "azure-devops", "organization": "o"}},
        "targets": {target: {"account": "bot", "token_name": "keda", "preset": "keda", "follow_ups": [spec]}},
    }
    config = parse_config(data, tmp_path / "keyturn.toml")
    step = FluxSopsStep("1-flux-sops-secret", config.targets[target].follow_ups[0])  # type: ignore[arg-type]
    token = TokenInfo(f"tok-{rotation}", f"keda-{DATE}-x", datetime.now(UTC) + timedelta(days=90))
    ctx = StepContext(config, rotation, target, config.targets[target], token, SecretValue(value), Interaction(), {"date": DATE})
    return step, ctx


def reencrypt(flux: FluxRepo, rule: str | None, *, push: bool = True) -> None:
    """Every file re-encrypted under a .sops.yaml creation rule with ``rule`` (None: no rule), committed and pushed."""
    (flux.clone / ".sops.yaml").write_text(
        "creation_rules:\n  - path_regex: .*\\.enc\\.yaml$\n" + (f"    {rule}\n" if rule else "") + f"    age: {flux.recipient}\n"
    )
    for rel in flux.files:
        sops(flux, "decrypt", "-i", rel)
        sops(flux, "encrypt", "-i", rel)
    git(flux.clone, "commit", "-qam", f"sops rule: {rule}")
    if push:
        git(flux.clone, "push", "-q", "origin", "HEAD:main")


def set_sops_yaml(flux: FluxRepo, rule: str) -> None:
    """Change .sops.yaml only (the files keep the rule they were encrypted with)."""
    (flux.clone / ".sops.yaml").write_text(f"creation_rules:\n  - path_regex: .*\\.enc\\.yaml$\n    {rule}\n    age: {flux.recipient}\n")
    git(flux.clone, "commit", "-qam", "change .sops.yaml")
    git(flux.clone, "push", "-q", "origin", "HEAD:main")


def keyturn_branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--list", "--format=%(refname:short)", "keyturn/*").split()


def forms(value: str) -> list[bytes]:
    """The value as text, and as each base64 of it and of its base64 (the test's own list, not the step's)."""
    out = []
    for text in (value.encode(), base64.b64encode(value.encode())):
        out += [text, base64.b64encode(text), base64.urlsafe_b64encode(text)]
    return [f.rstrip(b"=") for f in out]


def no_value_anywhere(repo: Path, value: str = CANARY) -> None:
    blobs = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=repo, capture_output=True, check=True).stdout
    assert not any(f in blobs for f in forms(value))


def assert_no_value_in(text: str, value: str = CANARY) -> None:
    assert not any(f.decode() in text for f in forms(value))


# -- (a) preflight: the key is covered by sops' encryption rules -----------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("encrypted_regex: ^password$", "encrypted_regex '^password$', which matches none of 'data', 'personalAccessToken'"),
        ("unencrypted_regex: ^data$", "unencrypted_regex '^data$', which matches 'data'"),
        ("unencrypted_suffix: Token", "unencrypted_suffix 'Token', which ends 'personalAccessToken'"),
        ("encrypted_suffix: _secret", "encrypted_suffix '_secret', which ends none of 'data', 'personalAccessToken'"),
        # no comment above the key: only the trial `sops set` on a copy can tell, and it does
        ("encrypted_comment_regex: sops:enc", "encrypted_comment_regex 'sops:enc'"),
    ],
)
def test_preflight_refuses_rules_that_store_the_key_in_clear(tmp_path: Path, flux: FluxRepo, rule: str, says: str) -> None:
    reencrypt(flux, rule)
    step, ctx = make(tmp_path, flux)
    before = git(flux.clone, "rev-parse", "HEAD")
    with pytest.raises(FollowUpError) as err:
        step.preflight(ctx.config)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"data.personalAccessToken of {flux.files[0]} in clear" in msg and says in msg, msg
    assert "fix creation rule 1 of .sops.yaml too" in msg  # .sops.yaml has the same rule: fix it first
    assert f"sops decrypt -i {flux.files[0]} && sops encrypt -i {flux.files[0]}" in msg
    assert keyturn_branches(flux.clone) == [] and git(flux.clone, "status", "--porcelain") == ""
    assert git(flux.clone, "rev-parse", "HEAD") == before


def test_no_rule_means_sops_default_unencrypted_suffix(tmp_path: Path, flux: FluxRepo) -> None:
    """No rule: every value encrypted, except keys ending with sops' default suffix '_unencrypted'."""
    reencrypt(flux, None)
    step, ctx = make(tmp_path, flux, key="personalAccessToken_unencrypted")
    with pytest.raises(FollowUpError, match=r"has unencrypted_suffix '_unencrypted', which ends 'personalAccessToken_unencrypted'"):
        step.preflight(ctx.config)  # sops writes its default into the metadata
    for rel in flux.files:  # a file whose metadata has no rule at all (hand-edited, or written by another tool)
        path = flux.clone / rel
        path.write_text("".join(line for line in path.read_text().splitlines(True) if "unencrypted_suffix" not in line))
    git(flux.clone, "commit", "-qam", "metadata without a rule")
    git(flux.clone, "push", "-q", "origin", "HEAD:main")
    with pytest.raises(FollowUpError, match=r"no rule, so sops' default unencrypted_suffix '_unencrypted', which ends 'personalAccessToken_unencrypted'"):
        step.preflight(ctx.config)
    step, ctx = make(tmp_path, flux)
    step.preflight(ctx.config)
    result = step.run(ctx)
    no_value_anywhere(flux.clone)
    assert git(flux.clone, "rev-list", "--count", f"main..{result.detail['branch']}") == "1"


def test_the_file_metadata_wins_over_sops_yaml(tmp_path: Path, flux: FluxRepo) -> None:
    """`sops set` encrypts with the file's own metadata (cmd/sops/set.go): a fixed .sops.yaml does not help a file
    encrypted under the old rule, and a .sops.yaml changed for the worse does not hurt one encrypted under a good rule."""
    reencrypt(flux, "encrypted_regex: ^password$")
    set_sops_yaml(flux, "encrypted_regex: ^(data|stringData)$")
    step, ctx = make(tmp_path, flux)
    with pytest.raises(FollowUpError) as err:
        step.preflight(ctx.config)
    assert "creation rule 1 of .sops.yaml would encrypt it, but the file was encrypted under an older rule" in str(err.value)
    assert "sops updatekeys and sops rotate keep a file's old rules" in str(err.value)

    reencrypt(flux, "encrypted_regex: ^(data|stringData)$")
    set_sops_yaml(flux, "encrypted_regex: ^password$")
    step, ctx = make(tmp_path, flux, rotation="rot-9999")
    step.preflight(ctx.config)
    step.run(ctx)
    no_value_anywhere(flux.clone)


def test_a_parent_key_matching_encrypted_regex_covers_the_key(tmp_path: Path, flux: FluxRepo) -> None:
    reencrypt(flux, "encrypted_regex: ^data$")
    step, ctx = make(tmp_path, flux)
    step.preflight(ctx.config)  # 'data' matches, so data.personalAccessToken is encrypted
    step.run(ctx)
    no_value_anywhere(flux.clone)
    step, ctx = make(tmp_path, flux, field="stringData", rotation="rot-9999")
    with pytest.raises(FollowUpError, match=r"stringData\.personalAccessToken .* in clear: .*encrypted_regex '\^data\$'"):
        step.preflight(ctx.config)


def test_the_files_are_checked_as_they_are_where_the_branch_starts(tmp_path: Path, flux: FluxRepo) -> None:
    """The checkout's copy is fine, the remote default branch's is not: `sops set` runs on the latter."""
    reencrypt(flux, "encrypted_regex: ^password$")
    git(flux.clone, "switch", "-q", "-c", "feature")
    reencrypt(flux, "encrypted_regex: ^(data|stringData)$", push=False)
    step, ctx = make(tmp_path, flux)
    with pytest.raises(FollowUpError, match=r"in clear: its sops metadata has encrypted_regex '\^password\$'"):
        step.preflight(ctx.config)
    extra = "apps/keda/new/pipeline-auth.enc.yaml"  # only on the feature branch
    (flux.clone / extra).parent.mkdir(parents=True)
    (flux.clone / extra).write_bytes((flux.clone / flux.files[0]).read_bytes())
    git(flux.clone, "add", extra)
    git(flux.clone, "commit", "-qm", "a new environment")
    step, ctx = make(tmp_path, flux, files=[extra])
    with pytest.raises(FollowUpError, match=rf"{extra} does not exist on origin/main"):
        step.preflight(ctx.config)


def test_mirror_of_should_be_encrypted() -> None:
    from app.followups.flux_sops import sops_leaves_in_clear

    path = ["data", "token"]
    assert sops_leaves_in_clear({"encrypted_regex": "^(data|stringData)$"}, path) == (False, "")
    assert sops_leaves_in_clear({"encrypted_regex": "ata"}, path) == (False, "")  # unanchored, like Go's regexp.Match
    assert sops_leaves_in_clear({"encrypted_regex": "^password$"}, path)[0] is True
    assert sops_leaves_in_clear({"unencrypted_regex": "^tok"}, path)[0] is True
    assert sops_leaves_in_clear({"unencrypted_regex": "^password$"}, path) == (False, "")
    assert sops_leaves_in_clear({"encrypted_suffix": "ken"}, path) == (False, "")
    assert sops_leaves_in_clear({"unencrypted_suffix": "_unencrypted"}, path) == (False, "")
    assert sops_leaves_in_clear({}, ["data", "token_unencrypted"])[0] is True
    assert sops_leaves_in_clear({}, path) == (False, "")
    assert sops_leaves_in_clear({"unencrypted_comment_regex": "x"}, path)[0] is None  # only sops can tell
    assert sops_leaves_in_clear({"encrypted_regex": "^[[:alpha:]]+$"}, path)[0] is None  # Go syntax Python reads otherwise
    assert sops_leaves_in_clear({"encrypted_regex": r"^\pL+$"}, path)[0] is None


def test_metadata_reader() -> None:
    from app.followups.flux_sops import sops_file_rules

    yaml_text = (
        "data:\n    k: ENC[AES256_GCM,data:x]\nsops:\n    age:\n        - recipient: age1x\n          enc: |\n"
        "            -----BEGIN AGE ENCRYPTED FILE-----\n    lastmodified: \"2026-01-01T00:00:00Z\"\n"
        "    unencrypted_regex: '^(data|x): ?'\n    version: 3.11.0\n"
    )
    assert sops_file_rules(yaml_text) == {"unencrypted_regex": "^(data|x): ?"}
    assert sops_file_rules('sops:\n  encrypted_regex: "^(data|stringData)$"\n') == {"encrypted_regex": "^(data|stringData)$"}
    assert sops_file_rules('{"data": {}, "sops": {"encrypted_suffix": "_enc", "version": "3.11.0"}}') == {"encrypted_suffix": "_enc"}
    assert sops_file_rules("data:\n  k: v\n") is None


# -- (b) after sops set, before git add: the value is in the file in no readable form ---------------------------------


@pytest.mark.parametrize("field", ["data", "stringData"])
def test_a_value_readable_after_sops_set_is_never_committed(
    tmp_path: Path, flux: FluxRepo, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    """The rules leave the key in clear and the rule checks are bypassed: the real sops writes the value in clear,
    keyturn finds it, restores the file and commits nothing; its message carries no form of the value."""
    reencrypt(flux, "encrypted_regex: ^password$")
    step, ctx = make(tmp_path, flux, field=field)
    monkeypatch.setattr(step, "_check_encrypted_by_rules", lambda *a, **kw: None, raising=False)
    with pytest.raises(FollowUpError) as err:
        step.run(ctx)
    msg = str(err.value)
    assert f"after sops set, {flux.files[0]} holds {field}.personalAccessToken readable" in msg
    assert "restored" in msg and "committed nothing" in msg and "\n" not in msg
    assert_no_value_in(msg)
    assert git(flux.clone, "status", "--porcelain") == ""
    assert git(flux.clone, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    for branch in keyturn_branches(flux.clone):
        assert git(flux.clone, "rev-list", "--count", f"main..{branch}") == "0"
    no_value_anywhere(flux.clone)
    no_value_anywhere(flux.bare)


def test_every_readable_form_is_looked_for() -> None:
    from app.followups.flux_sops import clear_forms, readable_in

    raw = "a+b/c?~>"  # base64 and URL-safe base64 differ; needs padding
    std = base64.b64encode(raw.encode()).decode()
    forms = clear_forms(raw)
    assert raw in forms and std in forms and std.rstrip("=") in forms
    assert base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=") in forms
    assert base64.b64encode(std.encode()).decode() in forms  # base64 of the stored form of a `data` key
    assert readable_in(b"key: " + base64.urlsafe_b64encode(raw.encode()).rstrip(b"="), raw)
    assert not readable_in(b"key: ENC[AES256_GCM,data:xyz]", raw)


# -- (c) a branch name git accepts, checked before minting -----------------------------------------------------------


@pytest.mark.parametrize("target", ["keda..x", "keda agents", "keda~1", "keda:x"])
def test_a_target_name_that_makes_an_invalid_branch_is_refused_in_preflight(tmp_path: Path, flux: FluxRepo, target: str) -> None:
    step, ctx = make(tmp_path, flux)
    ctx.config.targets[target] = ctx.config.targets.pop("keda")  # renamed after parsing: whatever the config accepts
    with pytest.raises(FollowUpError, match=r"makes the branch name .* which git refuses .*rename the target"):
        step.preflight(ctx.config)
    assert keyturn_branches(flux.clone) == []


def test_branch_name_has_the_target_the_date_and_the_rotation(tmp_path: Path, flux: FluxRepo) -> None:
    step, ctx = make(tmp_path, flux, rotation="0b1c2d3e-aaaa-bbbb-cccc-1234567890ab")
    step.preflight(ctx.config)
    assert step.run(ctx).detail["branch"] == f"keyturn/rotate-keda-{DATE}-0b1c2d3e"


# -- (d) the branch starts from the remote's default branch ----------------------------------------------------------


def test_branch_is_cut_from_the_remote_default_branch_not_the_checkout(tmp_path: Path, flux: FluxRepo) -> None:
    git(flux.clone, "switch", "-q", "-c", "feature")
    (flux.clone / "unrelated.txt").write_text("work in progress\n")
    git(flux.clone, "add", "unrelated.txt")
    git(flux.clone, "commit", "-qm", "unrelated work")
    unrelated = git(flux.clone, "rev-parse", "HEAD")
    step, ctx = make(tmp_path, flux, push=True)
    step.preflight(ctx.config)
    result = step.run(ctx)
    branch = result.detail["branch"]
    assert git(flux.clone, "rev-parse", f"{branch}^") == git(flux.clone, "rev-parse", "origin/main")
    assert subprocess.run(["git", "merge-base", "--is-ancestor", unrelated, branch], cwd=flux.clone).returncode == 1
    assert git(flux.clone, "rev-parse", "--abbrev-ref", "HEAD") == "feature"  # back where the engineer was
    assert git(flux.clone, "rev-parse", "HEAD") == unrelated
    assert git(flux.clone, "config", "--get", f"branch.{branch}.merge") == f"refs/heads/{branch}"  # tracks its own push


def test_branch_starts_from_the_freshly_fetched_remote(tmp_path: Path, flux: FluxRepo) -> None:
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(flux.bare), str(other)], check=True, capture_output=True)
    (other / "NEWS.md").write_text("someone else's change\n")
    git(other, "add", "NEWS.md")
    git(other, "commit", "-qm", "someone else's change")
    git(other, "push", "-q", "origin", "HEAD:main")
    theirs = git(other, "rev-parse", "HEAD")
    step, ctx = make(tmp_path, flux)  # no push: a remote is there, so it is fetched all the same
    step.preflight(ctx.config)
    result = step.run(ctx)
    assert git(flux.clone, "rev-parse", f"{result.detail['branch']}^") == theirs
    assert git(flux.clone, "rev-parse", "main") != theirs  # the local main was not touched


def test_without_the_remote_the_local_default_branch_is_the_base(tmp_path: Path, flux: FluxRepo) -> None:
    git(flux.clone, "remote", "remove", "origin")
    step, ctx = make(tmp_path, flux, push=True)
    with pytest.raises(FollowUpError, match=r"has no remote 'origin' to push to"):
        step.preflight(ctx.config)
    git(flux.clone, "switch", "-q", "-c", "feature")
    git(flux.clone, "commit", "-q", "--allow-empty", "-m", "unrelated")
    step, ctx = make(tmp_path, flux)
    step.preflight(ctx.config)
    result = step.run(ctx)
    assert git(flux.clone, "rev-parse", f"{result.detail['branch']}^") == git(flux.clone, "rev-parse", "main")
    assert git(flux.clone, "rev-parse", "--abbrev-ref", "HEAD") == "feature"


def test_without_remote_or_default_branch_preflight_refuses(tmp_path: Path, flux: FluxRepo) -> None:
    git(flux.clone, "remote", "remove", "origin")
    git(flux.clone, "branch", "-q", "-m", "main", "trunk")
    step, ctx = make(tmp_path, flux)
    with pytest.raises(FollowUpError, match=r"cannot tell the default branch .* no remote 'origin' and no main or master"):
        step.preflight(ctx.config)


def test_a_detached_head_is_restored(tmp_path: Path, flux: FluxRepo) -> None:
    head = git(flux.clone, "rev-parse", "HEAD")
    git(flux.clone, "switch", "-q", "--detach", head)
    step, ctx = make(tmp_path, flux)
    step.run(ctx)
    assert git(flux.clone, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD" and git(flux.clone, "rev-parse", "HEAD") == head


def test_resume_after_a_crash_on_our_branch_goes_back_to_the_feature_branch(tmp_path: Path, flux: FluxRepo) -> None:
    git(flux.clone, "switch", "-q", "-c", "feature")
    step, ctx = make(tmp_path, flux)
    first = step.run(ctx)
    git(flux.clone, "switch", "-q", first.detail["branch"])  # as a crash right after the commit leaves it
    again = step.run(ctx)
    assert again.detail == first.detail
    assert git(flux.clone, "rev-parse", "--abbrev-ref", "HEAD") == "feature"


# -- (e) one branch per rotation ----------------------------------------------------------------------------------


def test_two_rotations_on_the_same_day_get_two_branches(tmp_path: Path, flux: FluxRepo) -> None:
    step1, ctx1 = make(tmp_path, flux, rotation="aaaa1111-0000", push=True)
    step2, ctx2 = make(tmp_path, flux, rotation="bbbb2222-0000", push=True, value=CANARY + "-second")
    one, two = step1.run(ctx1), step2.run(ctx2)
    assert one.detail["branch"] != two.detail["branch"]
    assert sorted(keyturn_branches(flux.bare)) == sorted([one.detail["branch"], two.detail["branch"]])
    for result in (one, two):
        assert git(flux.clone, "rev-list", "--count", f"main..{result.detail['branch']}") == "1"
    assert git(flux.clone, "rev-parse", f"{two.detail['commit']}^") == git(flux.clone, "rev-parse", "main")  # not on top of the first
    assert step1.find_done(ctx1) == one and step2.find_done(ctx2) == two


def test_a_branch_of_our_name_with_foreign_commits_is_never_committed_onto(tmp_path: Path, flux: FluxRepo) -> None:
    step, ctx = make(tmp_path, flux)
    branch = step._branch(ctx)
    git(flux.clone, "switch", "-q", "-c", branch)
    git(flux.clone, "commit", "-q", "--allow-empty", "-m", "someone's commit")
    foreign = git(flux.clone, "rev-parse", "HEAD")
    git(flux.clone, "switch", "-q", "main")
    with pytest.raises(FollowUpError, match=rf"the branch {branch} already exists with commits that are not on origin/main"):
        step.run(ctx)
    assert git(flux.clone, "rev-parse", branch) == foreign
    assert git(flux.clone, "rev-parse", "--abbrev-ref", "HEAD") == "main"


# -- a failed push says the commit is only local ---------------------------------------------------------------------


def test_a_rejected_push_says_the_commit_is_only_local(tmp_path: Path, flux: FluxRepo) -> None:
    hook = flux.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch creation is not allowed here' >&2\nexit 1\n")
    hook.chmod(0o755)
    step, ctx = make(tmp_path, flux, push=True)
    step.preflight(ctx.config)
    with pytest.raises(FollowUpError) as err:
        step.run(ctx)
    msg = str(err.value)
    branch = step._branch(ctx)
    sha = git(flux.clone, "rev-parse", branch)
    assert f"the push of branch {branch} to origin was rejected" in msg, msg
    assert f"commit {sha[:10]} is only local, on branch {branch} of {flux.clone}, and nothing reached origin" in msg
    assert "stored" not in msg and "\n" not in msg
    assert_no_value_in(msg)
    assert step.find_done(ctx) is None  # not done: a resume pushes that commit
    hook.unlink()
    result = step.run(ctx)
    assert result.detail["commit"] == sha and result.detail["pushed"] is True
    assert git(flux.bare, "rev-parse", branch) == sha
