"""Which provider serves which platform. The engine asks here and never branches on names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import ConfigError, NotBuiltError

if TYPE_CHECKING:
    from app.config import Account, Config, Manual, Target
    from app.secret import SecretValue
    from providers.base import Interaction, Provider


def provider_key(account_name: str, account: Account, target_name: str | None) -> str:
    """Which targets share a provider: Azure DevOps shares one per account (one sign-in)."""
    if account.platform == "azure-devops" or target_name is None:
        return account_name
    return f"{account_name}/{target_name}"


# (platform, token kind) -> the class serving it, imported on first use (a platform's libraries load only when needed)
PROVIDERS: dict[tuple[str, str], str] = {
    ("azure-devops", "pat"): "providers.azure_devops.provider:AzureDevOpsProvider",
    ("buildkite", "cluster-agent-token"): "providers.buildkite.cluster_tokens:ClusterAgentTokenProvider",
    ("buildkite", "unclustered-agent-token"): "providers.buildkite.agent_tokens:UnclusteredAgentTokenProvider",
    ("buildkite", "api-access-token"): "providers.buildkite.api_token:ApiAccessTokenProvider",
    ("jenkins", "api-token"): "providers.jenkins.provider:JenkinsProvider",
}
DEFAULT_KIND = {"azure-devops": "pat", "buildkite": "cluster-agent-token", "jenkins": "api-token"}
PER_TARGET = frozenset({"buildkite", "jenkins"})  # their tokens belong to a target (a cluster, a user's token)


def token_kind(account: Account, target: Target | None) -> str:
    return (target.token_type if target is not None and target.token_type else None) or DEFAULT_KIND.get(account.platform, "")


def provider_class(platform: str, kind: str, where: str = "") -> type[Provider]:
    import importlib

    path = PROVIDERS.get((platform, kind))
    if path is None:
        if platform not in DEFAULT_KIND:
            raise NotBuiltError(f"{where or 'accounts'}: platform {platform!r} is not supported by this version of keyturn yet")
        kinds = ", ".join(k for p, k in PROVIDERS if p == platform)
        raise ConfigError(f"{where or 'targets'}.token_type: {kind!r} is not a {platform} token kind", hint=f"use one of: {kinds}")
    module, _, name = path.partition(":")
    cls: type[Provider] = getattr(importlib.import_module(module), name)
    return cls


def make_provider(
    account_name: str,
    account: Account,
    *,
    target_name: str | None = None,
    target: Target | None = None,
    ca_bundle: Path | None,
    resolve_secret: Callable[[str], SecretValue],
    interaction: Interaction,
) -> Provider:
    kind = token_kind(account, target)
    where = f"targets.{target_name}" if target_name else f"accounts.{account_name}"
    cls = provider_class(account.platform, kind, where)  # refuses an unknown platform or kind before anything else
    if account.platform not in PER_TARGET:
        return cls(account_name, account, ca_bundle=ca_bundle, resolve_secret=resolve_secret, interaction=interaction)  # type: ignore[call-arg]
    if target_name is None or target is None:
        raise NotBuiltError(f"accounts.{account_name}: {account.platform} tokens belong to a target; name one")
    return cls(account_name, account, target_name, target, ca_bundle=ca_bundle, resolve_secret=resolve_secret, interaction=interaction)  # type: ignore[call-arg]


def resolve_scopes(config: Config, target_name: str, target: Target) -> tuple[str, ...]:
    """The target's scope ids (from `scopes` or a preset), checked against the platform's catalogue."""
    platform = config.accounts[target.account].platform
    if target.token_type in ("cluster-agent-token", "unclustered-agent-token"):
        return ()  # agent tokens have no scopes
    if target.scopes is not None:
        scopes = tuple(target.scopes)
    elif target.preset is None and platform == "jenkins":
        scopes = builtin_presets(platform)["user"]  # the token carries all of its user's permissions
    elif target.preset in config.presets:
        scopes = tuple(config.presets[target.preset].scopes)
    else:
        builtin = builtin_presets(platform)
        if target.preset not in builtin:
            known = ", ".join(sorted({*builtin, *config.presets})) or "none"
            raise ConfigError(f"targets.{target_name}.preset: unknown preset {target.preset!r}", hint=f"known presets: {known}")
        scopes = builtin[target.preset]
    if platform == "azure-devops":
        from providers.azure_devops.scopes import load_catalogue

        unknown = load_catalogue().validate(scopes)
        if unknown:
            raise ConfigError(
                f"targets.{target_name}: unknown Azure DevOps scope {unknown[0]!r}",
                hint="use ids like vso.agentpools; the wizard's scope picker lists them all",
            )
    if not scopes:
        raise ConfigError(f"targets.{target_name}.scopes: empty; name at least one scope")
    return scopes


def preset_reminders(config: Config, target: Target) -> list[Manual]:
    """The reminders a built-in preset brings to every rotation of its job (keda: KEDA may keep the old credential
    until its operator restarts), as manual steps that never hold the rotation up; a preset of the config has none."""
    account = config.accounts.get(target.account)
    if target.preset is None or target.preset in config.presets or account is None or account.platform != "azure-devops":
        return []
    from app.config import Manual
    from providers.azure_devops.scopes import BUILTIN_PRESETS

    preset = BUILTIN_PRESETS.get(target.preset)
    return [Manual(kind="manual", name=name, text=text, required=False) for name, text in (preset.reminders if preset else ())]


def builtin_presets(platform: str) -> dict[str, tuple[str, ...]]:
    if platform == "azure-devops":
        from providers.azure_devops.scopes import BUILTIN_PRESETS

        return {k: p.scopes for k, p in BUILTIN_PRESETS.items()}
    if platform == "buildkite":
        from providers.buildkite.provider import BUILTIN_PRESETS as BUILDKITE_PRESETS

        return dict(BUILDKITE_PRESETS)
    if platform == "jenkins":
        from providers.jenkins.provider import BUILTIN_PRESETS as JENKINS_PRESETS

        return dict(JENKINS_PRESETS)
    return {}


def scope_label(platform: str, scope: str) -> str:
    if platform == "azure-devops":
        from providers.azure_devops.scopes import load_catalogue

        return load_catalogue().label(scope)
    return scope
