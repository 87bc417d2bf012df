"""The wizard's screens, one module per step, each with its ``.tcss`` beside it.

This package module stays light: it imports only what every step shares (the base screen, the
one-line error text and the helper that waits on a blocking engine call). Each step module is
imported when its screen is first shown, so ``keyturn`` starts as fast as a bare Textual app.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from textual import on
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.worker import get_current_worker

if TYPE_CHECKING:
    from app.tui import KeyturnApp

T = TypeVar("T")
ResultT = TypeVar("ResultT")

# (name shown in the command palette, what it does, help line)
PaletteCommand = tuple[str, Callable[[], Any], str]

# Step states, readable without colour (NO_COLOR): the glyph carries the meaning.
ICONS = {"pending": "·", "running": "⋯", "done": "✓", "failed": "✗", "stopped": "‖", "skipped": "–"}


def one_line(exc: BaseException) -> str:
    """What went wrong, on one line, never a traceback (KeyturnError messages are written for people)."""
    from app.errors import KeyturnError

    if isinstance(exc, KeyturnError):
        return str(exc)
    if os.environ.get("KEYTURN_DEBUG"):
        return " ".join(f"unexpected {type(exc).__name__}: {exc}".split())
    return f"unexpected {type(exc).__name__}; rerun with KEYTURN_DEBUG=1 for details"


class Cancelled(Exception):
    """The worker waiting on a blocking call was cancelled (the screen closed or the app quit)."""


def wait_abandonable(fn: Callable[[], T], *, poll: float = 0.05) -> T:
    """Run ``fn`` in a daemon thread and wait for it from the current thread worker.

    For read-only engine calls that may block for minutes (a device-code sign-in waits for a person):
    when the screen closes or the app quits, the worker stops waiting and the daemon thread dies with
    the process instead of holding up the exit. Calls with side effects (mint, store, revoke) must
    not use this: they run to the end of their step so the journal stays true.
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the waiting worker below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, daemon=True, name="keyturn-blocking-call").start()
    worker = get_current_worker()
    while not done.wait(poll):
        if worker.is_cancelled:
            raise Cancelled()
    if "error" in box:
        raise box["error"]
    return cast(T, box["result"])


class MainThreadCall(Message, bubble=False):
    """Run a callable on the main thread, addressed to one screen (dropped if the screen is gone)."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        super().__init__()
        self.fn = fn
        self.args = args


# The focus marks every screen shares (see the file). Read with the first WizardScreen's own CSS_PATH,
# in the same parse; the App may list it in its CSS_PATH too, so the first frame pays nothing for it.
FOCUS_CSS = Path(__file__).with_name("focus.tcss")

SCREEN_BINDINGS: list[BindingType] = [
    Binding(
        "tab", "app.focus_next", "Next", show=False, id="screen.focus_next", tooltip="Move the focus to the next field"
    ),
    Binding(
        "shift+tab",
        "app.focus_previous",
        "Previous",
        show=False,
        id="screen.focus_previous",
        tooltip="Move the focus back",
    ),
    Binding(
        "ctrl+c,super+c",
        "screen.copy_text",
        "Copy selection",
        show=False,
        id="screen.copy_selection",
        tooltip="Copy the text selected with the mouse",
    ),
]


class WizardScreen(Screen[ResultT], inherit_bindings=False):
    """What every step screen shares: typed access to the app, engine events, palette commands.

    Textual's Screen bindings are declared again here with ids, so the config's keymap reaches them.
    """

    BINDINGS: ClassVar[list[BindingType]] = SCREEN_BINDINGS

    def __init__(self, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        # Textual reads a screen's css_path when the screen is first shown; a file already read is skipped.
        if FOCUS_CSS not in self.css_path:
            self.css_path.append(FOCUS_CSS)

    def ui(self, fn: Callable[..., Any], *args: Any) -> None:
        """From a worker thread: call ``fn(*args)`` on the main thread, without waiting (thread-safe)."""
        self.post_message(MainThreadCall(fn, args))

    @on(MainThreadCall)
    def _main_thread_call(self, message: MainThreadCall) -> None:
        if self.is_attached:
            message.fn(*message.args)

    @property
    def wizard(self) -> KeyturnApp:
        return cast("KeyturnApp", self.app)

    def engine_event(self, kind: str, text: str) -> None:
        """An engine progress/step/warning line (already on the main thread). Screens with a log show it."""

    def palette_commands(self) -> list[PaletteCommand]:
        """Commands that only make sense on this screen, for the command palette."""
        return []

    def runbook_target(self) -> str | None:
        """Whose runbook the runbook pane shows beside this screen."""
        return self.wizard.current_target
