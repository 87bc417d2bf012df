"""Take the API access token the engineer made by hand on buildkite.com, in a masked input.

No API creates a Buildkite API access token, so minting one means pasting it. The value goes straight
into a :class:`SecretValue`; the screen never shows, toasts or logs it. ``check`` (the provider's quick
prefix check) refuses an agent token (bkct_/bkar_) with one line and lets the engineer paste again, before
anything is sent to Buildkite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Input, Static

from app.secret import SecretValue
from screens import WizardScreen, one_line


class PasteTokenScreen(WizardScreen["SecretValue | None"]):
    """Dismisses with the pasted value, or None when the engineer gives up (the mint then stops)."""

    CSS_PATH = "paste_token.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Use token", id="paste_token.submit", tooltip="Check the pasted token and use it"),
        Binding(
            "escape", "cancel", "Cancel", id="paste_token.cancel", tooltip="Stop: no token is taken; retry or abort"
        ),
    ]

    def __init__(self, target_name: str, url: str, *, check: Callable[[SecretValue], None] | None = None) -> None:
        super().__init__()
        self.target_name = target_name
        self.url = url
        self.check = check
        self.refused: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"Paste the new API access token · {self.target_name}", classes="title-bar")
        yield Static(
            "Create the token on this page (exactly the scopes it lists, with GraphQL access), "
            "then paste the value Buildkite shows once:",
            id="lead",
            markup=False,
        )
        yield Static(self.url, id="url", markup=False)
        yield Input(password=True, id="token", placeholder="bkua_…", compact=True)
        yield Static("", id="error", classes="error-line", markup=False)
        yield Static(
            "Enter checks it (its scopes, with GET /v2/access-token) and uses it; Esc stops the mint. "
            "The value stays hidden.",
            classes="hint",
            markup=False,
        )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#error").display = False
        field = self.query_one("#token", Input)
        field.cursor_blink = False
        field.focus()

    @on(Input.Changed, "#token")
    def _typing(self, event: Input.Changed) -> None:
        # Clearing the field after a refusal also sends Changed: the message stays until something is pasted.
        if self.refused is not None and event.value:
            self.refused = None
            self.query_one("#error").display = False

    @on(Input.Submitted, "#token")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        field = self.query_one("#token", Input)
        if not field.value.strip():
            self._refuse("paste the token first")
            return
        value = SecretValue(field.value.strip())  # a terminal paste may bring a line break
        if self.check is not None:
            try:
                self.check(value)
            except Exception as exc:
                field.value = ""
                self._refuse(one_line(exc))
                return
        field.value = ""  # the Input's copy goes; the SecretValue is the only one left
        self.dismiss(value)

    def _refuse(self, message: str) -> None:
        self.refused = message
        error = self.query_one("#error", Static)
        error.update(f"✗ {message}")
        error.display = True
        self.query_one("#token", Input).focus()

    def action_cancel(self) -> None:
        self.query_one("#token", Input).value = ""
        self.dismiss(None)
