"""Follow-up steps: typed, journaled, idempotent (each reads state before it writes).

Store steps (Key Vault, keyring, SSM) run before the value is revealed and can give the value
back after a crash; the others propagate it to its consumers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from app.errors import NotBuiltError

if TYPE_CHECKING:
    from app.config import Config, Target
    from app.secret import SecretValue
    from providers.base import GateCheck, Interaction, TokenInfo


@dataclass
class StepContext:
    config: Config
    rotation_id: str
    target_name: str
    target: Target
    token: TokenInfo  # the new token
    value: SecretValue | None
    interaction: Interaction
    options: dict[str, Any] = field(default_factory=dict)  # e.g. skip_manual


@dataclass(frozen=True)
class StepResult:
    summary: str  # one line for the checklist and the summary: what changed where
    detail: dict[str, Any] = field(default_factory=dict)  # journaled: ids only, never a value


class FollowUpStep(Protocol):
    id: str  # stable across config edits: "<kind>-<what it acts on>" (app.plan.step_id)
    kind: str
    title: str
    is_store: bool  # persists the value (runs before the reveal)
    needs_value: bool
    manual: bool

    def describe(self) -> str:
        """The dry-run plan line."""

    def preflight(self, config: Config) -> None:
        """Cheap read-only check before anything is minted (reachable, signed in, allowed to read)."""

    def find_done(self, ctx: StepContext) -> StepResult | None:
        """If this step already happened for ctx.token (a crash after the effect), say so."""

    def run(self, ctx: StepContext) -> StepResult:
        """Do it. Raises FollowUpError / SecretSourceError with a one-line message."""

    def recover_value(self, ctx: StepContext, fingerprint: str) -> SecretValue | None:
        """Store steps: read the value back (resume after a crash); others return None."""

    def previous_value(self, ctx: StepContext, detail: dict[str, Any]) -> SecretValue | None:
        """Store steps: what the place held before this rotation wrote to it (the old token), or None."""

    reads_back: bool  # current_fingerprint says what consumers read now (every store step, and the Flux branch)

    def current_fingerprint(self, ctx: StepContext, detail: dict[str, Any]) -> str | None:
        """The fingerprint of the value consumers read from this place *now* (None: nothing readable there).
        The engine requires it to be the live token's before the old token is revoked and before `done`, so a
        write that landed after keyturn gave up on it (a late Key Vault version) is found and written over."""

    def on_verified(self, ctx: StepContext, detail: dict[str, Any]) -> None:
        """Store steps: clear the 'pending' mark once the token is proven to work."""

    def undo(self, ctx: StepContext, detail: dict[str, Any]) -> str:
        """Store steps: put back what consumers read before this step (the rotation is aborted)."""

    def on_retired(self, ctx: StepContext, detail: dict[str, Any]) -> str | None:
        """Store steps: tidy up once the old token is revoked (e.g. disable its version); say what changed."""

    gates: bool  # gate() can prove this step's consumers hold the new value (the old token waits for it)

    def gate(self, ctx: StepContext, detail: dict[str, Any]) -> GateCheck | None:
        """Once the step is done: do its consumers demonstrably hold the new value now (Flux: the change reached
        the branch Flux reconciles in every environment)? Read-only, cheap enough to run on every resume."""

    def gate_plan(self) -> str:
        """The plan line of ``gate``: what the revoke waits for, else ""."""


class StepDefaults:
    """No-op defaults for the optional hooks, so each step writes only what it does."""

    reads_back = False
    gates = False

    def gate(self, ctx: StepContext, detail: dict[str, Any]) -> GateCheck | None:
        return None

    def gate_plan(self) -> str:
        return ""

    def previous_value(self, ctx: StepContext, detail: dict[str, Any]) -> SecretValue | None:
        return None

    def current_fingerprint(self, ctx: StepContext, detail: dict[str, Any]) -> str | None:
        raise NotImplementedError(f"{type(self).__name__} cannot read back what it holds")

    def preflight(self, config: Config) -> None:
        return None

    def recover_value(self, ctx: StepContext, fp: str) -> SecretValue | None:
        return None

    def on_verified(self, ctx: StepContext, detail: dict[str, Any]) -> None:
        return None

    def on_retired(self, ctx: StepContext, detail: dict[str, Any]) -> str | None:
        return None

    def undo(self, ctx: StepContext, detail: dict[str, Any]) -> str:
        return ""


def build_steps(config: Config, target: Target) -> list[FollowUpStep]:
    """The target's follow-ups as step objects; refuses kinds this version cannot run yet."""
    from app.followups.aws_ssm import AwsSsmStep
    from app.followups.conductorone import ConductorOneStep
    from app.followups.flux_sops import FluxSopsStep
    from app.followups.keyring_store import KeyringStep
    from app.followups.keyvault_version import KeyVaultVersionStep
    from app.followups.manual import ManualStep
    from app.followups.pipeline_run import AzurePipelinesRunStep

    built: dict[str, Any] = {
        "keyvault-secret-version": KeyVaultVersionStep,
        "flux-sops-secret": FluxSopsStep,
        "aws-ssm-parameter": AwsSsmStep,
        "conductorone-connector": ConductorOneStep,
        "azure-pipelines-run": AzurePipelinesRunStep,
        "keyring": KeyringStep,
        "manual": ManualStep,
    }
    steps: list[FollowUpStep] = []
    taken: set[str] = set()
    for i, spec in enumerate(target.follow_ups):
        cls = built.get(spec.kind)
        if cls is None:
            raise NotBuiltError(
                f"follow-up {i + 1} ({spec.kind}{': ' + spec.name if spec.name else ''}) cannot run in this version of keyturn",
                hint="nothing was minted; replace it with a `manual` step for now",
            )
        steps.append(cls(unique_step_id(spec.kind, acts_on(spec), taken), spec))
    return steps


def acts_on(spec: Any) -> str:
    """What a follow-up acts on, for its stable id: the same step keeps its id when others are added or reordered."""
    from app.config import (
        AwsSsmParameter,
        AzurePipelinesRun,
        ConductorOneConnector,
        FluxSopsSecret,
        KeyringStore,
        KeyVaultSecretVersion,
    )

    if isinstance(spec, KeyVaultSecretVersion):
        return f"{spec.vault}/{spec.secret}"
    if isinstance(spec, FluxSopsSecret):
        return f"{spec.repo}/{spec.field}.{spec.key}/{','.join(spec.files)}"
    if isinstance(spec, AwsSsmParameter):
        return f"{spec.region}{spec.parameter}"
    if isinstance(spec, KeyringStore):
        return f"{spec.service}/{spec.username}"
    if isinstance(spec, ConductorOneConnector):
        return f"{spec.tenant}/{spec.app_id}/{spec.connector_id}"
    if isinstance(spec, AzurePipelinesRun):
        return f"{spec.organization}/{spec.project}/{spec.pipeline_id}"
    return str(spec.name or spec.text)  # manual: its name, else its text


def unique_step_id(kind: str, what: str, taken: set[str]) -> str:
    from app.plan import step_id

    sid = base = step_id(kind, what)
    n = 2
    while sid in taken:  # the same place twice in one target (a config mistake, but ids must not collide)
        sid, n = f"{base}-{n}", n + 1
    taken.add(sid)
    return sid
