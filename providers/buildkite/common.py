"""What the three Buildkite token kinds share: the client, the manager token, organization lookups, texts, constants.

- ``BuildkiteBase``: one Buildkite target of one account (the constructor every kind takes), the GraphQL/REST client
  made on first use with the account's API token (the "manager token"), sign-in, ``close``.
- ``AgentTokenBase``: what cluster and unclustered agent tokens share (the retire notice, the consumer gate on
  the connected agents, finding one token in the listing, reading a create mutation's answer).

Nothing per rotation is kept here: the cluster, the token this rotation minted, the revoke reason come in the
``RotationContext`` of each call. Importing this module loads neither gql, httpx nor textual.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app.errors import KeyturnError, ProviderError
from app.net import is_loopback
from app.secret import SecretValue
from providers.base import NO_ROTATION, GateCheck, Interaction, Provider, RotationContext, TokenInfo

if TYPE_CHECKING:
    from app.config import Account, Target
    from providers.buildkite.client import BuildkiteClient

CONDUCTORONE_SCOPES = ("read_teams", "read_organizations", "read_user")
BUILTIN_PRESETS: dict[str, tuple[str, ...]] = {"conductorone": CONDUCTORONE_SCOPES}
# What the account's own API token (the one keyturn manages agent tokens with) should carry; GraphQL access
# is what matters for the agent-token mutations (GraphQL is not limited by REST scopes).
MANAGER_SCOPES = ("graphql",)

TOKEN_TYPES = ("cluster-agent-token", "unclustered-agent-token", "api-access-token")
DEFAULT_TOKEN_TYPE = "cluster-agent-token"  # noqa: S105 (a type name)
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
AGENTS_GATE = "buildkite-agents"  # the consumer gate's stable id (GateCheck.gate; an override is journaled by it)
# Agent.connectionState is a String! (schema.graphql, type Agent); Buildkite's agents API names connected, stopping,
# disconnected, lost, stopped and never_connected. Any other value (a state added later) counts as connected.
GONE_STATES = frozenset({"disconnected", "lost", "stopped", "never_connected"})
AGENTS_BREAK = (
    "Revoking the old agent token does not disconnect these agents: they keep running jobs. But an agent that "
    "restarts (or an instance that is replaced) with the old token can no longer register, so its queue loses it "
    "until it is given the new token."
)
MAX_NAMED_AGENTS = 5
MAX_NAME = 60
DEPRECATION_NOTICE = (
    "Unclustered agent tokens are a deprecated Buildkite feature (organizations created since 2024-02-26 have "
    "none). Consider moving these agents to a cluster and rotating a cluster agent token instead "
    "(token_type = 'cluster-agent-token', cluster = 'NAME')."
)


def human(dt: datetime) -> str:
    """'2026-01-02 03:04 UTC': how times appear in notes and errors."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class ConnectedAgent:
    """One agent as ``ListAgents`` describes it (no token: Buildkite does not say which token an agent holds)."""

    name: str
    connected_at: datetime | None  # None: Buildkite did not say when (counted as connected before the store)
    cluster_uuid: str | None  # its clusterQueue's cluster; None: unclustered
    running_job: bool
    unplaced: bool = False  # where it belongs is not said: counted in every scope (the gate never passes on a gap)

    def belongs(self, cluster_uuid: str | None) -> bool:
        """In cluster ``cluster_uuid`` (None: unclustered), or possibly there."""
        return self.unplaced or self.cluster_uuid == cluster_uuid

    @staticmethod
    def of(node: Any) -> ConnectedAgent | None:
        """An edge's node, or None when the agent is not connected. A node Buildkite left out (null) stands for an
        agent keyturn cannot see: counted as connected since before the store, in whatever cluster is checked."""
        from providers.buildkite.client import parse_time

        if not isinstance(node, dict):
            return ConnectedAgent("an agent Buildkite did not describe", None, None, False, unplaced=True)
        state = str(node.get("connectionState") or "").strip().lower()
        if state in GONE_STATES:
            return None
        queue = node.get("clusterQueue")
        cluster = queue.get("cluster") if isinstance(queue, dict) else None
        cluster_uuid = str(cluster.get("uuid")) if isinstance(cluster, dict) and cluster.get("uuid") else None
        unplaced = isinstance(queue, dict) and cluster_uuid is None  # in a cluster queue, but which cluster is not said
        name = " ".join(str(node.get("name") or node.get("hostname") or node.get("uuid") or "an unnamed agent").split())
        name = name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"  # one line, whatever an agent is called
        return ConnectedAgent(
            name, parse_time(node.get("connectedAt")), cluster_uuid, bool(node.get("isRunningJob")), unplaced=unplaced
        )


class BuildkiteBase(Provider):
    """One Buildkite target (one token kind) of one account: the plumbing every kind shares."""

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
        self._expected_scopes = scopes  # API access tokens: the exact scopes wanted (else the target's / preset's)
        self._resolve_secret = resolve_secret
        self._ca_bundle = ca_bundle
        self._transport = transport
        self._sleep = sleep
        self._now = now
        self._web_url = web_url
        self._client_obj: BuildkiteClient | None = None
        self._account_token: SecretValue | None = None

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
        """The account's API token (``accounts.<name>.api_token``), which manages agent tokens over GraphQL."""
        if self._account_token is None:
            if not self.account.api_token:
                raise KeyturnError(
                    f"accounts.{self.account_name}.api_token is not set: keyturn needs a Buildkite API access token "
                    "with GraphQL access to manage agent tokens"
                )
            self._account_token = self._resolve_secret(self.account.api_token)
        return self._account_token

    def _organization(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data.organization`` of a GraphQL answer, or the one line saying the token cannot see it."""
        org = data.get("organization")
        if not isinstance(org, dict):
            raise ProviderError(f"Buildkite has no organization {self.account.organization!r} visible to this token")
        return org

    def sign_in(self) -> None:
        self._manager_token()
        self._client.organization_id()

    def close(self) -> None:
        if self._client_obj is not None:
            self._client_obj.close()


class AgentTokenBase(BuildkiteBase):
    """Cluster and unclustered agent tokens: minted and revoked by the manager token over GraphQL."""

    def retire_notice(self) -> str:
        """What revoking the old token does and does not do; shown before revoking."""
        return RETIRE_NOTICE

    # -- the consumer gate: the agents that connected before the new token was stored ---------------------------
    # It replaces the manual step "Cycle agents that cache the old agent token": the revoke waits until no agent
    # that connected before the new token reached its stores is still connected (a cycled agent registers again as
    # a new agent, connectedAt = then). Buildkite does not say which token an agent registered with: an agent that
    # (re)connected since with the old token (a baked image) is not seen; the retire notice says so.

    def _gate_words(self, cluster_name: str | None = None) -> tuple[str, str, str]:
        """How the gate names what it watches: (title, the words in brackets after a count, "agent of ..."), for the
        rotation's cluster ``cluster_name`` (None before it is looked up: ``target.cluster``)."""
        raise NotImplementedError

    def gate_plan(self) -> str:
        noun = self._gate_words()[2]
        return f"no {noun} that connected before the new token was stored is still connected (cycled agents register again)"

    def _web_page(self, path: str) -> str | None:
        """``path`` on buildkite.com (the sandbox serves no such page: None there)."""
        base = self._web_url
        if base is None:
            rest = self.account.rest_url
            host = urlsplit(rest).hostname if rest else None
            if rest and host and is_loopback(host):
                return None
            base = DEFAULT_WEB_URL
        return base.rstrip("/") + path

    def _list_agents(self, filters: dict[str, Any], what: str) -> list[ConnectedAgent]:
        """Every connected agent ``ListAgents`` answers with ``filters``, page by page (the client bounds the pages and
        refuses a repeated cursor). A page that says there is more but gives no cursor is an error: a list cut short
        could hide a connected agent.

        The vendored schema (providers/buildkite/schema.graphql): ``type Organization`` ``agents(after, before,
        cluster: ID, clusterQueue: [ID!], clustered: Boolean = true, first, isRunningJob, last, metaData, paused,
        search): AgentConnection``; ``type Agent`` ``connectedAt: DateTime``, ``connectionState: String!``,
        ``isRunningJob: Boolean!``, ``clusterQueue: ClusterQueue`` (``ClusterQueue.cluster: Cluster``). The query is
        operations/agents.graphql."""
        out: list[ConnectedAgent] = []
        after: str | None = None
        for _ in range(MAX_CLUSTER_PAGES):
            data = self._client.graphql(
                "ListAgents", {"slug": self.account.organization, "first": PAGE, "after": after, **filters}, what=what
            )
            conn = self._organization(data).get("agents")
            if not isinstance(conn, dict) or not isinstance(conn.get("edges"), list):
                raise ProviderError(f"{what}: Buildkite answered without the list of agents")
            for edge in conn["edges"]:
                agent = ConnectedAgent.of(edge.get("node") if isinstance(edge, dict) else None)
                if agent is not None:
                    out.append(agent)
            page = conn.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                return out
            if not page.get("endCursor"):
                raise ProviderError(f"{what}: Buildkite said there are more agents but sent no cursor to read them")
            after = str(page["endCursor"])
        raise ProviderError(f"{what}: more than {MAX_CLUSTER_PAGES} pages of agents", hint="override the gate once you checked the agents yourself")

    def _scope_agents(self, ctx: RotationContext) -> tuple[str | None, str | None, list[ConnectedAgent]]:
        """(the cluster's name or None, the page to act on, the connected agents of this token's scope)."""
        raise NotImplementedError

    def consumer_gates(self, ctx: RotationContext) -> list[GateCheck]:
        """Passes when no agent that connected before ``ctx.stored_at`` (when the new token reached its stores) is
        still connected. Buildkite's connectedAt has whole seconds: one in the very second of the store counts as
        before it. When the agents cannot be listed the gate has not passed (it says why)."""
        try:
            cluster_name, url, agents = self._scope_agents(ctx)
        except KeyturnError as exc:
            title, where, _noun = self._gate_words()
            return [GateCheck(AGENTS_GATE, title, False, breaks=AGENTS_BREAK,
                              waiting_for=f"the connected agents ({where}) could not be listed: {exc.message}")]
        title, where, _noun = self._gate_words(cluster_name)
        connected = plural(len(agents), "agent") + " connected" if agents else "no agent connected"
        stored = ctx.stored_at
        if stored is not None and stored.tzinfo is None:
            stored = stored.replace(tzinfo=UTC)  # the journal's times are UTC
        if stored is None:
            return [GateCheck(AGENTS_GATE, title, False, url=url, breaks=AGENTS_BREAK, progress=connected,
                              waiting_for=f"the new token has not reached its stores yet, so no agent can have it ({where})")]
        old = [a for a in agents if a.connected_at is None or a.connected_at < stored]
        if not old:
            progress = f"{connected}, all since the new token was stored" if agents else connected
            return [GateCheck(AGENTS_GATE, title, True, progress=progress, url=url, breaks=AGENTS_BREAK)]
        names = ", ".join(a.name for a in old[:MAX_NAMED_AGENTS]) + (", …" if len(old) > MAX_NAMED_AGENTS else "")
        busy = sum(1 for a in old if a.running_job)
        progress = f"{len(old)} left of {connected}; {len(agents) - len(old)} connected since the new token was stored"
        if busy:
            progress += f"; {busy} of those left {'is' if busy == 1 else 'are'} running a job"
        return [GateCheck(
            AGENTS_GATE, title, False, url=url, breaks=AGENTS_BREAK, progress=progress,
            waiting_for=f"{plural(len(old), 'agent')} still connected since before the new token was stored ({where}): {names}",
        )]

    def get_token(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> TokenInfo | None:
        for token in self.list_tokens(ctx, include_inactive=True):
            if token.id == token_id or token.extra.get("uuid") == token_id:
                return token
        return None

    @staticmethod
    def _created(
        payload: Any, key: str, what: str, parse: Callable[[dict[str, Any]], TokenInfo]
    ) -> tuple[TokenInfo, SecretValue]:
        """A create mutation's answer: the new token (``payload[key]``, or its edge's node) and its value; an answer
        without either is ambiguous (the token may exist)."""
        from app.errors import AmbiguousResultError

        node: Any = None
        if isinstance(payload, dict):
            node = payload.get(key)
            if key == "agentTokenEdge" and isinstance(node, dict):
                node = node.get("node")
        value = payload.get("tokenValue") if isinstance(payload, dict) else None
        if not isinstance(node, dict) or not node.get("id"):
            raise AmbiguousResultError(f"{what}: Buildkite answered without the new token", hint="list the tokens before minting again")
        info = parse(node)
        if not isinstance(value, str) or not value:
            raise AmbiguousResultError(
                f"{what}: Buildkite created token {info.extra.get('uuid') or info.id} but sent no value",
                hint="revoke it; keyturn cannot use a token it never saw",
            )
        from providers.buildkite.client import log

        log.info("created agent token %s (%s)", info.extra.get("uuid") or info.id, info.name)
        return info, SecretValue(value)
