"""Buildkite tokens behind ``providers.base.Provider``: one class per token kind, one provider per target.

- ``cluster-agent-token``: ``cluster_tokens.ClusterAgentTokenProvider`` (``clusterAgentTokenCreate`` /
  ``clusterAgentTokenRevoke`` in ``ctx.cluster`` or ``target.cluster``).
- ``unclustered-agent-token`` (deprecated feature): ``agent_tokens.UnclusteredAgentTokenProvider``
  (``agentTokenCreate`` / ``agentTokenRevoke`` with a reason).
- ``api-access-token`` (e.g. the ConductorOne connector's): ``api_token.ApiAccessTokenProvider``; no API creates
  one: the value is pasted (``ctx.paste``) or read from ``target.new_token``, checked with ``GET /v2/access-token``
  and the old one is revoked with ``DELETE /v2/access-token`` authenticated by the old value.

The shared plumbing (client, manager token, organization lookups, texts, constants) is in ``common``.
``make_buildkite_provider`` builds the class a target's ``token_type`` names. Importing this module loads neither
gql, httpx nor textual: they come on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.errors import KeyturnError
from providers.buildkite.agent_tokens import UnclusteredAgentTokenProvider
from providers.buildkite.api_token import ApiAccessTokenProvider
from providers.buildkite.cluster_tokens import ClusterAgentTokenProvider
from providers.buildkite.common import (
    BUILTIN_PRESETS,
    CONDUCTORONE_SCOPES,
    DEFAULT_TOKEN_TYPE,
    DEPRECATION_NOTICE,
    MANAGER_SCOPES,
    RETIRE_NOTICE,
    TOKEN_TYPES,
    BuildkiteBase,
)

if TYPE_CHECKING:
    from app.config import Account, Target

__all__ = [
    "BUILTIN_PRESETS",
    "CLASSES",
    "CONDUCTORONE_SCOPES",
    "DEPRECATION_NOTICE",
    "MANAGER_SCOPES",
    "RETIRE_NOTICE",
    "TOKEN_TYPES",
    "ApiAccessTokenProvider",
    "BuildkiteBase",
    "ClusterAgentTokenProvider",
    "UnclusteredAgentTokenProvider",
    "make_buildkite_provider",
]

CLASSES: dict[str, type[BuildkiteBase]] = {
    "cluster-agent-token": ClusterAgentTokenProvider,
    "unclustered-agent-token": UnclusteredAgentTokenProvider,
    "api-access-token": ApiAccessTokenProvider,
}


def make_buildkite_provider(account_name: str, account: Account, target_name: str, target: Target, **options: Any) -> BuildkiteBase:
    """The provider of ``target.token_type`` (default: a cluster agent token) for one Buildkite target; ``options`` are
    the class's keyword arguments (``BuildkiteBase.__init__``)."""
    kind = target.token_type or DEFAULT_TOKEN_TYPE
    cls = CLASSES.get(kind)
    if cls is None:
        raise KeyturnError(
            f"targets.{target_name}.token_type: {kind!r} is not a Buildkite token type",
            hint="use " + ", ".join(TOKEN_TYPES),
        )
    return cls(account_name, account, target_name, target, **options)
