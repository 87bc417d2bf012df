"""Whole rotations in the wizard, with the keyboard only, against a real sandbox over loopback.

Each test asserts what the engine journaled and what the emulated services now hold, not what the
screens say: a new PAT with exactly the preset's scopes, the old one revoked, the Key Vault version.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from textual.pilot import Pilot

from app.journal import RotationJournal
from providers.azure_devops.scopes import BUILTIN_PRESETS

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"



def flux_step(screen: Any) -> str:
    return next(s.id for s in screen.rotation.steps if s.kind == "flux-sops-secret")

def journal_of(sandbox: Any) -> RotationJournal:
    return RotationJournal(sandbox.directory / "journal")


async def on_targets_ready(wiz: Any, pilot: Pilot[Any]) -> None:
    """Launch: the expiry radar signs in (device code, auto-approved by the sandbox) and lists tokens."""
    app = pilot.app
    await wiz.wait_until(
        pilot, lambda: wiz.screen_name(app) == "TargetsScreen" and not app.screen.reading, what="the targets' expiry"
    )


async def rotate(
    wiz: Any, pilot: Pilot[Any], press: Any, target: str, *, checklist: bool, stored: bool, manual_steps: int = 0
) -> None:
    """The happy path from the targets screen to the summary, keys only."""
    app = pilot.app
    await on_targets_ready(wiz, pilot)
    rows = list(app.config.targets)
    for _ in range(rows.index(target)):
        await press("down")
    await press("enter")  # rotate the highlighted target; the sign-in continues by itself
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ScopesScreen", what="the scope picker")
    await press("ctrl+s")  # the preset is selected: confirm
    await wiz.wait_until(
        pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None, what="the plan"
    )
    await press("enter")  # mint
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen", what="the reveal")
    if not stored:
        await press("space")  # nowhere stored: Space ticks "I have stored it somewhere safe" (the footer says so)
    await press("ctrl+s")
    if checklist:
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "FollowUpsScreen", what="the checklist")
        for _ in range(manual_steps):
            before = sum(1 for s in app.screen.states.values() if s == "done")
            await press("space")  # tick the highlighted step; the highlight moves on to the next
            await wiz.wait_until(pilot, lambda b=before: sum(1 for s in app.screen.states.values() if s == "done") > b)
        # automated steps (the Flux commit) run by themselves
        await wiz.wait_until(pilot, lambda: all(s == "done" for s in app.screen.states.values()), what="the follow-ups")
        await press("ctrl+s")
    await wiz.wait_until(
        pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready, what="verify and retire"
    )
    if app.screen.waiting:  # a consumer gate (the Flux pull request): the sandbox's reviewer merges it
        await press("m")
        await wiz.wait_until(pilot, lambda: app.screen.ready and not app.screen.busy and not app.screen.waiting, what="the gates to pass")
    await press("enter")  # the default: revoke now (no delay configured)
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "SummaryScreen", what="the summary")


async def test_daily_checks_rotation_with_the_keyboard(wiz, sandbox_wizard, wizard_sandbox) -> None:
    state = wizard_sandbox.state
    old = state.pats_named("daily-checks")[0]
    versions_before = len(state.secret_versions("cftptl-intsvc", "azure-devops-token"))
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        press = wiz.KeyCounter(pilot)
        await rotate(wiz, pilot, press, "daily-checks", checklist=True, stored=True)  # the pipeline run
        summary = " ".join(wiz.screen_text(app).split())  # words, whatever the wrapping
        await press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "TargetsScreen")

    (record,) = journal_of(wizard_sandbox).all()
    assert record.target == "daily-checks"
    assert record.state == "done"
    store, check = list(record.steps_done)
    assert store == "keyvault-secret-version-cftptl-intsvc-azure-devops-token"  # a stable id
    assert check.startswith("azure-pipelines-run-")  # the consumer check the revoke waited for
    new = state.pat(record.new_token["id"])
    assert new is not None and not new.revoked
    assert sorted(new.scopes) == sorted(BUILTIN_PRESETS["daily-checks"].scopes)
    assert state.pat(old.authorization_id).revoked
    versions = state.secret_versions("cftptl-intsvc", "azure-devops-token")
    assert len(versions) == versions_before + 1
    assert versions[-1].value == new.value
    assert versions[-1].tags["keyturn-rotation-id"] == record.rotation_id
    assert f"version {record.steps_done['keyvault-secret-version-cftptl-intsvc-azure-devops-token']['version']}" in summary
    assert record.rotation_id in summary


async def test_keda_rotation_commits_the_flux_secret_within_the_key_budget(wiz, sandbox_wizard, wizard_sandbox) -> None:
    state = wizard_sandbox.state
    old = state.pats_named("keda-agent-pools")[0]
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        press = wiz.KeyCounter(pilot)
        await rotate(wiz, pilot, press, "keda", checklist=True, stored=False)
        await press("enter")  # done: back to the targets
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "TargetsScreen" and not app.screen.reading)
        keys = press.keys

    # Enter, Ctrl+S (preset), Enter (mint), Space Ctrl+S (reveal), Ctrl+S (follow-ups), m (the sandbox's reviewer
    # merges the pull request: the Flux gate passes), Enter (retire), Enter (done): the README's table says 9
    assert len(keys) <= 9, keys
    print(f"key presses to rotate keda from launch: {len(keys)} {keys}")  # shown with -s; the README quotes it
    (record,) = journal_of(wizard_sandbox).all()
    assert record.state == "done"
    flux_id, reminder = record.steps_done
    assert reminder.startswith("manual-preset-keda-") and record.steps_done[reminder]["reminder"]
    assert flux_id.startswith("flux-sops-secret-flux-config-")
    assert record.steps_done[flux_id]["pushed"] is True
    new = state.pat(record.new_token["id"])
    assert new is not None and not new.revoked
    assert new.scopes == ["vso.agentpools_manage"]
    assert state.pat(old.authorization_id).revoked


async def test_the_token_never_reaches_a_screenshot_a_toast_or_a_log(
    wiz, sandbox_wizard, wizard_sandbox, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    state = wizard_sandbox.state
    app = sandbox_wizard()
    seen: list[str] = []  # every frame we look at: SVG and plain text

    async def look(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        seen.append(pilot.app.export_screenshot())
        seen.append(wiz.screen_text(pilot.app))

    async with app.run_test(size=(80, 24)) as pilot:

        class LookingCounter(wiz.KeyCounter):
            async def __call__(self, *keys: str) -> None:
                await look(pilot)
                await super().__call__(*keys)
                await look(pilot)

        press = LookingCounter(pilot)
        await on_targets_ready(wiz, pilot)
        await press("down", "enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ScopesScreen")
        await press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None)
        await press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen")
        await look(pilot)
        await press("c")  # copy: the toast must say where, never what
        (record,) = RotationJournal(wizard_sandbox.directory / "journal").all()
        value = state.pat(record.new_token["id"]).value
        assert value and all(value not in frame for frame in seen), "the masked reveal screen showed the token"

        # Positive control: asking to reveal does show it (so the checks above can see a leak).
        await pilot.press("r")
        await pilot.pause()
        assert value in wiz.screen_text(app)
        await pilot.press("r")
        await pilot.pause()
        await look(pilot)
        await press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "FollowUpsScreen" and all(
            s == "done" for s in app.screen.states.values()))  # the pipeline run, the consumer check
        await look(pilot)
        await press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready)
        await press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "SummaryScreen")
        await look(pilot)
        await press("f1")
        await look(pilot)

    secrets = {"new token": value, "bot password": state.bot_password}
    for name, secret in secrets.items():
        assert all(secret not in frame for frame in seen), f"the {name} appeared on screen"
        assert all(secret not in f"{t} {m}" for t, m in app.notified), f"the {name} appeared in a notification"
        assert all(secret not in line for line in app.event_log), f"the {name} appeared in the engine's lines"
        assert secret not in caplog.text, f"the {name} appeared in a log record"
    assert any("Copied" in f"{t} {m}" for t, m in app.notified)
    assert app.clipboard == ""  # Textual's in-app copy of the text was not kept


async def test_leave_at_the_checklist_then_resume_from_the_targets(wiz, sandbox_wizard, wizard_sandbox) -> None:
    state = wizard_sandbox.state
    old = state.pats_named("keda-agent-pools")[0]
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await on_targets_ready(wiz, pilot)
        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ScopesScreen")
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None)
        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen")
        await pilot.press("tab", "space", "ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "FollowUpsScreen")
        await wiz.wait_until(pilot, lambda: app.screen.states[flux_step(app.screen)] == "done", what="the Flux commit")
        await pilot.press("l")  # leave it: the journal keeps it at "verified"
        await on_targets_ready(wiz, pilot)
        (record,) = journal_of(wizard_sandbox).unfinished()
        assert record.state == "verified"
        assert record.rotation_id[:8] in wiz.screen_text(app)

        await pilot.press("tab", "enter")  # the unfinished rotations' table; resume the highlighted one
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "FollowUpsScreen", what="the resumed checklist")
        assert app.screen.states[flux_step(app.screen)] == "done"  # from the journal: not run twice
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready)
        await wiz.pass_the_gates(wiz, pilot)  # m: the sandbox's reviewer merges the pull request
        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "SummaryScreen")

    (record,) = journal_of(wizard_sandbox).all()
    assert record.state == "done"
    assert state.pat(old.authorization_id).revoked
    assert not state.pat(record.new_token["id"]).revoked
    assert [e["event"] for e in record.events].count("step_done") == 2  # the Flux commit once, and the keda reminder


async def test_max_lifespan_clamp_is_explained_in_the_summary(wiz, sandbox_wizard, wizard_sandbox) -> None:
    wizard_sandbox.state.set_policy(max_lifespan_days=30)
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        press = wiz.KeyCounter(pilot)
        await rotate(wiz, pilot, press, "daily-checks", checklist=True, stored=True)  # the pipeline run
        summary = " ".join(wiz.screen_text(app).split())
    assert "maximum PAT lifespan clamped the expiry" in summary
