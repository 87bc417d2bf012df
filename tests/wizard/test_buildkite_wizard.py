"""Issue 5 in the wizard: Buildkite's three token kinds, keyboard only, against a real sandbox over loopback.

Each test asserts what the emulated Buildkite, Key Vault and ConductorOne now hold and what the journal
says, not only what the screens show.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from app.journal import RotationJournal

pytestmark = pytest.mark.anyio

CONNECTOR_SCOPES = ("read_teams", "read_organizations", "read_user")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def journal_of(sandbox: Any) -> RotationJournal:
    return RotationJournal(sandbox.directory / "journal")


async def test_cluster_agent_token_rotates_end_to_end(wiz, sandbox_wizard, wizard_sandbox) -> None:
    bk = wizard_sandbox.buildkite
    old = next(t for t in bk.cluster_tokens() if t.description == "Default cluster agents")
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.open_options(wiz, pilot, "buildkite-cluster")
        assert "New cluster agent token" in wiz.screen_text(app)
        options_text = " ".join(wiz.screen_text(app).split())
        assert "Default cluster" in options_text
        assert "cannot be changed" in options_text
        await wiz.review_and_mint(wiz, pilot)
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen", what="the reveal")
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready, what="retire")
        text = " ".join(wiz.screen_text(app).split())
        # issue 13: the old token waits for the agents that connected with it, counted live from Buildkite
        assert "Agents of cluster Default cluster: 2 agents still connected since before the new token was stored" in text
        assert "m Sandbox: play it" in text  # the agents reconnect with the new token
        assert not bk.cluster_token(old.uuid).revoked  # type: ignore[union-attr]
        await pilot.press("enter")  # the default while a gate waits: nothing is revoked
        await pilot.pause()
        assert not bk.cluster_token(old.uuid).revoked  # type: ignore[union-attr]
        await wiz.checklist_to_summary(wiz, pilot)  # m: the agents reconnect; the gate passes; Enter revokes
        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "TargetsScreen")

    (record,) = journal_of(wizard_sandbox).all()
    assert record.target == "buildkite-cluster" and record.state == "done"
    (passed,) = [e for e in record.events if e["event"] == "gates_passed"]  # what the revoke rested on, journaled
    assert [g["gate"] for g in passed["gates"]] == ["buildkite-agents"]
    tokens = {t.uuid: t for t in bk.cluster_tokens(include_revoked=True)}
    assert tokens[old.uuid].revoked
    live = [t for t in bk.cluster_tokens() if t.description.startswith("Default cluster agents-")]
    assert len(live) == 1 and live[0].expires_at is None  # "None" was the default expiry
    assert wizard_sandbox.state.secret_versions("cftptl-intsvc", "buildkite-agent-token")[-1].value == live[0].value


async def test_cluster_expiry_too_soon_is_refused_then_a_date_is_taken(wiz, sandbox_wizard, wizard_sandbox) -> None:
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.open_options(wiz, pilot, "buildkite-cluster")
        screen = app.screen
        screen.query_one("#expiry-date", Input).value = (app.now() + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M")
        await pilot.press("tab", "right", "right", "space")  # description -> expiry: "On date"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert wiz.screen_name(app) == "TokenOptionsScreen"
        assert "less than 10 minutes ahead" in wiz.screen_text(app)
        later = app.now() + timedelta(days=30)
        screen.query_one("#expiry-date", Input).value = later.strftime("%Y-%m-%d %H:%M")
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ReviewScreen")
        assert app.screen.options.expires_at is not None
        assert app.screen.options.expires_at.strftime("%Y-%m-%d %H:%M") == later.strftime("%Y-%m-%d %H:%M")


async def test_unclustered_shows_the_deprecation(wiz, sandbox_wizard, wizard_sandbox) -> None:
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.open_options(wiz, pilot, "buildkite-unclustered")
        text = " ".join(wiz.screen_text(app).split())
        assert "deprecated" in text and "cluster-agent-token" in text
        await pilot.press("escape")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "TargetsScreen")
    assert list(journal_of(wizard_sandbox).all()) == []  # nothing planned, nothing changed


async def test_unclustered_agent_token_rotates_end_to_end(wiz, sandbox_wizard, wizard_sandbox) -> None:
    bk = wizard_sandbox.buildkite
    old = next(t for t in bk.agent_tokens() if t.description == "Legacy macOS agents")
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.open_options(wiz, pilot, "buildkite-unclustered")
        await wiz.review_and_mint(wiz, pilot)
        await wiz.reveal_to_summary(wiz, pilot)
        summary = " ".join(wiz.screen_text(app).split())
        assert "revoked Legacy macOS agents" in summary and "deprecated" in summary

    (record,) = journal_of(wizard_sandbox).all()
    assert record.target == "buildkite-unclustered" and record.state == "done"
    after = bk.agent_token(old.uuid)
    assert after is not None and after.revoked
    assert record.rotation_id in (after.revoked_reason or "")  # the reason names the rotation
    live = [t for t in bk.agent_tokens(include_revoked=False) if t.description.startswith("Legacy macOS agents-")]
    assert len(live) == 1 and live[0].description == record.plan["display_name"]
    stored = wizard_sandbox.state.secret_versions("cftptl-intsvc", "buildkite-legacy-agent-token")[-1]
    assert stored.value == live[0].value


async def test_buildkite_rotation_left_waiting_for_its_agents_resumes(wiz, sandbox_wizard, wizard_sandbox) -> None:
    bk = wizard_sandbox.buildkite
    old = next(t for t in bk.cluster_tokens() if t.description == "Default cluster agents")
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.open_options(wiz, pilot, "buildkite-cluster")
        await wiz.review_and_mint(wiz, pilot)
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen", what="the reveal")
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready, what="retire")
        assert app.screen.waiting  # the agents still hold the old token
        await pilot.press("l")  # leave it waiting; the journal keeps it
        await wiz.wait_until(
            pilot, lambda: wiz.screen_name(app) == "TargetsScreen" and not app.screen.reading, what="the targets"
        )
        (record,) = journal_of(wizard_sandbox).unfinished()
        assert not bk.cluster_token(old.uuid).revoked  # type: ignore[union-attr]
        await pilot.press("tab", "enter")  # the unfinished rotations' table: resume it
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen", what="the resumed retire screen")
        await wiz.checklist_to_summary(wiz, pilot)

    (done,) = journal_of(wizard_sandbox).all()
    assert done.rotation_id == record.rotation_id and done.state == "done"
    assert bk.cluster_token(old.uuid).revoked  # type: ignore[union-attr]
    live = [t for t in bk.cluster_tokens() if t.description.startswith("Default cluster agents-")]
    assert len(live) == 1 and live[0].description == done.plan["display_name"]  # resuming minted nothing more
    assert wizard_sandbox.state.secret_versions("cftptl-intsvc", "buildkite-agent-token")[-1].value == live[0].value


async def conductorone_to_paste(wiz: Any, pilot: Pilot[Any]) -> None:
    app = pilot.app
    await wiz.open_options(wiz, pilot, "buildkite-conductorone")
    text = " ".join(wiz.screen_text(app).split())
    assert "no API that creates" in text
    for scope in CONNECTOR_SCOPES:
        assert scope in text
    await pilot.press("c")  # copy the page's address (the creation-url line has the focus)
    assert app.secret_clipboard._backend.text == app.screen.creation_url()
    assert "/user/api-access-tokens/new?" in app.screen.creation_url()
    await wiz.review_and_mint(wiz, pilot)
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "PasteTokenScreen", what="the paste screen")
    # its title names the rotation, as the review's and the mint's do (the id is also in the token's description)
    rid = app.screen.url.split("-")[-1].split("&")[0]
    assert len(rid) == 8 and f"Paste the new API access token · buildkite-conductorone · rotation {rid}" in wiz.screen_text(app)


async def paste(pilot: Pilot[Any], value: str) -> None:
    field = pilot.app.screen.query_one("#token", Input)
    assert field.password
    field.value = value
    await pilot.pause()


async def test_conductorone_api_token_is_pasted_and_rotated(wiz, sandbox_wizard, wizard_sandbox, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    bk = wizard_sandbox.buildkite
    old_value = bk.seeded.connector_token
    seen: list[str] = []
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await conductorone_to_paste(wiz, pilot)
        # what a user does on the page the wizard pointed at
        new = bk.create_api_token(CONNECTOR_SCOPES, graphql=True, description="ConductorOne Buildkite connector")
        await paste(pilot, new.value)
        seen += [app.export_screenshot(), wiz.screen_text(app)]
        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) != "PasteTokenScreen")
        seen += [app.export_screenshot(), wiz.screen_text(app)]
        await wiz.reveal_to_summary(wiz, pilot)
        seen += [app.export_screenshot(), wiz.screen_text(app)]

    (record,) = journal_of(wizard_sandbox).all()
    assert record.target == "buildkite-conductorone" and record.state == "done"
    assert bk.api_token(old_value).revoked
    assert not bk.api_token(new.value).revoked
    connector = wizard_sandbox.conductorone.connector()
    assert connector is not None and connector.api_token == new.value
    stored = wizard_sandbox.state.secret_versions("cftptl-intsvc", "buildkite-conductorone-token")[-1]
    assert stored.value == new.value
    assert all(new.value not in frame for frame in seen), "the pasted token appeared on screen"
    assert all(new.value not in f"{t} {m}" for t, m in app.notified), "the pasted token appeared in a notification"
    assert all(new.value not in line for line in app.event_log)
    assert new.value not in caplog.text


async def test_an_agent_token_pasted_as_api_token_is_refused_then_pasted_again(
    wiz, sandbox_wizard, wizard_sandbox
) -> None:
    bk = wizard_sandbox.buildkite
    agent_value = bk.cluster_tokens()[0].value
    created_before = bk.counters["api_token.created"]
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await conductorone_to_paste(wiz, pilot)
        await paste(pilot, agent_value)
        await pilot.press("enter")
        await pilot.pause()
        assert wiz.screen_name(app) == "PasteTokenScreen"  # refused, not taken: paste again
        text = " ".join(wiz.screen_text(app).split())
        assert "cluster agent token" in text and "not an API access token" in text
        assert app.screen.query_one("#token", Input).value == ""
        frames = [app.export_screenshot(), wiz.screen_text(app)]
        (record,) = journal_of(wizard_sandbox).all()
        assert record.new_token is None  # no mint happened
        # then the right one
        new = bk.create_api_token(CONNECTOR_SCOPES, graphql=True, description="ConductorOne Buildkite connector")
        await paste(pilot, new.value)
        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen", what="the reveal")
    assert all(agent_value not in f for f in frames)
    assert all(agent_value not in f"{t} {m}" for t, m in app.notified)
    assert bk.counters["api_token.created"] == created_before + 1  # only the test's own page visit
    (record,) = journal_of(wizard_sandbox).all()
    assert record.new_token is not None and record.new_token["id"] == new.uuid


async def test_escape_on_the_paste_screen_stops_the_mint(wiz, sandbox_wizard, wizard_sandbox) -> None:
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await conductorone_to_paste(wiz, pilot)
        await pilot.press("escape")
        await wiz.wait_until(
            pilot, lambda: wiz.screen_name(app) == "MintScreen" and app.screen.halted is not None, what="the halt"
        )
        assert "no API access token was pasted" in app.screen.halted
        await pilot.press("r")  # retry: the paste screen comes back
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "PasteTokenScreen")


async def test_another_cluster_is_picked_and_the_token_lands_there(wiz, sandbox_wizard, wizard_sandbox) -> None:
    from textual.widgets import Select

    bk = wizard_sandbox.buildkite
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.open_options(wiz, pilot, "buildkite-cluster")
        picker = app.screen.query_one("#cluster", Select)
        assert picker.value == "Default cluster"  # the target's, preselected
        picker.value = "linux-large"
        await pilot.pause()
        await wiz.review_and_mint(wiz, pilot)
        await wiz.reveal_to_summary(wiz, pilot)
    (record,) = journal_of(wizard_sandbox).all()
    assert record.state == "done" and record.plan["cluster"] == "linux-large"
    assert "cluster linux-large" in record.plan["lines"][0]
    large = next(c for c in bk.clusters.values() if c.name == "linux-large")
    assert record.plan["display_name"] in [t.description for t in bk.cluster_tokens(large.uuid)]
