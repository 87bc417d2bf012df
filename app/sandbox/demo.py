"""``keyturn demo``: the wizard on the built-in sandbox, whose world is kept with its journal in one folder.

A rotation left unfinished (the user quit, the terminal closed, the demo crashed) resumes in the next demo
against the same emulated services: the PAT it minted, the Key Vault version it wrote and the Flux branch it
pushed are still there, because the sandbox's world is saved (``Sandbox(..., persist=True)``) next to the
journal. ``fresh=True`` throws the old world and its journal away first.
"""

from __future__ import annotations

from pathlib import Path

from app.errors import KeyturnError


def demo_directory() -> Path:
    """Where the demo keeps its world and journal by default: ``<user state dir>/keyturn/demo``."""
    from platformdirs import user_state_path

    return user_state_path("keyturn") / "demo"


def run_demo(directory: Path | None, fresh: bool) -> None:
    """Run the wizard on the demo's sandbox in ``directory`` (default ``demo_directory()``), resuming its world.

    ``fresh``: start a new world (the old world, config, Flux repo and journal of that folder are removed;
    nothing else in it is touched).
    """
    from app.sandbox.persist import WORLD_FILE
    from app.sandbox.sandbox import Sandbox

    folder = directory if directory is not None else demo_directory()
    journal = folder / "journal"
    if not fresh and not (folder / WORLD_FILE).exists() and journal.is_dir() and any(journal.glob("*.jsonl")):
        # a folder of an earlier demo that did not keep its world: resuming there would be make-believe
        raise KeyturnError(
            f"{folder} holds a journal but no saved sandbox world, so its rotations cannot be resumed honestly",
            hint="start afresh with keyturn demo --fresh, or pick another folder",
        )
    # the device code is approved by itself after a few seconds, so a newcomer sees the sign-in step
    with Sandbox(folder, auto_approve_device_code=3.0, persist=True, fresh=fresh) as sb:
        from app.config import load_config
        from app.tui import run_wizard

        run_wizard(load_config(sb.config_path), sandbox=sb)
