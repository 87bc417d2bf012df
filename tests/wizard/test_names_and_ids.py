"""Issue 15, item 6b: every screen names a token the same way (its name and the one id the platform's pages show),
every step's title bar reads "<step> · <target> · rotation <id8>", and the retire screen's Enter says what it does.

Buildkite's API knows an agent token by its GraphQL node id, buildkite.com by its uuid: keyturn journals and revokes
by the first and shows the second (TokenInfo.display_id / shown_id).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from app.engine import _token_dict, _token_info
from app.journal import RotationJournal
from app.plan import PlanRecord, TokenRecord
from app.secret import SecretValue
from providers.base import TokenInfo
from screens.mint import MintScreen
from screens.reveal import RevealScreen

pytestmark = pytest.mark.anyio

ID8 = r"[0-9a-f]{8}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def flat(wiz: Any, app: Any) -> str:
    return " ".join(wiz.screen_text(app).split())


def title_of(screen: Any) -> str:
    return str(screen.query_one(".title-bar", Static).content)


def enter_label(screen: Any) -> tuple[str, str | None, bool]:
    """What the footer shows for Enter: (description, binding id, enabled)."""
    active = screen.active_bindings["enter"]
    return active.binding.description, active.binding.id, active.enabled


# -- the declared field and the journal ------------------------------------------------------------


def test_shown_id_is_the_display_id_else_the_id() -> None:
    assert TokenInfo("Q2x1c3Rl", "agents", None, display_id="c6d7c729").shown_id == "c6d7c729"
    assert TokenInfo("3f1e-authorization-id", "pat", None).shown_id == "3f1e-authorization-id"


def test_display_id_survives_the_journal_and_old_journals_still_load() -> None:
    info = TokenInfo("Q2x1c3Rl", "agents", datetime(2026, 12, 8, tzinfo=UTC), display_id="c6d7c729")
    assert _token_info(_token_dict(info, "fp")).shown_id == "c6d7c729"
    assert TokenRecord.from_json(TokenRecord.of(info).to_json()).info().shown_id == "c6d7c729"
    # written before display_id existed: the API's id is what is shown
    old = {"id": "Q2x1c3Rl", "name": "agents", "expires_at": None, "scopes": []}
    assert _token_info(old).display_id is None and _token_info(old).shown_id == "Q2x1c3Rl"
    assert TokenRecord.from_json(old).shown_id == "Q2x1c3Rl"
    assert "display_id" not in TokenRecord.of(TokenInfo("x", "y", None)).to_json()  # nothing new for other platforms
    plan = {"account": "a", "platform": "buildkite", "display_name": "d", "old_tokens": [old]}
    assert PlanRecord.from_json(plan).old_tokens[0].id == "Q2x1c3Rl"


# -- a Buildkite cluster agent token, walked end to end -------------------------------------------


async def test_cluster_token_is_named_by_its_uuid_on_every_step(wiz, sandbox_wizard, wizard_sandbox, monkeypatch) -> None:
    bk = wizard_sandbox.buildkite
    old = next(t for t in bk.cluster_tokens() if t.description == "Default cluster agents")
    mint_titles: list[str] = []
    original = MintScreen.on_mount

    def recording_mount(self: MintScreen) -> None:
        mint_titles.append(title_of(self))
        original(self)

    monkeypatch.setattr(MintScreen, "on_mount", recording_mount)
    app = sandbox_wizard()
    async with app.run_test(size=(160, 40)) as pilot:
        await wiz.open_options(wiz, pilot, "buildkite-cluster")
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None)
        plan = app.screen.plan
        rid = plan.rotation_id[:8]
        (planned_old,) = plan.old_tokens
        graphql_old = planned_old.id
        assert planned_old.display_id == old.uuid and graphql_old != old.uuid  # the API's id is another
        assert title_of(app.screen) == f"Review · buildkite-cluster · rotation {rid}"
        text = flat(wiz, app)
        assert f"revoke 'Default cluster agents' ({old.uuid}" in text
        assert graphql_old not in text
        assert graphql_old not in "\n".join(plan.lines())

        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen", what="the reveal")
        assert mint_titles == [f"Mint · buildkite-cluster · rotation {rid}"]
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready, what="retire")
        retire = app.screen
        new = retire.rotation.new_token
        (minted,) = [t for t in bk.cluster_tokens() if t.description == new.name]
        assert new.display_id == minted.uuid and new.id != minted.uuid
        assert title_of(retire) == f"Verify and retire · buildkite-cluster · rotation {rid}"
        text = flat(wiz, app)
        assert f"id {old.uuid}" in text and graphql_old not in text
        assert f"the new token {minted.uuid} ({new.name}) is listed" in text and new.id not in text
        # while the agents still hold the old token, Enter says what the revoke waits for, and revokes nothing
        assert enter_label(retire) == ("What it waits for", "retire.default", True)
        await wiz.wait_until(pilot, lambda: "⏎ What it waits for" in flat(wiz, app), what="the footer")
        await pilot.press("enter")
        await pilot.pause()
        assert any("The old token waits for" in m for _, m in app.notified)
        assert not bk.cluster_token(old.uuid).revoked  # type: ignore[union-attr]
        await wiz.pass_the_gates(wiz, pilot)
        await wiz.wait_until(pilot, lambda: enter_label(retire)[0] == "Revoke now", what="Enter: revoke now")
        await wiz.wait_until(pilot, lambda: "⏎ Revoke now" in flat(wiz, app), what="the footer drawn again")

        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "SummaryScreen", what="the summary")
        assert title_of(app.screen) == f"Summary · buildkite-cluster · rotation {rid}"
        text = flat(wiz, app)
        assert f"(id {minted.uuid}" in text and new.id not in text
        assert f"revoked Default cluster agents ({old.uuid})" in text and graphql_old not in text

    # the journal keeps what the API needs (revoke matched it), and the uuid beside it for a resume
    (record,) = RotationJournal(wizard_sandbox.directory / "journal").all()
    assert record.state == "done"
    assert record.new_token["id"] == new.id and record.new_token["display_id"] == minted.uuid
    assert record.plan["old_tokens"][0]["id"] == graphql_old
    assert [e["token_id"] for e in record.events if e["event"] == "revoked"] == [graphql_old]
    assert bk.cluster_token(old.uuid).revoked  # type: ignore[union-attr]


async def test_a_resumed_rotation_still_shows_the_uuid(wiz, sandbox_wizard, wizard_sandbox) -> None:
    bk = wizard_sandbox.buildkite
    old = next(t for t in bk.cluster_tokens() if t.description == "Default cluster agents")
    app = sandbox_wizard()
    async with app.run_test(size=(160, 40)) as pilot:
        await wiz.open_options(wiz, pilot, "buildkite-cluster")
        await wiz.review_and_mint(wiz, pilot)
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen", what="the reveal")
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready, what="retire")
        await pilot.press("l")  # leave it waiting for the agents
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "TargetsScreen" and not app.screen.reading)
        await pilot.press("tab", "enter")  # resume it from the unfinished rotations
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready, what="resumed")
        text = flat(wiz, app)
        assert f"id {old.uuid}" in text
        assert app.screen.rotation.plan.old_tokens[0].id not in text


# -- the retire screen's Enter, per state -----------------------------------------------------------


async def to_retire(wiz: Any, pilot: Pilot[Any]) -> Any:
    app = pilot.app
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ScopesScreen")
    await pilot.press("ctrl+s")
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None)
    await pilot.press("enter")
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen")
    await pilot.press("tab", "space", "ctrl+s")  # no store, no follow-up: straight to retiring
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready)
    return app.screen


async def test_enter_says_it_revokes_after_the_delay(scripted_wizard, wiz, tmp_path: Path) -> None:
    delayed = {
        "overlap": {"account": "ado-bot", "token_name": "keda-agent-pools", "scopes": ["vso.agentpools_manage"], "revoke_after": "24h"}
    }
    app = scripted_wizard(extra_targets=delayed, start_target="overlap")
    async with app.run_test(size=(100, 30)) as pilot:
        retire = await to_retire(wiz, pilot)
        assert enter_label(retire) == ("Revoke after 1 day", "retire.default", True)
        await wiz.wait_until(pilot, lambda: "⏎ Revoke after 1 day" in wiz.screen_text(app), what="the footer")
        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "SummaryScreen")
    (record,) = RotationJournal(tmp_path / "journal").all()
    assert record.state == "propagated" and record.retire_at and record.revoked == []


async def test_enter_says_finish_when_there_is_nothing_to_revoke(scripted_wizard, wiz, tmp_path: Path) -> None:
    fresh = {"fresh": {"account": "ado-bot", "token_name": "brand-new-pool", "scopes": ["vso.agentpools_manage"]}}
    app = scripted_wizard(extra_targets=fresh, start_target="fresh")
    async with app.run_test(size=(100, 30)) as pilot:
        retire = await to_retire(wiz, pilot)
        assert enter_label(retire) == ("Finish", "retire.default", True)
        await wiz.wait_until(pilot, lambda: "⏎ Finish" in wiz.screen_text(app), what="the footer")
        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "SummaryScreen")
    (record,) = RotationJournal(tmp_path / "journal").all()
    assert record.state == "done" and record.revoked == []


async def test_a_keymap_moves_every_one_of_enters_labels(scripted_wizard, wiz) -> None:
    """One binding id for Enter's states: remapping retire.default moves them all (none is left unbound)."""
    delayed = {
        "overlap": {"account": "ado-bot", "token_name": "keda-agent-pools", "scopes": ["vso.agentpools_manage"], "revoke_after": "24h"}
    }
    app = scripted_wizard(extra_targets=delayed, start_target="overlap", keymap={"retire.default": "g"})
    async with app.run_test(size=(100, 30)) as pilot:
        retire = await to_retire(wiz, pilot)
        assert "enter" not in retire.active_bindings
        assert retire.active_bindings["g"].binding.description == "Revoke after 1 day"
        await pilot.press("g")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "SummaryScreen")


# -- the reveal's title ------------------------------------------------------------------------------


async def test_the_reveal_titles_the_step_and_names_the_token_below(host_app, fake_backend) -> None:
    from app.clipboard import Clipboard

    def make(app: Any) -> RevealScreen:
        return RevealScreen(
            SecretValue("canary-value-never-shown-0123456789"),
            token_label="Default cluster agents-20261203-a895f59c (c6d7c729-4efa-4d51-8c6c-8e9495779270)",
            expires_at="never",
            stored_in=["Key Vault cftptl-intsvc / buildkite-agent-token"],
            clipboard=Clipboard(backend=fake_backend(), environ={}),
            target="buildkite-cluster",
            rotation_id="5eed0001-0000-4000-8000-000000000000",
        )

    app = host_app(make)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert re.fullmatch(f"Your new token · buildkite-cluster · rotation {ID8}", str(screen.query_one("#title", Static).content))
        name = str(screen.query_one("#token-name", Static).content)
        assert name == "Default cluster agents-20261203-a895f59c (c6d7c729-4efa-4d51-8c6c-8e9495779270)"
