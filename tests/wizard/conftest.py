"""Wizard tests: a tiny host App pushes one screen; no blink, no animation, frozen clock, no real clipboard."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from textual.app import App
from textual.screen import Screen
from textual.widgets import Input

import app.clipboard
import screens.scopes
from screens.reveal import RevealScreen

FROZEN_TODAY = date(2026, 11, 22)


class HostApp(App[Any]):
    """Pushes the screen under test and records what it dismissed with, and every notification."""

    def __init__(self, make_screen: Callable[[HostApp], Screen[Any]]) -> None:
        super().__init__()
        self.animation_level = "none"
        self._make_screen = make_screen
        self.result: Any = None
        self.dismissed = False
        self.notified: list[tuple[str, str]] = []  # (title, message)

    def on_mount(self) -> None:
        screen = self._make_screen(self)
        self.push_screen(screen, self._dismissed)
        self.call_after_refresh(self._steady_inputs, screen)

    def _steady_inputs(self, screen: Screen[Any]) -> None:
        for field in screen.query(Input):
            field.cursor_blink = False

    def _dismissed(self, result: Any) -> None:
        self.result = result
        self.dismissed = True

    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None:  # type: ignore[override]
        self.notified.append((title, message))
        super().notify(message, title=title, **kwargs)


class FakeClipboardBackend:
    """An in-memory local clipboard; ``present=False`` behaves like pyperclip with no clipboard."""

    def __init__(self, text: str = "", *, present: bool = True) -> None:
        self.text = text
        self.present = present
        self.copies = 0
        self.pastes = 0

    def copy(self, text: str) -> None:
        if not self.present:
            raise app.clipboard.NoLocalClipboard("no clipboard")
        self.copies += 1
        self.text = text

    def paste(self) -> str:
        self.pastes += 1
        if not self.present:
            raise app.clipboard.NoLocalClipboard("no clipboard")
        return self.text


@pytest.fixture(autouse=True)
def _frozen_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screens.scopes, "today", lambda: FROZEN_TODAY)


@pytest.fixture(autouse=True)
def _no_real_clipboard(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("a test reached the real clipboard")

    monkeypatch.setattr(app.clipboard.PyperclipBackend, "copy", refuse)
    monkeypatch.setattr(app.clipboard.PyperclipBackend, "paste", refuse)


@pytest.fixture(autouse=True)
def _slow_countdown(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reveal countdown only moves when a test calls tick(), unless a test speeds it up.
    monkeypatch.setattr(RevealScreen, "TICK_SECONDS", 3600.0)


@pytest.fixture(autouse=True)
def _no_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    monkeypatch.delenv("SSH_TTY", raising=False)


@pytest.fixture
def host_app() -> type[HostApp]:
    """The host App class: ``host_app(lambda app: SomeScreen(...))``."""
    return HostApp


@pytest.fixture
def fake_backend() -> type[FakeClipboardBackend]:
    """The in-memory clipboard class: ``fake_backend("text", present=True)``."""
    return FakeClipboardBackend


# =============================================================================================
# The wizard App (tests/wizard/test_app_*.py and test_flow_*.py). Everything below belongs to
# the App's tests; the fixtures above (frozen today, no real clipboard, no SSH) apply to them too.
# =============================================================================================

import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

from textual.pilot import Pilot  # noqa: E402

import app.journal  # noqa: E402
from app.config import Config, load_config, parse_config  # noqa: E402
from app.engine import Engine  # noqa: E402
from app.journal import RotationJournal  # noqa: E402
from app.secret import SecretValue  # noqa: E402
from app.tui import KeyturnApp  # noqa: E402
from providers.base import NO_ROTATION, DeviceCodePrompt, MintedToken, MintRequest, Provider, RotationContext, TokenInfo  # noqa: E402

FROZEN_NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # the same day as FROZEN_TODAY above


def screen_text(wizard: App[Any]) -> str:
    """What the terminal shows now, as plain text (no styles)."""
    return "\n".join(strip.text.rstrip() for strip in wizard.screen._compositor.render_strips())


def screen_name(wizard: App[Any]) -> str:
    return type(wizard.screen).__name__


async def wait_until(pilot: Pilot[Any], condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "") -> None:
    """A bounded poll on a condition (workers talk to the sandbox over sockets: no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what or condition}; on {screen_name(pilot.app)}:\n{screen_text(pilot.app)}"
            )
        await pilot.pause(0.02)


class RecordingWizard(KeyturnApp):
    """The wizard with no animations, no cursor blink, and every notification recorded."""

    def __init__(self, config: Config, **kwargs: Any) -> None:
        kwargs.setdefault("clipboard", app.clipboard.Clipboard(backend=FakeClipboardBackend(), environ={}))
        super().__init__(config, **kwargs)
        self.animation_level = "none"
        self.notified: list[tuple[str, str]] = []

    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None:  # type: ignore[override]
        self.notified.append((title, message))
        super().notify(message, title=title, **kwargs)


class KeyCounter:
    """Presses keys through the pilot and counts them (the happy path's key budget)."""

    def __init__(self, pilot: Pilot[Any]) -> None:
        self.pilot = pilot
        self.count = 0
        self.keys: list[str] = []

    async def __call__(self, *keys: str) -> None:
        self.count += len(keys)
        self.keys.extend(keys)
        await self.pilot.press(*keys)


@pytest.fixture
def wizard_sandbox(tmp_path: Path) -> Iterator[Any]:
    """A started sandbox in tmp_path (its config's journal is tmp_path/sb/journal)."""
    from app.sandbox import Sandbox

    with Sandbox(tmp_path / "sb") as sb:
        yield sb


@pytest.fixture
def sandbox_wizard(wizard_sandbox: Any) -> Callable[..., RecordingWizard]:
    """``sandbox_wizard()`` -> the wizard on the sandbox's config, as `keyturn demo` runs it."""

    def make(**kwargs: Any) -> RecordingWizard:
        return RecordingWizard(load_config(wizard_sandbox.config_path), sandbox=wizard_sandbox, **kwargs)

    return make


# -- a deterministic world for snapshots -------------------------------------------------------
# The sandbox mints random ids and values and keeps wall-clock expiry dates, which would drift in
# an SVG. Snapshots therefore run the REAL Engine and Rotation (journal, plan, follow-ups) over a
# scripted provider: fixed token ids, a frozen clock, fixed rotation ids, fixed journal timestamps.

SNAPSHOT_CONFIG = {
    "settings": {"clipboard_clear_seconds": 30, "warn_days": 14},
    "vaults": {
        "rpe-prod": {"url": "https://rpe-prod.vault.example.test", "auth": "cli"},
        "cftptl-intsvc": {"url": "https://cftptl-intsvc.vault.example.test", "auth": "cli"},
    },
    "accounts": {
        "ado-bot": {
            "platform": "azure-devops",
            "organization": "contoso",
            "sign_in": "device-code",
            "email": "vault:rpe-prod/rpe-azure-devops-email",
            "password": "vault:rpe-prod/rpe-azure-devops-password",
        }
    },
    "targets": {
        "keda": {
            "account": "ado-bot",
            "token_name": "keda-agent-pools",
            "description": "KEDA azure-pipelines scaler",
            "preset": "keda",
            "runbook": "# Rotate the KEDA PAT\n\n1. Mint a PAT with **Agent Pools: Read & manage**.\n2. Update the Flux secret.\n",
            "follow_ups": [
                {
                    "kind": "manual",
                    "name": "Flux secret (cft)",
                    "text": "Update the cft Flux secret for {target} (token {token_id}).",
                },
                {
                    "kind": "manual",
                    "name": "Flux secret (sds)",
                    "text": "Update the sds Flux secret for {target} (token {token_id}).",
                },
            ],
        },
        "daily-checks": {
            "account": "ado-bot",
            "token_name": "daily-checks",
            "preset": "daily-checks",
            "follow_ups": [
                {"kind": "keyvault-secret-version", "vault": "cftptl-intsvc", "secret": "azure-devops-token"}
            ],
        },
    },
}

SNAPSHOT_VALUE = "snapshotpatvalue7q2w9e4r1t6y3u8i5o0pzxcvbnmasdfghjkl"  # a value the scripted provider mints


class ScriptedProvider(Provider):
    """Azure DevOps as a script: two seeded tokens, deterministic mint/revoke, optional device code."""

    platform = "azure-devops"
    token_kind = "pat"

    def __init__(self, interaction: Any, *, device_code: bool = False, fail_mint: int = 0) -> None:
        self.interaction = interaction
        self.signed_in = not device_code
        self.fail_mint = fail_mint  # refuse this many mints first (a ProviderError: nothing was created)
        self.release = threading.Event()
        self.minted = 0
        self.tokens = {
            "1111aaaa-0000-4000-8000-000000000001": TokenInfo(
                "1111aaaa-0000-4000-8000-000000000001",
                "keda-agent-pools",
                FROZEN_NOW + timedelta(days=12, hours=3),
                ("vso.agentpools_manage",),
            ),
            "2222bbbb-0000-4000-8000-000000000002": TokenInfo(
                "2222bbbb-0000-4000-8000-000000000002",
                "daily-checks",
                FROZEN_NOW + timedelta(days=40, hours=3),
                ("vso.build",),
            ),
        }

    def sign_in(self) -> None:
        if self.signed_in:
            return
        on_code = self.interaction.on_device_code
        on_code(
            DeviceCodePrompt(
                "https://microsoft.com/devicelogin",
                "KTSNAP42",
                "To sign in as the bot of ado-bot, open https://microsoft.com/devicelogin and enter the code KTSNAP42",
                expires_on=FROZEN_NOW + timedelta(minutes=15),
            )
        )
        self.release.wait(60)
        self.signed_in = True

    def list_tokens(self, ctx: RotationContext = NO_ROTATION, *, include_inactive: bool = False) -> list[TokenInfo]:
        return [t for t in self.tokens.values() if t.active or include_inactive]  # like the provider: active ones

    def get_token(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> TokenInfo | None:
        return self.tokens.get(token_id)

    def mint(self, request: MintRequest, ctx: RotationContext = NO_ROTATION) -> MintedToken:
        if self.fail_mint:
            self.fail_mint -= 1
            from app.errors import ProviderError

            raise ProviderError("Azure DevOps refused to create the token: 503 Service Unavailable", hint="try again")
        self.minted += 1
        token_id = f"9999cccc-0000-4000-8000-00000000000{self.minted}"
        info = TokenInfo(token_id, request.display_name, request.expires_at, request.scopes)
        self.tokens[token_id] = info
        return MintedToken(info, SecretValue(SNAPSHOT_VALUE))

    def verify(self, token: MintedToken, ctx: RotationContext = NO_ROTATION) -> str:
        return "GET /contoso/_apis/distributedtask/pools -> 200 (3 pools)"

    def revoke(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> None:
        old = self.tokens[token_id]
        self.tokens[token_id] = TokenInfo(old.id, old.name, old.expires_at, old.scopes, active=False)

    def close(self) -> None:
        self.release.set()


class FixedIdJournal(RotationJournal):
    """Rotation ids 5eed0001-..., 5eed0002-..., in order."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.issued = 0

    def new_rotation_id(self) -> str:
        self.issued += 1
        return f"5eed{self.issued:04d}-0000-4000-8000-000000000000"


@pytest.fixture
def scripted_wizard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., RecordingWizard]:
    """``scripted_wizard(device_code=False)`` -> the wizard on the deterministic world above."""
    monkeypatch.setattr(app.journal, "utcnow", lambda: FROZEN_NOW)  # journal timestamps
    providers: list[ScriptedProvider] = []

    def make(
        *,
        device_code: bool = False,
        start_target: str | None = None,
        fail_mint: int = 0,
        settings: dict[str, Any] | None = None,
        keymap: dict[str, str] | None = None,
        sandbox: Any = None,
        extra_targets: dict[str, Any] | None = None,
    ) -> RecordingWizard:
        data = {
            **SNAPSHOT_CONFIG,
            "keymap": keymap or {},
            "targets": {**SNAPSHOT_CONFIG["targets"], **(extra_targets or {})},
        }
        data["settings"] = {**SNAPSHOT_CONFIG["settings"], **(settings or {}), "journal_dir": str(tmp_path / "journal")}
        config = parse_config(data)

        def engine_factory(wizard: KeyturnApp) -> Engine:
            engine = Engine(
                config,
                interaction=wizard.make_interaction(),
                on_event=wizard.on_engine_line,
                clock=lambda: FROZEN_NOW,
                journal=FixedIdJournal(tmp_path / "journal"),
            )
            provider = ScriptedProvider(engine.interaction, device_code=device_code, fail_mint=fail_mint)
            providers.append(provider)
            engine._providers["ado-bot"] = provider  # type: ignore[assignment]
            engine.resolver._cache["vault:rpe-prod/rpe-azure-devops-email"] = SecretValue("bot@contoso.example")
            engine.resolver._cache["vault:rpe-prod/rpe-azure-devops-password"] = SecretValue("bot-password-do-not-show")
            return engine

        wizard = RecordingWizard(
            config, clock=lambda: FROZEN_NOW, engine_factory=engine_factory, start_target=start_target, sandbox=sandbox
        )
        wizard.providers = providers  # type: ignore[attr-defined]
        return wizard

    yield make  # type: ignore[misc]
    for p in providers:
        p.release.set()


# -- flows shared by the token-options targets (Buildkite, Jenkins) ------------------------------
# Each takes the ``wiz`` namespace first, as the tests call them: ``await wiz.open_options(wiz, pilot, name)``.

async def open_options(wiz: Any, pilot: Pilot[Any], target: str) -> None:
    """From launch to the target's TokenOptionsScreen: the expiry radar, then Enter on the target's row."""
    app = pilot.app
    await wiz.wait_until(
        pilot, lambda: wiz.screen_name(app) == "TargetsScreen" and not app.screen.reading, what="the targets' expiry"
    )
    for _ in range(list(app.config.targets).index(target)):
        await pilot.press("down")
    await pilot.press("enter")
    # drawn, not only pushed: on a loaded machine the first frame of the new screen comes a while after the push
    await wiz.wait_until(
        pilot,
        lambda: wiz.screen_name(app) == "TokenOptionsScreen" and wiz.screen_text(app).strip(),
        what="the token options",
    )


async def review_and_mint(wiz: Any, pilot: Pilot[Any]) -> None:
    app = pilot.app
    await pilot.press("ctrl+s")
    await wiz.wait_until(
        pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None, what="the plan"
    )
    await pilot.press("enter")


async def reveal_to_summary(wiz: Any, pilot: Pilot[Any]) -> None:
    """Reveal (stored in Key Vault), the automated follow-ups, revoke now, the summary."""
    app = pilot.app
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen", what="the reveal")
    await pilot.press("ctrl+s")
    await checklist_to_summary(wiz, pilot)


async def checklist_to_summary(wiz: Any, pilot: Pilot[Any]) -> None:
    """Tick the manual steps, wait for the automated ones, revoke now, the summary."""
    app = pilot.app
    await wiz.wait_until(
        pilot, lambda: wiz.screen_name(app) in ("FollowUpsScreen", "RetireScreen"), what="follow-ups or retire"
    )
    if wiz.screen_name(app) == "FollowUpsScreen":
        screen = app.screen
        for step in [s for s in screen.rotation.steps if s.manual and screen.states[s.id] != "done"]:
            await pilot.press("space")  # tick the highlighted manual step; the highlight moves on
            await wiz.wait_until(pilot, lambda s=step: screen.states[s.id] == "done", what=f"step {step.id}")
        await wiz.wait_until(pilot, lambda: all(s == "done" for s in screen.states.values()), what="the follow-ups")
        await pilot.press("ctrl+s")
    await wiz.wait_until(
        pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready, what="verify and retire"
    )
    await pass_the_gates(wiz, pilot)
    await pilot.press("enter")  # revoke now
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "SummaryScreen", what="the summary")


async def pass_the_gates(wiz: Any, pilot: Pilot[Any]) -> None:
    """On the retire screen: while a consumer gate waits, the sandbox plays its consumer (m) until every gate passed."""
    app = pilot.app
    for _ in range(3):
        if not app.screen.waiting:
            return
        await pilot.press("m")
        await wiz.wait_until(pilot, lambda: app.screen.ready and not app.screen.busy, what="the sandbox's consumer")
    assert not app.screen.waiting, wiz.screen_text(app)



# -- the keda rotation driven by key, stage by stage ----------------------------------------------

async def targets_ready(wiz: Any, pilot: Pilot[Any]) -> None:
    app = pilot.app
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "TargetsScreen" and not app.screen.reading)
    await wiz.wait_until(pilot, lambda: "Stop waiting" not in wiz.screen_text(app))
    await app.workers.wait_for_complete()
    await pilot.pause()


async def drive_keda(wiz: Any, pilot: Pilot[Any], stage: str) -> None:
    """From launch to ``stage`` of a keda rotation, with the keyboard (the snapshot and runbook-pane tests)."""
    app = pilot.app
    if stage == "signin":  # the device-code wizard shows the sign-in before the targets' expiry
        await wiz.wait_until(
            pilot, lambda: wiz.screen_name(app) == "SignInScreen" and app.screen.prompt is not None, what="sign-in"
        )
        return
    await wiz.targets_ready(wiz, pilot)
    if stage == "targets":
        return
    await pilot.press("enter")
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ScopesScreen")
    if stage == "scopes":
        await pilot.pause()
        return
    await pilot.press("ctrl+s")
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None)
    if stage == "review":
        return
    await pilot.press("enter")
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen")
    if stage == "reveal":
        await pilot.pause()
        return
    await pilot.press("tab", "space", "ctrl+s")
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "FollowUpsScreen")
    await pilot.press("space")
    await wiz.wait_until(pilot, lambda: list(app.screen.states.values())[:2] == ["done", "pending"])
    if stage == "checklist":
        return
    await pilot.press("space")
    await wiz.wait_until(pilot, lambda: all(s == "done" for s in app.screen.states.values()))
    await pilot.press("ctrl+s")
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RetireScreen" and app.screen.ready)
    if stage == "retire":
        return
    await pilot.press("enter")
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "SummaryScreen")


@pytest.fixture
def wiz() -> Any:
    """The helpers above, for test modules (importing conftest by name is ambiguous: there are several)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        wait_until=wait_until,
        screen_text=screen_text,
        screen_name=screen_name,
        KeyCounter=KeyCounter,
        RecordingWizard=RecordingWizard,
        FROZEN_NOW=FROZEN_NOW,
        SNAPSHOT_VALUE=SNAPSHOT_VALUE,
        open_options=open_options,
        review_and_mint=review_and_mint,
        reveal_to_summary=reveal_to_summary,
        checklist_to_summary=checklist_to_summary,
        pass_the_gates=pass_the_gates,
        targets_ready=targets_ready,
        drive_keda=drive_keda,
    )
