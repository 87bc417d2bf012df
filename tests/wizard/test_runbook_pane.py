"""The runbook pane (F2): it follows the highlighted target, never cuts the step it sits beside, and
every sandbox target has a runbook (issue 15, item 2).

Layouts (screens/runbook.py): from 120 columns the pane sits beside the step and leaves it 80 columns;
narrower, it goes below the targets lists and over every other step (Esc or F2 closes it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from app.journal import RotationJournal
from screens.runbook import BESIDE_MIN_WIDTH, NO_RUNBOOK, PICK_A_TARGET, RunbookPane, runbook_markdown

pytestmark = pytest.mark.anyio

NARROW = [(80, 24), (100, 30)]
STEPS = ["signin", "scopes", "review", "reveal", "checklist", "retire", "summary"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pane_of(app: Any) -> RunbookPane:
    (pane,) = app.screen.query(RunbookPane)
    return pane


async def open_pane(wiz: Any, pilot: Pilot[Any]) -> RunbookPane:
    await pilot.press("f2")
    await wiz.wait_until(pilot, lambda: bool(pilot.app.screen.query(RunbookPane)), what="the runbook pane")
    await pilot.pause()
    return pane_of(pilot.app)


def unfinished_rotation(tmp_path: Path, target: str = "daily-checks") -> str:
    """A rotation of ``target`` stopped after minting, in the scripted wizard's journal."""
    journal = RotationJournal(tmp_path / "journal")
    rid = "5eedcafe-0000-4000-8000-000000000000"
    journal.append(rid, "planned", target=target, plan={"account": "ado-bot", "display_name": f"{target}-5eedcafe"})
    journal.append(rid, "minted", token={"id": "7777dddd-0000-4000-8000-000000000007", "name": f"{target}-5eedcafe"})
    return rid


# -- the pane follows the highlight -------------------------------------------------------------


@pytest.mark.parametrize("size", [*NARROW, (140, 40)])
async def test_pane_follows_the_highlighted_target(scripted_wizard, wiz, size: tuple[int, int]) -> None:
    app = scripted_wizard()
    async with app.run_test(size=size) as pilot:
        await wiz.targets_ready(wiz, pilot)
        pane = await open_pane(wiz, pilot)
        assert pane.target_name == "keda" and "Rotate the KEDA PAT" in pane.markdown
        await pilot.press("down")  # the highlight moves: the keys stay with the list, the pane follows
        await wiz.wait_until(pilot, lambda: pane_of(app).target_name == "daily-checks", what="daily-checks' runbook")
        assert pane_of(app).markdown == NO_RUNBOOK  # the scripted config gives daily-checks none
        assert "Runbook · daily-checks" in wiz.screen_text(app)
        await pilot.press("up")
        await wiz.wait_until(pilot, lambda: pane_of(app).target_name == "keda")
        await pilot.pause()
        assert "Rotate the KEDA PAT" in wiz.screen_text(app)
        assert app.screen.query_one("#targets").has_focus


async def test_pane_follows_the_highlighted_rotation(scripted_wizard, wiz, tmp_path: Path) -> None:
    unfinished_rotation(tmp_path, "daily-checks")
    app = scripted_wizard()
    async with app.run_test(size=(100, 30)) as pilot:
        await wiz.targets_ready(wiz, pilot)
        await wiz.wait_until(pilot, lambda: app.screen.query_one("#unfinished").row_count == 1)
        pane = await open_pane(wiz, pilot)
        assert pane.target_name == "keda"
        await pilot.press("tab")  # into the unfinished rotations: the pane shows the rotation's target
        await wiz.wait_until(pilot, lambda: pane_of(app).target_name == "daily-checks", what="the rotation's target")
        await pilot.press("shift+tab")  # back to the targets: the highlighted target again
        await wiz.wait_until(pilot, lambda: pane_of(app).target_name == "keda")


async def test_pane_shows_the_rotation_target_on_the_next_steps(scripted_wizard, wiz) -> None:
    app = scripted_wizard()
    async with app.run_test(size=(140, 40)) as pilot:
        await wiz.targets_ready(wiz, pilot)
        await pilot.press("down", "up")
        await open_pane(wiz, pilot)
        await pilot.press("enter")  # rotate keda, the pane open beside the steps
        await wiz.wait_until(
            pilot, lambda: wiz.screen_name(app) == "ScopesScreen" and bool(app.screen.query(RunbookPane))
        )
        assert pane_of(app).target_name == "keda"


def test_runbook_markdown_without_a_target(scripted_wizard) -> None:
    app = scripted_wizard()
    assert runbook_markdown(app.config, None) == PICK_A_TARGET
    assert runbook_markdown(app.config, "no-such-target") == PICK_A_TARGET


# -- no cut-off of the main screen ----------------------------------------------------------------


@pytest.mark.parametrize("size", NARROW)
async def test_targets_keep_every_column_with_the_pane_open(scripted_wizard, wiz, size: tuple[int, int]) -> None:
    app = scripted_wizard()
    async with app.run_test(size=size) as pilot:
        await wiz.targets_ready(wiz, pilot)
        before = wiz.screen_text(app)
        table_line = next(line for line in before.splitlines() if "Last rotated" in line)
        pane = await open_pane(wiz, pilot)
        assert pane.has_class("-below")
        text = wiz.screen_text(app)
        assert table_line in text.splitlines()  # the header row is the same, whole: no "La"
        for row in ("keda", "daily-checks"):
            line = next(line for line in text.splitlines() if line.strip().startswith(row))
            assert line in before.splitlines()
        assert "Runbook · keda" in text and "Rotate the KEDA PAT" in text
        assert not pane.has_focus_within  # the keys stay with the list


@pytest.mark.parametrize("size", NARROW)
@pytest.mark.parametrize("stage", STEPS)
async def test_pane_over_each_step_when_narrow(scripted_wizard, wiz, size: tuple[int, int], stage: str) -> None:
    """Narrow, the pane covers the step whole (nothing squeezed); Esc gives the step back exactly as it was."""
    app = scripted_wizard(device_code=stage == "signin")
    async with app.run_test(size=size) as pilot:
        await wiz.drive_keda(wiz, pilot, stage)
        await pilot.pause()
        screen = app.screen
        focused = screen.focused
        pane = await open_pane(wiz, pilot)
        assert pane.has_class("-over")
        assert pane.region.width == size[0] and pane.region.height == size[1] - 1  # all but the footer's row
        assert pane.has_focus_within
        text = wiz.screen_text(app)
        if stage == "signin":  # the sign-in of the expiry radar serves every target: none is picked yet
            assert pane.target_name is None and "Pick a target to see its runbook" in text
        else:
            assert pane.target_name == "keda"
            assert "Runbook · keda  (Esc or F2 closes)" in text and "Rotate the KEDA PAT" in text
        await pilot.press("escape")  # closes the pane, not the step
        await wiz.wait_until(pilot, lambda: not screen.query(RunbookPane), what="the pane to close")
        await pilot.pause()
        assert app.screen is screen and app.runbook_open is False
        if focused is not None:
            assert screen.focused is focused


@pytest.mark.parametrize("stage", ["targets", "review", "retire"])
async def test_pane_beside_the_step_when_wide(scripted_wizard, wiz, stage: str) -> None:
    app = scripted_wizard()
    async with app.run_test(size=(BESIDE_MIN_WIDTH, 30)) as pilot:
        await wiz.drive_keda(wiz, pilot, stage)
        pane = await open_pane(wiz, pilot)
        assert pane.has_class("-beside")
        assert pane.region.x >= 80  # the step keeps the 80 columns it is laid out for
        assert not pane.has_focus_within
        if stage == "targets":
            assert "Last rotated" in wiz.screen_text(app)


async def test_pane_moves_when_the_terminal_is_resized(scripted_wizard, wiz) -> None:
    app = scripted_wizard()
    async with app.run_test(size=(140, 30)) as pilot:
        await wiz.drive_keda(wiz, pilot, "review")
        pane = await open_pane(wiz, pilot)
        assert pane.has_class("-beside") and not pane.has_focus_within
        await pilot.resize_terminal(80, 24)
        await wiz.wait_until(pilot, lambda: pane.has_class("-over") and pane.has_focus_within, what="the overlay")
        await pilot.resize_terminal(140, 30)
        await wiz.wait_until(pilot, lambda: pane.has_class("-beside"), what="the pane beside")
        await pilot.pause()
        assert not pane.has_focus_within and app.screen.focused is not None


async def test_f2_closes_the_overlay_and_the_next_steps_stay_closed(scripted_wizard, wiz) -> None:
    app = scripted_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.drive_keda(wiz, pilot, "scopes")
        await open_pane(wiz, pilot)
        await pilot.press("f2")
        await wiz.wait_until(pilot, lambda: not app.screen.query(RunbookPane))
        await pilot.press("ctrl+s")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "ReviewScreen" and app.screen.plan is not None)
        await pilot.pause()
        assert not app.screen.query(RunbookPane)


# -- snapshots at 80x24 -------------------------------------------------------------------------------


def test_snapshot_runbook_on_targets(snap_compare, scripted_wizard, wiz) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wiz.drive_keda(wiz, pilot, "targets")
        await open_pane(wiz, pilot)

    assert snap_compare(scripted_wizard(), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_runbook_over_review(snap_compare, scripted_wizard, wiz) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wiz.drive_keda(wiz, pilot, "review")
        await open_pane(wiz, pilot)

    assert snap_compare(scripted_wizard(), terminal_size=(80, 24), run_before=run_before)


# -- every sandbox target has a runbook ---------------------------------------------------------------


def test_every_sandbox_target_has_a_runbook(wizard_sandbox) -> None:
    from app.config import load_config

    config = load_config(wizard_sandbox.config_path)
    assert set(config.targets) >= {
        "keda",
        "daily-checks",
        "buildkite-cluster",
        "buildkite-unclustered",
        "buildkite-conductorone",
        "jenkins",
    }
    for name, target in config.targets.items():
        text = runbook_markdown(config, name)
        assert target.runbook and target.runbook.strip(), name
        assert text not in (NO_RUNBOOK, PICK_A_TARGET), name
        assert text.lstrip().startswith("# "), name
        # each runbook names where its target's value is kept and what it is called on the platform
        for follow_up in target.follow_ups:
            secret = getattr(follow_up, "secret", None)
            if secret:
                assert f"`{secret}`" in text, (name, secret)
        assert target.token_name in text, name
