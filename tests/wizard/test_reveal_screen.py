"""The one-time reveal: masked by default, copy and countdown, gated Continue, and a canary that never leaks."""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Button, Static

from app.clipboard import CLEARED, LEFT_ALONE, OSC52_OVERWRITTEN, Clipboard
from app.secret import SecretValue
from screens.reveal import MASK, RevealScreen, Tick

pytestmark = pytest.mark.anyio

CANARY = "CANARY-pat-7d1c9e4b2a55f0e8-do-not-leak"
SNAPSHOTS = Path(__file__).parent / "__snapshots__"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Osc52:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def __call__(self, text: str) -> None:
        self.writes.append(text)


def reveal_screen(clipboard: Clipboard, *, stored_in: list[str] | None = None, clear_after: int = 30) -> Any:
    return lambda app: RevealScreen(
        SecretValue(CANARY),
        token_label="keda-agent-pools (hmcts)",
        expires_at="2027-02-20",
        stored_in=["Key Vault cftptl-intsvc / azure-devops-token"] if stored_in is None else stored_in,
        clipboard=clipboard,
        clear_after=clear_after,
    )


def value_text(screen: RevealScreen) -> str:
    return str(screen.query_one("#value", Static).content)


def status(screen: RevealScreen) -> str:
    return str(screen.query_one("#clipboard-status", Static).content)


async def start(pilot: Pilot[Any]) -> RevealScreen:
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, RevealScreen)
    return screen


def screen_text(app: Any) -> str:
    """The screen as plain text, one line per row (the SVG splits a row wherever the style changes)."""
    svg = app.export_screenshot()
    rows: dict[float, list[tuple[float, str]]] = {}
    for x, y, text in re.findall(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        rows.setdefault(float(y), []).append((float(x), html.unescape(text).replace("\xa0", " ")))
    return "\n".join("".join(t for _, t in sorted(parts)) for _, parts in sorted(rows.items()))


def no_canary_anywhere(app: Any) -> None:
    """Not in a notification (recorded or queued), not on the screen."""
    assert all(CANARY not in title + message for title, message in app.notified)
    assert all(CANARY not in n.message + n.title for n in app._notifications)
    assert CANARY not in screen_text(app)
    assert CANARY not in app.export_screenshot()


async def test_masked_by_default_with_fingerprint(host_app, fake_backend) -> None:
    clip = Clipboard(Osc52(), backend=fake_backend(), environ={})
    async with host_app(reveal_screen(clip)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert value_text(screen).startswith(MASK)
        assert SecretValue(CANARY).fingerprint in value_text(screen)
        assert CANARY not in screen_text(pilot.app)
        assert "Key Vault cftptl-intsvc / azure-devops-token" in str(screen.query_one("#stored", Static).content)
        assert not screen.query(Tick)  # stored already: nothing to acknowledge
        assert not screen.query_one("#continue", Button).disabled


async def test_r_reveals_and_hides(host_app, fake_backend) -> None:
    clip = Clipboard(Osc52(), backend=fake_backend(), environ={})
    async with host_app(reveal_screen(clip)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("r")
        await pilot.pause()
        assert value_text(screen).splitlines()[0] == CANARY
        assert CANARY in screen_text(pilot.app)
        assert str(screen.query_one("#toggle", Button).label) == "Hide"
        await pilot.press("r")
        await pilot.pause()
        assert value_text(screen).startswith(MASK)
        assert CANARY not in screen_text(pilot.app)


async def test_copy_uses_the_clipboard_and_says_what_happened(host_app, fake_backend) -> None:
    backend, osc = fake_backend("before"), Osc52()
    app = host_app(reveal_screen(Clipboard(osc, backend=backend, environ={})))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("c")
        await pilot.pause()
        assert backend.text == CANARY
        assert osc.writes == []
        assert ("Copied", "Copied to the system clipboard; it will be cleared in 30 s.") in app.notified
        assert screen.remaining == 30
        assert "cleared in 30 s" in status(screen)
        assert "Clipboard managers" in str(screen.query_one("#clipboard-note", Static).content)
        no_canary_anywhere(app)


async def test_countdown_clears_our_copy_at_zero(host_app, fake_backend) -> None:
    backend = fake_backend()
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=backend, environ={}), clear_after=3))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("c")
        screen.tick()
        screen.tick()
        await pilot.pause()
        assert "cleared in 1 s" in status(screen)
        assert backend.text == CANARY
        screen.tick()
        await pilot.pause()
        assert backend.text == ""
        assert status(screen) == CLEARED
        assert ("Clipboard", CLEARED) in app.notified
        assert screen.remaining is None


async def test_countdown_leaves_the_clipboard_alone_if_someone_else_copied(host_app, fake_backend) -> None:
    backend = fake_backend()
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=backend, environ={}), clear_after=2))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("c")
        backend.text = "an engineer's own clipboard"
        screen.tick()
        screen.tick()
        await pilot.pause()
        assert backend.text == "an engineer's own clipboard"
        assert status(screen) == LEFT_ALONE


async def test_countdown_runs_on_a_timer(host_app, fake_backend, monkeypatch) -> None:
    monkeypatch.setattr(RevealScreen, "TICK_SECONDS", 0.01)
    backend = fake_backend()
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=backend, environ={}), clear_after=3))
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        await pilot.press("c")
        for _ in range(100):
            if backend.text == "":
                break
            await pilot.pause(0.01)
        assert backend.text == ""


async def test_over_ssh_copies_with_osc52_and_overwrites_at_zero(host_app, fake_backend) -> None:
    backend, osc = fake_backend("local"), Osc52()
    clip = Clipboard(osc, backend=backend, environ={"SSH_CONNECTION": "10.0.0.1 5000 10.0.0.2 22"})
    app = host_app(reveal_screen(clip, clear_after=1))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("c")
        await pilot.pause()
        assert osc.writes == [CANARY]
        assert backend.text == "local"
        assert ("Copied", "Copied through the terminal (OSC 52); it will be cleared in 1 s.") in app.notified
        screen.tick()
        await pilot.pause()
        assert osc.writes == [CANARY, ""]
        assert status(screen) == OSC52_OVERWRITTEN
        no_canary_anywhere(app)


async def test_no_clipboard_is_an_error_toast_without_the_value(host_app, fake_backend) -> None:
    app = host_app(reveal_screen(Clipboard(None, backend=fake_backend(present=False), environ={})))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("c")
        await pilot.pause()
        assert any(title == "Not copied" for title, _ in app.notified)
        assert "Not copied" in status(screen)
        no_canary_anywhere(app)


async def test_continue_is_gated_until_stored_is_ticked(host_app, fake_backend) -> None:
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=fake_backend(), environ={}), stored_in=[]))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert "Nowhere yet" in str(screen.query_one("#stored", Static).content)
        assert screen.query_one("#continue", Button).disabled
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not app.dismissed
        assert any("I have stored it somewhere safe" in message for _, message in app.notified)
        screen.query_one(Tick).focus()
        await pilot.press("space")
        await pilot.pause()
        assert not screen.query_one("#continue", Button).disabled
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.dismissed and app.result is True


async def test_continue_wipes_the_value_and_hands_the_countdown_to_the_app(host_app, fake_backend) -> None:
    backend = fake_backend()
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=backend, environ={})))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("r", "c")
        await pilot.pause()
        assert CANARY in screen_text(pilot.app)
        shown = screen.query_one("#value", Static)  # kept to look at after the screen is gone
        screen.query_one("#continue", Button).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.result is True
        assert pilot.app.screen is not screen
        assert screen._value is None
        assert CANARY not in str(shown.content)
        assert "no longer shown" in str(shown.content)
        assert not screen.check_action("toggle_reveal", ())
        no_canary_anywhere(app)
        # the clipboard still holds the copy; the app clears it when the countdown would have ended
        assert backend.text == CANARY
    assert CANARY not in str(shown.content)


async def test_countdown_handed_to_the_app_still_clears(host_app, fake_backend, monkeypatch) -> None:
    monkeypatch.setattr(RevealScreen, "TICK_SECONDS", 0.01)
    backend = fake_backend()
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=backend, environ={}), clear_after=5))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("c")
        screen.action_continue()
        for _ in range(100):
            if backend.text == "":
                break
            await pilot.pause(0.01)
        assert backend.text == ""
        assert ("Clipboard", CLEARED) in app.notified


async def test_removed_screen_drops_the_value(host_app, fake_backend) -> None:
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=fake_backend(), environ={})))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("r")
        await pilot.pause()
        await app.pop_screen()
        await pilot.pause()
        assert screen._value is None


async def test_escape_does_not_go_back(host_app, fake_backend) -> None:
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=fake_backend(), environ={})))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert pilot.app.screen is screen
        assert any("no way back" in message for _, message in app.notified)


async def test_canary_never_leaks(host_app, fake_backend, caplog) -> None:
    """Every action, then every place a value could end up: notifications, logs, the screen."""
    caplog.set_level(logging.DEBUG)
    backend = fake_backend()
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=backend, environ={}), stored_in=[], clear_after=2))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        screen = await start(pilot)
        await pilot.press("c")
        screen.tick()
        await pilot.press("c")  # copy again restarts the countdown
        await pilot.press("escape")
        screen.tick()
        screen.tick()
        await pilot.pause()
        no_canary_anywhere(app)
        app.clear_notifications()  # toasts stack up the right side and may cover the value
        await pilot.press("r")
        await pilot.pause()
        assert CANARY in screen_text(app)  # the check can see it when it is there
        await pilot.press("r")
        await pilot.pause()
        no_canary_anywhere(app)
        screen.query_one(Tick).value = True
        await pilot.press("ctrl+s")
        await pilot.pause()
        no_canary_anywhere(app)
    assert len(app.notified) >= 4
    assert CANARY not in caplog.text


def test_snapshots_hold_no_token() -> None:
    svgs = [*SNAPSHOTS.glob("test_reveal_screen/*.svg"), *SNAPSHOTS.glob("test_scopes_screen/*.svg")]
    assert len(svgs) == 4
    for svg in svgs:
        assert CANARY not in svg.read_text(), svg
        assert "CANARY" not in svg.read_text(), svg


def test_every_binding_has_an_id_and_a_tooltip() -> None:
    ids = set()
    for binding in RevealScreen.BINDINGS:
        assert isinstance(binding, Binding)
        assert binding.id and binding.id.startswith("reveal."), binding
        assert binding.tooltip, binding
        ids.add(binding.id)
    assert {"reveal.toggle", "reveal.copy", "reveal.continue"} <= ids


def test_snapshot_masked(snap_compare, host_app, fake_backend) -> None:
    clip = Clipboard(Osc52(), backend=fake_backend(), environ={})
    assert snap_compare(host_app(reveal_screen(clip, stored_in=[])), terminal_size=(80, 24))
