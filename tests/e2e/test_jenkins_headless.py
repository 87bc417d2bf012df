"""Issue 6 (in progress), headless: a Jenkins user API token rotates through the engine against the emulator."""

from __future__ import annotations

from app.sandbox import Sandbox


def add_jenkins(sandbox: Sandbox) -> str:
    """The current token lives in Key Vault; the rotation reads it there and writes the new one back."""
    seeded = sandbox.jenkins.seeded
    assert seeded is not None
    sandbox.state.set_secret("cftptl-intsvc", "jenkins-api-token", seeded.token_value)
    block = sandbox.jenkins.config_toml(sandbox.urls["jenkins"], api_token_ref="vault:cftptl-intsvc/jenkins-api-token")
    block += '\n[[targets.jenkins.follow_ups]]\nkind = "keyvault-secret-version"\nvault = "cftptl-intsvc"\nsecret = "jenkins-api-token"\n'
    sandbox.config_path.write_text(sandbox.config_path.read_text() + "\n" + block)
    return seeded.token_value


def test_jenkins_rotation_new_token_works_old_gets_401(sandbox: Sandbox, keyturn) -> None:
    old_value = add_jenkins(sandbox)
    run = keyturn("rotate", "jenkins", "--no-input", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["state"] == "done"
    new_value = sandbox.state.secret_versions("cftptl-intsvc", "jenkins-api-token")[-1].value
    assert new_value != old_value
    assert sandbox.jenkins.token_status(new_value) == "active"
    assert sandbox.jenkins.token_status(old_value) == "revoked"
    assert new_value not in run.stdout + run.stderr and old_value not in run.stdout + run.stderr


def test_second_rotation_retires_the_first_rotations_token(sandbox: Sandbox, keyturn) -> None:
    """No API lists Jenkins tokens: the second rotation finds the token to retire in the journal."""
    add_jenkins(sandbox)
    assert keyturn("rotate", "jenkins", "--no-input").code == 0
    first = sandbox.state.secret_versions("cftptl-intsvc", "jenkins-api-token")[-1].value
    run = keyturn("rotate", "jenkins", "--no-input", "--json")
    assert run.code == 0, run.stderr
    second = sandbox.state.secret_versions("cftptl-intsvc", "jenkins-api-token")[-1].value
    assert sandbox.jenkins.token_status(first) == "revoked"
    assert sandbox.jenkins.token_status(second) == "active"
