"""Show a new token once: masked until asked, copied on request, gone when the engineer moves on.

The value reaches a widget only while it is revealed; notifications and the status line say what
happened to it (copied, cleared) and never what it is. A copy is taken back off the clipboard after
``clear_after`` seconds, and only if the clipboard still holds it. There is no way back to this
screen: leaving it drops the value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.widgets import Button, Checkbox, Footer, Label, Static

from app.clipboard import OSC52, SYSTEM, Clipboard, ClipboardUnavailableError
from app.secret import SecretValue
from screens import WizardScreen

MASK = "••••••••"
CLIPBOARD_NOTE = (
    "Clipboard managers and terminal scrollback may keep their own copies: paste straight into "
    "the vault, then clear your clipboard history if you keep one."
)
_WHERE = {SYSTEM: "Copied to the system clipboard", OSC52: "Copied through the terminal (OSC 52)"}


class Body(VerticalScroll, can_focus=False):
    """The scrolling form; not a tab stop itself: focusing a field scrolls it into view."""


class Tick(Checkbox):
    """A check box that draws its X only when ticked, so its state reads without colour (NO_COLOR)."""

    def render(self) -> Content:
        self.BUTTON_INNER = "X" if self.value else " "
        return super().render()


def _when(expires_at: str | datetime | None) -> str:
    if expires_at is None:
        return "not given by the platform"
    if isinstance(expires_at, datetime):
        if expires_at.tzinfo is not None:
            expires_at = expires_at.astimezone(UTC)
        return expires_at.strftime("%Y-%m-%d %H:%M UTC")
    return expires_at


def _clear_later(app: App[object], clipboard: Clipboard) -> None:
    """The countdown's end, run by the app once the screen is gone."""
    if clipboard.pending:
        app.notify(clipboard.clear_if_ours(), title="Clipboard", markup=False)


class RevealScreen(WizardScreen[bool]):
    """The one-time reveal. Dismisses with ``True`` on Continue; there is no cancel.

    Every action has a screen-level key shown in the footer, whichever button has the focus: the
    acknowledgement too (Space), so it needs no Tab first (issue 15).
    """

    CSS_PATH = "reveal.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "toggle_reveal", "Reveal/hide", id="reveal.toggle", tooltip="Show or hide the token"),
        Binding(
            "c",
            "copy",
            "Copy",
            id="reveal.copy",
            tooltip="Copy the token; the clipboard is cleared after the countdown if it still holds it",
        ),
        Binding(
            "space",
            "acknowledge",
            "I stored it",
            id="reveal.acknowledge",
            tooltip="Tick (or untick) “I have stored it somewhere safe”; Continue needs it ticked",
        ),
        Binding(
            "ctrl+s",
            "continue",
            "Continue",
            id="reveal.continue",
            tooltip="Go on to the follow-ups; the token is not shown again",
        ),
        Binding(
            "escape",
            "no_way_back",
            "Back",
            show=False,
            id="reveal.no_back",
            tooltip="There is no way back: the token exists now",
        ),
    ]

    # How long one countdown step lasts; tests shorten it.
    TICK_SECONDS: ClassVar[float] = 1.0

    def __init__(
        self,
        value: SecretValue,
        *,
        token_label: str,
        expires_at: str | datetime | None,
        stored_in: list[str],
        clipboard: Clipboard,
        clear_after: int = 30,
        target: str | None = None,
        rotation_id: str | None = None,
    ) -> None:
        super().__init__()
        self.target = target
        self.rotation_id = rotation_id
        self._value: SecretValue | None = value
        self._fingerprint = value.fingerprint
        self.token_label = token_label
        self.expires_at = _when(expires_at)
        self.stored_in = list(stored_in)
        self.clipboard = clipboard
        self.clear_after = clear_after
        self.revealed = False
        self.remaining: int | None = None  # seconds left before the clipboard is cleared
        self._countdown: Timer | None = None
        self._left = False

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # "<step> · <target> · rotation <id8>" like every step; the token's name is the first row below
        where = f" · {self.target} · rotation {self.rotation_id[:8]}" if self.target and self.rotation_id else f" · {self.token_label}"
        yield Static(Content.assemble(("Your new token", "bold"), where), id="title")
        with Body(id="body"):
            yield Static(self._intro(), id="intro", markup=False)
            if self.target and self.rotation_id:
                with Horizontal(classes="field"):
                    yield Label("Token name", classes="field-label")
                    yield Static(self.token_label, id="token-name", markup=False)
            with Horizontal(classes="field"):
                yield Label("Token", classes="field-label")
                yield Static(self._masked(), id="value", markup=False)
            with Horizontal(classes="field"):
                yield Label("Expires", classes="field-label")
                yield Static(self.expires_at, id="expires", markup=False)
            with Horizontal(classes="field"):
                yield Label("Stored in", classes="field-label")
                if self.stored_in:
                    yield Static("\n".join(f"✓ {where}" for where in self.stored_in), id="stored", markup=False)
                else:
                    yield Static(
                        "⚠ Nowhere yet. Store it (a vault, your password manager) before you continue.",
                        id="stored",
                        classes="warning",
                        markup=False,
                    )
            if not self.stored_in:
                yield Tick("I have stored it somewhere safe", id="stored-ack")
            with Horizontal(classes="field"):
                yield Label("Clipboard", classes="field-label")
                yield Static("Not copied.", id="clipboard-status", markup=False)
            yield Static(CLIPBOARD_NOTE, id="clipboard-note", classes="note", markup=False)
        with Horizontal(id="actions"):
            yield Button("Reveal", id="toggle", compact=True)
            yield Button("Copy", id="copy", compact=True)
            yield Button("Continue", id="continue", variant="primary", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self._refresh_gate()
        self.query_one("#copy", Button).focus()

    def _intro(self) -> str:
        keys = "Press r to reveal it, c to copy it"
        if not self.stored_in:
            keys += ", Space once you have stored it"
        return f"This is the only time the token is shown. {keys}; Ctrl+S continues."

    def _masked(self) -> str:
        return f"{MASK}\nfingerprint {self._fingerprint}"

    @property
    def may_continue(self) -> bool:
        if self.stored_in:
            return True
        return self.query_one("#stored-ack", Tick).value

    def _refresh_gate(self) -> None:
        # The key stays live so that pressing it explains what is missing; the button shows the gate.
        self.query_one("#continue", Button).disabled = not self.may_continue

    def _status(self, text: str) -> None:
        self.query_one("#clipboard-status", Static).update(text)

    # -- events ------------------------------------------------------------------------------

    @on(Checkbox.Changed, "#stored-ack")
    def _ack_changed(self) -> None:
        self._refresh_gate()

    @on(Button.Pressed, "#toggle")
    def _toggle_pressed(self) -> None:
        self.action_toggle_reveal()

    @on(Button.Pressed, "#copy")
    def _copy_pressed(self) -> None:
        self.action_copy()

    @on(Button.Pressed, "#continue")
    def _continue_pressed(self) -> None:
        self.action_continue()

    def on_screen_suspend(self) -> None:
        # Something covers the screen (command palette, a dialog): do not leave the token showing.
        if self.revealed:
            self.action_toggle_reveal()

    def on_unmount(self) -> None:
        self._leave()

    # -- actions -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("toggle_reveal", "copy") and self._value is None:
            return False
        if action == "acknowledge" and self.stored_in:
            return False  # stored already: nothing to acknowledge, and no key in the footer
        return True

    def action_toggle_reveal(self) -> None:
        if self._value is None:
            return
        self.revealed = not self.revealed
        shown = self.query_one("#value", Static)
        # The value alone on its line, so a mouse selection picks up nothing else.
        shown.update(f"{self._value.reveal()}\nfingerprint {self._fingerprint}" if self.revealed else self._masked())
        shown.set_class(self.revealed, "-revealed")
        self.query_one("#toggle", Button).label = "Hide" if self.revealed else "Reveal"

    def action_copy(self) -> None:
        if self._value is None:
            return
        try:
            method = self.clipboard.copy(self._value)
        except ClipboardUnavailableError as exc:
            self.notify(str(exc), title="Not copied", severity="error", markup=False)
            self._status("Not copied: no clipboard. Reveal the token and copy it by hand.")
            return
        where = _WHERE.get(method, f"Copied ({method})")
        if self.clear_after <= 0:
            self.notify(f"{where}; it will not be cleared automatically.", title="Copied", markup=False)
            self._status(f"{where}; not cleared automatically.")
            return
        self.notify(f"{where}; it will be cleared in {self.clear_after} s.", title="Copied", markup=False)
        self.remaining = self.clear_after
        if self._countdown is not None:
            self._countdown.stop()
        self._countdown = self.set_interval(self.TICK_SECONDS, self.tick)
        self._show_countdown()

    def _show_countdown(self) -> None:
        assert self.clipboard.method is not None
        where = _WHERE.get(self.clipboard.method, "Copied")
        self._status(f"{where}; cleared in {self.remaining} s if it still holds the token.")

    def tick(self) -> None:
        """One second of the countdown; at zero, clear the clipboard if it still holds our copy."""
        if self.remaining is None:
            return
        self.remaining -= 1
        if self.remaining > 0:
            self._show_countdown()
            return
        self.remaining = None
        if self._countdown is not None:
            self._countdown.stop()
            self._countdown = None
        result = self.clipboard.clear_if_ours()
        self._status(result)
        self.notify(result, title="Clipboard", markup=False)

    def action_acknowledge(self) -> None:
        # A focused Tick takes Space itself (Checkbox's own key); from anywhere else it lands here.
        tick = self.query(Tick)
        if tick:
            tick.first().toggle()

    def action_no_way_back(self) -> None:
        self.notify(
            "There is no way back: the token exists now. Store it, then Continue.",
            title="Token created",
            severity="warning",
            markup=False,
        )

    def action_continue(self) -> None:
        if not self.may_continue:
            self.notify("Tick “I have stored it somewhere safe” first.", severity="warning", markup=False)
            return
        self._leave()
        self.dismiss(True)

    def _leave(self) -> None:
        """Drop the value and take it off the screen; hand a running countdown to the app."""
        if self._left:
            return
        self._left = True
        self._value = None
        self.revealed = False
        try:
            value = self.query_one("#value", Static)
        except NoMatches:  # already unmounted
            pass
        else:
            value.update(f"(no longer shown)\nfingerprint {self._fingerprint}")
            value.remove_class("-revealed")
        if self._countdown is not None:
            self._countdown.stop()
            self._countdown = None
        if self.remaining is not None and self.clipboard.pending:
            app, clipboard = self.app, self.clipboard
            app.set_timer(self.remaining * self.TICK_SECONDS, lambda: _clear_later(app, clipboard))
            self.remaining = None
