"""The runbook pane: the target's Markdown runbook, docked beside whatever step is on screen.

The runbook is the team's own prose (config ``targets.NAME.runbook``: Markdown, or a path to a
Markdown file, relative to the config). F2 toggles it; once open it follows the engineer from step
to step until it is closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Markdown, Static

if TYPE_CHECKING:
    from app.config import Config

NO_RUNBOOK = '_No runbook for this target._\n\nAdd `runbook = """..."""` (Markdown) or `runbook = "path/to/runbook.md"` to it in the configuration.'


def runbook_markdown(config: Config, target_name: str | None) -> str:
    """The runbook's Markdown: inline text, or the file it names (relative to the config file)."""
    if target_name is None or target_name not in config.targets:
        return "_Pick a target to see its runbook._"
    runbook = config.targets[target_name].runbook
    if not runbook or not runbook.strip():
        return NO_RUNBOOK
    text = runbook.strip()
    if "\n" not in text and (text.endswith((".md", ".markdown", ".txt")) or "/" in text):
        path = config.resolve_path(text)
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            return f"_Cannot read the runbook file_ `{path}` ({exc.strerror or type(exc).__name__})."
    return runbook


class RunbookPane(Vertical):
    """Docked to the right of a screen; shows one target's runbook."""

    DEFAULT_CSS = """
    RunbookPane {
        dock: right;
        width: 45%;
        min-width: 30;
        height: 100%;
        margin-bottom: 1;  /* the footer keeps its row */
        border-left: vkey $primary;
        background: $surface;
    }
    RunbookPane > .runbook-title { height: 1; padding: 0 1; background: $panel; text-style: bold; }
    RunbookPane > VerticalScroll { height: 1fr; padding: 0 1; }
    RunbookPane Markdown { margin: 0; padding: 0; }
    """

    def __init__(self, target_name: str | None, markdown: str) -> None:
        super().__init__(id="runbook-pane")
        self.target_name = target_name
        self.markdown = markdown

    def compose(self) -> ComposeResult:
        yield Static(f"Runbook · {self.target_name or '-'}", classes="runbook-title", markup=False)
        with VerticalScroll():
            yield Markdown(self.markdown)


def _target_of(screen: Screen[object]) -> str | None:
    pick = getattr(screen, "runbook_target", None)
    if callable(pick):
        target = pick()
        return target if isinstance(target, str) else None
    return getattr(screen.app, "current_target", None)


def show_runbook(screen: Screen[object]) -> None:
    """Make sure ``screen`` shows the pane, with the runbook of the target it is about."""
    if isinstance(screen, ModalScreen):
        return
    target = _target_of(screen)
    existing = list(screen.query(RunbookPane))
    if existing and existing[0].target_name == target:
        return
    for pane in existing:
        pane.remove()
    config: Config = screen.app.config  # type: ignore[attr-defined]
    screen.mount(RunbookPane(target, runbook_markdown(config, target)))


def hide_runbook(screen: Screen[object]) -> None:
    for pane in list(screen.query(RunbookPane)):
        pane.remove()


def toggle_runbook(screen: Screen[object]) -> bool:
    """Show or hide the pane on ``screen``; returns whether it is now shown."""
    if isinstance(screen, ModalScreen):
        return False
    existing = list(screen.query(RunbookPane))
    if existing:
        for pane in existing:
            pane.remove()
        return False
    show_runbook(screen)
    return True
