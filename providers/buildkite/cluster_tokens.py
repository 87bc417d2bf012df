"""Buildkite cluster agent tokens: ``clusterAgentTokenCreate`` / ``clusterAgentTokenRevoke`` in one cluster; the
revoke waits for the cluster's connected agents (``consumer_gates``, in ``common``).

The cluster is ``ctx.cluster`` (the wizard's pick, kept in the rotation's plan) or else ``target.cluster``, by name,
uuid or GraphQL id, looked up again on every call: nothing of one rotation's pick stays for the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

from app.errors import KeyturnError, ProviderError
from providers.base import NO_ROTATION, MintedToken, MintRequest, RotationContext, TokenInfo
from providers.buildkite.common import (
    EXPIRY_SLACK,
    MAX_CLUSTER_PAGES,
    MIN_EXPIRY,
    PAGE,
    AgentTokenBase,
    ConnectedAgent,
    human,
)


class ClusterAgentTokenProvider(AgentTokenBase):
    """The agent tokens of one cluster of a Buildkite organization."""

    token_kind = "cluster-agent-token"  # noqa: S105 (a type name)
    HAS_CLUSTERS: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._found: dict[str, dict[str, str]] = {}  # cluster name/uuid/id as asked -> the organization's cluster

    # -- clusters ----------------------------------------------------------------------------------

    def _clusters(self) -> Iterator[dict[str, str]]:
        """Every cluster of the organization ({id, uuid, name}), page by page (GraphQL cursor paging)."""
        after: str | None = None
        for _ in range(MAX_CLUSTER_PAGES):
            data = self._client.graphql(
                "ListClusters",
                {"slug": self.account.organization, "first": 50, "after": after},
                what=f"could not list the clusters of {self.account.organization}",
            )
            conn = self._organization(data).get("clusters") or {}
            for edge in conn.get("edges") or []:
                node = (edge or {}).get("node") or {}
                yield {"id": str(node.get("id")), "uuid": str(node.get("uuid")), "name": str(node.get("name"))}
            page = conn.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return
            after = str(page["endCursor"])
        raise ProviderError(
            f"could not list the clusters of {self.account.organization}: more than {MAX_CLUSTER_PAGES} pages",
            hint="name the cluster's id in targets.<name>.cluster",
        )

    def clusters(self) -> list[str]:
        """The organization's cluster names, every page: what the wizard offers to pick from."""
        return [c["name"] for c in self._clusters()]

    def _cluster_ref(self, ctx: RotationContext = NO_ROTATION) -> dict[str, str]:
        """The rotation's cluster ({id, uuid, name}): ``ctx.cluster``, else ``target.cluster``, found by name, uuid or
        GraphQL id across every page. Looked up on each call (each public method looks it up once)."""
        wanted = (ctx.cluster or self.target.cluster or "").strip()
        if not wanted:
            raise KeyturnError(f"targets.{self.target_name}.cluster is not set: name the cluster (name or id)")
        # the organization's clusters are the account's, not a rotation's: one lookup per name serves every call
        if (known_node := self._found.get(wanted)) is not None:
            return known_node
        names: list[str] = []
        for node in self._clusters():
            names.append(node["name"])
            if wanted in (node["name"], node["uuid"], node["id"]) or wanted.lower() == node["name"].lower():
                self._found[wanted] = node
                return node
        known = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
        raise ProviderError(
            f"targets.{self.target_name}.cluster: Buildkite organization {self.account.organization} has no cluster "
            f"{wanted!r}",
            hint=f"known clusters: {known}" if names else "the organization has no clusters",
        )

    # -- the agents the consumer gate watches ------------------------------------------------------

    def _gate_words(self, cluster_name: str | None = None) -> tuple[str, str, str]:
        name = cluster_name or self.target.cluster
        where = f"cluster {name}" if name else "the rotation's cluster"
        return f"Agents of {where}", where, f"agent of {where}"

    def _scope_agents(self, ctx: RotationContext) -> tuple[str | None, str | None, list[ConnectedAgent]]:
        """The cluster's connected agents: ``ListAgents`` filtered by ``cluster`` (its GraphQL id), each agent's
        clusterQueue.cluster checked here too. The schema does not say which id the filter takes, and an unknown one
        might answer no agents rather than an error: an empty answer is checked against the unfiltered list."""
        cluster = self._cluster_ref(ctx)
        what = f"could not list the connected agents of cluster {cluster['name']}"
        mine = [a for a in self._list_agents({"cluster": cluster["id"]}, what) if a.belongs(cluster["uuid"])]
        if not mine:
            mine = [a for a in self._list_agents({}, what) if a.belongs(cluster["uuid"])]
        return cluster["name"], self._web_page(f"/organizations/{self.account.organization}/clusters/{cluster['uuid']}"), mine

    # -- tokens ------------------------------------------------------------------------------------

    @staticmethod
    def _token_info(node: dict[str, Any], cluster: dict[str, str]) -> TokenInfo:
        from providers.buildkite.client import parse_time

        extra = {"uuid": str(node.get("uuid") or ""), "cluster": cluster["name"], "cluster_uuid": cluster["uuid"]}
        if node.get("allowedIpAddresses"):
            extra["allowed_ips"] = str(node["allowedIpAddresses"])
        expires = parse_time(node.get("expiresAt"))
        return TokenInfo(
            id=str(node.get("id") or ""),
            name=str(node.get("description") or ""),
            expires_at=expires,
            active=expires is None or expires > datetime.now(UTC),
            extra=extra,
            display_id=extra["uuid"] or None,  # the uuid buildkite.com shows, not the GraphQL node id
        )

    def _list(self, cluster: dict[str, str]) -> list[TokenInfo]:
        data = self._client.graphql(
            "ListClusterAgentTokens",
            {"slug": self.account.organization, "clusterId": cluster["uuid"], "first": PAGE},
            what=f"could not list the agent tokens of cluster {cluster['name']}",
        )
        node = (data.get("organization") or {}).get("cluster")
        if not isinstance(node, dict):
            self._found.clear()  # looked up again next time
            raise ProviderError(f"cluster {cluster['name']} ({cluster['uuid']}) is gone from {self.account.organization}")
        conn = node.get("agentTokens") or {}
        if (conn.get("pageInfo") or {}).get("hasNextPage"):  # a cut-short list could hide the token a reconcile looks for
            raise ProviderError(
                f"cluster {cluster['name']} has more than {PAGE} agent tokens, more than keyturn lists",
                hint="revoke the ones no agent uses on buildkite.com, then run keyturn again",
            )
        return [self._token_info((e or {}).get("node") or {}, cluster) for e in conn.get("edges") or []]

    def list_tokens(self, ctx: RotationContext = NO_ROTATION, *, include_inactive: bool = False) -> list[TokenInfo]:
        # Buildkite deletes a revoked cluster token, and an expired one is listed (inactive): include_inactive
        # changes nothing here
        return self._list(self._cluster_ref(ctx))

    def _checked_expiry(self, expires_at: datetime | None) -> str | None:
        from providers.buildkite.client import format_time

        if expires_at is None:
            return None
        when = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        if when < self._now() + MIN_EXPIRY + EXPIRY_SLACK:
            raise ProviderError(
                f"targets.{self.target_name}: the expiry {human(when)} is less than 10 minutes ahead; "
                "Buildkite needs an agent token's expiry at least 10 minutes in the future (or none)"
            )
        return format_time(when)

    def mint(self, request: MintRequest, ctx: RotationContext = NO_ROTATION) -> MintedToken:
        expires = self._checked_expiry(request.expires_at)  # before any call
        cluster = self._cluster_ref(ctx)
        what = f"could not create agent token {request.display_name!r} in cluster {cluster['name']}"
        variables: dict[str, Any] = {
            "organizationId": self._client.organization_id(),
            "clusterId": cluster["id"],
            "description": request.display_name,
        }
        if expires is not None:
            variables["expiresAt"] = expires
        if self.target.allowed_ips:
            variables["allowedIpAddresses"] = " ".join(self.target.allowed_ips)
        data = self._client.graphql(
            "ClusterAgentTokenCreate",
            variables,
            what=what,
            ambiguous_hint=f"list the agent tokens of cluster {cluster['name']} for {request.display_name!r} before minting again",
        )
        info, value = self._created(
            data.get("clusterAgentTokenCreate"), "clusterAgentToken", what, lambda node: self._token_info(node, cluster)
        )
        notes: list[str] = []
        if info.expires_at is not None:
            notes.append(f"expires {human(info.expires_at)}; Buildkite cannot change an agent token's expiry later")
        return MintedToken(info=info, value=value, notes=tuple(notes))

    def verify(self, token: MintedToken, ctx: RotationContext = NO_ROTATION) -> str:
        cluster = self._cluster_ref(ctx)
        found = {t.id: t for t in self._list(cluster)}.get(token.info.id)
        if found is None or not found.active:
            raise ProviderError(f"the new agent token {token.info.shown_id} is not listed as active in cluster {cluster['name']}")
        return f"ListClusterAgentTokens: the new token {found.shown_id} ({found.name}) is listed"

    def revoke(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> None:
        cluster = self._cluster_ref(ctx)
        known = {t.id: t for t in self._list(cluster)}
        match = known.get(token_id) or next((t for t in known.values() if t.extra.get("uuid") == token_id), None)
        if match is None:
            return  # Buildkite deletes revoked cluster tokens: not listed = already revoked
        self._client.graphql(
            "ClusterAgentTokenRevoke",
            {"organizationId": self._client.organization_id(), "id": match.id},
            what=f"could not revoke agent token {match.shown_id} of cluster {cluster['name']}",
            ambiguous_hint="run the revocation again: revoking twice does no harm",
        )
