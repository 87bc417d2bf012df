"""Issue 6, headless: the sandbox's `jenkins` target rotates through the real CLI against the emulator.

The bot's current API token lives in Key Vault; the rotation signs in with it, mints the new one, stores it in
the same secret, verifies it on a fresh client, revokes the old uuid and proves the old value gets 401.

Since the consumer gate (issue 13, tests/e2e/test_jenkins_gate.py) the revoke waits until a job has used the new
token; these tests are about the rest of the rotation, so they revoke with ``--revoke-now`` (journaled as an
override of the gate) once they have seen it wait.
"""

from __future__ import annotations

import signal
import tomllib
from datetime import UTC, datetime

import pytest

from app.sandbox import Sandbox
from app.sandbox.jenkins import (
    EXPIRY_SINCE,
    NEW_VERSION,
    OLD_VERSION,
    SEED_TOKEN_UUID,
    _day,
    expires_on,
    security_page_html,
    version_tuple,
)

KV = ("cftptl-intsvc", "jenkins-api-token")


def stored(sandbox: Sandbox) -> str:
    return sandbox.state.secret_versions(*KV)[-1].value


def live_tokens(sandbox: Sandbox) -> list:
    seeded = sandbox.jenkins.seeded
    assert seeded is not None
    return [t for t in sandbox.jenkins.tokens(seeded.user) if sandbox.jenkins.token_status(t.value) == "active"]


def page(sandbox: Sandbox) -> str:
    """The bot's security page as the emulated release renders it (en-US)."""
    seeded = sandbox.jenkins.seeded
    assert seeded is not None
    return security_page_html(live_tokens(sandbox), user=seeded.user, now=sandbox.jenkins.clock(),
                              version=sandbox.jenkins.version)


def config_uuid(sandbox: Sandbox) -> str | None:
    return tomllib.loads(sandbox.config_path.read_text())["targets"]["jenkins"].get("token_uuid")


@pytest.mark.parametrize("version", [NEW_VERSION, "2.579", "2.504", OLD_VERSION])
def test_rotation_new_token_works_old_gets_401(sandbox: Sandbox, keyturn, version: str) -> None:
    """Against each release's real markup (rows up to 2.504, cards from 2.505) and answers: the old token is found
    on the page, revoked, and from 2.548 the locale expiry of the generateNewToken answer is what keyturn records."""
    sandbox.jenkins.version = version
    seeded = sandbox.jenkins.seeded
    assert seeded is not None
    old_value = stored(sandbox)
    assert old_value == seeded.token_value and config_uuid(sandbox) == SEED_TOKEN_UUID
    waited = keyturn("rotate", "jenkins", "--no-input", "--json")
    assert waited.code == 0, waited.stderr
    assert waited.json()["state"] == "propagated"  # the revoke waits for a job to use the new token
    assert waited.json()["retire"]["waiting_for"] == ["the new token not used yet by any job"]
    assert sandbox.jenkins.token_status(old_value) == "active"
    run = keyturn("resume", "--no-input", "--json", "--revoke-now")
    assert run.code == 0, run.stderr
    result = run.json()["resumed"][0]
    assert result["state"] == "done"
    new_value = stored(sandbox)
    assert new_value != old_value
    assert sandbox.jenkins.token_status(new_value) == "active"
    assert sandbox.jenkins.token_status(old_value) == "revoked"
    (new,) = live_tokens(sandbox)
    assert new.value == new_value
    if version_tuple(version) >= EXPIRY_SINCE:
        # validity_days = 90 became expirationDuration=90: Jenkins' expirationDate is today + 90 days, a calendar day
        # the token works through (HashedToken.isExpired), answered in en-US short style ("3/2/27")
        assert new.expires_at is not None
        last_day = expires_on(new)
        assert last_day is not None and (last_day - _day(new.created_at)).days == 90
        recorded = waited.json()["token"]["expires_at"]  # the journal keeps it: status and Key Vault exp read it
        assert recorded == datetime(last_day.year, last_day.month, last_day.day, tzinfo=UTC).isoformat()
        assert f"Expires on {last_day.month}/{last_day.day}/{last_day.year % 100:02d}" in page(sandbox)
    else:
        assert new.expires_at is None
        assert waited.stderr.count("never expires") == 1  # said once, before minting, not hidden
        assert "no expiry" in keyturn("rotate", "jenkins", "--no-input", "--dry-run").stdout  # the plan promises none
    # the config now names the current token's uuid (comments and the rest of the file untouched)
    assert config_uuid(sandbox) == new.uuid
    assert "# Jenkins" in sandbox.config_path.read_text()
    said = run.stdout + run.stderr + waited.stdout + waited.stderr
    assert new_value not in said and old_value not in said
    assert new_value not in sandbox.config_path.read_text()


def test_second_rotation_retires_the_first_rotations_token(sandbox: Sandbox, keyturn) -> None:
    assert keyturn("rotate", "jenkins", "--no-input", "--revoke-now").code == 0
    first = stored(sandbox)
    run = keyturn("rotate", "jenkins", "--no-input", "--json", "--revoke-now")
    assert run.code == 0, run.stderr
    second = stored(sandbox)
    assert sandbox.jenkins.token_status(first) == "revoked"
    assert sandbox.jenkins.token_status(second) == "active"
    assert [t.value for t in live_tokens(sandbox)] == [second]


@pytest.mark.parametrize("version", [NEW_VERSION, "2.579", "2.539", "2.505", "2.504", OLD_VERSION])
def test_first_rotation_of_a_hand_made_token_finds_it_by_name(sandbox: Sandbox, keyturn, version: str) -> None:
    """No token_uuid in the config: the user's security page, in each release's real markup, lists the token named
    like the target (a parser that read only the 2.504 rows found nothing on a 2.505+ page and revoked nothing)."""
    sandbox.jenkins.version = version
    text = sandbox.config_path.read_text().replace(f'token_uuid = "{SEED_TOKEN_UUID}"\n', "")
    sandbox.config_path.write_text(text)
    assert config_uuid(sandbox) is None
    seeded = sandbox.jenkins.seeded
    assert seeded is not None
    other = sandbox.jenkins.add_token(seeded.user, "someone else's script")
    dry = keyturn("rotate", "jenkins", "--no-input", "--dry-run")
    assert dry.code == 0 and SEED_TOKEN_UUID in dry.stdout  # the plan names the token it will revoke
    assert f"for controller jenkins, user {seeded.user}," in dry.stdout  # the account's label, not "organization"
    run = keyturn("rotate", "jenkins", "--no-input", "--json", "--revoke-now")
    assert run.code == 0, run.stderr
    assert sandbox.jenkins.token_status(seeded.token_value) == "revoked"
    assert sandbox.jenkins.token_status(other.value) == "active"  # only the target's token
    assert config_uuid(sandbox) == next(t.uuid for t in live_tokens(sandbox) if t.value == stored(sandbox))


def test_unreadable_page_and_no_uuid_then_revoke_all_other_tokens(sandbox: Sandbox, keyturn) -> None:
    sandbox.jenkins.security_page = False
    text = sandbox.config_path.read_text().replace(f'token_uuid = "{SEED_TOKEN_UUID}"\n', "")
    sandbox.config_path.write_text(text)
    seeded = sandbox.jenkins.seeded
    assert seeded is not None
    other = sandbox.jenkins.add_token(seeded.user, "old laptop")
    dry = keyturn("rotate", "jenkins", "--no-input", "--dry-run")
    assert dry.code == 0
    assert "script console" in dry.stderr and "--revoke-all-other-tokens" in dry.stderr
    assert "nothing to revoke" in dry.stdout
    first = keyturn("rotate", "jenkins", "--no-input", "--json", "--revoke-all-other-tokens")
    assert first.code == 0, first.stderr
    assert f"EVERY other API token of {seeded.user}" in first.stderr  # named before it happens
    assert first.json()["state"] == "propagated"  # no page, no use counts: the gate says so and does not pass
    assert "could not be read" in first.json()["retire"]["gates"][0]["waiting_for"]
    assert sandbox.jenkins.token_status(other.value) == "active"
    run = keyturn("resume", "--no-input", "--json", "--revoke-now")
    assert run.code == 0, run.stderr
    assert sandbox.jenkins.token_status(seeded.token_value) == "revoked"
    assert sandbox.jenkins.token_status(other.value) == "revoked"
    assert [t.value for t in live_tokens(sandbox)] == [stored(sandbox)]
    assert sandbox.jenkins.token_status(seeded.admin_token) == "active"  # other users untouched


def test_interrupted_mint_without_a_list_stops_and_asks(sandbox: Sandbox, keyturn) -> None:
    """Killed after Jenkins made the token, with no readable security page: keyturn cannot find the orphan, so it
    stops and asks instead of minting a second token; once the engineer has revoked it, resume finishes."""
    sandbox.jenkins.security_page = False
    seeded = sandbox.jenkins.seeded
    assert seeded is not None
    crashed = keyturn("rotate", "jenkins", "--no-input", env={"KEYTURN_TEST_KILL_AT": "before:minted"})
    assert crashed.code == -signal.SIGKILL
    (orphan,) = [t for t in live_tokens(sandbox) if t.uuid != SEED_TOKEN_UUID]
    asked = keyturn("resume", "--no-input")
    assert asked.code != 0
    (line,) = [x for x in asked.stderr.splitlines() if x.startswith("keyturn: error:")]
    assert orphan.name in line and "--orphan-checked" in line
    assert len(live_tokens(sandbox)) == 2  # nothing minted meanwhile
    sandbox.jenkins.revoke(orphan.uuid)  # what the engineer does on the security page
    resumed = keyturn("resume", "--no-input", "--json", "--orphan-checked", "--revoke-now")
    assert resumed.code == 0, resumed.stderr
    (live,) = live_tokens(sandbox)
    assert live.value == stored(sandbox) and sandbox.jenkins.token_status(seeded.token_value) == "revoked"


def test_status_knows_the_expiry_the_security_page_does_not_show(sandbox: Sandbox, keyturn) -> None:
    assert keyturn("rotate", "jenkins", "--no-input", "--revoke-now").code == 0
    run = keyturn("status", "--json")
    row = next(r for r in run.json()["targets"] if r["target"] == "jenkins")
    assert row["state"] == "ok" and 88 <= row["days_left"] <= 90  # validity_days = 90, from the mint's answer
