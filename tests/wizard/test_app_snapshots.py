"""One named snapshot per wizard screen state, at 80x24.

Stable by design: the real Engine over a scripted provider (fixed token ids, frozen clock, fixed
rotation ids and journal timestamps; see ``scripted_wizard`` in conftest), no animations, no real
clipboard. The sandbox is not used here: its ids, values and wall-clock dates are random.
Update with ``python -m pytest tests/wizard/test_app_snapshots.py --snapshot-update`` and look at
every changed SVG before committing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from app.journal import RotationJournal

SIZE = (80, 24)


def test_snapshot_targets(snap_compare, scripted_wizard, wiz, tmp_path: Path) -> None:
    # One rotation of keda stopped after minting, so the screen lists something to resume.
    journal = RotationJournal(tmp_path / "journal")
    rid = "5eedcafe-0000-4000-8000-000000000000"
    journal.append(
        rid, "planned", target="keda", plan={"account": "ado-bot", "display_name": "keda-agent-pools-20261120-5eedcafe"}
    )
    journal.append(
        rid,
        "minted",
        token={"id": "7777dddd-0000-4000-8000-000000000007", "name": "keda-agent-pools-20261120-5eedcafe"},
    )

    async def run_before(pilot: Pilot[Any]) -> None:
        await wiz.drive_keda(wiz, pilot, "targets")

    assert snap_compare(scripted_wizard(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_signin_device_code(snap_compare, scripted_wizard, wiz) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app

        def shown() -> bool:
            screen = app.screen
            return wiz.screen_name(app) == "SignInScreen" and screen.prompt is not None and len(screen._secrets) == 2

        await wiz.wait_until(pilot, shown, what="the device code and both bot secrets")

    assert snap_compare(scripted_wizard(device_code=True), terminal_size=SIZE, run_before=run_before)


def test_snapshot_review(snap_compare, scripted_wizard, wiz) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wiz.drive_keda(wiz, pilot, "review")

    assert snap_compare(scripted_wizard(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_checklist(snap_compare, scripted_wizard, wiz) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wiz.drive_keda(wiz, pilot, "checklist")

    assert snap_compare(scripted_wizard(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_retire(snap_compare, scripted_wizard, wiz) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wiz.drive_keda(wiz, pilot, "retire")

    assert snap_compare(scripted_wizard(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_summary(snap_compare, scripted_wizard, wiz) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wiz.drive_keda(wiz, pilot, "summary")

    assert snap_compare(scripted_wizard(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_help(snap_compare, scripted_wizard, wiz) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wiz.drive_keda(wiz, pilot, "targets")
        await pilot.app.workers.wait_for_complete()  # the screen under the modal shows through its edge
        await pilot.pause()
        await pilot.press("f1")
        await wiz.wait_until(pilot, lambda: wiz.screen_name(pilot.app) == "HelpScreen")

    assert snap_compare(scripted_wizard(), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("stage", ["targets", "review", "checklist", "retire", "summary"])
def test_snapshots_never_hold_the_token(scripted_wizard, wiz, stage: str) -> None:
    """The scripted provider mints SNAPSHOT_VALUE: no screen of the flow may draw it."""
    from textual._doc import take_svg_screenshot

    async def run_before(pilot: Pilot[Any]) -> None:
        await wiz.drive_keda(wiz, pilot, stage)

    svg = take_svg_screenshot(scripted_wizard(), terminal_size=SIZE, run_before=run_before)
    assert wiz.SNAPSHOT_VALUE not in svg
