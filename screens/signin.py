"""Sign in as the bot account: where its secrets come from, and the device code to finish in a browser.

The bot's email and password are fetched from their sources (Key Vault, keyring, ...) in a worker and
offered for copying only: never drawn on screen, never put in a toast. A device-code sign-in shows the
verification address and the code, waits in a worker, and the screen continues by itself once the
engineer has signed in.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Footer, Static

from screens import ICONS, Cancelled, WizardScreen, one_line, wait_abandonable
from screens.prompt import Ask

if TYPE_CHECKING:
    from app.config import Config
    from app.secret import SecretValue
    from providers.base import DeviceCodePrompt

METHODS = {
    "device-code": "with a device code",
    "azure-cli": "through the Azure CLI (az login)",
    "password": "with its password (the deprecated ROPC flow)",
}
PLATFORMS = {"azure-devops": "Azure DevOps", "buildkite": "Buildkite", "jenkins": "Jenkins"}
SECRET_LABELS = {"email": "email", "password": "password"}


def account_for_prompt(config: Config, prompt: DeviceCodePrompt, current_target: str | None) -> str:
    """Which account a device code is for: the one its message names, else the current target's."""
    device = [n for n, a in config.accounts.items() if a.sign_in == "device-code"]
    named = [n for n in device if f"of {n}," in prompt.message or f"of {n} " in prompt.message]
    if named:
        return named[0]
    if current_target in config.targets:
        return config.targets[current_target].account
    return (device or list(config.accounts))[0]


class SignInScreen(WizardScreen[bool]):
    """Signs in ``account_name``'s bot; dismisses True once signed in, False when the engineer goes back."""

    CSS_PATH = "signin.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "e", "copy('email')", "Email", id="signin.copy_email", tooltip="Copy the bot's email (it is never shown)"
        ),
        Binding(
            "p",
            "copy('password')",
            "Password",
            id="signin.copy_password",
            tooltip="Copy the bot's password (never shown; the clipboard is cleared after the sign-in)",
        ),
        Binding("c", "copy_code", "Code", id="signin.copy_code", tooltip="Copy the device code"),
        Binding("o", "open_address", "Browser", id="signin.open", tooltip="Open the verification address in a browser"),
        Binding("r", "retry", "Retry", id="signin.retry", tooltip="Try the sign-in again"),
        Binding("escape", "cancel", "Back", id="signin.cancel", tooltip="Go back; nothing has changed"),
    ]

    def __init__(self, account_name: str, *, purpose: str, prompt: DeviceCodePrompt | None = None) -> None:
        super().__init__()
        self.account_name = account_name
        self.purpose = purpose
        self.prompt = prompt
        self.failed: str | None = None
        self._secrets: dict[str, SecretValue] = {}  # held only while this screen is open, for copying
        self._clear_timer: Timer | None = None

    @property
    def _refs(self) -> list[tuple[str, str]]:
        account = self.wizard.config.accounts[self.account_name]
        if account.sign_in == "azure-cli":
            return []
        return [(key, ref) for key in ("email", "password") if (ref := getattr(account, key)) is not None]

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        from app.secret_sources import describe

        account = self.wizard.config.accounts[self.account_name]
        yield Static(f"Sign in · {self.account_name}", classes="title-bar")
        with Vertical(id="signin-main"):
            yield Static(
                f"keyturn signs in to {PLATFORMS.get(account.platform, account.platform)} (organization {account.organization}) as the bot account "
                f"{self.account_name} {METHODS.get(account.sign_in, account.sign_in)}, {self.purpose}.",
                id="lead",
                markup=False,
            )
            if self._refs:
                yield Static("Bot secrets (copied on request, never shown)", classes="section")
                for key, ref in self._refs:
                    yield Static(self._secret_line(key, describe(ref), "pending"), id=f"secret-{key}", markup=False)
            with Vertical(id="device"):
                yield Static("Device code", classes="section")
                yield Static("", id="device-text", markup=False)
            yield Static("", id="wait", markup=False)
            yield Static("", id="error", classes="error-line", markup=False)
        yield Footer()

    def _secret_line(self, key: str, source: str, state: str, note: str = "") -> str:
        copy_key = {"email": "e", "password": "p"}[key]
        tail = {
            "pending": "",
            "running": "fetching…",
            "done": f"{copy_key} copies it",
            "failed": note,
        }[state]
        line = f"  {ICONS[state]} {SECRET_LABELS[key]:<9} {source}"
        return f"{line}\n{'':14}{tail}" if tail else line

    def on_mount(self) -> None:
        prompt = self.prompt or self.wizard.pending_device_code
        self.query_one("#device").display = False
        self.query_one("#error").display = False
        self._start()
        if prompt is not None:
            self.show_device_code(prompt)

    def _start(self) -> None:
        self.failed = None
        self.query_one("#error").display = False
        waiting = "Waiting for you to finish signing in" if self.prompt else "Signing in"
        self.query_one("#wait", Static).update(f"{ICONS['running']} {waiting}… this screen continues by itself.")
        self.refresh_bindings()
        if self._refs and any(k not in self._secrets for k, _ in self._refs):
            self._fetch_secrets()
        self._sign_in()

    # -- workers ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="signin-secrets", exit_on_error=False)
    def _fetch_secrets(self) -> None:
        engine = self.wizard.engine
        for key, ref in self._refs:
            if key in self._secrets:
                continue
            self.ui(self._secret_state, key, "running")
            try:
                value = wait_abandonable(partial(engine.resolver, ref, f"accounts.{self.account_name}.{key}"))
            except Cancelled:
                return
            except Exception as exc:
                self.ui(self._secret_state, key, "failed", one_line(exc))
                continue
            self.ui(self._secret_fetched, key, value)

    @work(thread=True, exclusive=True, group="signin", exit_on_error=False)
    def _sign_in(self) -> None:
        try:
            engine = self.wizard.engine
            with self.wizard.provider_guard:
                provider = engine.provider(self.account_name)
            wait_abandonable(provider.sign_in)
        except Cancelled:
            return
        except Exception as exc:
            self.ui(self._failed, one_line(exc))
            return
        self.ui(self._signed_in)

    # -- results (main thread) ----------------------------------------------------------------

    def _secret_state(self, key: str, state: str, note: str = "") -> None:
        from app.secret_sources import describe

        ref = dict(self._refs)[key]
        self.query_one(f"#secret-{key}", Static).update(self._secret_line(key, describe(ref), state, note))
        self.refresh_bindings()

    def _secret_fetched(self, key: str, value: SecretValue) -> None:
        self._secrets[key] = value
        self._secret_state(key, "done")

    def show_device_code(self, prompt: DeviceCodePrompt) -> None:
        self.prompt = prompt
        lines = [
            f"  1. Open   {prompt.verification_uri}   (o opens it)",
            f"  2. Enter  {prompt.user_code}   (c copies it)",
            "  3. Sign in as the bot: e copies its email, p its password.",
        ]
        if prompt.expires_on is not None:
            lines.append(f"  The code expires at {prompt.expires_on:%H:%M} UTC.")
        self.query_one("#device-text", Static).update("\n".join(lines))
        self.query_one("#device").display = True
        if self.failed is None:
            self.query_one("#wait", Static).update(
                f"{ICONS['running']} Waiting for you to finish signing in… this screen continues by itself."
            )
        self.refresh_bindings()

    def _failed(self, message: str) -> None:
        self.failed = message
        self.query_one("#wait", Static).update("")
        error = self.query_one("#error", Static)
        error.update(f"✗ {message}  (r retries, Esc goes back)")
        error.display = True
        self.refresh_bindings()

    def _signed_in(self) -> None:
        self.wizard.pending_device_code = None
        self._clear_clipboard()
        self._secrets.clear()
        self.dismiss(True)

    def _clear_clipboard(self) -> None:
        if self._clear_timer is not None:
            self._clear_timer.stop()
            self._clear_timer = None
        clipboard = self.wizard.secret_clipboard
        if clipboard.pending:
            self.notify(clipboard.clear_if_ours(), title="Clipboard")

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "copy":
            key = str(parameters[0])
            if key not in dict(self._refs):
                return False
            return key in self._secrets or None  # shown but dim until fetched
        if action in ("copy_code", "open_address"):
            return self.prompt is not None
        if action == "retry":
            return self.failed is not None
        return True

    def action_copy(self, key: str) -> None:
        value = self._secrets.get(key)
        if value is None:
            return
        try:
            method = self.wizard.secret_clipboard.copy(value)
        except Exception as exc:
            self.notify(one_line(exc), severity="error")
            return
        seconds = self.wizard.config.settings.clipboard_clear_seconds
        when = f"cleared after the sign-in or in {seconds} s" if seconds else "cleared after the sign-in"
        self.notify(
            f"Copied the bot's {SECRET_LABELS[key]} to the {method}; {when}. Clipboard managers may keep copies.",
            title="Clipboard",
        )
        if seconds:
            if self._clear_timer is not None:
                self._clear_timer.stop()
            self._clear_timer = self.set_timer(seconds, self._clear_clipboard)

    def action_copy_code(self) -> None:
        if self.prompt is None:
            return
        from app.secret import SecretValue

        try:
            method = self.wizard.secret_clipboard.copy(SecretValue(self.prompt.user_code))
        except Exception as exc:
            self.notify(one_line(exc), severity="error")
            return
        self.notify(f"Copied the device code to the {method}.", title="Clipboard")

    def action_open_address(self) -> None:
        if self.prompt is not None:
            self.app.open_url(self.prompt.verification_uri)

    def action_retry(self) -> None:
        if self.failed is not None:
            self._start()

    def action_cancel(self) -> None:
        self._clear_clipboard()
        self._secrets.clear()
        self.dismiss(False)


class SecretPrompt(Ask):
    """Asks for a secret whose reference is ``prompt``; typed characters are masked."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="prompt.cancel", tooltip="Do not give the secret"),
    ]
    password = True

    def __init__(self, what: str) -> None:
        super().__init__(f"keyturn needs {what} (typed characters are hidden):")
        self.what = what
