"""The declared provider contract: one base class every token kind implements, and what a rotation tells it.

No Textual, no network at import time: providers import their back-end libraries on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from app.secret import SecretValue

if TYPE_CHECKING:
    from app.config import Manual


@dataclass(frozen=True)
class TokenInfo:
    """What a platform tells about a token, never its value."""

    id: str  # the platform's token id (Azure DevOps: authorizationId)
    name: str  # display name / description
    expires_at: datetime | None  # timezone-aware UTC, None when it never expires
    scopes: tuple[str, ...] = ()
    active: bool = True
    extra: dict[str, str] = field(default_factory=dict)  # platform details worth journaling
    # the id people find on the platform's own pages, when the API's id is another (Buildkite: the uuid, not the
    # GraphQL node id); screens and plan lines show it, the journal and revoke keep using ``id``
    display_id: str | None = None

    @property
    def shown_id(self) -> str:
        """The id to show a person: the one the platform's pages show."""
        return self.display_id or self.id


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
    # a token no API mints (the Buildkite API access token): ask the person for it, (target name, creation URL) -> value
    paste: Callable[[str, str], SecretValue] | None = None

    def warn(self, text: str) -> None:
        if self.on_warning:
            self.on_warning(text)

    def progress(self, text: str) -> None:
        if self.on_progress:
            self.on_progress(text)


@dataclass(frozen=True)
class GateCheck:
    """One consumer gate's answer: do the consumers behind it demonstrably hold the new token? Never a value.

    The old token is revoked only when every gate of the rotation has passed (or the engineer overrode it, which is
    journaled). A provider's gates come from ``Provider.consumer_gates``, a follow-up's from ``FollowUpStep.gate``."""

    gate: str  # stable id: the follow-up's step id, or "<platform>-<what>" for a provider's gate
    title: str  # what is checked, e.g. "Flux pipeline-auth secret (cft, sds)"
    passed: bool
    waiting_for: str = ""  # when not passed, one line: "pull request not merged (cft, sds)"
    progress: str = ""  # what is known so far, one line: "merged in cft; sds still holds the old value"
    url: str | None = None  # where the engineer acts (the pull request to merge)
    breaks: str = ""  # what revoking the old token now would break (said before an override)

    def to_json(self) -> dict[str, Any]:
        return {"gate": self.gate, "title": self.title, "passed": self.passed, "waiting_for": self.waiting_for,
                "progress": self.progress, "url": self.url}


@dataclass(frozen=True)
class RotationContext:
    """What one rotation tells its provider, built by the engine from the journal for every call that needs it.

    Providers keep nothing of a rotation between calls: the cluster picked, the token this rotation minted, what the
    stores held before, the reason a revocation records, all come in here. ``RotationContext()`` is "no rotation"
    (the expiry radar, planning)."""

    rotation_id: str = ""
    display_name: str = ""
    cluster: str | None = None  # Buildkite cluster agent token: the cluster this rotation mints in (else target.cluster)
    minted: TokenInfo | None = None  # the token this rotation minted, once the journal says so
    minted_fingerprint: str | None = None
    value: SecretValue | None = None  # its value, when this process holds it
    previous_values: Callable[[], list[SecretValue]] = field(default=lambda: [], repr=False)  # what the stores held before
    paste: Callable[[str], SecretValue] | None = field(default=None, repr=False)  # ask the person for a made-by-hand value
    stored_at: datetime | None = None  # when the new token reached its stores (the journal's `stored`); gates compare with it
    gate_baseline: dict[str, Any] = field(default_factory=dict)  # what ``Provider.gate_baseline`` said after verifying
    soak_s: int = 0  # the target's revoke_after in seconds: a gate may pass once this long after stored_at has gone by

    @property
    def revoke_reason(self) -> str:
        return f"rotated by keyturn (rotation {self.rotation_id})" if self.rotation_id else "rotated by keyturn"


NO_ROTATION = RotationContext()


class Provider:
    """A platform's token kind that keyturn can mint, verify, list and revoke.

    The required methods raise NotImplementedError here; everything else is an optional capability with the default
    below, declared so that callers (the engine, the CLI, the wizard) call it directly and mypy checks every call.
    Capabilities a caller must know about before calling are class attributes (as harlequin's adapter declares
    ``IMPLEMENTS_CANCEL``)."""

    platform: str = ""
    token_kind: str = ""
    # -- declared capabilities ---------------------------------------------------------------------------------
    CAN_REVOKE_ALL_EXCEPT: ClassVar[bool] = False  # revoke_all_except (Jenkins' revokeAllExcept)
    HAS_CLUSTERS: ClassVar[bool] = False  # clusters(): the wizard offers a cluster to mint in
    MADE_BY_HAND: ClassVar[bool] = False  # no API mints it: the person pastes the value (ctx.paste), check_pasted

    # -- required ----------------------------------------------------------------------------------------------
    def sign_in(self) -> None:
        """Acquire whatever credential minting needs. Idempotent; cheap when already signed in."""
        raise NotImplementedError

    def list_tokens(self, ctx: RotationContext = NO_ROTATION, *, include_inactive: bool = False) -> list[TokenInfo]:
        """The account's active tokens (and, when asked, the revoked and expired ones too)."""
        raise NotImplementedError

    def get_token(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> TokenInfo | None:
        """One token by id, or None when the platform does not know it."""
        raise NotImplementedError

    def mint(self, request: MintRequest, ctx: RotationContext = NO_ROTATION) -> MintedToken:
        """Create a token. Raises ``AmbiguousResultError`` when the outcome is unknown."""
        raise NotImplementedError

    def verify(self, token: MintedToken, ctx: RotationContext = NO_ROTATION) -> str:
        """Use the new value once in a call its scopes allow; return what was called."""
        raise NotImplementedError

    def revoke(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> None:
        """Revoke a token by id; revoking an already revoked token is not an error."""
        raise NotImplementedError

    def close(self) -> None:
        """Release network clients."""

    # -- optional, with defaults -------------------------------------------------------------------------------
    def lists_tokens(self) -> bool:
        """False when this account's tokens cannot be listed here (Jenkins without a readable security page): an
        interrupted mint then cannot be reconciled, and the engineer is asked instead."""
        return True

    def unknown_old_token_help(self) -> str:
        """When the old token cannot be named (not listed, no id kept): how the person can find it, else ""."""
        return ""

    def owner(self) -> str:
        """Whose tokens these are, for messages (Jenkins: the user)."""
        return ""

    def no_expiry_notice(self) -> str:
        """Why a token minted here will not expire whatever was asked (Jenkins before 2.548), else ""."""
        return ""

    def deprecation_notice(self) -> str:
        """A plan warning about the token kind itself (unclustered agent tokens), else ""."""
        return ""

    def retire_notice(self) -> str:
        """What revoking does to running consumers, said before it happens, else ""."""
        return ""

    def retire_blockers(self, old: list[TokenInfo], ctx: RotationContext = NO_ROTATION) -> list[str]:
        """Why an old token could not be revoked by this account (checked before minting); [] when it can."""
        return []

    def manual_follow_ups(self) -> list[Manual]:
        """Manual steps this token kind adds to every rotation (cycle the agents that cache the old token)."""
        return []

    def gate_baseline(self, ctx: RotationContext) -> dict[str, Any]:
        """Read once right after the new token is verified and journaled (ids, counts, times: never a value); the
        gates get it back as ``ctx.gate_baseline`` (Jenkins: each token's use count after keyturn's own calls)."""
        return {}

    def consumer_gates(self, ctx: RotationContext) -> list[GateCheck]:
        """What proves the token's consumers hold the new one (Buildkite: no agent still connected since before the
        new token was stored). Checked before the old token is revoked, again on every resume; [] when none."""
        return []

    def gate_plan(self) -> str:
        """The plan line of ``consumer_gates``: what the revoke will wait for, else ""."""
        return ""

    def config_updates(self, token: TokenInfo) -> dict[str, str]:
        """Settings the target's config should hold once ``token`` is current (Jenkins: its uuid), else {}."""
        return {}

    def recover_value(self, token: TokenInfo, fingerprint: str, ctx: RotationContext = NO_ROTATION) -> SecretValue | None:
        """The minted value read again from where the provider got it (a made-by-hand token's reference), else None."""
        return None

    def revoke_all_except(self, keep_id: str, ctx: RotationContext = NO_ROTATION) -> None:
        """Revoke every other token of the owner (CAN_REVOKE_ALL_EXCEPT)."""
        raise NotImplementedError(f"{type(self).__name__} cannot revoke every other token")

    def clusters(self) -> list[str]:
        """The clusters a token may be minted in (HAS_CLUSTERS)."""
        return []

    def check_pasted(self, value: SecretValue) -> None:
        """MADE_BY_HAND: refuse a pasted value that cannot be this kind of token (raises KeyturnError)."""
        return None

    def creation_url(self, description: str | None = None, scopes: tuple[str, ...] = ()) -> str:
        """MADE_BY_HAND: where the person makes the token."""
        return ""
