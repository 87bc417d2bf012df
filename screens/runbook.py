"""The runbook pane: the target's Markdown runbook, beside, below or over whatever step is on screen.

The runbook is the team's own prose (config ``targets.NAME.runbook``: Markdown, or a path to a
Markdown file, relative to the config). F2 toggles it; once open it follows the engineer from step
to step until it is closed.

Where it goes depends on the terminal's width, so the step's own columns are never cut:

- ``-beside`` (at least ``BESIDE_MIN_WIDTH`` columns): docked on the right, at most a third of the
  width, so the step keeps 80 columns, the width every step is laid out for;
- ``-below`` (narrower, on a screen that asks for it with ``RUNBOOK_NARROW = "below"``, the
  targets list): under the step's widgets in its vertical layout, full width, taking the rows left, so the highlight can move and the pane follows;
- ``-over`` (narrower, every other step): a full-size layer over the step that holds the focus
  (arrows and PageUp/PageDown scroll it); Esc or F2 closes it and the step is back, untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Markdown, Static

if TYPE_CHECKING:
    from app.config import Config

NO_RUNBOOK = '_No runbook for this target._\n\nAdd `runbook = """..."""` (Markdown) or `runbook = "path/to/runbook.md"` to it in the configuration.'
PICK_A_TARGET = "_Pick a target to see its runbook._"

# Below this many columns the pane would squeeze the step under 80 columns: it goes below or over instead.
BESIDE_MIN_WIDTH = 120
LAYOUTS = ("-beside", "-below", "-over")


def runbook_markdown(config: Config, target_name: str | None) -> str:
    """The runbook's Markdown: inline text, or the file it names (relative to the config file)."""
    if target_name is None or target_name not in config.targets:
        return PICK_A_TARGET
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


def pane_layout(screen: Screen[Any]) -> str:
    """``-beside``, ``-below`` or ``-over`` for ``screen`` at its current width (see the module's docstring)."""
    width = screen.size.width or screen.app.size.width
    if width >= BESIDE_MIN_WIDTH:
        return "-beside"
    return "-below" if getattr(screen, "RUNBOOK_NARROW", "over") == "below" else "-over"


class RunbookPane(Vertical):
    """One target's runbook, placed by :func:`pane_layout`; shown and updated by :func:`show_runbook`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close runbook", id="runbook.close", tooltip="Close the runbook pane"),
    ]

    DEFAULT_CSS = """
    RunbookPane {
        height: 100%;
        margin-bottom: 1;  /* the footer keeps its row */
        background: $surface;
    }
    RunbookPane.-beside {
        dock: right;
        width: 33%;
        min-width: 40;
        max-width: 60;
        border-left: vkey $primary;
    }
    RunbookPane.-below {  /* in the screen's vertical layout: it takes the rows the lists leave */
        width: 100%;
        height: 1fr;
        min-height: 8;
        margin-bottom: 0;
        border-top: hkey $primary;
    }
    RunbookPane.-over {
        dock: right;
        width: 100%;
        border-top: hkey $primary;
    }
    RunbookPane > .runbook-title { height: 1; padding: 0 1; background: $panel; text-style: bold; }
    RunbookPane > VerticalScroll { height: 1fr; padding: 0 1; }
    RunbookPane Markdown { margin: 0; padding: 0; }
    RunbookPane MarkdownHeader { margin: 1 0 1 0; }
    RunbookPane MarkdownH1 { margin: 0 0 1 0; content-align: left middle; }
    """

    def __init__(self, target_name: str | None, markdown: str, *, layout: str = "-beside") -> None:
        super().__init__(id="runbook-pane", classes=layout)
        self.target_name = target_name
        self.markdown = markdown
        self._focus_before: Widget | None = None
        self.closing = False

    @property
    def layout_name(self) -> str:
        return next((name for name in LAYOUTS if self.has_class(name)), "-beside")

    def compose(self) -> ComposeResult:
        yield Static(self._title(), classes="runbook-title", markup=False)
        with VerticalScroll(id="runbook-scroll"):
            yield Markdown(self.markdown)

    def _title(self) -> str:
        hint = "  (Esc or F2 closes)" if self.layout_name == "-over" else ""
        return f"Runbook · {self.target_name or '-'}{hint}"

    def on_mount(self) -> None:
        self.watch(self.screen, "focused", self._focus_moved, init=False)
        if self.layout_name == "-over":
            self._hold_focus()

    def show_target(self, target_name: str | None, markdown: str) -> None:
        """Show another target's runbook in place (the highlight moved)."""
        if target_name == self.target_name and markdown == self.markdown:
            return
        self.target_name = target_name
        self.markdown = markdown
        self.query_one(".runbook-title", Static).update(self._title())
        self.query_one(Markdown).update(markdown)
        self.query_one(VerticalScroll).scroll_home(animate=False)

    def place(self, layout: str) -> None:
        """Move to ``layout`` (the terminal was resized)."""
        if layout == self.layout_name:
            return
        was_over = self.layout_name == "-over"
        self.remove_class(*LAYOUTS)
        self.add_class(layout)
        self.query_one(".runbook-title", Static).update(self._title())
        if layout == "-over":
            self._hold_focus()
        elif was_over:
            self.give_focus_back()

    # An overlay holds the focus: the step it covers must not take keys it cannot show.
    def _hold_focus(self) -> None:
        if self.closing or not self.is_attached or self.layout_name != "-over":
            return
        focused = self.screen.focused
        if focused is not None and self not in focused.ancestors_with_self:
            self._focus_before = focused
        self.query_one(VerticalScroll).focus(scroll_visible=False)

    def _focus_moved(self, focused: Widget | None) -> None:
        if self.layout_name != "-over" or not self.is_attached or self.closing:
            return
        if focused is None or self not in focused.ancestors_with_self:
            self.call_after_refresh(self._hold_focus)

    def give_focus_back(self) -> None:
        """Focus what had the focus before the overlay took it (the step under it)."""
        before, self._focus_before = self._focus_before, None
        if before is not None and before.is_attached and before.focusable:
            before.focus(scroll_visible=False)

    def on_resize(self, event: events.Resize) -> None:
        # Every layout but a max-width "-beside" changes size with the terminal: the place is checked here.
        self.place(pane_layout(self.screen))

    async def action_close(self) -> None:
        # The app's F2 action: it hides the pane and remembers that the runbook is closed on the next steps.
        await self.app.run_action("app.toggle_runbook")


def _target_of(screen: Screen[Any]) -> str | None:
    pick = getattr(screen, "runbook_target", None)
    if callable(pick):
        target = pick()
        return target if isinstance(target, str) else None
    return getattr(screen.app, "current_target", None)


def show_runbook(screen: Screen[Any]) -> None:
    """Make sure ``screen`` shows the pane, with the runbook of the target it is about."""
    if isinstance(screen, ModalScreen) or not screen.is_attached:
        return
    target = _target_of(screen)
    config: Config = screen.app.config  # type: ignore[attr-defined]
    existing = list(screen.query(RunbookPane))
    if existing:
        for extra in existing[1:]:
            extra.remove()
        existing[0].show_target(target, runbook_markdown(config, target))
        existing[0].place(pane_layout(screen))
        return
    screen.mount(RunbookPane(target, runbook_markdown(config, target), layout=pane_layout(screen)))


def _close(pane: RunbookPane) -> None:
    # The focus goes back before the pane goes: removing the focused widget first would let Textual pick another.
    pane.closing = True
    pane.give_focus_back()
    pane.remove()


def hide_runbook(screen: Screen[Any]) -> None:
    for pane in list(screen.query(RunbookPane)):
        _close(pane)


def toggle_runbook(screen: Screen[Any]) -> bool:
    """Show or hide the pane on ``screen``; returns whether it is now shown."""
    if isinstance(screen, ModalScreen):
        return False
    existing = list(screen.query(RunbookPane))
    if existing:
        for pane in existing:
            _close(pane)
        return False
    show_runbook(screen)
    return True
