"""Bad server answers and bad input: one line on stderr, a non-zero exit, nothing half-done."""

from __future__ import annotations

import re

import pytest

from app.sandbox import Sandbox

# not about the waiting: the consumers follow at once, so each rotation passes its gates in one run
pytestmark = pytest.mark.usefixtures("prompt_consumers")


def live(sandbox: Sandbox, prefix: str = "daily-checks") -> list:
    return [p for p in sandbox.state.pats() if p.display_name.startswith(prefix) and not p.revoked]


def one_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("keyturn: error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    return errors[0]


def edit_config(sandbox: Sandbox, old: str, new: str) -> None:
    text = sandbox.config_path.read_text()
    assert old in text
    sandbox.config_path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("policy", "target_edit", "expect"),
    [
        ({"block_full_scope": True}, ('preset = "daily-checks"', 'scopes = ["app_token"]'), "full"),
        ({"block_global": True}, ('token_name = "daily-checks"', 'token_name = "daily-checks"\nall_orgs = true'), "all-organizations"),
        ({"disable_pat_creation": True}, None, "creation"),
    ],
    ids=["full-scope-blocked", "global-blocked", "creation-disabled"],
)
def test_policy_violations(sandbox: Sandbox, keyturn, policy: dict, target_edit: tuple | None, expect: str) -> None:
    sandbox.state.set_policy(**policy)
    if target_edit:
        edit_config(sandbox, *target_edit)
    before = live(sandbox)
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert run.code != 0
    assert expect in one_line(run.stderr).lower()
    assert live(sandbox) == before  # nothing minted, old token alive


def test_max_lifespan_clamps_and_says_so(sandbox: Sandbox, keyturn) -> None:
    sandbox.state.set_policy(max_lifespan_days=30)
    run = keyturn("rotate", "daily-checks", "--no-input", "--json")
    assert run.code == 0, run.stderr
    assert any("maximum" in n.lower() for n in run.json()["notes"])
    (new,) = live(sandbox)
    assert (new.valid_to - new.valid_from).days <= 30


@pytest.mark.parametrize("fault", ["500-after-create", "reset-after-create", "500-before-create"])
def test_ambiguous_create_reconciles(sandbox: Sandbox, keyturn, fault: str) -> None:
    sandbox.state.inject_fault("pats.create", fault)
    run = keyturn("rotate", "daily-checks", "--no-input", "--json")
    assert run.code == 0, run.stderr
    assert "reconcil" in run.stderr
    (new,) = live(sandbox)  # exactly one live token: any orphan was revoked
    assert new.authorization_id == run.json()["token"]["id"]
    named = sandbox.state.pats_named(new.display_name)
    assert len(named) == (2 if fault != "500-before-create" else 1)


def test_key_vault_write_forbidden_rolls_back(sandbox: Sandbox, keyturn) -> None:
    sandbox.state.deny("cftptl-intsvc", "set")
    versions = len(sandbox.state.secret_versions("cftptl-intsvc", "azure-devops-token"))
    old = live(sandbox)
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert run.code == 2
    line = one_line(run.stderr)
    assert "403" in line and "new token was revoked" in line and "old token is untouched" in line
    assert live(sandbox) == old
    assert len(sandbox.state.secret_versions("cftptl-intsvc", "azure-devops-token")) == versions


def test_key_vault_read_forbidden_stops_before_minting(sandbox: Sandbox, keyturn) -> None:
    sandbox.state.deny("cftptl-intsvc", "list")
    count = len(sandbox.state.pats())
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert run.code == 2
    assert "Key Vault cftptl-intsvc" in one_line(run.stderr)
    assert len(sandbox.state.pats()) == count


def test_unknown_target(keyturn) -> None:
    run = keyturn("rotate", "nope", "--no-input")
    assert run.code == 2
    assert re.search(r"no target 'nope'.*known targets: keda, daily-checks", one_line(run.stderr))


def test_unknown_scope_refused_before_sign_in(sandbox: Sandbox, keyturn) -> None:
    edit_config(sandbox, 'preset = "daily-checks"', 'scopes = ["vso.agentpool"]')
    count = len(sandbox.state.pats())
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert "unknown Azure DevOps scope 'vso.agentpool'" in one_line(run.stderr)
    assert len(sandbox.state.pats()) == count


def test_unknown_preset(sandbox: Sandbox, keyturn) -> None:
    edit_config(sandbox, 'preset = "daily-checks"', 'preset = "daily"')
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert "unknown preset 'daily'" in one_line(run.stderr)


def test_vault_client_secret_wrong(sandbox: Sandbox, keyturn) -> None:
    (sandbox.config_path.parent / "sandbox-sp.secret").write_text("wrong-secret\n")
    count = len(sandbox.state.pats())
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert run.code == 2
    assert "sign-in for the vault failed" in one_line(run.stderr)
    assert len(sandbox.state.pats()) == count


def test_missing_ca_bundle(sandbox: Sandbox, keyturn) -> None:
    (sandbox.config_path.parent / "ca.pem").unlink()
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert run.code != 0
    assert "ca" in one_line(run.stderr).lower()


def test_prompt_reference_refused_without_input(sandbox: Sandbox, keyturn) -> None:
    edit_config(sandbox, 'sign_in = "device-code"', 'sign_in = "password"')
    edit_config(sandbox, 'password = "vault:rpe-prod/rpe-azure-devops-password"', 'password = "prompt"')
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert "input is off (--no-input)" in one_line(run.stderr)


def test_env_reference_unset(sandbox: Sandbox, keyturn) -> None:
    edit_config(sandbox, 'sign_in = "device-code"', 'sign_in = "password"')
    edit_config(sandbox, 'password = "vault:rpe-prod/rpe-azure-devops-password"', 'password = "env:BOT_PASSWORD"')
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert "environment variable BOT_PASSWORD is not set" in one_line(run.stderr)


def test_password_flow_warns_and_works(sandbox: Sandbox, keyturn) -> None:
    edit_config(sandbox, 'sign_in = "device-code"', 'sign_in = "password"')
    run = keyturn("rotate", "daily-checks", "--no-input", "--json")
    assert run.code == 0, run.stderr
    assert "deprecated" in run.stderr and "MFA" in run.stderr
    assert sandbox.state.bot_password not in run.stderr + run.stdout


def test_bad_config_file(sandbox: Sandbox, keyturn) -> None:
    sandbox.config_path.write_text(sandbox.config_path.read_text() + "\n[targets.broken]\naccount = 'nobody'\n")
    run = keyturn("status")
    assert run.code == 2
    assert "targets.broken" in one_line(run.stderr)
