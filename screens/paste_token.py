"""Take the API access token the engineer made by hand on buildkite.com, in a masked input.

No API creates a Buildkite API access token, so minting one means pasting it. The value goes straight
into a :class:`SecretValue`; the screen never shows, toasts or logs it. ``check`` (the provider's quick
prefix check) refuses an agent token (bkct_/bkar_) with one line and lets the engineer paste again, before
anything is sent to Buildkite.

In the sandbox the page is served over HTTPS with the sandbox's own CA, which a browser does not trust, so the
screen offers a terminal path (ctrl+n): the sandbox's page is filled in from here exactly as it is pre-filled,
and the token it creates goes through the same checks as a pasted one, never shown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Input, Static

from app.secret import SecretValue
from screens import PaletteCommand, WizardScreen, one_line


def is_sandbox_page(app: object, url: str) -> bool:
    """The token page is the sandbox's own: the wizard runs on the sandbox and the address is loopback."""
    from app.net import is_loopback

    return bool(getattr(app, "is_sandbox", False)) and is_loopback(urlsplit(url).hostname or "")


class PasteTokenScreen(WizardScreen["SecretValue | None"]):
    """Dismisses with the pasted value, or None when the engineer gives up (the mint then stops)."""

    CSS_PATH = "paste_token.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Use token", id="paste_token.submit", tooltip="Check the pasted token and use it"),
        Binding(
            "escape", "cancel", "Cancel", id="paste_token.cancel", tooltip="Stop: no token is taken; retry or abort"
        ),
        Binding(
            "ctrl+n",
            "sandbox_create",
            "Sandbox: create it",
            id="paste_token.sandbox_create",
            tooltip="Sandbox only: fill in the sandbox's pre-filled token page from here and take the token it "
            "creates (checked like a pasted one, never shown)",
        ),
    ]

    def __init__(
        self, target_name: str, url: str, *, check: Callable[[SecretValue], None] | None = None, rotation_id: str = ""
    ) -> None:
        super().__init__()
        self.target_name = target_name
        self.rotation_id = rotation_id  # the title names it, as every step screen's does
        self.url = url
        self.check = check
        self.refused: str | None = None
        self.creating = False  # the sandbox's page is being filled in (ctrl+n)

    @property
    def sandbox_page(self) -> bool:
        return is_sandbox_page(self.app, self.url)

    def _ca_bundle(self) -> Path | None:
        """The CA the sandbox's page is served with: the config's ca_bundle (as the providers read it), else the
        running sandbox's."""
        config = getattr(self.app, "config", None)
        if config is not None and config.settings.ca_bundle:
            return Path(config.resolve_path(config.settings.ca_bundle))
        sandbox = getattr(self.app, "sandbox", None)
        return Path(sandbox.ca_path) if sandbox is not None else None

    def compose(self) -> ComposeResult:
        rotation = f" · rotation {self.rotation_id[:8]}" if self.rotation_id else ""
        yield Static(f"Paste the new API access token · {self.target_name}{rotation}", classes="title-bar")
        yield Static(
            "Create the token on this page (exactly the scopes it lists, with GraphQL access), "
            "then paste the value Buildkite shows once:",
            id="lead",
            markup=False,
        )
        yield Static(self.url, id="url", markup=False)
        if self.sandbox_page:
            yield Static(
                "Sandbox: this page stands in for buildkite.com, served with the sandbox's own CA, which browsers "
                "do not trust. ctrl+n fills it in from here as pre-filled and takes the token it creates, never shown.",
                id="sandbox-path",
                markup=False,
            )
        yield Input(password=True, id="token", placeholder="bkua_…", compact=True)
        yield Static("", id="status", markup=False)
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
        self.query_one("#status").display = False
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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "sandbox_create":
            return None if self.creating else self.sandbox_page  # shown only on the sandbox
        if action == "submit" and self.creating:
            return None
        return True

    def action_submit(self) -> None:
        if self.creating:
            return
        field = self.query_one("#token", Input)
        if not field.value.strip():
            self._refuse("paste the token first")
            return
        value = SecretValue(field.value.strip())  # a terminal paste may bring a line break
        field.value = ""  # the Input's copy goes; the SecretValue is the only one left
        self._take(value)

    def _take(self, value: SecretValue) -> None:
        """The same path for a pasted token and one the sandbox's page created: the quick check, then dismiss."""
        if self.check is not None:
            try:
                self.check(value)
            except Exception as exc:
                self._refuse(one_line(exc))
                return
        self.dismiss(value)

    def action_sandbox_create(self) -> None:
        if not self.sandbox_page or self.creating:
            return
        self.creating = True
        self.query_one("#error").display = False
        status = self.query_one("#status", Static)
        status.update("⋯ filling in the sandbox's token page…")
        status.display = True
        self.refresh_bindings()
        self._create_in_sandbox()

    @work(thread=True, exclusive=True, group="paste-token", exit_on_error=False)
    def _create_in_sandbox(self) -> None:
        from app.sandbox.buildkite import create_on_token_page

        try:
            value = create_on_token_page(self.url, self._ca_bundle())
        except Exception as exc:
            self.ui(self._created, None, one_line(exc))
            return
        self.ui(self._created, value, None)

    def _created(self, value: SecretValue | None, failure: str | None) -> None:
        self.creating = False
        self.query_one("#status").display = False
        self.refresh_bindings()
        if value is None:
            self._refuse(f"the sandbox did not create the token: {failure}")
            return
        self._take(value)

    def _refuse(self, message: str) -> None:
        self.refused = message
        error = self.query_one("#error", Static)
        error.update(f"✗ {message}")
        error.display = True
        self.query_one("#token", Input).focus()

    def action_cancel(self) -> None:
        self.query_one("#token", Input).value = ""
        self.dismiss(None)

    def palette_commands(self) -> list[PaletteCommand]:
        if not self.sandbox_page:
            return []
        return [
            (
                "Create the token in the sandbox",
                self.action_sandbox_create,
                "Fill in the sandbox's pre-filled token page from here; the value is never shown",
            )
        ]
