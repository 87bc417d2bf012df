"""The one-time reveal: masked by default, copy and countdown, gated Continue, and a canary that never leaks."""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from textual.app import ComposeResult
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Input,
    OptionList,
    RadioButton,
    RadioSet,
    Select,
    Static,
    Switch,
)

from app.clipboard import CLEARED, LEFT_ALONE, OSC52_OVERWRITTEN, Clipboard
from app.secret import SecretValue
from screens import WizardScreen
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
    reveal = sorted(p.name for p in SNAPSHOTS.glob("test_reveal_screen/*.svg"))
    assert reveal == ["test_snapshot_acknowledged.svg", "test_snapshot_masked.svg"]
    svgs = [*SNAPSHOTS.glob("test_reveal_screen/*.svg"), *SNAPSHOTS.glob("test_scopes_screen/*.svg")]
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
    assert {"reveal.toggle", "reveal.copy", "reveal.acknowledge", "reveal.continue"} <= ids


def test_snapshot_masked(snap_compare, host_app, fake_backend) -> None:
    clip = Clipboard(Osc52(), backend=fake_backend(), environ={})
    assert snap_compare(host_app(reveal_screen(clip, stored_in=[])), terminal_size=(80, 24))


def test_snapshot_acknowledged(snap_compare, host_app, fake_backend) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        await pilot.press("space")
        await pilot.pause()

    clip = Clipboard(Osc52(), backend=fake_backend(), environ={})
    assert snap_compare(host_app(reveal_screen(clip, stored_in=[])), terminal_size=(80, 24), run_before=run_before)


# -- issue 15: Space ticks the acknowledgement at once; the footer says so; the focus shows ----------


def footer_text(app: Any) -> str:
    return screen_text(app).splitlines()[-1]


async def test_space_on_open_ticks_the_acknowledgement(host_app, fake_backend) -> None:
    """The bug: Space did nothing until Tab reached the check box, and nothing said so."""
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=fake_backend(), environ={}), stored_in=[]))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        tick = screen.query_one(Tick)
        assert screen.focused is not tick  # no Tab first
        assert screen.query_one("#continue", Button).disabled
        await pilot.press("space")
        await pilot.pause()
        assert tick.value
        assert not screen.query_one("#continue", Button).disabled
        assert value_text(screen).startswith(MASK)  # ticking reveals nothing
        await pilot.press("space")  # and unticks, like the box itself
        await pilot.pause()
        assert not tick.value
        assert screen.query_one("#continue", Button).disabled
        tick.focus()
        await pilot.press("space")  # the focused box takes its own Space: still one toggle
        await pilot.pause()
        assert tick.value
        await pilot.press("ctrl+s")
        await pilot.pause()
        no_canary_anywhere(app)
    assert app.dismissed and app.result is True


async def test_footer_says_how_to_acknowledge_and_continue(host_app, fake_backend) -> None:
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=fake_backend(), environ={}), stored_in=[]))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert screen.query(Footer)
        footer = footer_text(app)
        for shown in ("r Reveal/hide", "c Copy", "space I stored it", "^s Continue"):
            assert shown in footer, footer
        intro = str(screen.query_one("#intro", Static).content)
        assert "Space once you have stored it" in intro
        assert "Ctrl+S continues" in intro


async def test_no_acknowledgement_key_when_already_stored(host_app, fake_backend) -> None:
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=fake_backend(), environ={})))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        footer = footer_text(app)
        assert "I stored it" not in footer and "^s Continue" in footer, footer
        assert not screen.check_action("acknowledge", ())
        await pilot.press("space")  # harmless
        await pilot.pause()
        assert not app.dismissed


def focus_mark(widget: Widget) -> tuple[object, ...]:
    """What shows the focus on ``widget`` apart from colour: border glyphs and text styles."""

    def text_style(styles: Any) -> tuple[bool, bool, bool]:
        style = styles.text_style
        return (bool(style.bold), bool(style.underline), bool(style.reverse))

    def borders(styles: Any) -> tuple[str, ...]:
        edges = (styles.border_top, styles.border_right, styles.border_bottom, styles.border_left)
        return tuple(edge[0] for edge in edges)

    mark: list[object] = [borders(widget.styles), text_style(widget.styles)]
    component = {
        Checkbox: "toggle--label",
        DataTable: "datatable--cursor",
        OptionList: "option-list--option-highlighted",
    }
    for kind, name in component.items():
        if isinstance(widget, kind):
            mark.append(text_style(widget.get_component_styles(name)))
    if isinstance(widget, RadioSet):
        current = widget.query_one("RadioButton.-selected", RadioButton)
        mark.append(text_style(current.get_component_styles("toggle--label")))
    if isinstance(widget, Select):
        shown = widget.query_one("SelectCurrent")
        mark.extend([borders(shown.styles), text_style(shown.styles)])
    return tuple(mark)


class Gallery(WizardScreen[None]):
    """Every kind of focusable widget the wizard uses, bordered and compact."""

    def compose(self) -> ComposeResult:
        yield Button("Plain", id="button")
        yield Button("Compact", id="button-compact", compact=True)
        yield Checkbox("Bordered", id="checkbox")
        yield Checkbox("Compact", id="checkbox-compact", compact=True)
        with RadioSet(id="radios"):
            yield RadioButton("One", value=True)
            yield RadioButton("Two")
        with RadioSet(id="radios-compact", compact=True):
            yield RadioButton("One", value=True)
            yield RadioButton("Two")
        yield Input("text", id="input")
        yield Input("text", id="input-compact", compact=True)
        yield Select([("a", 1), ("b", 2)], value=1, id="select", allow_blank=False)
        yield Select([("a", 1), ("b", 2)], value=1, id="select-compact", allow_blank=False, compact=True)
        yield Switch(id="switch")
        yield OptionList("first", "second", id="options")
        yield DataTable(id="table")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("a", "b")
        table.add_rows([("1", "2"), ("3", "4")])
        self.query_one(OptionList).highlighted = 0


GALLERY = [
    "button",
    "button-compact",
    "checkbox",
    "checkbox-compact",
    "radios",
    "radios-compact",
    "input",
    "input-compact",
    "select",
    "select-compact",
    "switch",
    "options",
    "table",
]


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light", "catppuccin-latte", "ansi-dark"])
async def test_focus_shows_by_more_than_colour(host_app, theme, monkeypatch) -> None:
    """Each focusable widget's focus changes a border glyph or a text style, in dark and light themes.

    Colours are left out of ``focus_mark`` on purpose: what differs here still shows under NO_COLOR.
    """
    monkeypatch.setenv("NO_COLOR", "1")
    app = host_app(lambda app: Gallery())
    app.theme = theme
    async with app.run_test(size=(80, 60)) as pilot:
        await pilot.pause()
        assert app.no_color
        screen = app.screen
        for widget_id in GALLERY:
            widget = screen.query_one(f"#{widget_id}", Widget)
            screen.set_focus(None)
            await pilot.pause()
            blurred = focus_mark(widget)
            widget.focus()
            await pilot.pause()
            assert screen.focused is widget
            assert focus_mark(widget) != blurred, f"{widget_id}: focus shows by colour only in {theme}"


async def test_reveal_focus_moves_visibly(host_app, fake_backend) -> None:
    """On the reveal screen itself: each of the check box and the buttons is visibly focused in turn."""
    app = host_app(reveal_screen(Clipboard(Osc52(), backend=fake_backend(), environ={}), stored_in=[]))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        screen.query_one(Tick).value = True  # Continue enabled, so it can take the focus too
        await pilot.pause()
        widgets: list[Widget] = [screen.query_one(Tick), *screen.query(Button)]
        screen.set_focus(None)
        await pilot.pause()
        blurred = {w.id: focus_mark(w) for w in widgets}
        for widget in widgets:
            widget.focus()
            await pilot.pause()
            assert focus_mark(widget) != blurred[widget.id], widget.id
            assert all(focus_mark(other) == blurred[other.id] for other in widgets if other is not widget)
