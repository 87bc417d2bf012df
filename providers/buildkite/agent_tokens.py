"""Buildkite unclustered agent tokens (a deprecated feature): ``agentTokenCreate`` / ``agentTokenRevoke`` (with a
reason, ``ctx.revoke_reason``). Buildkite may refuse a revocation (``permissions.agentTokenRevoke``): that is checked
before anything is minted (``retire_blockers``). The revoke waits for the organization's unclustered connected agents
(``consumer_gates``, in ``common``)."""

from __future__ import annotations

from typing import Any

from app.errors import ProviderError
from providers.base import NO_ROTATION, MintedToken, MintRequest, RotationContext, TokenInfo
from providers.buildkite.common import DEPRECATION_NOTICE, PAGE, AgentTokenBase, ConnectedAgent


class UnclusteredAgentTokenProvider(AgentTokenBase):
    """The unclustered agent tokens of a Buildkite organization."""

    token_kind = "unclustered-agent-token"  # noqa: S105 (a type name)

    def deprecation_notice(self) -> str:
        """The feature is deprecated; offer the cluster path."""
        return DEPRECATION_NOTICE

    # -- the agents the consumer gate watches ------------------------------------------------------

    def _gate_words(self, cluster_name: str | None = None) -> tuple[str, str, str]:
        org = self.account.organization
        return f"Unclustered agents of {org}", f"unclustered, {org}", f"unclustered agent of {org}"

    def _scope_agents(self, ctx: RotationContext) -> tuple[str | None, str | None, list[ConnectedAgent]]:
        """The organization's connected agents in no cluster: ``ListAgents`` with ``clustered: false`` ("exclude agents
        that belong to a cluster queue"), and each agent's clusterQueue checked here too."""
        what = f"could not list the unclustered connected agents of {self.account.organization}"
        mine = [a for a in self._list_agents({"clustered": False}, what) if a.belongs(None)]
        return None, self._web_page(f"/organizations/{self.account.organization}/agents"), mine

    @staticmethod
    def _token_info(node: dict[str, Any]) -> TokenInfo:
        from providers.buildkite.client import parse_time

        revoked = parse_time(node.get("revokedAt"))
        extra = {"uuid": str(node.get("uuid") or "")}
        perm = ((node.get("permissions") or {}).get("agentTokenRevoke")) or {}
        if perm:
            extra["revoke_allowed"] = "true" if perm.get("allowed") else "false"
            if not perm.get("allowed") and perm.get("message"):
                extra["revoke_refused"] = " ".join(str(perm["message"]).split())
        if revoked is not None:
            extra["revoked_at"] = revoked.isoformat()
        if node.get("revokedReason"):
            extra["revoked_reason"] = str(node["revokedReason"])
        return TokenInfo(
            id=str(node.get("id") or ""),
            name=str(node.get("description") or ""),
            expires_at=None,
            active=revoked is None,
            extra=extra,
            display_id=extra["uuid"] or None,  # the uuid buildkite.com shows, not the GraphQL node id
        )

    def _list(self, *, include_inactive: bool) -> list[TokenInfo]:
        data = self._client.graphql(
            "ListAgentTokens",
            {"slug": self.account.organization, "first": PAGE, "revoked": None if include_inactive else False},
            what=f"could not list the unclustered agent tokens of {self.account.organization}",
        )
        conn = self._organization(data).get("agentTokens") or {}
        if (conn.get("pageInfo") or {}).get("hasNextPage"):  # a cut-short list could hide the token a reconcile looks for
            raise ProviderError(
                f"{self.account.organization} has more than {PAGE} unclustered agent tokens, more than keyturn lists",
                hint="revoke the ones no agent uses on buildkite.com, then run keyturn again",
            )
        return [self._token_info((edge or {}).get("node") or {}) for edge in conn.get("edges") or []]

    def list_tokens(self, ctx: RotationContext = NO_ROTATION, *, include_inactive: bool = False) -> list[TokenInfo]:
        return self._list(include_inactive=include_inactive)

    def mint(self, request: MintRequest, ctx: RotationContext = NO_ROTATION) -> MintedToken:
        what = f"could not create unclustered agent token {request.display_name!r} in {self.account.organization}"
        if request.expires_at is not None:
            self.interaction.warn("unclustered agent tokens cannot expire: the expiry is ignored")
        data = self._client.graphql(
            "AgentTokenCreate",
            {"organizationId": self._client.organization_id(), "description": request.display_name, "public": False},
            what=what,
            ambiguous_hint=f"list the agent tokens for {request.display_name!r} before minting again",
        )
        info, value = self._created(data.get("agentTokenCreate"), "agentTokenEdge", what, self._token_info)
        return MintedToken(info=info, value=value, notes=(DEPRECATION_NOTICE,))

    def verify(self, token: MintedToken, ctx: RotationContext = NO_ROTATION) -> str:
        found = {t.id: t for t in self._list(include_inactive=False)}.get(token.info.id)
        if found is None or not found.active:
            raise ProviderError(f"the new agent token {token.info.shown_id} is not listed as active in {self.account.organization}")
        return f"ListAgentTokens: the new token {found.shown_id} ({found.name}) is listed"

    def retire_blockers(self, old: list[TokenInfo], ctx: RotationContext = NO_ROTATION) -> list[str]:
        """Before anything is minted: old tokens Buildkite will not let this API token revoke
        (``permissions.agentTokenRevoke.allowed``), so a rotation never ends with two live tokens."""
        out = []
        for t in old:
            allowed, why = self.revoke_allowed(t.id)
            if not allowed:
                out.append(f"Buildkite does not allow revoking agent token {t.shown_id} ({t.name}): "
                           f"{why or 'permissions.agentTokenRevoke.allowed is false'}")
        return out

    def revoke_allowed(self, token_id: str) -> tuple[bool, str]:
        """Whether Buildkite lets this token be revoked (permissions.agentTokenRevoke), and why not."""
        for info in self._list(include_inactive=True):
            if token_id in (info.id, info.extra.get("uuid")):
                allowed = info.extra.get("revoke_allowed", "true") == "true"
                return allowed, info.extra.get("revoke_refused", "")
        return False, "Buildkite does not know this token"

    def revoke(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> None:
        """Revoke with ``ctx.revoke_reason`` (it names the rotation); outside a rotation, the reason names the target."""
        match = next((i for i in self._list(include_inactive=True) if token_id in (i.id, i.extra.get("uuid"))), None)
        if match is None:
            raise ProviderError(f"Buildkite organization {self.account.organization} has no agent token {token_id}")
        if not match.active:
            return
        if match.extra.get("revoke_allowed") == "false":
            why = match.extra.get("revoke_refused") or "permissions.agentTokenRevoke.allowed is false"
            raise ProviderError(
                f"Buildkite does not allow revoking agent token {match.shown_id} ({match.name}): {why}",
                hint="ask an organization administrator, or leave it and move the agents to a cluster",
            )
        reason = " ".join(ctx.revoke_reason.split()) if ctx.rotation_id else f"rotated by keyturn (target {self.target_name})"
        self._client.graphql(
            "AgentTokenRevoke",
            {"id": match.id, "reason": reason},
            what=f"could not revoke agent token {match.shown_id} ({match.name})",
            ambiguous_hint="run the revocation again: revoking twice does no harm",
        )
