"""Issue 11, invariant 4 (the wizard): quitting while a new token's value exists only in memory asks first.

"Only in memory": minted and held by the rotation, with a store step not done yet, or no store step at all and the
engineer has not confirmed storing it on the reveal screen. Quitting when nothing is at risk stays immediate.
The question is the wizard's one typed confirmation (ConfirmPrompt, as for revoking every other token).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from textual.pilot import Pilot

from app.config import parse_config
from app.tui import KeyturnApp
from screens.prompt import ConfirmPrompt

pytestmark = pytest.mark.anyio

KEDA_TOKEN_ID = "9999cccc-0000-4000-8000-000000000001"  # the scripted provider's first mint


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def targets_ready(wiz: Any, pilot: Pilot[Any]) -> None:
    app = pilot.app
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "TargetsScreen" and not app.screen.reading)


async def to_reveal_of_keda(wiz: Any, pilot: Pilot[Any]) -> None:
    """keda (the first target) has only manual follow-ups: no store holds the new value."""
    app = pilot.app
    await targets_ready(wiz, pilot)
    await pilot.press("enter")
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ScopesScreen")
    await pilot.press("ctrl+s")
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None)
    await pilot.press("enter")
    await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen")


def quit_asked(app: Any) -> bool:
    return isinstance(app.screen, ConfirmPrompt) and "Quit now?" in app.screen.question


async def test_quit_at_the_reveal_of_a_target_without_a_store_asks_first(scripted_wizard, wiz) -> None:
    app = scripted_wizard()
    async with app.run_test(size=(100, 30)) as pilot:
        await to_reveal_of_keda(wiz, pilot)
        await pilot.press("ctrl+q")
        await wiz.wait_until(pilot, lambda: quit_asked(app), what="the quit confirmation")
        question = app.screen.question
        assert KEDA_TOKEN_ID in question and "not confirmed storing it" in question
        assert wiz.SNAPSHOT_VALUE not in question and wiz.SNAPSHOT_VALUE not in wiz.screen_text(app)

        await pilot.press("ctrl+q")  # asked again while asking: one question, not two
        await pilot.pause()
        assert sum(isinstance(s, ConfirmPrompt) for s in app.screen_stack) == 1

        await pilot.press("n", "o", "enter")  # anything but yes keeps the app and the token
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen", what="back on the reveal")
        assert app.return_code is None and app.is_running

        await pilot.press("ctrl+q")
        await wiz.wait_until(pilot, lambda: quit_asked(app))
        await pilot.press("escape")  # Esc stays too
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen")
        assert app.return_code is None

        await pilot.press("ctrl+q")
        await wiz.wait_until(pilot, lambda: quit_asked(app))
        await pilot.press("y", "e", "s", "enter")
        await wiz.wait_until(pilot, lambda: app.return_code is not None, what="the exit")


async def test_a_remapped_quit_key_is_guarded_too(scripted_wizard, wiz) -> None:
    """The guard sits on the action, so whatever key the config's keymap gives app.quit asks the same way."""
    app = scripted_wizard(keymap={"app.quit": "ctrl+x"})
    async with app.run_test(size=(100, 30)) as pilot:
        await to_reveal_of_keda(wiz, pilot)
        await pilot.press("ctrl+x")
        await wiz.wait_until(pilot, lambda: quit_asked(app), what="the quit confirmation")
        await pilot.press("escape")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "RevealScreen")
        assert app.return_code is None


async def test_quit_is_immediate_once_the_engineer_says_it_is_stored(scripted_wizard, wiz) -> None:
    app = scripted_wizard()
    async with app.run_test(size=(100, 30)) as pilot:
        await to_reveal_of_keda(wiz, pilot)
        await pilot.press("tab", "space")  # "I have stored it somewhere safe"
        await wiz.wait_until(pilot, lambda: app.screen.may_continue)
        await pilot.press("ctrl+q")
        await wiz.wait_until(pilot, lambda: app.return_code is not None, what="the exit")


async def test_quit_after_the_reveal_is_immediate(scripted_wizard, wiz) -> None:
    app = scripted_wizard()
    async with app.run_test(size=(100, 30)) as pilot:
        await to_reveal_of_keda(wiz, pilot)
        await pilot.press("tab", "space", "ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "FollowUpsScreen")
        assert app.unstored_rotation() is None
        await pilot.press("ctrl+q")
        await wiz.wait_until(pilot, lambda: app.return_code is not None, what="the exit")


async def test_quit_while_a_store_step_failed_asks_first(scripted_wizard, wiz, monkeypatch: pytest.MonkeyPatch) -> None:
    """daily-checks stores in Key Vault: minted, the store failed, the value is only in the mint screen's rotation."""
    from app.errors import KeyturnError
    from app.followups.keyvault_version import KeyVaultVersionStep

    def refuse(self: Any, ctx: Any) -> Any:
        raise KeyturnError("Key Vault answered 503")

    monkeypatch.setattr(KeyVaultVersionStep, "preflight", lambda self, config: None)
    monkeypatch.setattr(KeyVaultVersionStep, "run", refuse)
    app = scripted_wizard(start_target="daily-checks")
    async with app.run_test(size=(100, 30)) as pilot:
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ScopesScreen")
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None)
        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "MintScreen" and app.screen.halted is not None)
        assert app.screen.rotation.value is not None and app.screen.rotation.state == "minted"
        await pilot.press("ctrl+q")
        await wiz.wait_until(pilot, lambda: quit_asked(app), what="the quit confirmation")
        assert "no store holds it yet" in app.screen.question
        await pilot.press("escape")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "MintScreen")
        await pilot.press("l")  # leave it to resume: the flow lets go of the value, a quit loses nothing more
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "TargetsScreen")
        await pilot.press("q")
        await wiz.wait_until(pilot, lambda: app.return_code is not None, what="the exit")


@pytest.mark.parametrize("key", ["q", "ctrl+q"])
async def test_quit_at_the_targets_screen_is_immediate(scripted_wizard, wiz, key: str) -> None:
    app = scripted_wizard()
    async with app.run_test(size=(100, 30)) as pilot:
        await targets_ready(wiz, pilot)
        await pilot.press(key)
        await wiz.wait_until(pilot, lambda: app.return_code is not None, what="the exit")
        assert not any(isinstance(s, ConfirmPrompt) for s in app.screen_stack)


# -- which rotations hold the only copy (no Pilot: the rule itself) -----------------------------------------


def rotation(
    *, value: object = "v", state: str = "verified", stores: dict[str, bool] | None = None, manual: int = 1
) -> Any:
    steps = [SimpleNamespace(id=sid, is_store=True) for sid in stores or {}]
    steps += [SimpleNamespace(id=f"m{i}", is_store=False) for i in range(manual)]
    done = {sid: {} for sid, ok in (stores or {}).items() if ok}
    return SimpleNamespace(id="r1", value=value, state=state, steps=steps, record=SimpleNamespace(steps_done=done))


@pytest.mark.parametrize(
    ("case", "held", "at_risk"),
    [
        ("nothing minted (or the value was not read back)", rotation(value=None), False),
        ("a store step still to do", rotation(state="minted", stores={"kv": False}), True),
        ("one of two stores done", rotation(state="minted", stores={"kv": True, "ssm": False}), True),
        ("every store done", rotation(stores={"kv": True, "ssm": True}), False),
        ("no store, reveal not confirmed", rotation(), True),
        ("aborted: the token was revoked", rotation(state="aborted", stores={"kv": False}), False),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_which_values_are_at_risk(case: str, held: Any, at_risk: bool) -> None:
    app = KeyturnApp(parse_config({"settings": {}, "accounts": {}, "targets": {}}))
    app.flow_rotation = held
    assert (app.unstored_rotation() is held) is at_risk, case
    app._acknowledged.add("r1")  # the reveal's Continue: the engineer stored it by hand
    assert (app.unstored_rotation() is held) is (at_risk and any(s.is_store for s in held.steps)), case
