"""``keyvault-secret-version``: a new version of a Key Vault secret, tagged with the rotation."""

from __future__ import annotations

from typing import Any

from app.config import KeyVaultSecretVersion
from app.followups import StepContext, StepDefaults, StepResult
from app.secret import SecretValue, fingerprint

TAG_ROTATION = "keyturn-rotation-id"
TAG_TOKEN = "keyturn-token-id"  # noqa: S105 (a tag name, not a secret)
TAG_STATE = "keyturn-state"


class KeyVaultVersionStep(StepDefaults):
    kind = "keyvault-secret-version"
    is_store = True
    needs_value = True
    manual = False

    def __init__(self, step_id: str, spec: KeyVaultSecretVersion) -> None:
        self.id = step_id
        self.spec = spec
        self.title = spec.name or f"Key Vault {spec.vault} / {spec.secret}"

    def describe(self) -> str:
        return f"add a version of secret {self.spec.secret} in Key Vault {self.spec.vault} (tags: rotation id, token id; exp = token expiry)"

    def _client(self, ctx: StepContext) -> Any:
        from app.keyvault import vault_client

        return vault_client(ctx.config, self.spec.vault)

    def preflight(self, config: Any) -> None:
        from app.keyvault import vault_client

        vault_client(config, self.spec.vault).versions(self.spec.secret)

    def _ours(self, ctx: StepContext) -> Any | None:
        for props in self._client(ctx).versions(self.spec.secret):
            tags = props.tags or {}
            if tags.get(TAG_ROTATION) == ctx.rotation_id and tags.get(TAG_TOKEN) == ctx.token.id:
                return props
        return None

    def _result(self, props: Any) -> StepResult:
        return StepResult(
            f"Key Vault {self.spec.vault}: secret {self.spec.secret} version {props.version}",
            {"vault": self.spec.vault, "secret": self.spec.secret, "version": props.version},
        )

    def find_done(self, ctx: StepContext) -> StepResult | None:
        props = self._ours(ctx)
        return self._result(props) if props else None

    def run(self, ctx: StepContext) -> StepResult:
        assert ctx.value is not None
        tags = {TAG_ROTATION: ctx.rotation_id, TAG_TOKEN: ctx.token.id, TAG_STATE: "pending"}
        kwargs: dict[str, Any] = {"tags": tags}
        if ctx.token.expires_at:
            kwargs["expires_on"] = ctx.token.expires_at
        if self.spec.content_type:
            kwargs["content_type"] = self.spec.content_type
        secret = self._client(ctx).set(self.spec.secret, ctx.value.reveal(), **kwargs)
        return self._result(secret.properties)

    def recover_value(self, ctx: StepContext, fp: str) -> SecretValue | None:
        props = self._ours(ctx)
        if props is None:
            return None
        bundle = self._client(ctx).get(self.spec.secret, props.version)
        if bundle.value and fingerprint(bundle.value) == fp:
            return SecretValue(bundle.value)
        return None

    def previous_value(self, ctx: StepContext, detail: dict[str, Any]) -> SecretValue | None:
        """What consumers read before this rotation: the newest enabled version older than ours (the old token, so a
        resumed rotation can still prove or revoke it after the secret's latest version became the new one)."""
        client = self._client(ctx)
        versions = sorted(client.versions(self.spec.secret), key=lambda p: p.created_on or 0)
        ours = next((i for i, p in enumerate(versions) if p.version == detail.get("version")), None)
        if not ours:
            return None
        earlier = [p for p in versions[:ours] if p.enabled]
        if not earlier:
            return None
        bundle = client.get(self.spec.secret, earlier[-1].version)
        return SecretValue(bundle.value) if bundle.value else None

    reads_back = True

    def current_fingerprint(self, ctx: StepContext, detail: dict[str, Any]) -> str | None:
        """What a consumer reading the secret's current version gets: the newest version, if it is enabled."""
        client = self._client(ctx)
        versions = sorted(client.versions(self.spec.secret), key=lambda p: p.created_on or 0)
        if not versions or not versions[-1].enabled:
            return None
        bundle = client.get(self.spec.secret, versions[-1].version)
        return fingerprint(bundle.value) if bundle.value else None

    def on_verified(self, ctx: StepContext, detail: dict[str, Any]) -> None:
        tags = {TAG_ROTATION: ctx.rotation_id, TAG_TOKEN: ctx.token.id, TAG_STATE: "active"}
        self._client(ctx).update(self.spec.secret, detail["version"], tags=tags)  # idempotent

    def on_retired(self, ctx: StepContext, detail: dict[str, Any]) -> str | None:
        """With disable_previous: the version before ours (it holds the revoked token) is disabled."""
        if not self.spec.disable_previous:
            return None
        client = self._client(ctx)
        versions = sorted(client.versions(self.spec.secret), key=lambda p: p.created_on or 0)
        ours = next((i for i, p in enumerate(versions) if p.version == detail.get("version")), None)
        if not ours:
            return None
        prev = versions[ours - 1]
        if prev.enabled:
            client.update(self.spec.secret, prev.version, enabled=False)
        return f"Key Vault {self.spec.vault}: disabled previous version {prev.version} of {self.spec.secret}"

    def undo(self, ctx: StepContext, detail: dict[str, Any]) -> str:
        """Consumers read the latest version: make the previous value the latest again."""
        client = self._client(ctx)
        ours = detail.get("version")
        if ours is None and (landed := self._ours(ctx)) is not None:
            ours = landed.version  # a write keyturn gave up on, which landed after all
        versions = sorted(client.versions(self.spec.secret), key=lambda p: p.created_on or 0)
        earlier = [p for p in versions if p.version != ours and p.enabled and not (p.tags or {}).get(TAG_STATE) == "pending"]
        if ours:
            client.update(self.spec.secret, ours, enabled=False, tags={TAG_ROTATION: ctx.rotation_id, TAG_TOKEN: ctx.token.id, TAG_STATE: "aborted"})
        if not earlier:
            return f"Key Vault {self.spec.vault}: disabled version {ours} (there was no earlier version to restore)"
        prev = earlier[-1]
        bundle = client.get(self.spec.secret, prev.version)
        restored = client.set(self.spec.secret, bundle.value, tags={**(prev.tags or {}), "keyturn-restored-from": prev.version}, content_type=prev.content_type, expires_on=prev.expires_on)
        return f"Key Vault {self.spec.vault}: restored the previous value as version {restored.properties.version}"
