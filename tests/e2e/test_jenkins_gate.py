"""Issue 13, item 4: the Jenkins consumer gate, headless, through the real CLI against the sandbox's Jenkins.

The revoke of the old token waits until the user's security page shows the new token used by a job (here:
``JenkinsWorld.consumer_call``, a deploy job calling Jenkins with the value it read from Key Vault) and the old one
not used since the store. keyturn's own page reads are counted by Jenkins like any request; they must count as
nobody's use: with a password in the account keyturn reads through a session Jenkins does not count (exact in every
run), with only the token it subtracts what it sent itself, which only the run that took the baseline knows.
"""

from __future__ import annotations

import json
import os
import tomllib

import pytest

from app.sandbox import Sandbox
from app.sandbox.jenkins import NEW_VERSION, OLD_VERSION, SEED_TOKEN_UUID

KV = ("cftptl-intsvc", "jenkins-api-token")


def stored(sandbox: Sandbox) -> str:
    return sandbox.state.secret_versions(*KV)[-1].value


def with_password(sandbox: Sandbox) -> None:
    """accounts.jenkins.password: the sandbox's own config names the bot's password (a 0600 file beside it)."""
    password = tomllib.loads(sandbox.config_path.read_text())["accounts"]["jenkins"]["password"]
    assert password == "file:sandbox-jenkins.password"
    assert os.stat(sandbox.config_path.parent / "sandbox-jenkins.password").st_mode & 0o077 == 0


def without_password(sandbox: Sandbox) -> None:
    """A token-only account: keyturn signs in with the API token the store holds."""
    text = sandbox.config_path.read_text()
    line = 'password = "file:sandbox-jenkins.password"\n'
    assert text.count(line) == 1
    sandbox.config_path.write_text(text.replace(line, ""))


def journal(sandbox: Sandbox, rotation_id: str) -> tuple[list[dict], str]:
    (path,) = (sandbox.config_path.parent / "journal").rglob(f"{rotation_id}.jsonl")
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()], text


def resumed(run) -> dict:
    """The one rotation a `keyturn resume --json` resumed."""
    assert run.code == 0, run.stderr
    (one,) = run.json()["resumed"]
    return one


def gate(result: dict) -> dict:
    (found,) = [g for g in result["retire"]["gates"] if g["gate"] == "jenkins-token-use"]
    return found


def assert_no_value(sandbox: Sandbox, text: str, *values: str) -> None:
    for v in values:
        assert v not in text


@pytest.mark.parametrize("version", [NEW_VERSION, OLD_VERSION])
def test_revoke_waits_for_a_job_then_resume_revokes(sandbox: Sandbox, keyturn, version: str) -> None:
    sandbox.jenkins.version = version  # cards (2.548) and rows (2.479.3): both pages give the counts
    with_password(sandbox)
    seeded = sandbox.jenkins.seeded
    assert seeded is not None
    old_value = stored(sandbox)
    run = keyturn("rotate", "jenkins", "--no-input", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["state"] == "propagated"
    g = gate(result)
    assert g["passed"] is False and g["waiting_for"] == "the new token not used yet by any job"
    assert "the new token not used yet by any job" in result["retire"]["waiting_for"]
    assert result["retire"]["resume"].startswith("keyturn resume ")
    new_value = stored(sandbox)
    assert new_value != old_value
    assert sandbox.jenkins.token_status(old_value) == "active"  # the old token still works
    # nothing a job did: keyturn's session reads are not uses, so a resume still waits
    again = keyturn("resume", "--no-input", "--json")
    assert resumed(again)["state"] == "propagated"
    assert gate(resumed(again))["waiting_for"] == "the new token not used yet by any job"
    # the deploy job runs with what Key Vault now holds
    assert sandbox.jenkins.consumer_call(new_value) is True
    done = keyturn("resume", "--no-input", "--json")
    assert resumed(done)["state"] == "done"
    assert sandbox.jenkins.token_status(old_value) == "revoked"
    assert sandbox.jenkins.token_status(new_value) == "active"
    events, text = journal(sandbox, result["rotation_id"])
    assert events[-1]["event"] == "done"
    waits = [e for e in events if e["event"] == "retire_waiting"]
    assert waits and "the new token not used yet by any job" in waits[0]["waiting_for"]
    verified = next(e for e in events if e["event"] == "verified")
    baseline = verified["gate_baseline"]
    assert baseline["reader"] == "password session" and baseline["markup"] == ("cards" if version == NEW_VERSION else "rows")
    assert SEED_TOKEN_UUID in baseline["old"]
    # the canary: no value anywhere keyturn wrote
    everything = run.stdout + run.stderr + again.stdout + again.stderr + done.stdout + done.stderr + text
    assert_no_value(sandbox, everything, old_value, new_value, seeded.password)


def test_an_old_token_use_after_the_store_keeps_it_waiting(sandbox: Sandbox, keyturn) -> None:
    with_password(sandbox)
    old_value = stored(sandbox)
    run = keyturn("rotate", "jenkins", "--no-input", "--json")
    assert run.code == 0, run.stderr
    new_value = stored(sandbox)
    assert sandbox.jenkins.consumer_call(new_value) is True  # one job has the new token...
    assert sandbox.jenkins.consumer_call(old_value) is True  # ...another still calls with the old one
    assert sandbox.jenkins.consumer_call(old_value) is True
    waiting = keyturn("resume", "--no-input", "--json")
    result = resumed(waiting)
    assert result["state"] == "propagated"
    g = gate(result)
    assert g["passed"] is False and g["waiting_for"] == "the old token used 2 times since the new one was stored"
    assert "used by jobs once" in g["progress"]
    assert sandbox.jenkins.token_status(old_value) == "active"
    assert "old token used 2 times" in waiting.stderr  # the one 'waiting:' line says it too
    assert_no_value(sandbox, waiting.stdout + waiting.stderr + run.stdout + run.stderr, old_value, new_value)


def test_token_only_account_cannot_prove_a_job_in_a_later_run(sandbox: Sandbox, keyturn) -> None:
    """Without a password keyturn reads the page with the new token (never the old one): the run that took the
    baseline knows its own reads, a later run does not, and says so instead of counting its own reads as a job."""
    without_password(sandbox)
    old_value = stored(sandbox)
    run = keyturn("rotate", "jenkins", "--no-input", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["state"] == "propagated"
    assert gate(result)["waiting_for"] == "the new token not used yet by any job"  # this run knows its own reads
    new_value = stored(sandbox)
    new = next(t for t in sandbox.jenkins.tokens() if t.value == new_value)
    old_uses = sandbox.jenkins.uses(SEED_TOKEN_UUID)  # keyturn's sign-in and listing before the store
    assert sandbox.jenkins.uses(new.uuid) == 3  # verify, the baseline read, the gate's read: all with the new token
    for _ in range(2):  # a resume without any job run must not take its predecessor's read for a job's
        later = resumed(keyturn("resume", "--no-input", "--json"))
        assert later["state"] == "propagated"
        assert "cannot tell a job's use of the new token from its own page reads" in gate(later)["waiting_for"]
        assert "accounts.jenkins.password" in gate(later)["waiting_for"]
    assert sandbox.jenkins.uses(SEED_TOKEN_UUID) == old_uses  # keyturn never used the old token after the store
    assert sandbox.jenkins.uses(new.uuid) == 5  # each resume read the page once, with the new token
    assert sandbox.jenkins.consumer_call(old_value) is True
    used = keyturn("resume", "--no-input", "--json")
    assert "the old token used once since the new one was stored" in gate(resumed(used))["waiting_for"]
    assert sandbox.jenkins.token_status(old_value) == "active"
    plan = keyturn("rotate", "jenkins", "--no-input", "--dry-run")
    assert_no_value(sandbox, run.stdout + run.stderr + used.stdout + used.stderr + plan.stdout + plan.stderr, old_value, new_value)


def test_soak_time_lets_the_revoke_go_ahead_without_proof(sandbox: Sandbox, keyturn) -> None:
    import time

    without_password(sandbox)
    marker = 'description = "The API token the deploy jobs call Jenkins with"\n'
    text = sandbox.config_path.read_text()
    assert text.count(marker) == 1
    sandbox.config_path.write_text(text.replace(marker, marker + 'revoke_after = "2s"\n'))
    assert tomllib.loads(sandbox.config_path.read_text())["targets"]["jenkins"]["revoke_after"] == "2s"
    old_value = stored(sandbox)
    run = keyturn("rotate", "jenkins", "--no-input", "--json")
    assert run.code == 0, run.stderr
    assert run.json()["state"] == "propagated"
    time.sleep(2.5)
    done = keyturn("resume", "--no-input", "--json")
    assert resumed(done)["state"] == "done"
    assert sandbox.jenkins.token_status(old_value) == "revoked"


def test_statistics_off_says_so_and_does_not_pass(sandbox: Sandbox, keyturn) -> None:
    sandbox.jenkins.usage_statistics = False
    with_password(sandbox)
    run = keyturn("rotate", "jenkins", "--no-input", "--json")
    assert run.code == 0, run.stderr
    g = gate(run.json())
    assert g["passed"] is False and "usage statistics are off" in g["waiting_for"]
    assert sandbox.jenkins.consumer_call(stored(sandbox)) is True
    assert resumed(keyturn("resume", "--no-input", "--json"))["state"] == "propagated"


def test_unreadable_page_says_so_and_does_not_pass(sandbox: Sandbox, keyturn) -> None:
    with_password(sandbox)
    run = keyturn("rotate", "jenkins", "--no-input", "--json")
    assert run.code == 0, run.stderr
    sandbox.jenkins.security_page = False
    assert sandbox.jenkins.consumer_call(stored(sandbox)) is True
    again = resumed(keyturn("resume", "--no-input", "--json"))
    g = gate(again)
    assert again["state"] == "propagated" and g["passed"] is False
    assert "could not be read" in g["waiting_for"]


def test_revoke_now_overrides_and_is_journaled(sandbox: Sandbox, keyturn) -> None:
    old_value = stored(sandbox)
    run = keyturn("rotate", "jenkins", "--no-input", "--json", "--revoke-now")
    assert run.code == 0, run.stderr
    assert run.json()["state"] == "done"
    assert sandbox.jenkins.token_status(old_value) == "revoked"
    assert "--revoke-now: revoking although the revoke waited for: the new token not used yet by any job" in run.stderr
    events, _text = journal(sandbox, run.json()["rotation_id"])
    assert any(e["event"] == "gate_overridden" and e["gate"] == "jenkins-token-use" for e in events)
