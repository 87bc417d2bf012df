"""Choose what the new token will be, before the plan: Buildkite's three token kinds and Jenkins' API token.

- cluster agent token: the cluster, a description, an optional expiry (fixed once minted), the allowed IP
  ranges, and what revoking the old token does to running agents;
- unclustered agent token: the deprecation notice first, then the description;
- API access token: no API creates one, so the pre-filled creation page (copyable, openable) and the exact
  scopes it must carry;
- Jenkins / CloudBees CI API token: its name, its expiry (only from Jenkins 2.548, read from ``X-Jenkins``;
  older releases make tokens that never expire, and the screen says so) and the user it belongs to.

The screen mints nothing: it dismisses with :class:`app.engine.MintOptions`, or ``None`` on escape.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Input, Label, RadioButton, RadioSet, Select, Static

from screens import PaletteCommand, WizardScreen

if TYPE_CHECKING:
    from app.config import Target
    from app.engine import MintOptions  # noqa: F401 (the screen's result type, named in a string)
    from providers.base import Provider

MIN_EXPIRY = timedelta(minutes=10)  # Buildkite refuses an agent token that expires sooner
DESCRIPTION_MAX = 100  # the config's limit for token_name
# the expiry choices (radio buttons); the fields they show are #expiry-days and #expiry-date
EXPIRY_NONE, EXPIRY_DAYS, EXPIRY_DATE = "expiry-none", "expiry-in-days", "expiry-on-date"
KIND_TITLES = {
    "cluster-agent-token": "New cluster agent token",
    "unclustered-agent-token": "New agent token (unclustered)",
    "api-access-token": "New API access token",
    "jenkins-api-token": "New Jenkins API token",
}
JENKINS = "jenkins-api-token"
CLUSTER_EXPIRY_NOTES = {  # what the picked expiry means; Buildkite fixes it when the token is made
    EXPIRY_NONE: "ⓘ None: the token lives until it is revoked. Its expiry cannot be changed once it is made: "
    "to have one, pick In days or On date (at least 10 minutes ahead, UTC).",
    EXPIRY_DAYS: "ⓘ An agent token's expiry cannot be changed once the token is made.",
    EXPIRY_DATE: "ⓘ An agent token's expiry cannot be changed once the token is made; at least 10 minutes ahead (UTC).",
}


class Body(VerticalScroll, can_focus=False):
    """The scrolling form; not a tab stop itself: focusing a field scrolls it into view."""


class Address(Static, can_focus=True):
    """The creation page's address: a tab stop, so c and o act on it while the description is not being typed."""


class Choice(RadioButton):
    """A radio button that draws its dot only when on, so its state reads without colour (NO_COLOR)."""

    def render(self) -> Any:
        self.BUTTON_INNER = "●" if self.value else " "
        return super().render()


def parse_expiry(mode: str, days: str, when: str, now: datetime, *, platform: str = "Buildkite") -> datetime | None:
    """The chosen expiry (UTC) or None; raises ValueError with a one-line reason."""
    if mode == EXPIRY_NONE:
        return None
    if mode == EXPIRY_DAYS:
        try:
            n = int(days.strip())
        except ValueError:
            raise ValueError("expiry: give a whole number of days") from None
        if not 1 <= n <= 3650:
            raise ValueError("expiry: between 1 and 3650 days")
        return now + timedelta(days=n)
    text = when.strip()
    expires: datetime | None = None
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            expires = datetime.strptime(text, fmt).replace(tzinfo=UTC)
            break
        except ValueError:
            continue
    if expires is None:
        raise ValueError("expiry: write the date as YYYY-MM-DD or YYYY-MM-DD HH:MM (UTC)")
    if expires < now + MIN_EXPIRY:
        raise ValueError(f"expiry {expires:%Y-%m-%d %H:%M} UTC is less than 10 minutes ahead; {platform} refuses it")
    return expires


class TokenOptionsScreen(WizardScreen["MintOptions | None"]):
    """Buildkite's step before the review; dismisses with MintOptions (description, expiry) or None."""

    CSS_PATH = "token_options.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+s", "confirm", "Continue", id="token_options.confirm", tooltip="Use these options and review the plan"
        ),
        Binding(
            "escape", "cancel", "Cancel", id="token_options.cancel", tooltip="Back to the targets; nothing has changed"
        ),
        Binding(
            "c",
            "copy_url",
            "Copy link",
            id="token_options.copy_url",
            tooltip="Copy the token creation page's address to the clipboard",
        ),
        Binding(
            "o",
            "open_url",
            "Open page",
            id="token_options.open_url",
            tooltip="Open the token creation page in a web browser, where there is one",
        ),
    ]

    def __init__(self, target_name: str, target: Target, provider: Provider, *, clusters: list[str] | None = None) -> None:
        from providers.buildkite.api_token import ApiAccessTokenProvider
        from providers.jenkins.provider import JenkinsProvider

        super().__init__()
        self.clusters = clusters or []  # cluster agent tokens: the organization's clusters (every page)
        self.target_name = target_name
        self.target = target
        self.provider = provider
        # the kind-specific options read the kind's own class (typed; no attribute probing)
        self.jenkins = provider if isinstance(provider, JenkinsProvider) else None
        self.api_token = provider if isinstance(provider, ApiAccessTokenProvider) else None
        self.kind = JENKINS if self.jenkins is not None else provider.token_kind
        self.error: str | None = None

    @property
    def is_api_token(self) -> bool:
        return self.kind == "api-access-token"

    def creation_url(self) -> str:
        return str(self.provider.creation_url(self._description() or None))

    def _description(self) -> str:
        return " ".join(self.query_one("#description", Input).value.split())

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(f"{KIND_TITLES.get(self.kind, 'New token')} · {self.target_name}", classes="title-bar")
        with Body(id="body"):
            if self.kind == "unclustered-agent-token":
                yield Static(f"⚠ {self.provider.deprecation_notice()}", id="deprecation", markup=False)
            if self.kind == "cluster-agent-token":
                with Horizontal(classes="field"):
                    yield Label("Cluster", classes="field-label")
                    names = self.clusters
                    current = self.target.cluster if self.target.cluster in names else Select.BLANK
                    yield Select(
                        [(n, n) for n in names], value=current, id="cluster", compact=True, allow_blank=not names or current is Select.BLANK,
                        prompt="(no cluster in the organization)" if not names else "Pick a cluster",
                    )
            with Horizontal(classes="field"):
                yield Label("Token name" if self.kind == JENKINS else "Description", classes="field-label")
                yield Input(self.target.token_name, id="description", compact=True, max_length=DESCRIPTION_MAX)
            yield Static(
                "keyturn adds the date and the rotation id to it, so the next rotation finds this token.",
                classes="note",
                markup=False,
            )
            if self.kind == "cluster-agent-token":
                yield from self._compose_cluster()
            if self.kind == "unclustered-agent-token":
                yield from self._compose_unclustered()
            if self.kind == JENKINS:
                yield from self._compose_jenkins()
            if self.is_api_token:
                yield from self._compose_api_token()
        yield Static("", id="error", classes="error-line", markup=False)
        yield Footer()

    def _compose_expiry(self, *, default_days: int | None) -> ComposeResult:
        with Horizontal(classes="field", id="expiry-field"):
            yield Label("Expiry", classes="field-label")
            with RadioSet(id="expiry", compact=True):
                yield Choice("None", value=default_days is None, id=EXPIRY_NONE)
                yield Choice("In days", value=default_days is not None, id=EXPIRY_DAYS)
                yield Choice("On date", id=EXPIRY_DATE)
        with Horizontal(classes="field", id="expiry-inputs"):
            yield Label("", classes="field-label")
            yield Input(str(default_days or 90), id="expiry-days", compact=True, max_length=4, type="integer")
            yield Static("days from now", id="days-unit", classes="unit", markup=False)
            yield Input(placeholder="YYYY-MM-DD HH:MM", id="expiry-date", compact=True, max_length=16)
            yield Static("UTC", id="date-unit", classes="unit", markup=False)

    @property
    def has_expiry(self) -> bool:
        if self.jenkins is not None:
            return self.jenkins.supports_expiry
        return self.kind == "cluster-agent-token"

    def _compose_jenkins(self) -> ComposeResult:
        assert self.jenkins is not None
        version = self.jenkins.server_version or "?"
        if self.has_expiry:
            yield from self._compose_expiry(default_days=self.target.validity_days)
            yield Static(
                f"ⓘ Jenkins {version} sends the expiry as whole days (expirationDuration).", classes="note", markup=False
            )
        else:
            with Horizontal(classes="field"):
                yield Label("Expiry", classes="field-label")
                yield Static("never", id="expiry-never", markup=False)
            yield Static(
                f"⚠ Jenkins {version} has no API token expiry (it arrived in 2.548): the new token never expires. "
                "Rotate it on schedule and let keyturn revoke the old one.",
                id="no-expiry",
                markup=False,
            )
        with Horizontal(classes="field"):
            yield Label("User", classes="field-label")
            yield Input(self.jenkins.user, id="user", compact=True, max_length=100)
        yield Static(
            "Only the user mints their own API tokens: keyturn signs in as "
            f"{self.jenkins.auth_user} with that user's current token.",
            classes="note",
            markup=False,
        )
        yield Static("Before the old token is revoked", classes="section")
        yield Static(self.provider.retire_notice(), id="retire-notice", markup=False)

    def _compose_cluster(self) -> ComposeResult:
        # the target's validity_days (as a headless rotate would use it); none unless the config sets one
        yield from self._compose_expiry(default_days=self.target.validity_days)
        yield Static("", id="expiry-note", classes="note", markup=False)
        with Horizontal(classes="field"):
            yield Label("Allowed IPs", classes="field-label")
            ips = ", ".join(self.target.allowed_ips) or "any (no allowed_ips in the configuration)"
            yield Static(ips, id="allowed-ips", markup=False)
        yield Static("Before the old token is revoked", classes="section")
        yield Static(self.provider.retire_notice(), id="retire-notice", markup=False)

    def _compose_unclustered(self) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label("Expiry", classes="field-label")
            yield Static("none", id="expiry-never", markup=False)
        yield Static(
            "ⓘ An unclustered agent token cannot expire (agentTokenCreate takes no expiry): it lives until it is "
            "revoked. A cluster agent token can have one.",
            id="expiry-note",
            classes="note",
            markup=False,
        )

    def _compose_api_token(self) -> ComposeResult:
        from screens.paste_token import is_sandbox_page

        assert self.api_token is not None
        wanted = self.api_token.expected_scopes()
        rest = [s for s in wanted if s != "graphql"]
        sandbox = is_sandbox_page(self.app, self.creation_url_for_compose())
        page = "stands in for" if sandbox else "is"
        yield Static(
            f"Buildkite has no API that creates an API access token. The page below {page} buildkite.com › "
            "Personal Settings › API Access Tokens › New, pre-filled with the name and the "
            f"{len(rest)} scopes the connector needs: {', '.join(rest)} (+ GraphQL access). Sign in as the "
            f"connector's user, pick organization {self.api_token.account.organization}, create it, copy the "
            "token, come back and paste it.",
            id="no-api",
            markup=False,
        )
        if sandbox:
            yield Static(
                "Sandbox: no browser needed (none trusts the sandbox's CA): on the paste step, ctrl+n fills in "
                "this page from here and takes the token it creates, never shown.",
                id="sandbox-path",
                markup=False,
            )
        yield Address("", id="creation-url", markup=False)
        yield Static(
            "c copies the address, o opens it in a browser (Tab moves between the address and the description).",
            classes="note",
            markup=False,
        )
        scopes = ", ".join("GraphQL access" if s == "graphql" else s for s in wanted)
        with Horizontal(classes="field"):
            yield Label("Scopes", classes="field-label")
            yield Static(f"exactly {scopes}", id="scopes", markup=False)
        yield Static("Any missing or extra scope is refused when you paste the token.", classes="note", markup=False)

    def creation_url_for_compose(self) -> str:
        """The page's address before the description field exists (its host is all compose needs)."""
        return str(self.provider.creation_url(self.target.token_name))

    def on_mount(self) -> None:
        self.query_one("#error").display = False
        if self.has_expiry:
            self._show_expiry_inputs()
        if self.is_api_token:
            self._show_url()
        self.query_one("#creation-url" if self.is_api_token else "#description").focus()

    def _show_url(self) -> None:
        self.query_one("#creation-url", Static).update(self.creation_url())

    def _show_expiry_inputs(self) -> None:
        mode = self._expiry_mode()
        self.query_one("#expiry-days").display = mode == EXPIRY_DAYS
        self.query_one("#days-unit").display = mode == EXPIRY_DAYS
        self.query_one("#expiry-date").display = mode == EXPIRY_DATE
        self.query_one("#date-unit").display = mode == EXPIRY_DATE
        self.query_one("#expiry-inputs").display = mode != EXPIRY_NONE
        if self.kind == "cluster-agent-token":
            self.query_one("#expiry-note", Static).update(CLUSTER_EXPIRY_NOTES[mode])

    def _expiry_mode(self) -> str:
        pressed = self.query_one("#expiry", RadioSet).pressed_button
        return pressed.id if pressed is not None and pressed.id else EXPIRY_NONE

    # -- events ------------------------------------------------------------------------------

    @on(RadioSet.Changed, "#expiry")
    def _expiry_changed(self) -> None:
        self._show_expiry_inputs()
        self._clear_error()

    @on(Input.Changed, "#description")
    def _description_changed(self) -> None:
        if self.is_api_token:
            self._show_url()
        self._clear_error()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_confirm()

    def _clear_error(self) -> None:
        self.error = None
        self.query_one("#error").display = False

    def _fail(self, message: str) -> None:
        self.error = message
        error = self.query_one("#error", Static)
        error.update(f"✗ {message}")
        error.display = True

    # -- actions -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("copy_url", "open_url"):
            return self.is_api_token
        return True

    def action_confirm(self) -> None:
        from app.engine import MintOptions

        description = self._description()
        if not description:
            self._fail("description: give the token a description")
            return
        expires_at = None
        if self.has_expiry:
            try:
                expires_at = parse_expiry(
                    self._expiry_mode(),
                    self.query_one("#expiry-days", Input).value,
                    self.query_one("#expiry-date", Input).value,
                    self.wizard.now(),
                    platform="Jenkins" if self.kind == JENKINS else "Buildkite",
                )
            except ValueError as exc:
                self._fail(str(exc))
                return
        cluster: str | None = None
        if self.kind == "cluster-agent-token":
            picked = self.query_one("#cluster", Select).value
            if picked is Select.BLANK or not isinstance(picked, str):
                self._fail("cluster: pick the cluster whose agents use this token")
                return
            cluster = picked if picked != self.target.cluster else None
        if self.kind == JENKINS:
            user = self.query_one("#user", Input).value.strip()
            if self.jenkins is not None and user != self.jenkins.user:
                self._fail(
                    f"user: only {user or 'that user'} can mint their own API token; sign in as them (their current "
                    "token in accounts.*.api_token), or have Jenkins started with "
                    "-Djenkins.security.ApiTokenProperty.adminCanGenerateNewTokens=true"
                )
                return
        self.dismiss(MintOptions(token_name=description, expires_at=expires_at, no_expiry=expires_at is None, cluster=cluster))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_copy_url(self) -> None:
        from app.clipboard import ClipboardUnavailableError
        from app.secret import SecretValue

        try:
            self.wizard.secret_clipboard.copy(SecretValue(self.creation_url()))
        except ClipboardUnavailableError as exc:
            self.notify(str(exc), title="Not copied", severity="error", markup=False)
            return
        self.notify("Copied the token creation page's address.", title="Clipboard", markup=False)

    def action_open_url(self) -> None:
        import webbrowser

        try:
            opened = webbrowser.open(self.creation_url(), new=2)
        except webbrowser.Error:
            opened = False
        if opened:
            self.notify("Opened the token creation page in a browser.", markup=False)
        else:
            self.notify("No browser here: copy the address (c) instead.", severity="warning", markup=False)

    def palette_commands(self) -> list[PaletteCommand]:
        if not self.is_api_token:
            return []
        return [
            ("Copy the token creation page's address", self.action_copy_url, "Copy the pre-filled page's address"),
            ("Open the token creation page", self.action_open_url, "Open it in a web browser"),
        ]
