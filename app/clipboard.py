"""Copy a token to the clipboard and take it back off again, only if it is still ours.

Two ways to a clipboard: the local one through pyperclip (X11/Wayland/macOS/Windows), or the
terminal's through OSC 52 (``App.copy_to_clipboard``), which is the only one that reaches the
engineer's own machine over SSH. No Textual here: the caller passes the OSC 52 writer in.

The value is never kept, logged or returned: only its SHA-256 digest, to recognise it later.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Protocol

from app.errors import KeyturnError
from app.secret import SecretValue

SYSTEM = "system clipboard"
OSC52 = "terminal (OSC 52)"

# What clear_if_ours() did, as one line the screen can show.
CLEARED = "Clipboard cleared."
LEFT_ALONE = "Clipboard left alone: it no longer holds the token."
OSC52_OVERWRITTEN = "Sent an empty clipboard to the terminal (OSC 52); keyturn cannot read it back to check."
NOTHING_TO_CLEAR = "Nothing to clear."
CANNOT_CHECK = "Could not read the system clipboard to check it; clear it by hand."


class NoLocalClipboard(Exception):
    """The backend has no clipboard to talk to (pyperclip's PyperclipException)."""


class ClipboardUnavailableError(KeyturnError):
    """Neither a local clipboard nor an OSC 52 terminal is available."""


class ClipboardBackend(Protocol):
    """A local clipboard. Both methods raise :class:`NoLocalClipboard` when there is none."""

    def copy(self, text: str) -> None: ...

    def paste(self) -> str: ...


class PyperclipBackend:
    """The machine's clipboard through pyperclip (imported on first use)."""

    def copy(self, text: str) -> None:
        import pyperclip

        try:
            pyperclip.copy(text)
        except pyperclip.PyperclipException as exc:
            raise NoLocalClipboard(type(exc).__name__) from None

    def paste(self) -> str:
        import pyperclip

        try:
            return str(pyperclip.paste())
        except pyperclip.PyperclipException as exc:
            raise NoLocalClipboard(type(exc).__name__) from None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Clipboard:
    """Copies a :class:`SecretValue` and later clears it only if the clipboard still holds it.

    ``osc52`` writes text to the terminal's clipboard (pass ``App.copy_to_clipboard``);
    ``backend`` is the local clipboard (default pyperclip; tests pass an in-memory fake);
    ``environ`` decides whether we are in an SSH session (default ``os.environ``).
    """

    def __init__(
        self,
        osc52: Callable[[str], None] | None = None,
        *,
        backend: ClipboardBackend | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._osc52 = osc52
        self._backend: ClipboardBackend = backend if backend is not None else PyperclipBackend()
        self._environ = environ if environ is not None else os.environ
        self._local: bool | None = None  # probed on first use, then cached
        self._ours: str | None = None  # SHA-256 of what we copied, never the value
        self._method: str | None = None

    @property
    def over_ssh(self) -> bool:
        return bool(self._environ.get("SSH_CONNECTION") or self._environ.get("SSH_TTY"))

    def has_local_clipboard(self) -> bool:
        """Whether pyperclip found a clipboard (asked once: the probe may start xclip)."""
        if self._local is None:
            try:
                self._backend.paste()
            except NoLocalClipboard:
                self._local = False
            else:
                self._local = True
        return self._local

    @property
    def pending(self) -> bool:
        """A copy of ours may still be on the clipboard."""
        return self._ours is not None

    @property
    def method(self) -> str | None:
        """How the last copy went: :data:`SYSTEM` or :data:`OSC52` (None before any copy)."""
        return self._method

    def _choose(self) -> str:
        # Over SSH the local clipboard (if any) is the server's, not the engineer's.
        if self.over_ssh and self._osc52 is not None:
            return OSC52
        if self.has_local_clipboard():
            return SYSTEM
        if self._osc52 is not None:
            return OSC52
        raise ClipboardUnavailableError(
            "No clipboard: no local clipboard was found and the terminal cannot be reached with OSC 52",
            hint="reveal the token and copy it by hand",
        )

    def copy(self, value: SecretValue) -> str:
        """Put ``value`` on the clipboard; returns how (:data:`SYSTEM` or :data:`OSC52`)."""
        method = self._choose()
        if method == SYSTEM:
            try:
                self._backend.copy(value.reveal())
            except NoLocalClipboard:
                self._local = False
                if self._osc52 is None:
                    raise ClipboardUnavailableError(
                        "The system clipboard refused the copy", hint="reveal the token and copy it by hand"
                    ) from None
                method = OSC52
        if method == OSC52:
            assert self._osc52 is not None
            self._osc52(value.reveal())
        self._ours = _digest(value.reveal())
        self._method = method
        return method

    def clear_if_ours(self) -> str:
        """Clear the clipboard if it still holds what we copied; returns what was done, as a sentence."""
        if self._ours is None:
            return NOTHING_TO_CLEAR
        ours, method = self._ours, self._method
        self._ours = None
        if method == OSC52:
            # A terminal will not tell us what its clipboard holds: overwrite blindly.
            assert self._osc52 is not None
            self._osc52("")
            return OSC52_OVERWRITTEN
        try:
            current = self._backend.paste()
        except NoLocalClipboard:
            return CANNOT_CHECK
        if _digest(current) != ours:
            return LEFT_ALONE
        try:
            self._backend.copy("")
        except NoLocalClipboard:
            return CANNOT_CHECK
        return CLEARED
