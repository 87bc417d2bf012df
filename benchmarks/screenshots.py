"""Regenerate the README screenshots: docs/screenshots/{targets,scopes,reveal}.svg.

Drives the wizard with Pilot on a fresh sandbox, as `keyturn demo` runs, and saves three SVGs.
Deterministic on purpose, so a rerun only changes the files when the screens changed: the sandbox's
clock starts at a fixed instant, its ids and token values come from a seeded generator, the rotation
id is fixed, and the wizard's clock is frozen at that instant. (The scripts patch these for the
sandbox only; nothing of this exists in `keyturn demo`.)

    .venv/bin/python benchmarks/screenshots.py [--out docs/screenshots] [--size 100x30]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXED = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
ROTATION_ID = "5eed0001-7c3a-4d2e-9b1f-2a6c8e4d0b17"


class MemoryClipboard:
    """No real clipboard is touched while taking screenshots."""

    text = ""

    def copy(self, text: str) -> None:
        self.text = text

    def paste(self) -> str:
        return self.text


def make_deterministic() -> None:
    import app.journal
    import app.sandbox.state as sandbox_state
    import screens.scopes

    rng = random.Random(20260115)
    sandbox_state.uuid = SimpleNamespace(uuid4=lambda: uuid.UUID(int=rng.getrandbits(128), version=4))  # type: ignore[attr-defined]
    sandbox_state.pat_value = lambda: base64.b32encode(rng.randbytes(32)).decode("ascii").rstrip("=").lower()
    started = time.time()
    sandbox_state.SandboxState.time = lambda self: FIXED.timestamp() + (time.time() - started) + self.clock_offset  # type: ignore[method-assign]
    screens.scopes.today = lambda: FIXED.date()
    app.journal.RotationJournal.new_rotation_id = lambda self: ROTATION_ID  # type: ignore[method-assign]


async def wait_until(pilot: Any, condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def shoot(out: Path, size: tuple[int, int]) -> list[Path]:
    from app.clipboard import Clipboard
    from app.config import load_config
    from app.sandbox import Sandbox
    from app.tui import KeyturnApp

    saved: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="keyturn-shots-") as tmp, Sandbox(Path(tmp)) as sb:
        wizard = KeyturnApp(
            load_config(sb.config_path),
            sandbox=sb,
            clock=lambda: FIXED,
            clipboard=Clipboard(backend=MemoryClipboard(), environ={}),
        )
        wizard.animation_level = "none"

        def name() -> str:
            return type(wizard.screen).__name__

        def drawn() -> str:
            return "\n".join(strip.text for strip in wizard.screen._compositor.render_strips())

        def save(stem: str) -> None:
            path = out / f"{stem}.svg"
            path.write_text(wizard.export_screenshot(title=f"keyturn demo · {stem}"), encoding="utf-8")
            saved.append(path)

        async with wizard.run_test(size=size) as pilot:
            await wait_until(pilot, lambda: name() == "TargetsScreen" and not wizard.screen.reading, "the targets")
            # the footer drops "Stop waiting" one frame after the expiry arrives: wait for that frame
            await wait_until(pilot, lambda: "Stop waiting" not in drawn() and "40 days" in drawn(), "the drawn expiry")
            save("targets")
            await pilot.press("enter")
            await wait_until(pilot, lambda: name() == "ScopesScreen", "the scope picker")
            await pilot.pause()
            save("scopes")
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: name() == "ReviewScreen" and wizard.screen.plan is not None, "the plan")
            await pilot.press("enter")
            await wait_until(pilot, lambda: name() == "RevealScreen", "the reveal")
            await pilot.pause()
            save("reveal")  # masked: the screenshot never holds the token
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--size", default="100x30", help="terminal WIDTHxHEIGHT (default 100x30)")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    sys.path.insert(0, str(ROOT))
    make_deterministic()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(shoot(args.out, (width, height))):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
