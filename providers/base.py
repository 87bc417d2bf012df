"""The one Protocol every platform provider implements.

No Textual, no network at import time: providers import their back-end libraries on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from app.secret import SecretValue


@dataclass(frozen=True)
class TokenInfo:
    """What a platform tells about a token, never its value."""

    id: str  # the platform's token id (Azure DevOps: authorizationId)
    name: str  # display name / description
    expires_at: datetime | None  # timezone-aware UTC, None when it never expires
    scopes: tuple[str, ...] = ()
    active: bool = True
    extra: dict[str, str] = field(default_factory=dict)  # platform details worth journaling


@dataclass(frozen=True)
class MintRequest:
    display_name: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    all_orgs: bool = False


@dataclass(frozen=True)
class MintedToken:
    info: TokenInfo
    value: SecretValue
    notes: tuple[str, ...] = ()  # e.g. "the organization's maximum lifespan clamped validTo to ..."


@dataclass(frozen=True)
class DeviceCodePrompt:
    """What the engineer needs to finish a device-code sign-in in a browser."""

    verification_uri: str
    user_code: str
    message: str
    expires_on: datetime | None = None


@dataclass
class Interaction:
    """How a provider talks to whoever drives it (CLI or wizard). All callbacks are optional."""

    on_device_code: Callable[[DeviceCodePrompt], None] | None = None
    on_warning: Callable[[str], None] | None = None
    on_progress: Callable[[str], None] | None = None

    def warn(self, text: str) -> None:
        if self.on_warning:
            self.on_warning(text)

    def progress(self, text: str) -> None:
        if self.on_progress:
            self.on_progress(text)


class Provider(Protocol):
    """A platform whose tokens keyturn can mint, verify, list and revoke."""

    platform: str

    def sign_in(self) -> None:
        """Acquire whatever credential minting needs. Idempotent; cheap when already signed in."""

    def list_tokens(self, *, include_inactive: bool = False) -> list[TokenInfo]:
        """The account's active tokens (and, when asked, the revoked and expired ones too)."""

    def get_token(self, token_id: str) -> TokenInfo | None:
        """One token by id, or None when the platform does not know it."""

    def mint(self, request: MintRequest) -> MintedToken:
        """Create a token. Raises ``AmbiguousResultError`` when the outcome is unknown."""

    def verify(self, token: MintedToken) -> str:
        """Use the new value once in a call its scopes allow; return what was called."""

    def revoke(self, token_id: str) -> None:
        """Revoke a token by id; revoking an already revoked token is not an error."""

    def close(self) -> None:
        """Release network clients."""
