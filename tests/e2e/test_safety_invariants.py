"""Issue 11's invariants, each proven through the real CLI in a child process against the sandbox.

One writer per target (an OS lock that names its holder), no new rotation over an unfinished one (`resume` or
`abort`), every store's *current* value = the live token before the old one dies and before `done`, never a value
held by no one, damaged journals isolated to their rotation, `expired` said as such.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.journal import RotationJournal
from app.locks import TargetLock
from app.sandbox import Sandbox
from tests.e2e.support.proc import spawn_keyturn
from tests.e2e.support.targets import KV

# not about the waiting: the consumers follow at once, so each rotation passes its gates in one run
pytestmark = pytest.mark.usefixtures("prompt_consumers")


def _journal(sandbox: Sandbox) -> Path:
    return sandbox.config_path.parent / "journal"


def _live_daily(sandbox: Sandbox) -> list[str]:
    return [p.display_name for p in sandbox.state.pats() if p.display_name.startswith("daily-checks") and not p.revoked]


def _kv_latest(sandbox: Sandbox, secret: str = "azure-devops-token") -> str:
    return sandbox.state.secret_versions(KV, secret)[-1].value


def _crash(keyturn, point: str, target: str = "daily-checks") -> str:
    run = keyturn("rotate", target, "--no-input", env={"KEYTURN_TEST_KILL_AT": point})
    assert run.code == -signal.SIGKILL, run.stderr
    m = re.search(r"rotation ([0-9a-f-]{36}) of", run.stderr)
    assert m, run.stderr
    return m.group(1)


# -- 1. one process per target ------------------------------------------------------------------------------------


def test_a_held_target_is_refused_naming_the_holder(sandbox: Sandbox, keyturn) -> None:
    lock = TargetLock(_journal(sandbox), "daily-checks")
    lock.acquire("0123456789abcdef")  # a live process (this one) drives daily-checks
    try:
        before = _live_daily(sandbox)
        run = keyturn("rotate", "daily-checks", "--no-input")
        assert run.code == 2
        (line,) = run.stderr.strip().splitlines()[-1:]
        assert f"target daily-checks is being rotated by pid {os.getpid()} on " in line
        assert "(rotation 01234567)" in line and "UTC" in line
        assert _live_daily(sandbox) == before, "nothing was minted"
    finally:
        lock.release()
    assert keyturn("rotate", "daily-checks", "--no-input").code == 0, "the lock went with its holder"


def test_resume_skips_a_rotation_a_live_process_holds(sandbox: Sandbox, keyturn) -> None:
    rid = _crash(keyturn, "after:minted")
    lock = TargetLock(_journal(sandbox), "daily-checks")
    lock.acquire(rid)
    try:
        run = keyturn("resume", "--no-input", "--json")
        assert run.code == 0, run.stderr
        assert run.json()["resumed"] == []
        assert f"skipping rotation {rid[:8]}: pid {os.getpid()} on " in run.stderr and "is driving its target" in run.stderr
        by_id = keyturn("resume", rid[:8], "--no-input")
        assert by_id.code == 2 and "is being rotated by" in by_id.stderr
    finally:
        lock.release()
    run = keyturn("resume", "--no-input", "--json")
    assert [r["state"] for r in run.json()["resumed"]] == ["done"]
    assert len(_live_daily(sandbox)) == 1


def test_a_killed_holder_leaves_no_stale_lock(sandbox: Sandbox, keyturn) -> None:
    _crash(keyturn, "after:stored")  # SIGKILL: no cleanup ran
    assert TargetLock(_journal(sandbox), "daily-checks").holder() is None
    run = keyturn("resume", "--no-input", "--json")
    assert run.code == 0 and [r["state"] for r in run.json()["resumed"]] == ["done"]


# -- 2. no new rotation over an unfinished one; `keyturn abort` --------------------------------------------------


def test_unfinished_rotation_refuses_a_new_one_and_abort_undoes_it(sandbox: Sandbox, keyturn) -> None:
    old_value = _kv_latest(sandbox)
    rid = _crash(keyturn, "after:stored")
    assert _kv_latest(sandbox) != old_value, "the store holds the new token"
    again = keyturn("rotate", "daily-checks", "--no-input")
    assert again.code == 2
    assert f"target daily-checks has an unfinished rotation {rid[:8]} (state stored" in again.stderr
    assert f"`keyturn resume {rid[:8]}`" in again.stderr and f"`keyturn abort {rid[:8]}`" in again.stderr
    assert len(_live_daily(sandbox)) == 2, "nothing more was minted"

    run = keyturn("abort", rid[:8])
    assert run.code == 0, run.stderr
    (line,) = run.stdout.strip().splitlines()
    assert line.startswith(f"rotation {rid[:8]} of daily-checks aborted: revoked the new token ")
    assert "restored the previous value" in line and line.endswith("the old token is untouched")
    assert _live_daily(sandbox) == ["daily-checks"], "only the old token lives"
    assert _kv_latest(sandbox) == old_value, "consumers read the old token again"
    assert RotationJournal(_journal(sandbox)).load(rid).state == "aborted"
    assert keyturn("abort", rid[:8]).code == 2, "aborting twice is refused"
    assert keyturn("rotate", "daily-checks", "--no-input").code == 0


def test_abort_works_when_the_target_was_removed(sandbox: Sandbox, keyturn) -> None:
    old_value = _kv_latest(sandbox)
    rid = _crash(keyturn, "after:verified")
    text = sandbox.config_path.read_text()
    start = text.index("[targets.daily-checks]")
    end = start  # the target's table and every [[targets.daily-checks.follow_ups]] after it
    while (nxt := text.find("\n[", end + 1)) != -1 and text.startswith("\n[[targets.daily-checks.", nxt):
        end = nxt
    end = text.find("\n[", end + 1)
    sandbox.config_path.write_text(text[:start] + text[end + 1 :])
    resumed = keyturn("resume", rid[:8], "--no-input")
    assert resumed.code == 2 and "no longer in" in resumed.stderr and f"keyturn abort {rid[:8]}" in resumed.stderr
    run = keyturn("abort", rid)
    assert run.code == 0, run.stderr
    assert _live_daily(sandbox) == ["daily-checks"]
    assert _kv_latest(sandbox) == old_value


def test_abort_refuses_once_the_old_token_is_revoked(sandbox: Sandbox, keyturn) -> None:
    rid = _crash(keyturn, "before:old_retired")
    run = keyturn("abort", rid)
    assert run.code == 2 and "already revoked the old token" in run.stderr and f"keyturn resume {rid[:8]}" in run.stderr
    assert len(_live_daily(sandbox)) == 1, "the new token was not revoked: one live token"


def test_a_rotation_refused_before_anything_was_minted_blocks_nothing(sandbox: Sandbox, keyturn) -> None:
    sandbox.state.set_policy(block_full_scope=True)
    text = sandbox.config_path.read_text()
    sandbox.config_path.write_text(text.replace('preset = "daily-checks"', 'scopes = ["app_token"]', 1))
    refused = keyturn("rotate", "daily-checks", "--no-input")
    assert refused.code == 2, refused.stderr
    (left,) = RotationJournal(_journal(sandbox)).unfinished()  # resumable, but it made nothing: it blocks nothing
    sandbox.state.set_policy(block_full_scope=False)
    assert keyturn("rotate", "daily-checks", "--no-input").code == 0
    assert RotationJournal(_journal(sandbox)).load(left.rotation_id).state == "aborted"
    assert RotationJournal(_journal(sandbox)).unfinished() == []


# -- 3. the stores' current value is the live token ---------------------------------------------------------------


def test_a_write_landing_after_verification_is_repaired_before_done(sandbox: Sandbox, keyturn) -> None:
    old_value = _kv_latest(sandbox)
    _crash(keyturn, "after:verified")
    # what a write the crashed process (or a slow vault) had in flight does when it lands late: the secret's
    # newest version is no longer the new token
    sandbox.state.set_secret(KV, "azure-devops-token", old_value)
    run = keyturn("resume", "--no-input", "--json")
    assert run.code == 0, run.stderr
    assert "Key Vault cftptl-intsvc / azure-devops-token holds another value now" in run.stderr
    (live,) = [p for p in sandbox.state.pats() if p.display_name.startswith("daily-checks") and not p.revoked]
    assert _kv_latest(sandbox) == live.value, "consumers read the live token"
    assert sandbox.state.pats_named("daily-checks")[0].revoked


def test_a_store_emptied_behind_keyturns_back_stops_before_the_old_token_dies(sandbox: Sandbox, keyturn, tmp_path: Path) -> None:
    # the new value is in no other place and this process does not hold it: never revoke the old token then
    _crash(keyturn, "after:propagated")
    with sandbox.state.lock:
        for v in sandbox.state._versions(KV, "azure-devops-token") or []:
            v.enabled = False
    run = keyturn("resume", "--no-input")
    assert run.code == 2, run.stderr
    assert "holds no readable value now, not the new token" in run.stderr
    assert not sandbox.state.pats_named("daily-checks")[0].revoked, "the old token is still alive"


# -- 4. never a value held by no one ---------------------------------------------------------------------------


def _add_bare_target(sandbox: Sandbox) -> None:
    with sandbox.config_path.open("a") as fh:
        fh.write('\n[targets.bare]\naccount = "ado-bot"\ntoken_name = "bare-token"\npreset = "daily-checks"\n'
                 '\n[[targets.bare.follow_ups]]\nkind = "manual"\ntext = "tell the team"\n')


def test_a_target_nothing_keeps_is_refused_before_minting(sandbox: Sandbox, keyturn) -> None:
    _add_bare_target(sandbox)
    run = keyturn("rotate", "bare", "--no-input", "--skip-manual")
    assert run.code == 2
    assert "it would be held by no one" in run.stderr and "--reveal" in run.stderr
    assert not [p for p in sandbox.state.pats() if p.display_name.startswith("bare-token")]
    revealed = keyturn("rotate", "bare", "--no-input", "--skip-manual", "--reveal")
    assert revealed.code == 0, revealed.stderr
    (live,) = [p for p in sandbox.state.pats() if p.display_name.startswith("bare-token") and not p.revoked]
    assert revealed.stdout.strip() == live.value


# -- 6. names that name files and branches ----------------------------------------------------------------------


def test_an_unsafe_target_name_is_refused_at_load(sandbox: Sandbox, keyturn) -> None:
    text = sandbox.config_path.read_text()
    sandbox.config_path.write_text(text.replace("[targets.daily-checks]", '[targets."daily..checks"]').replace(
        "[[targets.daily-checks.follow_ups]]", '[[targets."daily..checks".follow_ups]]'))
    run = keyturn("status")
    assert run.code == 2
    assert "targets.daily..checks" in run.stderr and "may not contain '..'" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


# -- 8. a damaged journal isolates its rotation ------------------------------------------------------------------


def test_status_marks_a_damaged_rotation_and_carries_on(sandbox: Sandbox, keyturn) -> None:
    rid = _crash(keyturn, "after:minted")
    path = _journal(sandbox) / f"{rid}.jsonl"
    path.write_bytes(path.read_bytes() + b"[1, 2]\n")
    run = keyturn("status", "--json")
    assert run.code == 1, run.stderr
    rows = {r["target"]: r for r in run.json()["targets"]}
    assert len(rows) > 1 and all(r["state"] != "unknown" for r in rows.values())
    (damaged,) = rows["daily-checks"]["damaged_rotations"]
    assert str(path) in damaged and f"mv {path} {path}.damaged" in damaged
    assert all(not r["damaged_rotations"] for name, r in rows.items() if name != "daily-checks")
    again = keyturn("rotate", "daily-checks", "--no-input")
    assert again.code == 2 and f"rotation {rid[:8]} cannot be read" in again.stderr
    assert keyturn("rotate", "jenkins", "--no-input").code == 0, "other targets carry on"


# -- messages -----------------------------------------------------------------------------------------------------


def test_an_expired_token_is_expired_not_missing(sandbox: Sandbox, keyturn) -> None:
    with sandbox.state.lock:
        for p in sandbox.state._pat_records(sandbox.state.org):
            if p.display_name == "daily-checks":
                p.valid_to = datetime.now(UTC) - timedelta(days=3)
    run = keyturn("status", "--json")
    row = next(r for r in run.json()["targets"] if r["target"] == "daily-checks")
    assert row["state"] == "expired", row
    assert row["days_left"] is not None and row["days_left"] < 0


def test_interrupt_offers_resume_only_when_something_was_journaled(sandbox: Sandbox, keyturn) -> None:
    run = keyturn("rotate", "daily-checks", "--no-input", env={"KEYTURN_TEST_KILL_AT": "before:planned", "KEYTURN_TEST_SIGNAL": "TERM"})
    assert run.code == 130, run.stderr
    assert run.stderr.strip().splitlines()[-1] == "keyturn: error: interrupted; nothing was changed"
    run = keyturn("rotate", "daily-checks", "--no-input", env={"KEYTURN_TEST_KILL_AT": "after:minted", "KEYTURN_TEST_SIGNAL": "TERM"})
    assert run.code == 130, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    (rid,) = [r.rotation_id for r in RotationJournal(_journal(sandbox)).unfinished()]
    assert last == f"keyturn: error: interrupted; `keyturn resume {rid[:8]}` continues from the last journaled step"
    done = keyturn("resume", "--no-input", "--json")
    assert [r["state"] for r in done.json()["resumed"]] == ["done"]
    assert json.dumps(done.json())


# -- 3, with writes that really land late (the sandbox holds the request past the client's timeout, then runs it) --

LATE_ENV = {"KEYTURN_HTTP_TIMEOUT": "1", "KEYTURN_RETRY_SLEEP_SCALE": "0.01"}


def test_a_store_write_given_up_on_that_lands_after_the_abort_is_put_back(sandbox: Sandbox, keyturn) -> None:
    old_value = _kv_latest(sandbox)
    # every attempt of the store write times out on the client; each lands 4 s later, after keyturn gave up,
    # rolled back and revoked the new token
    sandbox.state.inject_fault("PUT /secrets/{name}", "late", times=3, service="vault:*", hold=4.0)
    run = keyturn("rotate", "daily-checks", "--no-input", env=LATE_ENV)
    assert run.code == 2, run.stderr
    assert "the old token is untouched" in run.stderr and "may still land" in run.stderr
    assert sandbox.state.wait_late_landed(3, timeout=30)
    (aborted,) = RotationJournal(_journal(sandbox)).all()
    assert aborted.state == "aborted"
    assert _kv_latest(sandbox) != old_value, "the late write gave consumers the revoked token"

    status = keyturn("status")  # a later run under the target's lock puts the old value back
    resumed = keyturn("resume", "--no-input", env=LATE_ENV)
    assert resumed.code == 0, resumed.stderr
    assert f"held the revoked token of aborted rotation {aborted.rotation_id[:8]}" in resumed.stderr
    assert _kv_latest(sandbox) == old_value, "consumers read the live old token again"
    assert status.code in (0, 1)
    run = keyturn("rotate", "daily-checks", "--no-input", env=LATE_ENV)
    assert run.code == 0, run.stderr
    (live,) = [p for p in sandbox.state.pats() if p.display_name.startswith("daily-checks") and not p.revoked]
    assert _kv_latest(sandbox) == live.value


def test_a_late_write_of_a_compensated_token_is_written_over_before_the_old_token_dies(sandbox: Sandbox, tmp_path: Path) -> None:
    # the first run is killed while its store write is held by the vault; the resume finds no value anywhere, so it
    # revokes that token, mints another and stores it; then the held write of the revoked token lands on top, while
    # the resume stands after propagation: it must be found and written over before the old token is revoked
    sandbox.state.inject_fault("PUT /secrets/{name}", "late", times=1, service="vault:*", hold=4.0)
    first = spawn_keyturn(sandbox, tmp_path / "home", "rotate", "daily-checks", "--no-input")
    deadline = time.monotonic() + 60
    while sandbox.state.late_held < 1:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.02)
    first.kill()
    first.communicate()
    # the resume stands after propagation until the held write has landed (however slow the machine; 60 s bound)
    landed = tmp_path / "landed"
    env = {"KEYTURN_TEST_PAUSE_AT": "after:propagated", "KEYTURN_TEST_PAUSE_FILE": str(tmp_path / "p"),
           "KEYTURN_TEST_PAUSE_S": "60", "KEYTURN_TEST_PAUSE_UNTIL": str(landed)}
    resume = spawn_keyturn(sandbox, tmp_path / "home", "resume", "--no-input", "--json", env=env)
    deadline = time.monotonic() + 90
    while sandbox.state.late_landed < 1:
        assert resume.poll() is None and time.monotonic() < deadline, resume.communicate()
        time.sleep(0.02)
    landed.write_text("")
    stdout, stderr = resume.communicate(timeout=120)
    assert resume.returncode == 0, stderr
    assert [r["state"] for r in json.loads(stdout)["resumed"]] == ["done"]
    assert sandbox.state.late_landed == 1, "the held write landed during the resume"
    assert "revoking it and minting again" in stderr
    assert "holds another value now, not the new token" in stderr and "(written again)" in stderr
    (live,) = [p for p in sandbox.state.pats() if p.display_name.startswith("daily-checks") and not p.revoked]
    assert _kv_latest(sandbox) == live.value, "consumers read the live token"


# -- also fixed: a session that rotated the account's own sign-in token reads it again -------------------------


def test_a_second_rotation_in_one_session_signs_in_with_the_new_token(sandbox: Sandbox, monkeypatch) -> None:
    # the Jenkins target's account signs in with the very token it rotates (kept in Key Vault): the wizard's one
    # engine must read the reference again once a rotation wrote it, or it keeps presenting the revoked value
    from app.config import load_config
    from app.engine import Engine

    monkeypatch.setenv("HOME", str(sandbox.config_path.parent / "home"))
    engine = Engine(load_config(sandbox.config_path))
    try:
        for _ in range(2):
            rotation = engine.begin(engine.plan("jenkins"))
            rotation.run_to_end()
            assert rotation.state == "done"
        row = next(r for r in engine.status() if r.target == "jenkins")
        assert row.state == "ok" and row.error is None, row
    finally:
        engine.close()


def test_a_flux_branch_changed_behind_keyturns_back_keeps_the_old_token_alive(sandbox: Sandbox, keyturn) -> None:
    from tests.e2e.support.targets import git

    rid = _crash(keyturn, "after:propagated", target="keda")
    flux = sandbox.flux
    assert flux is not None
    (branch,) = git(flux.bare, "branch", "--list", f"keyturn/rotate-keda-*-{rid[:8]}").split()
    git(flux.clone, "fetch", "-q", "origin")
    git(flux.clone, "switch", "-q", branch)
    git(flux.clone, "rm", "-q", flux.files[0])
    git(flux.clone, "-c", "user.name=someone", "-c", "user.email=someone@example.com", "commit", "-q", "-m", "drop it")
    git(flux.clone, "push", "-q", "origin", branch)
    git(flux.clone, "switch", "-q", "main")
    run = keyturn("resume", "--no-input")
    assert run.code == 2, run.stderr
    assert "holds no readable value now, not the new token; the old token stays alive" in run.stderr
    assert not sandbox.state.pats_named("keda-agent-pools")[0].revoked
