"""``keyring``: a copy of the new token in the OS keyring."""

from __future__ import annotations

from typing import Any

from app.config import KeyringStore
from app.errors import FollowUpError
from app.followups import StepContext, StepDefaults, StepResult
from app.secret import SecretValue, fingerprint


class KeyringStep(StepDefaults):
    kind = "keyring"
    is_store = True
    needs_value = True
    manual = False

    def __init__(self, step_id: str, spec: KeyringStore) -> None:
        self.id = step_id
        self.spec = spec
        self.title = spec.name or f"OS keyring {spec.service} / {spec.username}"

    def describe(self) -> str:
        return f"store a copy in the OS keyring ({self.spec.service} / {self.spec.username})"

    def _get(self) -> str | None:
        import keyring
        from keyring.errors import KeyringError

        try:
            return keyring.get_password(self.spec.service, self.spec.username)
        except KeyringError as exc:
            raise FollowUpError(f"{self.title}: the OS keyring is not available ({exc.__class__.__name__})") from None

    def _result(self) -> StepResult:
        return StepResult(f"OS keyring: {self.spec.service} / {self.spec.username}", {"service": self.spec.service})

    def find_done(self, ctx: StepContext) -> StepResult | None:
        fp = (ctx.options.get("fingerprint") or "") if ctx.value is None else ctx.value.fingerprint
        current = self._get()
        return self._result() if current is not None and fingerprint(current) == fp else None

    def run(self, ctx: StepContext) -> StepResult:
        import keyring
        from keyring.errors import KeyringError

        assert ctx.value is not None
        try:
            keyring.set_password(self.spec.service, self.spec.username, ctx.value.reveal())
        except KeyringError as exc:
            raise FollowUpError(f"{self.title}: cannot write to the OS keyring ({exc.__class__.__name__})") from None
        return self._result()

    reads_back = True

    def current_fingerprint(self, ctx: StepContext, detail: dict[str, Any]) -> str | None:
        current = self._get()
        return fingerprint(current) if current is not None else None

    def recover_value(self, ctx: StepContext, fp: str) -> SecretValue | None:
        current = self._get()
        return SecretValue(current) if current is not None and fingerprint(current) == fp else None

    def undo(self, ctx: StepContext, detail: dict[str, Any]) -> str:
        return (
            f"OS keyring {self.spec.service} / {self.spec.username}: still holds the revoked token; replace it by hand"
        )
