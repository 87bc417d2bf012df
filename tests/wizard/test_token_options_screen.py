"""Issue 15 (items 4 and 6a): the token options screen and the paste step, as a newcomer and a real user meet them.

- ConductorOne's API access token in the demo: the creation page is the sandbox's, over HTTPS with the sandbox's own
  CA, which no browser trusts. ctrl+n on the paste step fills the page in from the terminal, and the token it creates
  goes through the same checks as a pasted one (prefix, then the exact scopes with GET /v2/access-token), never shown.
- A real user reads what the page is (buildkite.com > Personal Settings > API Access Tokens > New, pre-filled).
- A Buildkite agent token's expiry is said: none unless asked for, fixed once the token is made.

The end-to-end tests run the wizard on a started sandbox over loopback; the snapshots use a host App and
providers pointed at fixed addresses (nothing is called), so the SVGs do not drift with the sandbox's ports.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, RadioSet, Static

from app.config import parse_config
from app.errors import KeyturnError
from app.journal import RotationJournal
from app.secret import SecretValue
from providers.base import Interaction
from providers.registry import make_provider
from screens.paste_token import PasteTokenScreen
from screens.token_options import CLUSTER_EXPIRY_NOTES, EXPIRY_DAYS, EXPIRY_NONE, TokenOptionsScreen

pytestmark = pytest.mark.anyio

CONNECTOR_SCOPES = ("read_teams", "read_organizations", "read_user")
FROZEN_NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SANDBOX_URL = "https://127.0.0.1:8443"  # a fixed loopback address: the snapshot does not depend on a port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def journal_of(sandbox: Any) -> RotationJournal:
    return RotationJournal(sandbox.directory / "journal")


def text_of(app: Any) -> str:
    return " ".join("\n".join(s.text for s in app.screen._compositor.render_strips()).split())


# -- a deterministic world for the host-App tests and snapshots ----------------------------------------


def config(rest_url: str | None, *, sandbox: bool = False, cluster_validity: int | None = None) -> Any:
    account: dict[str, Any] = {"platform": "buildkite", "organization": "contoso", "api_token": "env:BK_TOKEN"}
    if rest_url is not None:
        account |= {"rest_url": rest_url, "graphql_url": rest_url + "/v1"}
    cluster: dict[str, Any] = {
        "account": "buildkite",
        "token_type": "cluster-agent-token",
        "token_name": "Default cluster agents",
        "cluster": "Default cluster",
    }
    if cluster_validity is not None:
        cluster["validity_days"] = cluster_validity
    return parse_config(
        {
            "settings": {"sandbox": sandbox},
            "accounts": {"buildkite": account},
            "targets": {
                "buildkite-conductorone": {
                    "account": "buildkite",
                    "token_type": "api-access-token",
                    "token_name": "ConductorOne Buildkite connector",
                    "preset": "conductorone",
                },
                "buildkite-cluster": cluster,
                "buildkite-unclustered": {
                    "account": "buildkite",
                    "token_type": "unclustered-agent-token",
                    "token_name": "Legacy macOS agents",
                },
            },
        }
    )


def options_screen(cfg: Any, target_name: str) -> TokenOptionsScreen:
    target = cfg.targets[target_name]
    provider = make_provider(
        target.account,
        cfg.accounts[target.account],
        target_name=target_name,
        target=target,
        ca_bundle=None,
        resolve_secret=lambda ref: SecretValue("bkua_unused"),
        interaction=Interaction(),
    )
    clusters = ["Default cluster", "linux-large"] if provider.token_kind == "cluster-agent-token" else None
    return TokenOptionsScreen(target_name, target, provider, clusters=clusters)


def host(host_app: Any, make: Any, *, sandbox: bool) -> Any:
    """A host App that says whether the wizard runs on the sandbox (as KeyturnApp.is_sandbox does)."""

    class Host(host_app):  # type: ignore[misc,valid-type]
        is_sandbox = sandbox

        def now(self) -> datetime:
            return FROZEN_NOW

    return Host(make)


# -- ConductorOne in the demo: no browser ---------------------------------------------------------------


async def test_conductorone_is_created_in_the_sandbox_without_a_browser(
    wiz, sandbox_wizard, wizard_sandbox, caplog
) -> None:
    """The demo's whole ConductorOne rotation from the keyboard: ctrl+n instead of a browser, to the summary."""
    caplog.set_level(logging.DEBUG)
    bk = wizard_sandbox.buildkite
    old_value = bk.seeded.connector_token
    seen: list[str] = []
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.open_options(wiz, pilot, "buildkite-conductorone")
        text = text_of(app)
        assert "Personal Settings › API Access Tokens › New" in text
        assert "ctrl+n" in text  # the sandbox says there is a terminal path
        await wiz.review_and_mint(wiz, pilot)
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "PasteTokenScreen", what="the paste screen")
        assert app.screen.check_action("sandbox_create", ()) is True
        seen += [app.export_screenshot(), wiz.screen_text(app)]
        before = bk.counters["rest.access_token.get"]
        await pilot.press("ctrl+n")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) != "PasteTokenScreen", what="the created token")
        assert bk.counters["rest.access_token.get"] > before  # the scope check ran on it (GET /v2/access-token)
        seen += [app.export_screenshot(), wiz.screen_text(app)]
        await wiz.reveal_to_summary(wiz, pilot)
        seen += [app.export_screenshot(), wiz.screen_text(app)]

    (record,) = journal_of(wizard_sandbox).all()
    assert record.target == "buildkite-conductorone" and record.state == "done"
    made = [t for t in bk.api_tokens.values() if t.description == record.plan["display_name"]]
    assert len(made) == 1, "the page made exactly one token, named as the plan says"
    new = made[0]
    assert sorted(new.all_scopes) == sorted((*CONNECTOR_SCOPES, "graphql"))  # exactly what the page was pre-filled with
    assert bk.counters["api_token.created"] == 1
    assert bk.api_token(old_value).revoked and not bk.api_token(new.value).revoked
    connector = wizard_sandbox.conductorone.connector()
    assert connector is not None and connector.api_token == new.value  # the follow-up updated the connector
    assert wizard_sandbox.state.secret_versions("cftptl-intsvc", "buildkite-conductorone-token")[-1].value == new.value
    # the canary: the created value is nowhere a person or a log could read it
    assert all(new.value not in frame for frame in seen), "the created token appeared on screen"
    assert all(new.value not in f"{t} {m}" for t, m in app.notified), "the created token appeared in a notification"
    assert all(new.value not in line for line in app.event_log)
    assert new.value not in caplog.text
    assert not wizard_sandbox.state.internal_errors


async def test_a_token_with_the_wrong_scopes_is_still_refused(wiz, sandbox_wizard, wizard_sandbox) -> None:
    """The terminal path does not skip the checks: a page that ticks an extra scope makes a token the mint refuses."""
    from urllib.parse import quote

    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.open_options(wiz, pilot, "buildkite-conductorone")
        await wiz.review_and_mint(wiz, pilot)
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "PasteTokenScreen", what="the paste screen")
        app.screen.url += "&" + quote("scopes[]") + "=read_agents"  # as if the page had been pre-filled wrongly
        await pilot.press("ctrl+n")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "MintScreen" and app.screen.halted, what="refusal")
        assert "wrong scopes" in app.screen.halted and "extra read_agents" in app.screen.halted
    (record,) = journal_of(wizard_sandbox).all()
    assert record.state != "done"


async def test_the_sandbox_key_is_absent_for_a_real_user(host_app) -> None:
    """buildkite.com: the screen says what the page is, and neither screen offers ctrl+n."""
    cfg = config(None)
    app = host(host_app, lambda a: options_screen(cfg, "buildkite-conductorone"), sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = text_of(app)
        assert "The page below is buildkite.com › Personal Settings › API Access Tokens › New" in text
        assert "3 scopes the connector needs" in text and "pick organization contoso" in text
        assert "come back and paste it" in text
        assert not app.screen.query("#sandbox-path")
        assert app.screen.creation_url().startswith("https://buildkite.com/user/api-access-tokens/new?")
    paste = PasteTokenScreen("buildkite-conductorone", "https://buildkite.com/user/api-access-tokens/new?description=x")
    app = host(host_app, lambda a: paste, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert paste.check_action("sandbox_create", ()) is False  # hidden from the footer
        assert not paste.query("#sandbox-path")
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert not paste.creating and not app.dismissed


async def test_a_sandbox_wizard_never_submits_a_real_page(host_app) -> None:
    """Even on the sandbox, ctrl+n is offered only when the page's address is loopback."""
    paste = PasteTokenScreen("t", "https://buildkite.com/user/api-access-tokens/new?description=x")
    app = host(host_app, lambda a: paste, sandbox=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert paste.check_action("sandbox_create", ()) is False


def test_the_page_filler_refuses_anything_but_the_sandbox_page() -> None:
    from app.sandbox.buildkite import create_on_token_page

    with pytest.raises(KeyturnError, match="only the sandbox's own token page"):
        create_on_token_page("https://buildkite.com/user/api-access-tokens/new?description=x", None)
    with pytest.raises(KeyturnError, match="only the sandbox's own token page"):
        create_on_token_page("https://127.0.0.1:1/v2/access-token", None)


def test_the_page_filler_submits_the_page_as_prefilled(tmp_path) -> None:
    from urllib.parse import quote, urlencode

    from app.sandbox.buildkite import NEW_TOKEN_PATH, BuildkiteStandalone, create_on_token_page

    with BuildkiteStandalone(tmp_path) as bk:
        query = urlencode(
            [("description", "c1 & co"), *(("scopes[]", s) for s in (*CONNECTOR_SCOPES, "graphql"))], quote_via=quote
        )
        value = create_on_token_page(f"{bk.rest_url}{NEW_TOKEN_PATH}?{query}", bk.ca_path)
        tok = bk.world.api_token(value.reveal())
        assert tok is not None and tok.description == "c1 & co" and tok.graphql
        assert sorted(tok.scopes) == sorted(CONNECTOR_SCOPES)
        assert value.reveal() not in repr(value)
        with pytest.raises(KeyturnError, match="Select at least one scope"):
            create_on_token_page(f"{bk.rest_url}{NEW_TOKEN_PATH}?description=x", bk.ca_path)


async def test_a_created_token_the_check_refuses_stays_hidden(host_app, tmp_path) -> None:
    """The quick check runs on the created token too; refused, the screen says why and shows no value."""
    from app.sandbox.buildkite import NEW_TOKEN_PATH, BuildkiteStandalone

    def refuse(value: SecretValue) -> None:
        raise KeyturnError("refused by the check")

    with BuildkiteStandalone(tmp_path) as bk:
        url = f"{bk.rest_url}{NEW_TOKEN_PATH}?description=x&scopes%5B%5D=read_user"
        paste = PasteTokenScreen("t", url, check=refuse)

        class Host(host_app):  # type: ignore[misc,valid-type]
            is_sandbox = True
            sandbox = type("SB", (), {"ca_path": bk.ca_path})()

        app = Host(lambda a: paste)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("ctrl+n")
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            assert not app.dismissed and paste.refused == "refused by the check"
            (made,) = [t for t in bk.world.api_tokens.values() if t.description == "x"]
            assert made.value not in app.export_screenshot()
            assert paste.query_one("#token", Input).value == ""


# -- what the expiry of an agent token is --------------------------------------------------------------


async def test_a_cluster_token_says_it_has_no_expiry(host_app) -> None:
    cfg = config(SANDBOX_URL)
    app = host(host_app, lambda a: options_screen(cfg, "buildkite-cluster"), sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert screen._expiry_mode() == EXPIRY_NONE
        assert "None: the token lives until it is revoked" in text_of(app)
        assert "at least 10 minutes ahead" in text_of(app)
        screen.query_one("#expiry", RadioSet).query_one(f"#{EXPIRY_DAYS}").value = True  # "In days"
        await pilot.pause()
        assert str(screen.query_one("#expiry-note", Static).render()) == CLUSTER_EXPIRY_NOTES[EXPIRY_DAYS]
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.result is not None and app.result.expires_at is not None


async def test_a_cluster_token_takes_the_configured_validity(host_app) -> None:
    """validity_days set on the target: the wizard offers it, as a headless rotate would use it."""
    cfg = config(SANDBOX_URL, cluster_validity=30)
    app = host(host_app, lambda a: options_screen(cfg, "buildkite-cluster"), sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.screen._expiry_mode() == EXPIRY_DAYS
        assert app.screen.query_one("#expiry-days", Input).value == "30"
        assert app.screen.query_one("#expiry", RadioSet).pressed_button.id == EXPIRY_DAYS  # type: ignore[union-attr]


async def test_an_unclustered_token_says_it_cannot_expire(host_app) -> None:
    cfg = config(SANDBOX_URL)
    app = host(host_app, lambda a: options_screen(cfg, "buildkite-unclustered"), sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = text_of(app)
        assert "Expiry none" in text and "cannot expire" in text


async def test_the_review_says_no_expiry(wiz, sandbox_wizard) -> None:
    app = sandbox_wizard()
    async with app.run_test(size=(100, 30)) as pilot:
        await wiz.open_options(wiz, pilot, "buildkite-cluster")
        await pilot.press("ctrl+s")
        await wiz.wait_until(
            pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None, what="the plan"
        )
        assert "no expiry" in text_of(app)
        await pilot.press("escape")


# -- snapshots (80x24) ---------------------------------------------------------------------------------


def test_snapshot_conductorone_in_the_sandbox(snap_compare, host_app) -> None:
    cfg = config(SANDBOX_URL, sandbox=True)
    app = host(host_app, lambda a: options_screen(cfg, "buildkite-conductorone"), sandbox=True)
    assert snap_compare(app, terminal_size=(80, 24))


def test_snapshot_paste_in_the_sandbox(snap_compare, host_app) -> None:
    url = f"{SANDBOX_URL}/user/api-access-tokens/new?description=ConductorOne%20Buildkite%20connector-20261122-5eed0001"
    app = host(host_app, lambda a: PasteTokenScreen("buildkite-conductorone", url), sandbox=True)
    assert snap_compare(app, terminal_size=(80, 24))


def test_snapshot_cluster_no_expiry(snap_compare, host_app) -> None:
    cfg = config(SANDBOX_URL)
    app = host(host_app, lambda a: options_screen(cfg, "buildkite-cluster"), sandbox=False)

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
