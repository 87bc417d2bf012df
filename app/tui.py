"""The wizard: a Textual app that walks one rotation from the targets list to the summary.

    targets -> sign-in -> scopes -> review -> mint (store, verify) -> reveal -> follow-ups
            -> verify and retire -> summary -> targets

The engine owns every transition and the journal; this module only asks it to act, from thread
workers, and shows what it says. Only the first screen (targets) is imported at start; every other
step, the engine and the providers load when first needed.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, CSSPathType
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

import screens.targets as targets_module
from app.config_view import FirstFrameView, PendingConfig
from app.errors import ConfigError
from screens import FOCUS_CSS
from screens.targets import TargetsScreen

if TYPE_CHECKING:
    from app.clipboard import Clipboard
    from app.config import Config
    from app.engine import Engine, MintOptions, Rotation
    from app.secret import SecretValue
    from providers.base import DeviceCodePrompt, Interaction, Provider
    from screens.reveal import RevealScreen

    EngineFactory = Callable[["KeyturnApp"], Engine]


class EngineEvent(Message):
    """A line from the engine (progress, step, warning), posted from a worker thread."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__()
        self.kind = kind
        self.text = text


class DeviceCodeShown(Message):
    """A provider asks the engineer to finish a device-code sign-in (posted from a worker thread)."""

    def __init__(self, prompt: DeviceCodePrompt) -> None:
        super().__init__()
        self.prompt = prompt


def _palette_provider() -> Any:
    from app.palette import WizardCommands

    return WizardCommands


class KeyturnApp(App[None], inherit_bindings=False):
    """The keyturn wizard. ``engine_factory``, ``clock`` and ``clipboard`` are for tests and the demo.

    ``config`` is a validated Config, or (``keyturn --config F``) a PendingConfig: the first frame is drawn from its
    view and the file is validated in a worker right after it; ``config``, ``engine`` and the flows wait for that,
    and a file that fails exits the app with code 2 (``config_error``, raised again by ``run_wizard``).
    """

    TITLE = "keyturn"
    # The first screen's styles are read with the app's own, in one parse: a screen's CSS_PATH is read
    # when it is first shown and makes Textual parse every style again, which would delay the first frame.
    # (An absolute path: a relative one is resolved next to whichever subclass runs, e.g. in tests.)
    # The focus marks every screen shares (screens/focus.tcss) come in the same parse.
    CSS_PATH: ClassVar[CSSPathType | None] = [str(Path(targets_module.__file__).with_name("targets.tcss")), FOCUS_CSS]
    COMMANDS: ClassVar[set[Any]] = {_palette_provider}
    # Declared here rather than inherited, so every key has an id the config's [keymap] can change.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+q",
            "quit",
            "Quit",
            id="app.quit",
            tooltip="Quit keyturn; an unfinished rotation can be resumed from the targets screen",
            show=False,  # the help (F1) lists it; the footer keeps its room for the step's own keys
            priority=True,
        ),
        Binding("f1", "help", "Help", id="app.help", tooltip="List every key of this screen"),
        Binding(
            "f2",
            "toggle_runbook",
            "Runbook",
            id="app.runbook",
            tooltip="Show or hide the target's runbook (beside the step from 120 columns, over it when narrower)",
        ),
        Binding(
            "ctrl+p",
            "command_palette",
            "Commands",
            show=False,
            id="app.commands",
            tooltip="Open the command palette (its commands depend on this screen)",
            priority=True,
        ),
    ]
    CSS = """
    .title-bar { height: 1; padding: 0 1; background: $panel; text-style: bold; }
    .sandbox-banner { height: auto; padding: 0 1; background: $warning 25%; color: $text; text-style: bold; }
    .error-line { color: $error; text-style: bold; height: auto; padding: 0 1; }
    .hint { color: $text-muted; height: auto; padding: 0 1; }
    .section { text-style: bold; padding: 0 1; margin-top: 1; height: 1; }
    """

    def __init__(
        self,
        config: Config | PendingConfig,
        *,
        sandbox: Any = None,
        start_target: str | None = None,
        clock: Callable[[], datetime] | None = None,
        clipboard: Clipboard | None = None,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        super().__init__()
        self._pending: PendingConfig | None = config if isinstance(config, PendingConfig) else None
        self._config: Config | None = None if isinstance(config, PendingConfig) else config
        self.config_error: ConfigError | None = None
        self._validation_guard = threading.Lock()  # one validation; a reader of config waits on it
        # what the first frame reads (targets, platforms, sandbox, theme, keymap): no validated Config needed
        view = config.view if isinstance(config, PendingConfig) else FirstFrameView.of(config)
        self.view = view
        self.sandbox = sandbox
        self.is_sandbox = sandbox is not None or view.sandbox
        self.start_target = start_target
        self.clock = clock
        self._secret_clipboard = clipboard
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._engine_guard = threading.Lock()
        # Providers are made once per account under this lock, so two screens share one sign-in.
        self.provider_guard = threading.Lock()
        # One engine call on a rotation at a time: the journal is written and re-read after each step.
        self.rotation_lock = threading.RLock()
        self.current_target: str | None = None
        self.runbook_open = False
        self.pending_device_code: DeviceCodePrompt | None = None
        self.event_log: deque[str] = deque(maxlen=500)  # engine lines; they never carry a value
        # The rotation the flow is on once minted (MintScreen holds it before), for the quit guard.
        self.flow_rotation: Rotation | None = None
        self._revealing: tuple[str, RevealScreen] | None = None  # (rotation id, its reveal screen) while shown
        self._acknowledged: set[str] = set()  # rotations whose reveal the engineer got past: they stored the value
        if self.is_sandbox:
            self.sub_title = "sandbox"
        if view.keymap:
            self.set_keymap(view.keymap)
        # The theme the config names ([settings] theme, written by the palette's "Change theme"). A name this
        # Textual does not know is said once the screen is up, and the default theme is used meanwhile.
        self._saved_theme = view.theme
        self._theme_problem: str | None = None
        if view.theme and view.theme != self.theme:
            if view.theme in self.available_themes:
                self.theme = view.theme
            else:
                self._theme_problem = (
                    f"settings.theme = {view.theme!r} is not a theme this Textual knows; using "
                    f"{self.theme!r}. Pick one with Ctrl+P, Change theme."
                )

    def get_default_screen(self) -> Screen[Any]:
        return TargetsScreen()

    # -- the validated configuration --------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The validated Config; while the file is still being validated, waits for it (never a half-built one).
        Raises the file's ConfigError if it failed (the app is exiting then)."""
        return self.validate_config()

    def validate_config(self) -> Config:
        """Validate the pending file once (whoever asks first does it; the others wait on the same lock)."""
        with self._validation_guard:
            if self._config is None and self.config_error is None and self._pending is not None:
                try:
                    self._config = self._pending.validate()
                except ConfigError as exc:
                    self.config_error = exc
            if self.config_error is not None:
                raise self.config_error
            assert self._config is not None
            return self._config

    @property
    def config_validated(self) -> bool:
        return self._config is not None

    @work(thread=True, group="config", exclusive=True, exit_on_error=False)
    def _validate_after_first_frame(self) -> None:
        try:
            self.validate_config()
        except ConfigError:
            # the same single `keyturn: error:` line as before the wizard existed: run_wizard raises it again
            self.call_from_thread(self.exit, None, 2)

    async def _config_ready(self) -> bool:
        """Await validation off the event loop; False when the file failed (the app is exiting)."""
        import asyncio

        if self._config is not None:
            return True
        try:
            await asyncio.to_thread(self.validate_config)
        except ConfigError:
            return False
        return True

    # -- services the screens use ---------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock() if self.clock else datetime.now(UTC)

    @property
    def engine(self) -> Engine:
        """The engine, built on first use (from a worker: importing it is not free), once the config is validated."""
        self.validate_config()  # waits for the file's validation; raises its ConfigError
        with self._engine_guard:
            if self._engine is None:
                self._engine = self._engine_factory(self) if self._engine_factory else self._default_engine()
            return self._engine

    def make_interaction(self) -> Interaction:
        """How providers reach the wizard; every callback may come from a worker thread."""
        from providers.base import Interaction

        def device_code(prompt: DeviceCodePrompt) -> None:
            self.post_message(DeviceCodeShown(prompt))

        def warning(text: str) -> None:
            self.post_message(EngineEvent("warning", text))

        def progress(text: str) -> None:
            self.post_message(EngineEvent("progress", text))

        return Interaction(on_device_code=device_code, on_warning=warning, on_progress=progress, paste=self._paste_from_thread)

    def on_engine_line(self, kind: str, text: str) -> None:
        """The engine's ``on_event``: thread-safe (post_message)."""
        self.post_message(EngineEvent(kind, text))

    def _default_engine(self) -> Engine:
        from app.engine import Engine

        kwargs: dict[str, Any] = {} if self.clock is None else {"clock": self.clock}
        return Engine(
            self.config,
            interaction=self.make_interaction(),
            prompt=self.prompt_from_thread,
            on_event=self.on_engine_line,
            **kwargs,
        )

    @property
    def secret_clipboard(self) -> Clipboard:
        """Copies secrets (token, bot email and password) and clears them later only if still ours."""
        if self._secret_clipboard is None:
            from app.clipboard import Clipboard

            self._secret_clipboard = Clipboard(self._osc52)
        return self._secret_clipboard

    def _osc52(self, text: str) -> None:
        self.copy_to_clipboard(text)
        # Textual keeps the copied text (App.clipboard) for pasting inside the app: a secret must not
        # stay in the UI's memory, and nothing in the wizard needs to paste it back.
        self._clipboard = ""

    def close_engine(self) -> None:
        if self._engine is not None:
            self._engine.close()

    def prompt_from_thread(self, what: str) -> str:
        """The engine's ``prompt`` (a ``prompt`` secret reference): ask in a modal, wait in the worker."""
        answer: list[str] = []
        done = threading.Event()

        def ask() -> None:
            from screens.signin import SecretPrompt

            def got(value: str | None) -> None:
                answer.append(value or "")
                done.set()

            self.push_screen(SecretPrompt(what), callback=got)

        self.call_from_thread(ask)
        while not done.wait(0.2):
            if not self.is_running:
                return ""
        return answer[0]

    # -- engine lines and device codes, routed to the screen in front -----------------------------

    def on_engine_event(self, event: EngineEvent) -> None:
        self.event_log.append(f"{event.kind}: {event.text}")
        handler = getattr(self.screen, "engine_event", None)
        if handler is not None:
            handler(event.kind, event.text)
        if event.kind == "warning":
            self.notify(event.text, title="Warning", severity="warning", timeout=8)

    def on_device_code_shown(self, message: DeviceCodeShown) -> None:
        self.pending_device_code = message.prompt
        handler = getattr(self.screen, "show_device_code", None)
        if handler is not None:
            handler(message.prompt)
            return
        # A sign-in started by a step screen (the Entra token ran out mid-rotation): show it on top.
        # That sign-in screen waits on the same provider and closes itself once the sign-in is done.
        from screens.signin import SignInScreen, account_for_prompt

        account = account_for_prompt(self.config, message.prompt, self.current_target)
        self.push_screen(SignInScreen(account, purpose="to continue", prompt=message.prompt))

    # -- app-wide actions -----------------------------------------------------------------------

    def unstored_rotation(self) -> Rotation | None:
        """The rotation whose new value exists only in this process, if any: minted and in memory, and either a
        store step is not done yet, or the target has no store and the engineer has not confirmed storing it."""
        candidates = [self.flow_rotation, *(getattr(s, "rotation", None) for s in self.screen_stack)]
        for rotation in candidates:
            if rotation is None or getattr(rotation, "value", None) is None or rotation.state == "aborted":
                continue
            stores = [s for s in rotation.steps if s.is_store]
            if stores:
                if any(s.id not in rotation.record.steps_done for s in stores):
                    return rotation
            elif not self._stored_by_hand(rotation.id):
                return rotation
        return None

    def _stored_by_hand(self, rotation_id: str) -> bool:
        if rotation_id in self._acknowledged:
            return True
        if self._revealing is None or self._revealing[0] != rotation_id:
            return False
        from textual.css.query import NoMatches

        try:
            return self._revealing[1].may_continue  # "I have stored it somewhere safe" is ticked
        except NoMatches:  # not composed yet
            return False

    async def action_quit(self) -> None:
        """Quit at once, unless a new token's value exists only here: then ask first (typed yes), as for
        anything that cannot be undone. Every quit key (ctrl+q, a screen's q, the palette, a keymap) lands here."""
        from screens.prompt import ConfirmPrompt

        rotation = self.unstored_rotation()
        if rotation is None:
            self.exit()
            return
        if isinstance(self.screen, ConfirmPrompt):
            return  # already asking
        token = rotation.new_token
        which = f"{token.name} ({token.id})" if token else f"of rotation {rotation.id[:8]}"
        where = (
            "no store holds it yet" if any(s.is_store for s in rotation.steps) else "you have not confirmed storing it"
        )
        question = (
            f"Quit now? The new token {which} exists only in keyturn's memory: {where}. "
            "Quitting loses its value for good. Type yes to quit anyway; Esc stays."
        )

        def answered(answer: str | None) -> None:
            if (answer or "").strip().lower() == "yes":
                self.exit()

        self.push_screen(ConfirmPrompt(question), answered)

    def action_help(self) -> None:
        from screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(HelpScreen.for_screen(self.screen))

    def action_toggle_runbook(self) -> None:
        from screens.runbook import toggle_runbook

        self.runbook_open = toggle_runbook(self.screen)

    def _screen_changed(self, screen: Screen[Any]) -> None:
        # An open runbook follows the engineer to the next step; a closed one stays closed everywhere.
        if self.runbook_open:
            from screens.runbook import show_runbook

            self.call_after_refresh(show_runbook, screen)
        elif "screens.runbook" in sys.modules:
            from screens.runbook import hide_runbook

            self.call_after_refresh(hide_runbook, screen)

    def on_mount(self) -> None:
        if self._config is None:
            self.call_after_refresh(self._validate_after_first_frame)
        self.screen_change_signal.subscribe(self, self._screen_changed)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if self._theme_problem:
            self.notify(self._theme_problem, title="Theme", severity="warning", timeout=10, markup=False)

    def _theme_changed(self, theme: Any) -> None:
        if theme.name != self._saved_theme:
            self._save_theme(theme.name)

    @work(thread=True, group="theme", exclusive=True, exit_on_error=False)
    def _save_theme(self, name: str) -> None:
        """Keep the theme picked in the palette: ``theme = NAME`` in the config's ``[settings]``."""
        from app.config_edit import set_setting_values
        from app.errors import KeyturnError

        path = self.view.path  # the file's path needs no validation
        if path is None:
            self.call_from_thread(self.notify, f"Theme {name} (not saved: this configuration has no file).", markup=False)
            return
        try:
            set_setting_values(path, {"theme": name})
        except (KeyturnError, OSError) as exc:
            text = f"Theme {name} is used now but not saved in {path}: {exc}"
            self.call_from_thread(self.notify, text, title="Theme", severity="warning", markup=False)
            return
        self._saved_theme = name
        self.call_from_thread(self.notify, f"Theme {name}, saved in {path} ([settings] theme).", markup=False)

    # -- the flows -------------------------------------------------------------------------------

    def start_rotation(self, target_name: str) -> None:
        self.current_target = target_name
        self._rotation_flow(target_name)

    def resume_rotation(self, rotation_id: str, target_name: str) -> None:
        self.current_target = target_name
        self._resume_flow(rotation_id, target_name)

    @work(exclusive=True, group="flow", exit_on_error=False)
    async def _rotation_flow(self, target_name: str) -> None:
        if not await self._config_ready():
            return  # an invalid file: nothing starts, the app exits with its error
        try:
            await self._rotate(target_name)
        except Exception as exc:
            self._flow_failed(exc)

    @work(exclusive=True, group="flow", exit_on_error=False)
    async def _resume_flow(self, rotation_id: str, target_name: str) -> None:
        if not await self._config_ready():
            return  # an invalid file: nothing starts, the app exits with its error
        try:
            await self._resume(rotation_id, target_name)
        except Exception as exc:
            self._flow_failed(exc)

    def _flow_failed(self, exc: Exception) -> None:
        """A step that has no screen of its own failed (e.g. an unknown preset): one line, back to the start."""
        from screens import one_line

        self.notify(one_line(exc), title="Rotation stopped", severity="error", timeout=12)
        self._back_to_targets()

    def _signs_in_with_entra(self, target_name: str) -> bool:
        """Azure DevOps signs in through Entra (a screen of its own); Buildkite with the account's API token."""
        target = self.config.targets[target_name]
        return self.config.accounts[target.account].platform == "azure-devops"

    async def _token_provider(self, target_name: str) -> Provider:
        """The target's provider, signed in (cheap for Buildkite: one GraphQL call), made in a thread."""
        import asyncio

        target = self.config.targets[target_name]

        def make() -> Provider:
            provider = self.engine.provider(target.account, target_name)
            provider.sign_in()
            return provider

        return await asyncio.to_thread(make)

    def _paste_from_thread(self, target_name: str, url: str) -> SecretValue:
        """``Interaction.paste`` (a token no API mints): called in the mint worker, it shows PasteTokenScreen and
        waits for the value."""
        from app.errors import KeyturnError

        target = self.config.targets[target_name]
        provider = self.engine.provider(target.account, target_name)
        answer: list[Any] = []
        done = threading.Event()

        def ask() -> None:
            from screens.mint import MintScreen
            from screens.paste_token import PasteTokenScreen

            def got(value: Any) -> None:
                answer.append(value)
                done.set()

            # The provider's own prefix check, so an agent token is refused here and can be pasted again.
            # the mint worker asks from MintScreen, whose title names the rotation; the paste screen's names it too
            rid = self.screen.rotation_id if isinstance(self.screen, MintScreen) else ""
            self.push_screen(PasteTokenScreen(target_name, url, check=provider.check_pasted, rotation_id=rid), callback=got)

        self.call_from_thread(ask)
        while not done.wait(0.2):
            if not self.is_running:
                break
        if not answer or answer[0] is None:
            raise KeyturnError("no API access token was pasted; nothing was created")
        value: SecretValue = answer[0]
        return value

    async def _rotate(self, target_name: str) -> None:
        from app.errors import KeyturnError
        from screens.signin import SignInScreen

        # before any sign-in or scope picking: another process drives the target, or it has an unfinished rotation
        self.engine.lock(target_name)
        try:
            self.engine.refuse_unfinished(target_name)
        except KeyturnError as exc:
            raise KeyturnError(f"{exc.message}; resume it from the unfinished rotations below", hint=exc.hint) from None
        target = self.config.targets[target_name]
        if not self._signs_in_with_entra(target_name):
            return await self._rotate_with_options(target_name)
        if not await self.push_screen_wait(SignInScreen(target.account, purpose=f"to rotate {target_name}")):
            return self._back_to_targets()
        while True:
            options = await self._choose_scopes(target_name)
            if options is None:
                return self._back_to_targets()
            from screens.review import ReviewScreen

            plan = await self.push_screen_wait(ReviewScreen(target_name, options))
            if plan is not None:
                break  # else: back to the scope picker
        from screens.mint import MintScreen

        rotation = await self.push_screen_wait(MintScreen(plan=plan))
        await self._after_mint(rotation)

    async def _rotate_with_options(self, target_name: str) -> None:
        """Buildkite: the token's options (TokenOptionsScreen) instead of Entra sign-in and the scope picker."""
        import asyncio

        from screens.mint import MintScreen
        from screens.review import ReviewScreen
        from screens.token_options import TokenOptionsScreen

        target = self.config.targets[target_name]
        provider = await self._token_provider(target_name)
        clusters: list[str] | None = None
        if provider.HAS_CLUSTERS:
            clusters = await asyncio.to_thread(provider.clusters)  # every page
        while True:
            options = await self.push_screen_wait(TokenOptionsScreen(target_name, target, provider, clusters=clusters))
            if options is None:
                return self._back_to_targets()
            plan = await self.push_screen_wait(ReviewScreen(target_name, options))
            if plan is not None:
                break  # else: back to the options
        rotation = await self.push_screen_wait(MintScreen(plan=plan))
        await self._after_mint(rotation)

    async def _resume(self, rotation_id: str, target_name: str) -> None:
        from screens.signin import SignInScreen

        target = self.config.targets[target_name]
        if not self._signs_in_with_entra(target_name):
            await self._token_provider(target_name)  # signed in before the mint screen runs
        elif not await self.push_screen_wait(
            SignInScreen(target.account, purpose=f"to resume rotation {rotation_id[:8]}")
        ):
            return self._back_to_targets()
        opened = self.engine.open(rotation_id)
        if opened.state in ("planned", "minted", "stored") or opened.needs_value:
            from screens.mint import MintScreen

            # The value is not in this process: MintScreen reads it back from a store, or mints again.
            await self._after_mint(await self.push_screen_wait(MintScreen(rotation=opened)))
        else:
            await self._after_mint(opened)

    async def _after_mint(self, rotation: Rotation | None) -> None:
        """Reveal, follow-ups, retire, summary: each skipped when the journal says it is done."""
        if rotation is None:
            return self._back_to_targets()
        self.flow_rotation = rotation
        if rotation.value is not None and rotation.state == "verified":
            await self._reveal(rotation)
        if rotation.state == "verified" and any(not s.is_store for s in rotation.steps):
            from screens.followups import FollowUpsScreen

            if not await self.push_screen_wait(FollowUpsScreen(rotation)):
                return self._back_to_targets(
                    f"Rotation {rotation.id[:8]} paused at the follow-ups; resume it from here."
                )
        outcome = "old tokens already retired"
        if rotation.state in ("verified", "propagated"):
            from screens.retire import RetireScreen

            result = await self.push_screen_wait(RetireScreen(rotation))
            if result is None:
                return self._back_to_targets(
                    f"Rotation {rotation.id[:8]} waits to retire the old token; resume it from here."
                )
            outcome = result
        elif rotation.state == "old_retired":
            with self.rotation_lock:
                rotation.run_until("done")
        from screens.summary import SummaryScreen

        await self.push_screen_wait(SummaryScreen(rotation, outcome))
        self._back_to_targets()

    async def _reveal(self, rotation: Rotation) -> None:
        from screens.reveal import RevealScreen

        token = rotation.new_token
        if rotation.value is None or token is None:
            return
        expires = f"{token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "never"
        screen = RevealScreen(
            rotation.value,
            token_label=f"{token.name} ({token.shown_id})",
            target=rotation.record.target,
            rotation_id=rotation.id,
            expires_at=expires,
            stored_in=rotation.stored_in(),
            clipboard=self.secret_clipboard,
            clear_after=self.config.settings.clipboard_clear_seconds,
        )
        self._revealing = (rotation.id, screen)
        try:
            await self.push_screen_wait(screen)  # only Continue dismisses it: the engineer stored the value
            self._acknowledged.add(rotation.id)
        finally:
            self._revealing = None
        # The reveal screen is gone with its reference to the value; the Rotation keeps the only one.

    async def _choose_scopes(self, target_name: str) -> MintOptions | None:
        from app.engine import MintOptions
        from providers.registry import resolve_scopes
        from screens.scopes import ScopesScreen

        target = self.config.targets[target_name]
        account = self.config.accounts[target.account]
        initial = resolve_scopes(self.config, target_name, target)
        selection = await self.push_screen_wait(
            ScopesScreen(
                target_name,
                initial_scopes=initial,
                presets=self._presets(account.platform),
                token_name=target.token_name,
                validity_days=target.validity_days or 90,
                all_orgs=target.all_orgs,
                organization=account.organization,
                preset=target.preset,
            )
        )
        if selection is None:
            return None
        now = self.now()
        if selection.valid_to is not None:
            expires_at = datetime(selection.valid_to.year, selection.valid_to.month, selection.valid_to.day, tzinfo=UTC)
        else:
            expires_at = now + timedelta(days=selection.validity_days or target.validity_days or 90)
        return MintOptions(
            scopes=tuple(selection.scopes),
            token_name=selection.token_name,
            expires_at=expires_at,
            all_orgs=selection.all_orgs,
        )

    def _presets(self, platform: str) -> dict[str, Any]:
        from providers.azure_devops.scopes import BUILTIN_PRESETS, Preset

        presets: dict[str, Any] = dict(BUILTIN_PRESETS) if platform == "azure-devops" else {}
        for name, p in self.config.presets.items():
            presets[name] = Preset(name, p.label or name, tuple(p.scopes), f"preset {name} from the configuration")
        return presets

    def _back_to_targets(self, message: str | None = None) -> None:
        self.flow_rotation = None  # the flow is over: what it held in memory goes with it
        if self._engine is not None:
            self._engine.release_all()  # the flow is over: its target is free for another process again
        while len(self.screen_stack) > 1:
            self.pop_screen()
        if message:
            self.notify(message, timeout=8)
        screen = self.screen
        if isinstance(screen, TargetsScreen):
            screen.refresh_status()


def run_wizard(config: Config | PendingConfig, *, sandbox: Any = None, start_target: str | None = None) -> None:
    """Run the wizard until the engineer quits (the CLI's `keyturn`, `keyturn demo`, `keyturn rotate T`). A pending
    file that fails validation raises its ConfigError here, once the app has exited."""
    app = KeyturnApp(config, sandbox=sandbox, start_target=start_target)
    try:
        app.run()
    finally:
        app.close_engine()
    if app.config_error is not None:
        raise app.config_error
