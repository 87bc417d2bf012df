"""Issue 6 in the wizard: the Jenkins target's options screen (name, expiry, user), keyboard only, against the
sandbox's Jenkins emulator over loopback; each test checks what Jenkins, Key Vault, the journal and the config hold.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from textual.widgets import Input

from app.journal import RotationJournal
from app.sandbox.jenkins import NEW_VERSION, OLD_VERSION

pytestmark = pytest.mark.anyio

KV = ("cftptl-intsvc", "jenkins-api-token")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def flat(wiz: Any, app: Any) -> str:
    return " ".join(wiz.screen_text(app).translate({ord("▎"): " ", ord("▊"): " "}).split())


@pytest.mark.parametrize("version", [NEW_VERSION, OLD_VERSION])
async def test_jenkins_rotates_end_to_end(wiz, sandbox_wizard, wizard_sandbox, version: str) -> None:
    jk = wizard_sandbox.jenkins
    jk.version = version
    seeded = jk.seeded
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.open_options(wiz, pilot, "jenkins")
        text = flat(wiz, app)
        assert "New Jenkins API token" in text and "Token name" in text
        assert app.screen.query_one("#user", Input).value == seeded.user
        if version == NEW_VERSION:
            assert app.screen.query_one("#expiry-days", Input).value == "90"  # the target's validity_days
        else:
            assert "never expires" in text and "2.548" in text
        await wiz.review_and_mint(wiz, pilot)
        await wiz.reveal_to_summary(wiz, pilot)
        summary = flat(wiz, app)
        assert "revoked" in summary

    (record,) = RotationJournal(wizard_sandbox.directory / "journal").all()
    assert record.target == "jenkins" and record.state == "done"
    new_value = wizard_sandbox.state.secret_versions(*KV)[-1].value
    assert jk.token_status(new_value) == "active"
    assert jk.token_status(seeded.token_value) == "revoked"
    new = next(t for t in jk.tokens(seeded.user) if t.value == new_value)
    assert (new.expires_at is not None) == (version == NEW_VERSION)
    config = tomllib.loads(wizard_sandbox.config_path.read_text())
    assert config["targets"]["jenkins"]["token_uuid"] == new.uuid


async def test_another_user_is_refused_with_the_reason(wiz, sandbox_wizard, wizard_sandbox) -> None:
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.open_options(wiz, pilot, "jenkins")
        app.screen.query_one("#user", Input).value = "jenkins-admin"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert wiz.screen_name(app) == "TokenOptionsScreen"
        assert "adminCanGenerateNewTokens" in app.screen.error
        app.screen.query_one("#user", Input).value = wizard_sandbox.jenkins.seeded.user
        app.screen.query_one("#expiry-days", Input).value = "30"
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None)
        assert app.screen.plan.expires_at is not None
        assert 29 < (app.screen.plan.expires_at - app.now()).days + 1 <= 30
    assert list(RotationJournal(wizard_sandbox.directory / "journal").all()) == []  # nothing minted


async def test_unknown_old_token_then_revoke_all_others_after_typing_yes(wiz, sandbox_wizard, wizard_sandbox) -> None:
    from app.sandbox.jenkins import SEED_TOKEN_UUID

    jk = wizard_sandbox.jenkins
    seeded = jk.seeded
    jk.security_page = False  # a controller whose page keyturn cannot read
    text = wizard_sandbox.config_path.read_text().replace(f'token_uuid = "{SEED_TOKEN_UUID}"\n', "")
    wizard_sandbox.config_path.write_text(text)
    other = jk.add_token(seeded.user, "old laptop")
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.open_options(wiz, pilot, "jenkins")
        await wiz.review_and_mint(wiz, pilot)
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen", what="the reveal")
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready)
        shown = flat(wiz, app)
        assert "script console" in shown and "press a" in shown  # the three ways out, in order
        await pilot.press("a")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ConfirmPrompt")
        assert f"EVERY other API token of {seeded.user}" in flat(wiz, app)
        await pilot.press("n", "o", "enter")  # anything but yes: nothing happens
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen")
        assert not app.screen.rotation.revoke_all_others
        await pilot.press("a")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ConfirmPrompt")
        await pilot.press("y", "e", "s", "enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.rotation.revoke_all_others)
        await wiz.wait_until(pilot, lambda: bool(app.screen.gates) and not app.screen.checking, what="the gates")
        # every other token dies, and the unreadable page cannot show that the jobs use the new one: the gate waits,
        # and only an override (o, asked, journaled) revokes
        assert "were not read when the new token was verified" in flat(wiz, app)
        await pilot.press("enter")  # the default while a gate waits: nothing is revoked
        await pilot.pause()
        assert jk.token_status(seeded.token_value) == "active"
        await pilot.press("o")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ConfirmPrompt")
        await pilot.press("y", "e", "s", "enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "SummaryScreen", what="the summary")
    new_value = wizard_sandbox.state.secret_versions(*KV)[-1].value
    assert jk.token_status(new_value) == "active"
    assert jk.token_status(seeded.token_value) == "revoked" and jk.token_status(other.value) == "revoked"
    assert jk.token_status(seeded.admin_token) == "active"
