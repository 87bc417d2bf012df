"""A modal that asks one question and takes one typed answer (Enter), or None (Escape); ``ConfirmPrompt`` wants
``yes`` typed, for what cannot be undone (revoke every other token, quit while a new token exists only here)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class Ask(ModalScreen[str | None], inherit_bindings=False):
    """The question above an input; subclasses set the wording, masking and their binding's id."""

    DEFAULT_CSS = """
    Ask { align: center middle; }
    Ask > Vertical { width: 70; height: auto; border: round $primary; padding: 1 2; background: $surface; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="ask.cancel", tooltip="Do not answer"),
    ]
    password = False
    placeholder = ""

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, markup=False)
            yield Input(password=self.password, placeholder=self.placeholder, id="answer")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        value = event.value
        event.input.value = ""  # a typed secret does not linger in the widget
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmPrompt(Ask):
    """A question that needs a typed answer (``yes``): for what cannot be undone."""

    DEFAULT_CSS = """
    ConfirmPrompt > Vertical { border: round $error; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="confirm.cancel", tooltip="Do nothing"),
    ]
    placeholder = "yes"
