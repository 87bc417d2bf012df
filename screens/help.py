"""The keys of the screen underneath, read from its active bindings (so a [keymap] change shows here)."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

KeyRow = tuple[str, str, str, str]  # key, description, what it does, binding id


class HelpScreen(ModalScreen[None], inherit_bindings=False):
    """Lists keys; Esc (or F1 again) closes it."""

    CSS_PATH = "help.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1", "close", "Close", id="help.close", tooltip="Close the help"),
    ]

    def __init__(self, title: str, rows: list[KeyRow]) -> None:
        super().__init__()
        self.title_text = title
        self.rows = rows

    @classmethod
    def for_screen(cls, screen: Screen[object]) -> HelpScreen:
        """The active bindings of ``screen`` (its focused widget's, its own and the app's), one row per key."""
        app = screen.app
        rows: list[KeyRow] = []
        seen: set[tuple[str, str]] = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if binding.system or not (binding.description or binding.tooltip):
                continue
            key = app.get_key_display(binding)
            if (key, binding.action) in seen:
                continue
            seen.add((key, binding.action))
            does = binding.tooltip or binding.description
            if not active.enabled:
                does += " (not available right now)"
            rows.append((key, binding.description, does, binding.id or ""))
        # the step's own keys first, then the app's, then moving around; widgets' built-in keys (no id) last
        rows.sort(
            key=lambda row: (
                3 if not row[3] else 2 if row[3].startswith("screen.") else 1 if row[3].startswith("app.") else 0
            )
        )
        title = getattr(screen, "title_text", None) or type(screen).__name__.removesuffix("Screen").lower()
        return cls(f"Keys · {title}", rows)

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 1), expand=True, show_edge=False)
        table.add_column("Key", no_wrap=True, style="bold")
        table.add_column("Does", ratio=1)
        table.add_column("Keymap id", no_wrap=True, style="dim")
        for key, description, does, binding_id in self.rows:
            text = Text(description, style="bold") if description and description != does else Text("")
            if text:
                text.append(": ")
            text.append(does)
            table.add_row(key, text, binding_id)
        with Vertical(id="dialog"):
            yield Static(self.title_text, classes="title-bar")
            with VerticalScroll(id="keys"):
                yield Static(table, id="table")
            yield Static(
                'Rebind a key by its id in the config\'s [keymap], e.g. "reveal.copy" = "y".',
                classes="hint",
                markup=False,
            )
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
