"""Buildkite tokens behind ``providers.base.Provider``: one provider per target.

- ``cluster-agent-token``: ``clusterAgentTokenCreate`` / ``clusterAgentTokenRevoke`` in ``target.cluster``.
- ``unclustered-agent-token`` (deprecated feature): ``agentTokenCreate`` / ``agentTokenRevoke`` (with a reason).
- ``api-access-token`` (e.g. the ConductorOne connector's): no API creates one; the value is pasted (``paste``)
  or read from ``target.new_token``, checked with ``GET /v2/access-token`` and the old one is revoked with
  ``DELETE /v2/access-token`` authenticated by the old value.

Importing this module loads neither gql, httpx nor textual: they come on first use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from app.errors import KeyturnError, ProviderError
from app.net import is_loopback
from app.secret import SecretValue
from providers.base import Interaction, MintedToken, MintRequest, TokenInfo

if TYPE_CHECKING:
    from app.config import Account, Manual, Target
    from providers.buildkite.client import AccessTokenInfo, BuildkiteClient

CONDUCTORONE_SCOPES = ("read_teams", "read_organizations", "read_user")
BUILTIN_PRESETS: dict[str, tuple[str, ...]] = {"conductorone": CONDUCTORONE_SCOPES}
# What the account's own API token (the one keyturn manages agent tokens with) should carry; GraphQL access
# is what matters for the agent-token mutations (GraphQL is not limited by REST scopes).
MANAGER_SCOPES = ("graphql",)

TOKEN_TYPES = ("cluster-agent-token", "unclustered-agent-token", "api-access-token")
MIN_EXPIRY = timedelta(minutes=10)
EXPIRY_SLACK = timedelta(seconds=30)  # the request takes time to arrive
PAGE = 100
MAX_CLUSTER_PAGES = 100  # = client.MAX_GRAPHQL_PAGES (not imported here: the client loads gql)
DEFAULT_WEB_URL = "https://buildkite.com"
NEW_API_TOKEN_PATH = "/user/api-access-tokens/new"  # noqa: S105 (a path)
API_TOKEN_PREFIX = "bkua_"  # noqa: S105 (a prefix)
AGENT_TOKEN_PREFIXES = {"bkct_": "a cluster agent token", "bkar_": "an agent access token"}

RETIRE_NOTICE = (
    "Revoking the old agent token does not stop agents that are already connected: they keep running jobs. "
    "An agent that restarts with the old token can no longer register. Where agents keep the token "
    "(Elastic CI Stack instances, the buildkite-agent-metrics binary, baked images), cycle them onto the new "
    "token before revoking."
)
DEPRECATION_NOTICE = (
    "Unclustered agent tokens are a deprecated Buildkite feature (organizations created since 2024-02-26 have "
    "none). Consider moving these agents to a cluster and rotating a cluster agent token instead "
    "(token_type = 'cluster-agent-token', cluster = 'NAME')."
)


def _human(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class BuildkiteProvider:
    """One Buildkite target (one token kind) of one account."""

    platform = "buildkite"

    def __init__(
        self,
        account_name: str,
        account: Account,
        target_name: str,
        target: Target,
        *,
        ca_bundle: Path | None,
        resolve_secret: Callable[[str], SecretValue],
        interaction: Interaction,
        paste: Callable[[str], SecretValue] | None = None,
        scopes: tuple[str, ...] | None = None,
        web_url: str | None = None,
        transport: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.account_name = account_name
        self.account = account
        self.target_name = target_name
        self.target = target
        self.interaction = interaction
        self.kind = target.token_type or "cluster-agent-token"
        if self.kind not in TOKEN_TYPES:
            raise KeyturnError(
                f"targets.{target_name}.token_type: {self.kind!r} is not a Buildkite token type",
                hint="use " + ", ".join(TOKEN_TYPES),
            )
        # The wizard sets ``paste`` (a masked input); headless reads target.new_token.
        self.paste = paste
        self.revoke_reason: str | None = None  # unclustered tokens: see set_revoke_reason()
        self._expected_scopes = scopes
        self._resolve_secret = resolve_secret
        self._ca_bundle = ca_bundle
        self._transport = transport
        self._sleep = sleep
        self._now = now
        self._web_url = web_url
        self._client_obj: BuildkiteClient | None = None
        self._account_token: SecretValue | None = None
        self._cluster: dict[str, str] | None = None
        self._cluster_wanted: str | None = None  # the wizard's pick (else target.cluster)
        self._minted: dict[str, SecretValue] = {}  # api-access-token: token uuid -> value (for get_token)
        self._known: dict[str, str] = {}  # token id -> fingerprint of the token this rotation took (from the journal)
        self._previous: Callable[[], list[SecretValue]] | None = None

    # -- plumbing ----------------------------------------------------------------------------------

    @property
    def _client(self) -> BuildkiteClient:
        if self._client_obj is None:
            from providers.buildkite.client import BuildkiteClient

            self._client_obj = BuildkiteClient(
                self.account_name,
                self.account.organization,
                token=self._manager_token,
                graphql_url=self.account.graphql_url,
                rest_url=self.account.rest_url,
                ca_bundle=self._ca_bundle,
                transport=self._transport,
                sleep=self._sleep,
            )
        return self._client_obj

    def _manager_token(self) -> SecretValue:
        if self._account_token is None:
            if not self.account.api_token:
                raise KeyturnError(
                    f"accounts.{self.account_name}.api_token is not set: keyturn needs a Buildkite API access token "
                    "with GraphQL access to manage agent tokens"
                )
            self._account_token = self._resolve_secret(self.account.api_token)
        return self._account_token

    def sign_in(self) -> None:
        if self.kind == "api-access-token":
            return  # the old and the new token authenticate themselves
        self._manager_token()
        self._client.organization_id()

    def close(self) -> None:
        if self._client_obj is not None:
            self._client_obj.close()

    # -- texts the engine and the wizard show -----------------------------------------------------

    def retire_notice(self) -> str:
        """What revoking the old token does and does not do; shown before revoking (a manual follow-up)."""
        if self.kind == "api-access-token":
            return (
                "Revoking the old API access token (DELETE /v2/access-token with the old value) is immediate: "
                "anything still using it (the ConductorOne connector before its update) gets 401."
            )
        return RETIRE_NOTICE

    def manual_follow_ups(self) -> list[Manual]:
        """Agent tokens: a checklist item, before the old token is revoked, to cycle the agents that cache it."""
        if self.kind == "api-access-token":
            return []  # the conductorone-connector follow-up moves the one consumer
        from app.config import Manual

        return [Manual(kind="manual", name="Cycle agents that cache the old agent token", text=RETIRE_NOTICE)]

    def deprecation_notice(self) -> str:
        """Unclustered tokens only (empty otherwise): the feature is deprecated; offer the cluster path."""
        return DEPRECATION_NOTICE if self.kind == "unclustered-agent-token" else ""

    def set_revoke_reason(self, text: str) -> None:
        """The reason ``agentTokenRevoke`` records (default: names the target and keyturn). Call with the rotation id."""
        self.revoke_reason = " ".join(text.split()) or None

    def expected_scopes(self, request_scopes: tuple[str, ...] = ()) -> tuple[str, ...]:
        """API access token: the exact scope set wanted, GraphQL access included (as ``graphql``)."""
        if request_scopes:
            scopes = request_scopes
        elif self._expected_scopes:
            scopes = self._expected_scopes
        elif self.target.scopes:
            scopes = tuple(self.target.scopes)
        else:
            scopes = BUILTIN_PRESETS.get(self.target.preset or "conductorone", CONDUCTORONE_SCOPES)
        out = [s for s in dict.fromkeys(scopes) if s != "graphql"]
        return (*out, "graphql")

    def creation_url(self, description: str | None = None, scopes: tuple[str, ...] = ()) -> str:
        """buildkite.com's pre-filled "New API Access Token" page. The organization must still be picked there."""
        base = self._web_url
        if base is None:
            # The sandbox serves the page beside its REST API on loopback; everywhere else it is buildkite.com.
            rest = self.account.rest_url
            host = urlsplit(rest).hostname if rest else None
            base = rest if rest and host and is_loopback(host) else DEFAULT_WEB_URL
        params: list[tuple[str, str]] = [("description", description or self.target.token_name)]
        params += [("scopes[]", s) for s in self.expected_scopes(scopes)]
        return base.rstrip("/") + NEW_API_TOKEN_PATH + "?" + urlencode(params, quote_via=quote)

    # -- Provider ----------------------------------------------------------------------------------

    def list_tokens(self, *, include_inactive: bool = False) -> list[TokenInfo]:
        if self.kind == "cluster-agent-token":
            return self._list_cluster_tokens()
        if self.kind == "unclustered-agent-token":
            return [t for t, _node in self._list_agent_tokens(include_inactive=include_inactive)]
        old = self._old_api_token()
        if old is None:
            return []
        info = self._client.access_token(old, what=f"could not read targets.{self.target_name}.old_token")
        return [] if info is None else [self._api_token_info(info)]

    def get_token(self, token_id: str) -> TokenInfo | None:
        if self.kind == "api-access-token":
            for value in (*self._minted_values(token_id), self._old_api_token()):
                if value is None:
                    continue
                info = self._client.access_token(value)
                if info is not None and info.uuid == token_id:
                    return self._api_token_info(info)
            return None
        for token in self.list_tokens(include_inactive=True):
            if token.id == token_id or token.extra.get("uuid") == token_id:
                return token
        return None

    def mint(self, request: MintRequest) -> MintedToken:
        if self.kind == "cluster-agent-token":
            return self._mint_cluster_token(request)
        if self.kind == "unclustered-agent-token":
            return self._mint_agent_token(request)
        return self._take_api_token(request)

    def verify(self, token: MintedToken) -> str:
        if self.kind == "api-access-token":
            return self._check_api_token(token.value, self.expected_scopes(token.info.scopes), check_graphql=True)[1]
        listed = {t.id: t for t in self.list_tokens()}
        found = listed.get(token.info.id)
        if found is None or not found.active:
            where = f"cluster {self._cluster_ref()['name']}" if self.kind == "cluster-agent-token" else self.account.organization
            raise ProviderError(f"the new agent token {token.info.id} is not listed as active in {where}")
        what = "ListClusterAgentTokens" if self.kind == "cluster-agent-token" else "ListAgentTokens"
        return f"{what}: the new token {found.extra.get('uuid', found.id)} ({found.name}) is listed"

    def revoke(self, token_id: str) -> None:
        if self.kind == "cluster-agent-token":
            self._revoke_cluster_token(token_id)
        elif self.kind == "unclustered-agent-token":
            self._revoke_agent_token(token_id)
        else:
            self._revoke_api_token(token_id)

    # -- cluster agent tokens ----------------------------------------------------------------------

    def _clusters(self) -> Iterator[dict[str, str]]:
        """Every cluster of the organization ({id, uuid, name}), page by page (GraphQL cursor paging)."""
        after: str | None = None
        for _ in range(MAX_CLUSTER_PAGES):
            data = self._client.graphql(
                "ListClusters",
                {"slug": self.account.organization, "first": 50, "after": after},
                what=f"could not list the clusters of {self.account.organization}",
            )
            org = data.get("organization")
            if not isinstance(org, dict):
                raise ProviderError(f"Buildkite has no organization {self.account.organization!r} visible to this token")
            conn = org.get("clusters") or {}
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

    def use_cluster(self, name: str | None) -> None:
        """Mint in (and retire from) this cluster instead of ``target.cluster`` (the wizard's pick, kept in the
        plan); None goes back to ``target.cluster``."""
        if name != self._cluster_wanted:
            self._cluster_wanted = name
            self._cluster = None

    def _cluster_ref(self) -> dict[str, str]:
        """The target's cluster ({id, uuid, name}), found by name, uuid or GraphQL id across every page."""
        if self._cluster is None:
            wanted = (self._cluster_wanted or self.target.cluster or "").strip()
            if not wanted:
                raise KeyturnError(f"targets.{self.target_name}.cluster is not set: name the cluster (name or id)")
            names: list[str] = []
            for node in self._clusters():
                names.append(node["name"])
                if wanted in (node["name"], node["uuid"], node["id"]) or wanted.lower() == node["name"].lower():
                    self._cluster = node
                    return self._cluster
            known = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
            raise ProviderError(
                f"targets.{self.target_name}.cluster: Buildkite organization {self.account.organization} has no cluster "
                f"{wanted!r}",
                hint=f"known clusters: {known}" if names else "the organization has no clusters",
            )
        return self._cluster

    @staticmethod
    def _cluster_token_info(node: dict[str, Any], cluster: dict[str, str]) -> TokenInfo:
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
        )

    def _list_cluster_tokens(self) -> list[TokenInfo]:
        cluster = self._cluster_ref()
        data = self._client.graphql(
            "ListClusterAgentTokens",
            {"slug": self.account.organization, "clusterId": cluster["uuid"], "first": PAGE},
            what=f"could not list the agent tokens of cluster {cluster['name']}",
        )
        node = (data.get("organization") or {}).get("cluster")
        if not isinstance(node, dict):
            self._cluster = None
            raise ProviderError(f"cluster {cluster['name']} ({cluster['uuid']}) is gone from {self.account.organization}")
        conn = node.get("agentTokens") or {}
        if (conn.get("pageInfo") or {}).get("hasNextPage"):  # a cut-short list could hide the token a reconcile looks for
            raise ProviderError(
                f"cluster {cluster['name']} has more than {PAGE} agent tokens, more than keyturn lists",
                hint="revoke the ones no agent uses on buildkite.com, then run keyturn again",
            )
        return [self._cluster_token_info((e or {}).get("node") or {}, cluster) for e in conn.get("edges") or []]

    def _checked_expiry(self, expires_at: datetime | None) -> str | None:
        from providers.buildkite.client import format_time

        if expires_at is None:
            return None
        when = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        if when < self._now() + MIN_EXPIRY + EXPIRY_SLACK:
            raise ProviderError(
                f"targets.{self.target_name}: the expiry {_human(when)} is less than 10 minutes ahead; "
                "Buildkite needs an agent token's expiry at least 10 minutes in the future (or none)"
            )
        return format_time(when)

    def _mint_cluster_token(self, request: MintRequest) -> MintedToken:
        expires = self._checked_expiry(request.expires_at)  # before any call
        cluster = self._cluster_ref()
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
        return self._minted_from(data.get("clusterAgentTokenCreate"), "clusterAgentToken", what, cluster)

    def _minted_from(self, payload: Any, key: str, what: str, cluster: dict[str, str] | None) -> MintedToken:
        from app.errors import AmbiguousResultError

        node: Any = None
        if isinstance(payload, dict):
            node = payload.get(key)
            if key == "agentTokenEdge" and isinstance(node, dict):
                node = node.get("node")
        value = payload.get("tokenValue") if isinstance(payload, dict) else None
        if not isinstance(node, dict) or not node.get("id"):
            raise AmbiguousResultError(f"{what}: Buildkite answered without the new token", hint="list the tokens before minting again")
        info = self._cluster_token_info(node, cluster) if cluster is not None else self._agent_token_info(node)
        if not isinstance(value, str) or not value:
            raise AmbiguousResultError(
                f"{what}: Buildkite created token {info.extra.get('uuid') or info.id} but sent no value",
                hint="revoke it; keyturn cannot use a token it never saw",
            )
        notes: list[str] = []
        if cluster is not None and info.expires_at is not None:
            notes.append(f"expires {_human(info.expires_at)}; Buildkite cannot change an agent token's expiry later")
        if cluster is None:
            notes.append(DEPRECATION_NOTICE)
        from providers.buildkite.client import log

        log.info("created agent token %s (%s)", info.extra.get("uuid") or info.id, info.name)
        return MintedToken(info=info, value=SecretValue(value), notes=tuple(notes))

    def _revoke_cluster_token(self, token_id: str) -> None:
        cluster = self._cluster_ref()
        known = {t.id: t for t in self._list_cluster_tokens()}
        match = known.get(token_id) or next((t for t in known.values() if t.extra.get("uuid") == token_id), None)
        if match is None:
            return  # Buildkite deletes revoked cluster tokens: not listed = already revoked
        self._client.graphql(
            "ClusterAgentTokenRevoke",
            {"organizationId": self._client.organization_id(), "id": match.id},
            what=f"could not revoke agent token {match.extra.get('uuid') or match.id} of cluster {cluster['name']}",
            ambiguous_hint="run the revocation again: revoking twice does no harm",
        )

    # -- unclustered agent tokens ------------------------------------------------------------------

    @staticmethod
    def _agent_token_info(node: dict[str, Any]) -> TokenInfo:
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
        )

    def _list_agent_tokens(self, *, include_inactive: bool) -> list[tuple[TokenInfo, dict[str, Any]]]:
        data = self._client.graphql(
            "ListAgentTokens",
            {"slug": self.account.organization, "first": PAGE, "revoked": None if include_inactive else False},
            what=f"could not list the unclustered agent tokens of {self.account.organization}",
        )
        org = data.get("organization")
        if not isinstance(org, dict):
            raise ProviderError(f"Buildkite has no organization {self.account.organization!r} visible to this token")
        conn = org.get("agentTokens") or {}
        if (conn.get("pageInfo") or {}).get("hasNextPage"):  # a cut-short list could hide the token a reconcile looks for
            raise ProviderError(
                f"{self.account.organization} has more than {PAGE} unclustered agent tokens, more than keyturn lists",
                hint="revoke the ones no agent uses on buildkite.com, then run keyturn again",
            )
        out = []
        for edge in conn.get("edges") or []:
            node = (edge or {}).get("node") or {}
            out.append((self._agent_token_info(node), node))
        return out

    def _mint_agent_token(self, request: MintRequest) -> MintedToken:
        what = f"could not create unclustered agent token {request.display_name!r} in {self.account.organization}"
        if request.expires_at is not None:
            self.interaction.warn("unclustered agent tokens cannot expire: the expiry is ignored")
        data = self._client.graphql(
            "AgentTokenCreate",
            {"organizationId": self._client.organization_id(), "description": request.display_name, "public": False},
            what=what,
            ambiguous_hint=f"list the agent tokens for {request.display_name!r} before minting again",
        )
        return self._minted_from(data.get("agentTokenCreate"), "agentTokenEdge", what, None)

    def retire_blockers(self, old: list[TokenInfo]) -> list[str]:
        """Before anything is minted: old tokens Buildkite will not let this API token revoke
        (``permissions.agentTokenRevoke.allowed``), so a rotation never ends with two live tokens."""
        if self.kind != "unclustered-agent-token":
            return []
        out = []
        for t in old:
            allowed, why = self.revoke_allowed(t.id)
            if not allowed:
                out.append(f"Buildkite does not allow revoking agent token {t.extra.get('uuid') or t.id} ({t.name}): "
                           f"{why or 'permissions.agentTokenRevoke.allowed is false'}")
        return out

    def revoke_allowed(self, token_id: str) -> tuple[bool, str]:
        """Unclustered: whether Buildkite lets this token be revoked (permissions.agentTokenRevoke), and why not."""
        for info, _node in self._list_agent_tokens(include_inactive=True):
            if token_id in (info.id, info.extra.get("uuid")):
                allowed = info.extra.get("revoke_allowed", "true") == "true"
                return allowed, info.extra.get("revoke_refused", "")
        return False, "Buildkite does not know this token"

    def _revoke_agent_token(self, token_id: str) -> None:
        match = next(
            (i for i, _n in self._list_agent_tokens(include_inactive=True) if token_id in (i.id, i.extra.get("uuid"))), None
        )
        if match is None:
            raise ProviderError(f"Buildkite organization {self.account.organization} has no agent token {token_id}")
        if not match.active:
            return
        if match.extra.get("revoke_allowed") == "false":
            why = match.extra.get("revoke_refused") or "permissions.agentTokenRevoke.allowed is false"
            raise ProviderError(
                f"Buildkite does not allow revoking agent token {match.extra.get('uuid')} ({match.name}): {why}",
                hint="ask an organization administrator, or leave it and move the agents to a cluster",
            )
        reason = self.revoke_reason or f"rotated by keyturn (target {self.target_name})"
        self._client.graphql(
            "AgentTokenRevoke",
            {"id": match.id, "reason": reason},
            what=f"could not revoke agent token {match.extra.get('uuid')} ({match.name})",
            ambiguous_hint="run the revocation again: revoking twice does no harm",
        )

    # -- API access tokens -------------------------------------------------------------------------

    def known_token(self, info: TokenInfo, fingerprint: str | None, value: SecretValue | None = None) -> None:
        """The engine tells which token this rotation took (on resume, from the journal)."""
        if fingerprint:
            self._known[info.id] = fingerprint
        if value is not None:
            self._minted[info.id] = value

    def previous_values_from(self, supply: Callable[[], list[SecretValue]]) -> None:
        """Where the old value is once ``old_token``'s reference holds the new one: the stores' previous versions."""
        self._previous = supply

    def _old_api_token(self) -> SecretValue | None:
        """The old API access token's value: ``old_token``, unless it already resolves to this rotation's new token
        (resumed after the store step wrote the new value there); then the store's previous version."""
        if not self.target.old_token:
            return None
        value = self._resolve_secret(self.target.old_token)
        new = set(self._known.values()) | {v.fingerprint for v in self._minted.values()}
        if value.fingerprint not in new:
            return value
        return next((v for v in (self._previous() if self._previous else []) if v.fingerprint not in new), None)

    def _minted_values(self, token_id: str) -> tuple[SecretValue, ...]:
        value = self._minted.get(token_id)
        return (value,) if value is not None else ()

    @staticmethod
    def _api_token_info(info: AccessTokenInfo) -> TokenInfo:
        extra = {"user": info.user} if info.user else {}
        if info.created_at:
            extra["created_at"] = info.created_at.isoformat()
        return TokenInfo(id=info.uuid, name=info.description, expires_at=info.expires_at, scopes=info.scopes, extra=extra)

    def _take_api_token(self, request: MintRequest) -> MintedToken:
        scopes = self.expected_scopes(request.scopes)
        url = self.creation_url(request.display_name, scopes)
        if self.paste is not None:
            value = self.paste(url)
        elif self.target.new_token:
            value = self._resolve_secret(self.target.new_token)
        else:
            raise KeyturnError(
                f"targets.{self.target_name}: Buildkite has no API that creates an API access token; create it at "
                f"{url} (pick organization {self.account.organization}) and paste it in the wizard, or set "
                f"targets.{self.target_name}.new_token to where it is stored for --no-input"
            )
        old = self._old_api_token()
        if old is not None and old == value:
            raise KeyturnError(f"targets.{self.target_name}: the new API access token is the old one; create a new token at {url}")
        info, _summary = self._check_api_token(value, scopes, check_graphql=False)
        self._minted[info.id] = value
        return MintedToken(info=info, value=value, notes=("made by hand on buildkite.com; checked with GET /v2/access-token",))

    def check_pasted(self, value: SecretValue) -> None:
        """Refuse a pasted value that is not an API access token (e.g. an agent token), before any request."""
        self._check_prefix(value)

    def _check_prefix(self, value: SecretValue) -> None:
        raw = value.reveal().strip()
        for prefix, kind in AGENT_TOKEN_PREFIXES.items():
            if raw.startswith(prefix):
                raise KeyturnError(
                    f"targets.{self.target_name}: that is {kind} ({prefix}…), not an API access token (bkua_…); "
                    "paste the value shown after 'Create New API Access Token'"
                )
        if not raw.startswith(API_TOKEN_PREFIX):
            raise KeyturnError(
                f"targets.{self.target_name}: that does not look like a Buildkite API access token "
                f"(they start with {API_TOKEN_PREFIX})"
            )
        if raw != value.reveal() or any(c.isspace() for c in raw):
            raise KeyturnError(f"targets.{self.target_name}: the pasted API access token contains spaces or line breaks")

    def _check_api_token(self, value: SecretValue, scopes: tuple[str, ...], *, check_graphql: bool) -> tuple[TokenInfo, str]:
        """The token's scopes must be exactly ``scopes`` (GraphQL access included); returns (info, what was called)."""
        self._check_prefix(value)
        info = self._client.access_token(value, what="could not check the new API access token")
        if info is None:
            raise ProviderError("Buildkite does not accept the new API access token (GET /v2/access-token -> 401)")
        have = set(info.scopes)
        missing = [("GraphQL access" if s == "graphql" else s) for s in scopes if s not in have]
        extra = sorted(("GraphQL access" if s == "graphql" else s) for s in have - set(scopes))
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(missing))
            if extra:
                parts.append("extra " + ", ".join(extra))
            raise ProviderError(
                f"the new API access token {info.uuid} has the wrong scopes: {'; '.join(parts)}",
                hint=f"revoke it and create it again at {self.creation_url(scopes=scopes)}",
            )
        summary = f"GET /v2/access-token -> 200 (token {info.uuid}, scopes {' '.join(info.scopes)})"
        if check_graphql:
            data = self._client.graphql(
                "GetOrganizationId",
                {"slug": self.account.organization},
                what="could not use the new API access token with GraphQL",
                bearer=value,
            )
            if not isinstance(data.get("organization"), dict):
                raise ProviderError(
                    f"the new API access token {info.uuid} cannot see organization {self.account.organization}",
                    hint="give it access to that organization (Organization Access on the token's page)",
                )
            summary += f"; GraphQL organization({self.account.organization}) -> ok"
        return self._api_token_info(info), summary

    def recover_value(self, token: TokenInfo, fingerprint: str) -> SecretValue | None:
        """After a crash: a hand-made API access token is still where headless runs read it (``new_token``)."""
        if self.kind != "api-access-token" or not self.target.new_token:
            return None
        value = self._resolve_secret(self.target.new_token)
        if value.fingerprint != fingerprint:
            return None
        self._minted[token.id] = value
        return value

    def _revoke_api_token(self, token_id: str) -> None:
        own = self._minted.get(token_id)
        if own is not None:  # a token this rotation took (compensation): it revokes itself
            what = f"could not revoke API access token {token_id}"
            if self._client.access_token(own, what=what) is not None:
                self._client.delete_access_token(own, what=what)
            return
        old = self._old_api_token()
        if old is None:
            raise KeyturnError(
                f"targets.{self.target_name}.old_token is not set: Buildkite revokes an API access token only when "
                "called with that token's own value"
            )
        what = f"could not revoke API access token {token_id}"
        info = self._client.access_token(old, what=what)
        if info is None:
            return  # already revoked or expired
        if info.uuid != token_id:
            raise ProviderError(
                f"{what}: targets.{self.target_name}.old_token is token {info.uuid}, not {token_id}; refusing to revoke it",
                hint="Buildkite revokes an API access token only with its own value: revoke this one on "
                f"{self._web_url or DEFAULT_WEB_URL}/user/api-access-tokens",
            )
        self._client.delete_access_token(old, what=what)
