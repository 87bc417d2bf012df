"""User-facing errors: one line that says what is wrong and what to do.

Never put a secret value in a message; messages reach the terminal, logs and the journal.
"""

from __future__ import annotations

MESSAGE_LIMIT = 300


def one_line(text: object, *, redact: tuple[str, ...] = (), limit: int = MESSAGE_LIMIT) -> str:
    """Text from a server or a child process made fit for a message: one line, known secrets masked, bounded."""
    out = " ".join(str(text).split())
    for secret in redact:
        if secret:
            out = out.replace(secret, "<redacted>")
    return out if len(out) <= limit else out[: limit - 1] + "…"


class KeyturnError(Exception):
    """An error the user can act on. ``str(err)`` is the one-line message."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())  # always one line


class ConfigError(KeyturnError):
    """The configuration file is wrong."""


class SecretSourceError(KeyturnError):
    """A secret reference could not be resolved."""


class ProviderError(KeyturnError):
    """The platform refused or failed a call; the call had no effect."""


class AuthExpiredError(ProviderError):
    """The platform's sign-in expired; sign in again."""


class AmbiguousResultError(ProviderError):
    """A non-idempotent call may or may not have taken effect (timeout, reset, 5xx).

    The caller must reconcile (list by name) before trying again.
    """


class FollowUpError(KeyturnError):
    """A follow-up step failed; the old token stays alive."""


class NotBuiltError(KeyturnError):
    """The configuration asks for a step this version cannot run yet."""
