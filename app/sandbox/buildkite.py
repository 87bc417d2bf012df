"""Buildkite: the GraphQL API (``POST /v1``, executed on Buildkite's published schema) and REST ``/v2/access-token``.

Two servers, like the real hosts ``graphql.buildkite.com`` and ``api.buildkite.com``:

- :class:`BuildkiteGraphQLService` (``name = "buildkite-graphql"``): ``POST /v1``. Each request is parsed,
  validated and executed by graphql-core against ``providers/buildkite/schema.graphql`` (the schema Buildkite
  publishes by introspection), so a document Buildkite would reject is rejected here too, with graphql-core's
  message, in an HTTP 200 ``{"errors": [{"message", "locations"}]}``. The resolvers (``buildkite_graphql.py``)
  cover what keyturn uses: ``viewer``, ``organization`` (clusters, cluster, agentTokens, apiAccessTokens, agents),
  ``agent``, ``agentToken``, ``node`` and the mutations ``clusterAgentToken{Create,Update,Revoke}``,
  ``agentToken{Create,Revoke}`` and ``organizationApiAccessTokenRevoke``; any other field answers an error
  that names it as not emulated.
- :class:`BuildkiteRestService` (``name = "buildkite-rest"``): ``GET`` / ``DELETE /v2/access-token`` (the
  token that made the call: inspect it, revoke it), ``GET /`` (the API's hello), and the web page that creates
  an API access token (``/user/api-access-tokens/new?description=...&scopes[]=...``), which stands for
  buildkite.com's page: no API can create one.

Authentication: ``Authorization: Bearer <API access token>``. An unknown, revoked or expired token gets 401
(REST: ``{"message": ...}``; GraphQL: ``{"errors": [{"message": ...}]}``); at the GraphQL endpoint so does a
token without GraphQL access. GraphQL does not look at the REST scopes (Buildkite: "GraphQL tokens cannot be
limited by scope"); what a GraphQL caller may do follows its *user's* role: managing agent tokens and API
access tokens needs an organization administrator, otherwise the mutation answers an error inside HTTP 200.

Rate limits (off by default, ``world.rate_limit(True, limit=N)``): every authenticated answer carries
``RateLimit-Remaining``, ``RateLimit-Limit`` and ``RateLimit-Reset`` (seconds); once a window's budget is
spent the answer is 429. Buildkite counts GraphQL *complexity points* (20,000 per 5 minutes per organization);
the sandbox charges one point per request, which is enough to exercise a client's back-off.

The emulator keeps its world in :class:`BuildkiteWorld` (not in ``SandboxState``); tests reach it as
``world``: ``seeded`` (what was seeded, token values included), ``api_token(value)``, ``cluster_tokens()``,
``agent_tokens()``, ``token_status(value)``, ``counters``, ``rate_limit()``, ``set_revoke_allowed()``,
``set_graphql_access()``, ``revoke_api_token()``, ``create_api_token()``, ``connector_token_check()`` (for
ConductorOne's ``token_check``) and ``follow_up_toml()``; the agents (buildkite-agent processes, which register
with an agent token): ``agents()``, ``connect_agent()``, ``reconnect_agents()`` (cycled instances register again,
as new agents, with the token their store holds now) and ``disconnect_agents()``. Records are copies; token
values are in fields with ``repr=False``. :class:`BuildkiteStandalone` serves both services without the rest of
the sandbox.
"""

from __future__ import annotations

import base64
import copy
import html
import json
import math
import re
import secrets
import threading
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlencode

from app.sandbox.http import Request, Response, Service, html_response, json_response

if TYPE_CHECKING:
    from app.sandbox.state import SandboxState
    from app.secret import SecretValue

# One vendored copy of Buildkite's schema: the provider's operations are validated against the very
# schema the emulator executes (see providers/buildkite/SOURCE.md)
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "providers" / "buildkite" / "schema.graphql"
GRAPHQL_PATH = "/v1"
ACCESS_TOKEN_PATH = "/v2/access-token"  # noqa: S105 (a route)
NEW_TOKEN_PATH = "/user/api-access-tokens/new"  # noqa: S105 (a route)
UNCLUSTERED_CUTOFF = datetime(2024, 2, 26, tzinfo=UTC)  # orgs created since have no unclustered agent tokens
MIN_EXPIRY_S = 600  # clusterAgentTokenCreate: expiresAt at least 10 minutes ahead

REST_AUTH_MESSAGE = (
    "Authentication required. Please supply a valid API Access Token: "
    "https://buildkite.com/docs/apis/rest-api#authentication"
)
GRAPHQL_AUTH_MESSAGE = (
    "Authentication required. Please supply a valid API Access Token: "
    "https://buildkite.com/docs/apis/graphql-api#authentication"
)

# REST scope names: the schema's APIAccessTokenScopes enum, lower-cased ("graphql" is GraphQL access)
KEYTURN_SCOPES = (
    "read_agents",
    "write_agents",
    "read_clusters",
    "write_clusters",
    "read_organizations",
    "read_user",
)
CONNECTOR_SCOPES = ("read_teams", "read_organizations", "read_user")

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

Api = Literal["graphql", "rest"]


# -- ids, values, times ------------------------------------------------------------------------------


def node_id(type_name: str, uuid: str) -> str:
    """A Buildkite GraphQL id: base64 of ``<Type>---<uuid>`` (e.g. ``Q2x1c3RlclRva2VuLS0t...``)."""
    return base64.b64encode(f"{type_name}---{uuid}".encode()).decode("ascii")


def parse_node_id(value: str) -> tuple[str, str] | None:
    """``(type name, uuid)`` of a GraphQL id, or None when it is not one."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
    except (ValueError, UnicodeError):
        return None
    type_name, sep, ident = raw.partition("---")
    if not sep or not type_name or not ident:
        return None
    return type_name, ident


def iso(ts: float | None) -> str | None:
    """Unix seconds -> the ISO-8601 UTC string the GraphQL API's DateTime scalar carries."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rest_time(ts: float | None) -> str | None:
    """Unix seconds -> the REST access-token API's format (``2025-07-16 06:07:42 UTC``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def api_token_value() -> str:
    """An API access token: ``bkua_`` + 40 hex characters (the shape buildkite-agent's redactor knows)."""
    return "bkua_" + secrets.token_hex(20)


def cluster_token_value(org_number: int) -> str:
    """A cluster agent token: ``bkct_`` + base64 of the org's number + ``.`` + 70 base58 characters."""
    org_part = base64.b64encode(str(org_number).encode()).decode("ascii").rstrip("=")
    return "bkct_" + org_part + "." + "".join(secrets.choice(_BASE58) for _ in range(70))


def unclustered_token_value() -> str:
    """An unclustered agent token: a long random hex string, no prefix."""
    return secrets.token_hex(32)


@cache
def rest_scope_names() -> tuple[str, ...]:
    """The schema's ``APIAccessTokenScopes`` values, lower-cased (the REST names; read without graphql-core)."""
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    m = re.search(r"^enum APIAccessTokenScopes \{(.*?)^\}", text, re.MULTILINE | re.DOTALL)
    if m is None:
        raise RuntimeError(f"{SCHEMA_PATH.name} has no APIAccessTokenScopes enum")
    return tuple(line.strip().lower() for line in m.group(1).splitlines() if re.fullmatch(r"\s*[A-Z_]+\s*", line))


# -- records -----------------------------------------------------------------------------------------


@dataclass
class BuildkiteUser:
    uuid: str
    name: str
    email: str
    admin: bool  # organization administrator (may manage agent tokens and API access)
    created_at: float

    @property
    def id(self) -> str:
        return node_id("User", self.uuid)


@dataclass
class Organization:
    uuid: str
    slug: str
    name: str
    number: int  # the internal numeric id cluster token values embed
    created_at: float

    @property
    def id(self) -> str:
        return node_id("Organization", self.uuid)

    @property
    def has_unclustered_agents(self) -> bool:
        return datetime.fromtimestamp(self.created_at, UTC) < UNCLUSTERED_CUTOFF


@dataclass
class Cluster:
    uuid: str
    name: str
    description: str | None
    emoji: str | None
    color: str | None
    created_at: float
    created_by: str  # user uuid

    @property
    def id(self) -> str:
        return node_id("Cluster", self.uuid)


@dataclass
class ClusterToken:
    """A cluster agent token. Revoking deletes it in Buildkite; here it stays, ``revoked`` set, out of every list."""

    uuid: str
    cluster_uuid: str
    description: str
    value: str = field(repr=False)
    created_at: float
    created_by: str | None
    expires_at: float | None = None
    allowed_ip_addresses: str | None = None
    revoked: bool = False
    revoked_at: float | None = None
    revoked_by: str | None = None  # user uuid
    revoked_with: str | None = None  # API access token uuid

    @property
    def id(self) -> str:
        return node_id("ClusterToken", self.uuid)


@dataclass
class AgentToken:
    """An unclustered agent token (deprecated feature). Revoked tokens stay listed with revokedAt/revokedReason."""

    uuid: str
    description: str | None
    value: str = field(repr=False)
    public: bool
    created_at: float
    created_by: str | None
    revoke_allowed: bool = True  # False: permissions.agentTokenRevoke.allowed is false and revoking fails
    revoked_at: float | None = None
    revoked_by: str | None = None  # user uuid
    revoked_reason: str | None = None
    revoked_with: str | None = None  # API access token uuid

    @property
    def id(self) -> str:
        return node_id("AgentToken", self.uuid)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass
class ClusterQueue:
    """A cluster's queue: agents of a cluster register into one (the ``default`` one unless they name another)."""

    uuid: str
    cluster_uuid: str
    key: str
    description: str | None
    created_at: float

    @property
    def id(self) -> str:
        return node_id("ClusterQueue", self.uuid)


CONNECTED_STATES = ("connected", "stopping")  # an agent finishing its job after a stop is still connected


@dataclass
class BuildkiteAgent:
    """One registration of a buildkite-agent process. A restarted agent registers again: a new agent (new uuid,
    connectedAt = then), while this record stays behind, ``disconnected``. Buildkite lists only connected agents.

    ``token_uuid`` is the agent token it registered with: the emulator's own bookkeeping (Buildkite shows it
    nowhere over GraphQL), so tests can tell which token a connected agent holds."""

    uuid: str
    name: str
    hostname: str
    token_uuid: str
    cluster_uuid: str | None  # None: an unclustered agent (registered with an unclustered agent token)
    queue_uuid: str | None
    meta_data: list[str]
    operating_system: str
    version: str
    created_at: float
    connected_at: float
    connection_state: str = "connected"  # connected | stopping | disconnected | lost | stopped
    disconnected_at: float | None = None
    lost_at: float | None = None
    running_job: bool = False
    ip_address: str = "127.0.0.1"

    @property
    def id(self) -> str:
        return node_id("Agent", self.uuid)

    @property
    def connected(self) -> bool:
        return self.connection_state in CONNECTED_STATES


@dataclass
class ApiAccessToken:
    """A user's API access token. ``scopes`` are REST scope names; GraphQL access is the ``graphql`` flag."""

    uuid: str
    value: str = field(repr=False)
    description: str
    scopes: list[str]
    graphql: bool
    user_uuid: str
    created_at: float
    organizations: set[str] = field(default_factory=set)  # slugs the token may reach
    expires_at: float | None = None
    revoked: bool = False
    revoked_at: float | None = None
    revoked_via: str | None = None  # "rest" (DELETE /v2/access-token) or "user"
    uses: int = 0  # authenticated requests made with it (REST and GraphQL)
    last_accessed_at: float | None = None

    @property
    def id(self) -> str:
        return node_id("APIAccessToken", self.uuid)

    @property
    def all_scopes(self) -> list[str]:
        """The scopes as ``GET /v2/access-token`` lists them (GraphQL access appears as ``graphql``)."""
        return [*self.scopes, "graphql"] if self.graphql else list(self.scopes)


@dataclass
class RateLimit:
    """A fixed window: ``limit`` points per ``window`` seconds; enforced only when ``enabled``."""

    limit: int
    window: float
    scope: str
    enabled: bool = False
    started: float | None = None
    used: int = 0

    def take(self, now: float, cost: int = 1) -> tuple[bool, dict[str, str], int]:
        """Charge ``cost``; returns (allowed, headers, seconds to reset)."""
        if self.started is None or now >= self.started + self.window:
            self.started, self.used = now, 0
        self.used += cost
        reset = max(0, math.ceil(self.started + self.window - now))
        headers = {
            "RateLimit-Remaining": str(max(0, self.limit - self.used)),
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Reset": str(reset),
        }
        return not (self.enabled and self.used > self.limit), headers, reset


@dataclass(frozen=True)
class SeededBuildkite:
    """What was seeded (values included: tests and the lead's config writer need them)."""

    organization: str
    organization_id: str
    keyturn_token: str = field(repr=False)  # API access token keyturn manages agent tokens with
    connector_token: str = field(repr=False)  # API access token the ConductorOne connector uses
    user_email: str
    clusters: dict[str, str]  # cluster name -> uuid
    cluster_tokens: dict[str, str]  # description -> uuid
    agent_tokens: dict[str, str]  # description -> uuid


# -- the world ---------------------------------------------------------------------------------------


class BuildkiteWorld:
    """One emulated Buildkite organization: users, clusters, agent tokens, API access tokens, limits, counters."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        organization: str = "contoso-sandbox",
        name: str = "Contoso Sandbox",
        created_at: datetime = datetime(2023, 6, 1, 9, 30, tzinfo=UTC),
    ) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.org = Organization(
            uuid=str(uuidlib.uuid4()),
            slug=organization,
            name=name,
            number=10_000 + secrets.randbelow(90_000),
            created_at=created_at.timestamp(),
        )
        self.users: dict[str, BuildkiteUser] = {}
        self.clusters: dict[str, Cluster] = {}
        self.cluster_token_records: dict[str, ClusterToken] = {}
        self.agent_token_records: dict[str, AgentToken] = {}
        self.queues: dict[str, ClusterQueue] = {}  # by uuid
        self.agent_records: dict[str, BuildkiteAgent] = {}  # by uuid: every registration, disconnected ones too
        self.api_tokens: dict[str, ApiAccessToken] = {}  # by value
        self.counters: Counter[str] = Counter()
        self.limits: dict[Api, RateLimit] = {
            "graphql": RateLimit(limit=20_000, window=300, scope="graphql"),
            "rest": RateLimit(limit=200, window=60, scope="rest"),
        }
        self.seeded: SeededBuildkite | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A world saved (app.sandbox.persist) by emulators that had no agents and no queues loads with none
        connected and each cluster's ``default`` queue (made from what was saved: the clock may not be bound yet)."""
        self.__dict__.update(state)
        self.__dict__.setdefault("agent_records", {})
        if "queues" not in self.__dict__:
            self.queues = {}
            for c in self.clusters.values():
                q = ClusterQueue(str(uuidlib.uuid4()), c.uuid, "default", "The cluster's default queue", c.created_at)
                self.queues[q.uuid] = q

    # -- set-up --------------------------------------------------------------------------------

    def add_user(self, name: str, email: str, *, admin: bool = True) -> BuildkiteUser:
        user = BuildkiteUser(str(uuidlib.uuid4()), name, email, admin, self.org.created_at)
        with self.lock:
            self.users[user.uuid] = user
        return user

    def add_cluster(
        self, name: str, description: str | None = None, *, created_by: str, age_days: float = 300
    ) -> Cluster:
        cluster = Cluster(
            uuid=str(uuidlib.uuid4()),
            name=name,
            description=description,
            emoji=None,
            color=None,
            created_at=self.clock() - age_days * 86400,
            created_by=created_by,
        )
        with self.lock:
            self.clusters[cluster.uuid] = cluster
        self.add_queue(cluster.uuid, "default", "The cluster's default queue", created_at=cluster.created_at)
        return cluster

    def add_queue(
        self, cluster: str, key: str, description: str | None = None, *, created_at: float | None = None
    ) -> ClusterQueue:
        """A queue in a cluster (by name or uuid); every cluster starts with ``default``."""
        with self.lock:
            c = self._cluster_record(cluster)
            if any(q.cluster_uuid == c.uuid and q.key == key for q in self.queues.values()):
                raise ValueError(f"cluster {c.name!r} already has a queue {key!r}")
            q = ClusterQueue(str(uuidlib.uuid4()), c.uuid, key, description, self.clock() if created_at is None else created_at)
            self.queues[q.uuid] = q
            return copy.deepcopy(q)

    def add_cluster_token(
        self,
        cluster_uuid: str,
        description: str,
        *,
        created_by: str | None,
        expires_at: float | None = None,
        allowed_ip_addresses: str | None = None,
        age_days: float = 0,
    ) -> ClusterToken:
        tok = ClusterToken(
            uuid=str(uuidlib.uuid4()),
            cluster_uuid=cluster_uuid,
            description=description,
            value=cluster_token_value(self.org.number),
            created_at=self.clock() - age_days * 86400,
            created_by=created_by,
            expires_at=expires_at,
            allowed_ip_addresses=allowed_ip_addresses,
        )
        with self.lock:
            self.cluster_token_records[tok.uuid] = tok
        return tok

    def add_agent_token(
        self,
        description: str | None,
        *,
        created_by: str | None,
        public: bool = False,
        revoke_allowed: bool = True,
        age_days: float = 0,
    ) -> AgentToken:
        tok = AgentToken(
            uuid=str(uuidlib.uuid4()),
            description=description,
            value=unclustered_token_value(),
            public=public,
            created_at=self.clock() - age_days * 86400,
            created_by=created_by,
            revoke_allowed=revoke_allowed,
        )
        with self.lock:
            self.agent_token_records[tok.uuid] = tok
        return tok

    def create_api_token(
        self,
        scopes: list[str] | tuple[str, ...],
        *,
        graphql: bool = True,
        description: str = "",
        user_uuid: str | None = None,
        expires_at: float | None = None,
        age_days: float = 0,
    ) -> ApiAccessToken:
        """A new API access token (what a user does on buildkite.com; no API can). Returns a copy."""
        unknown = sorted(set(scopes) - set(rest_scope_names()))
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown}; the schema's APIAccessTokenScopes, lower-cased")
        with self.lock:
            owner = user_uuid or next((u.uuid for u in self.users.values() if u.admin), None)
            if owner is None or owner not in self.users:
                raise ValueError("the token needs an owner: add_user() first (or pass user_uuid)")
            tok = ApiAccessToken(
                uuid=str(uuidlib.uuid4()),
                value=api_token_value(),
                description=description,
                scopes=[s for s in scopes if s != "graphql"],
                graphql=graphql or "graphql" in scopes,
                user_uuid=owner,
                created_at=self.clock() - age_days * 86400,
                organizations={self.org.slug},
                expires_at=expires_at,
            )
            self.api_tokens[tok.value] = tok
            self.counters["api_token.created"] += 1
            return copy.deepcopy(tok)

    # -- switches ------------------------------------------------------------------------------

    def rate_limit(
        self,
        enabled: bool = True,
        limit: int | None = None,
        *,
        window: float | None = None,
        api: Api | Literal["both"] = "both",
    ) -> None:
        """Turn the 429s on or off; ``limit`` points (requests) per ``window`` seconds. Restarts the window."""
        with self.lock:
            for name, rl in self.limits.items():
                if api in ("both", name):
                    rl.enabled = enabled
                    if limit is not None:
                        rl.limit = int(limit)
                    if window is not None:
                        rl.window = float(window)
                    rl.started, rl.used = None, 0

    def set_revoke_allowed(self, agent_token_uuid: str, allowed: bool) -> None:
        with self.lock:
            self.agent_token_records[agent_token_uuid].revoke_allowed = allowed

    def set_graphql_access(self, api_token: str, enabled: bool) -> None:
        with self.lock:
            self.api_tokens[api_token].graphql = enabled

    def revoke_api_token(self, api_token: str) -> None:
        """Revoke an API access token as its user would on buildkite.com."""
        with self.lock:
            tok = self.api_tokens[api_token]
            if not tok.revoked:
                tok.revoked, tok.revoked_at, tok.revoked_via = True, self.clock(), "user"

    # -- agents (what buildkite-agent processes do; no API of keyturn's makes them) --------------

    def _cluster_record(self, name_or_uuid: str) -> Cluster:
        for c in self.clusters.values():
            if name_or_uuid in (c.uuid, c.name, c.id):
                return c
        raise KeyError(f"no cluster {name_or_uuid!r}")

    def _live_token(self, value: str | None, cluster_uuid: str | None) -> tuple[str, str | None] | None:
        """(token uuid, its cluster uuid or None) of the agent token an agent registers with: ``value``, else the
        newest live token of ``cluster_uuid`` (None: of the unclustered ones); None when none is live."""
        now = self.clock()
        if value is not None:
            for ct in self.cluster_token_records.values():
                if secrets.compare_digest(ct.value, value):
                    live = not ct.revoked and (ct.expires_at is None or now < ct.expires_at)
                    return (ct.uuid, ct.cluster_uuid) if live else None
            for at in self.agent_token_records.values():
                if secrets.compare_digest(at.value, value):
                    return (at.uuid, None) if not at.revoked else None
            return None
        if cluster_uuid is not None:
            live_ct = [
                t for t in self.cluster_token_records.values()
                if t.cluster_uuid == cluster_uuid and not t.revoked and (t.expires_at is None or now < t.expires_at)
            ]
            newest = max(live_ct, key=lambda t: t.created_at, default=None)
            return (newest.uuid, cluster_uuid) if newest is not None else None
        live_at = [t for t in self.agent_token_records.values() if not t.revoked]
        newest_at = max(live_at, key=lambda t: t.created_at, default=None)
        return (newest_at.uuid, None) if newest_at is not None else None

    def connect_agent(
        self,
        name: str,
        *,
        cluster: str | None = None,
        token: str | None = None,
        queue: str = "default",
        hostname: str | None = None,
        meta_data: tuple[str, ...] = (),
        operating_system: str = "Linux",
        version: str = "3.95.1",
        running_job: bool = False,
        age_days: float = 0,
    ) -> BuildkiteAgent | None:
        """An agent starts and registers: with the agent token ``token`` (its value; a cluster token puts it in that
        cluster), else with the newest live token of ``cluster`` (by name or uuid; None: the newest unclustered
        token). None when Buildkite refuses the registration (no such token, revoked, expired, no such queue).
        ``age_days``: it connected that long ago. Returns a copy."""
        with self.lock:
            wanted = self._cluster_record(cluster).uuid if cluster is not None else None
            found = self._live_token(token, wanted)
            if found is None or (token is not None and cluster is not None and found[1] != wanted):
                self.counters["agents.refused"] += 1
                return None
            token_uuid, cluster_uuid = found
            queue_uuid: str | None = None
            tags = list(meta_data)
            if cluster_uuid is not None:
                q = next((q for q in self.queues.values() if q.cluster_uuid == cluster_uuid and q.key == queue), None)
                if q is None:  # "the queue doesn't exist in the cluster": the agent exits
                    self.counters["agents.refused"] += 1
                    return None
                queue_uuid = q.uuid
            if not any(t.startswith("queue=") for t in tags):
                tags.insert(0, f"queue={queue}")
            at = self.clock() - age_days * 86400
            agent = BuildkiteAgent(
                uuid=str(uuidlib.uuid4()),
                name=name,
                hostname=hostname or name,
                token_uuid=token_uuid,
                cluster_uuid=cluster_uuid,
                queue_uuid=queue_uuid,
                meta_data=tags,
                operating_system=operating_system,
                version=version,
                created_at=at,
                connected_at=at,
                running_job=running_job,
            )
            self.agent_records[agent.uuid] = agent
            self.counters["agents.registered"] += 1
            return copy.deepcopy(agent)

    def _selected(self, cluster: str | None, unclustered: bool) -> list[BuildkiteAgent]:
        """The connected agents of ``cluster`` and/or the unclustered ones (neither given: every connected agent)."""
        c = self._cluster_record(cluster).uuid if cluster is not None else None
        every = cluster is None and not unclustered
        return [
            a for a in sorted(self.agent_records.values(), key=lambda a: (a.connected_at, a.name))
            if a.connected and (every or (c is not None and a.cluster_uuid == c) or (unclustered and a.cluster_uuid is None))
        ]

    def disconnect_agents(self, cluster: str | None = None, unclustered: bool = False, *, lost: bool = False) -> int:
        """Stop agents for good (``lost``: they vanish without saying goodbye); how many."""
        with self.lock:
            now = self.clock()
            chosen = self._selected(cluster, unclustered)
            for a in chosen:
                if lost:
                    a.connection_state, a.lost_at = "lost", now
                else:
                    a.connection_state, a.disconnected_at = "disconnected", now
                a.running_job = False
            return len(chosen)

    def reconnect_agents(self, cluster: str | None = None, unclustered: bool = False, *, token: str | None = None) -> int:
        """Restart agents (of ``cluster`` by name or uuid, and/or the unclustered ones; neither: all connected ones),
        as when instances are cycled: each disconnects and registers again as a new agent (new uuid, connectedAt
        now) with ``token`` (a value: what its store now holds), else the newest live token of its cluster (or the
        newest unclustered one). An agent whose token Buildkite refuses stays down. Returns how many reconnected."""
        with self.lock:
            back = 0
            for a in self._selected(cluster, unclustered):
                a.connection_state, a.disconnected_at, a.running_job = "disconnected", self.clock(), False
                queue = next((q.key for q in self.queues.values() if q.uuid == a.queue_uuid), "default")
                tags = tuple(t for t in a.meta_data if not t.startswith("queue="))
                home = a.cluster_uuid if token is None else None  # a given token decides the cluster itself
                again = self.connect_agent(
                    a.name, cluster=home, token=token, queue=queue, hostname=a.hostname, meta_data=tags,
                    operating_system=a.operating_system, version=a.version,
                )
                if again is not None:
                    back += 1
                    self.counters["agents.reconnected"] += 1
            return back

    # -- reading (copies) ----------------------------------------------------------------------

    def api_token(self, value: str) -> ApiAccessToken | None:
        with self.lock:
            tok = self.api_tokens.get(value)
            return copy.deepcopy(tok) if tok else None

    def user(self, uuid: str) -> BuildkiteUser | None:
        with self.lock:
            u = self.users.get(uuid)
            return copy.deepcopy(u) if u else None

    def cluster(self, name_or_uuid: str) -> Cluster | None:
        with self.lock:
            for c in self.clusters.values():
                if name_or_uuid in (c.uuid, c.name):
                    return copy.deepcopy(c)
        return None

    def cluster_tokens(self, cluster: str | None = None, *, include_revoked: bool = False) -> list[ClusterToken]:
        """Cluster agent tokens (of one cluster, by name or uuid), oldest first."""
        with self.lock:
            c = self.cluster(cluster) if cluster is not None else None
            if cluster is not None and c is None:
                raise KeyError(f"no cluster {cluster!r}")
            return [
                copy.deepcopy(t)
                for t in sorted(self.cluster_token_records.values(), key=lambda t: t.created_at)
                if (c is None or t.cluster_uuid == c.uuid) and (include_revoked or not t.revoked)
            ]

    def cluster_token(self, uuid: str) -> ClusterToken | None:
        with self.lock:
            t = self.cluster_token_records.get(uuid)
            return copy.deepcopy(t) if t else None

    def agent_tokens(self, *, include_revoked: bool = True) -> list[AgentToken]:
        with self.lock:
            return [
                copy.deepcopy(t)
                for t in sorted(self.agent_token_records.values(), key=lambda t: t.created_at)
                if include_revoked or not t.revoked
            ]

    def agent_token(self, uuid: str) -> AgentToken | None:
        with self.lock:
            t = self.agent_token_records.get(uuid)
            return copy.deepcopy(t) if t else None

    def agents(
        self, cluster: str | None = None, *, unclustered: bool = False, include_disconnected: bool = False
    ) -> list[BuildkiteAgent]:
        """Agents (copies) of ``cluster`` (name or uuid) and/or the unclustered ones (neither: all), oldest first;
        connected ones only unless ``include_disconnected``."""
        with self.lock:
            c = self._cluster_record(cluster).uuid if cluster is not None else None
            every = cluster is None and not unclustered
            return [
                copy.deepcopy(a)
                for a in sorted(self.agent_records.values(), key=lambda a: (a.connected_at, a.name))
                if (include_disconnected or a.connected)
                and (every or (c is not None and a.cluster_uuid == c) or (unclustered and a.cluster_uuid is None))
            ]

    def token_status(self, value: str) -> Literal["active", "expired", "revoked", "unknown"]:
        """What an agent (or API client) presenting ``value`` would meet: an agent token or an API access token."""
        now = self.clock()
        with self.lock:
            for ct in self.cluster_token_records.values():
                if secrets.compare_digest(ct.value, value):
                    if ct.revoked:
                        return "revoked"
                    return "expired" if ct.expires_at is not None and now >= ct.expires_at else "active"
            for at in self.agent_token_records.values():
                if secrets.compare_digest(at.value, value):
                    return "revoked" if at.revoked else "active"
            api = self.api_tokens.get(value)
            if api is not None:
                if api.revoked:
                    return "revoked"
                return "expired" if api.expires_at is not None and now >= api.expires_at else "active"
        return "unknown"

    # -- behaviour (callers hold no lock) ------------------------------------------------------

    def authenticate(self, value: str | None) -> ApiAccessToken | None:
        """The live token record for a bearer value (counted as a use), or None when it is not valid."""
        if not value:
            return None
        with self.lock:
            tok = self.api_tokens.get(value)
            if tok is None or tok.revoked:
                return None
            now = self.clock()
            if tok.expires_at is not None and now >= tok.expires_at:
                return None
            if tok.user_uuid not in self.users:
                return None
            tok.uses += 1
            tok.last_accessed_at = now
            return tok

    def charge(self, api: Api, cost: int = 1) -> tuple[bool, dict[str, str], int]:
        with self.lock:
            return self.limits[api].take(self.clock(), cost)

    def connector_token_check(self, api_token: str, organization: str) -> str | None:
        """For ConductorOne's sync (``world.token_check``): why the connector's api_token fails, or None."""
        with self.lock:
            tok = self.api_tokens.get(api_token)
            if tok is None or tok.revoked or (tok.expires_at is not None and self.clock() >= tok.expires_at):
                return "buildkite: GET /v2/access-token: 401 Unauthorized"
            if organization != self.org.slug or organization not in tok.organizations:
                return f"buildkite: organization {organization!r} not found or not accessible with this token"
            missing = [s for s in CONNECTOR_SCOPES if s not in tok.scopes]
            if missing:
                return f"buildkite: the API token lacks scope(s) {', '.join(missing)}"
            if not tok.graphql:
                return "buildkite: the API token has no GraphQL access"
            tok.uses += 1
            tok.last_accessed_at = self.clock()
        return None

    # -- the keyturn.toml block ----------------------------------------------------------------

    def follow_up_toml(
        self,
        *,
        graphql_url: str,
        rest_url: str,
        account: str = "buildkite",
        api_token_ref: str = "file:sandbox-buildkite.token",  # noqa: S107 (a reference, not a secret)
    ) -> str:
        """The ``[accounts.<account>]`` block pointing keyturn at this organization (``api_token`` by reference)."""

        def q(v: str) -> str:
            return json.dumps(v)

        return "\n".join(
            [
                f"[accounts.{account}]",
                'platform = "buildkite"',
                f"organization = {q(self.org.slug)}",
                f"api_token = {q(api_token_ref)}",
                f"graphql_url = {q(graphql_url)}",
                f"rest_url = {q(rest_url)}",
                "",
            ]
        )


def seed_buildkite(
    clock: Callable[[], float] | SandboxState,
    *,
    organization: str = "contoso-sandbox",
    soon_days: float = 5,
) -> BuildkiteWorld:
    """An organization created before 2024-02-26 with two clusters (one token each: one expiring in
    ``soon_days``, one never; a ``default`` queue each), two unclustered agent tokens (one that may not be
    revoked), three connected agents (two in the Default cluster with its token, one unclustered with the
    "Legacy macOS agents" token, all connected days ago) and two API access
    tokens: keyturn's (agent and cluster scopes + GraphQL, owned by an admin) and the ConductorOne connector's
    (exactly ``read_teams read_organizations read_user`` + GraphQL, owned by a non-admin member).
    """
    tick: Callable[[], float] = clock if callable(clock) else clock.time
    world = BuildkiteWorld(tick, organization=organization)
    now = tick()
    bot = world.add_user("Keyturn Bot", "buildkite-bot@contoso.example", admin=True)
    member = world.add_user("ConductorOne Connector", "c1-connector@contoso.example", admin=False)
    default = world.add_cluster("Default cluster", "The cluster created with the organization", created_by=bot.uuid)
    large = world.add_cluster("linux-large", "Large Linux agents for the monorepo", created_by=bot.uuid, age_days=120)
    t_default = world.add_cluster_token(
        default.uuid,
        "Default cluster agents",
        created_by=bot.uuid,
        expires_at=now + soon_days * 86400,
        age_days=85,
    )
    t_large = world.add_cluster_token(large.uuid, "linux-large agents", created_by=bot.uuid, age_days=120)
    legacy = world.add_agent_token("Legacy macOS agents", created_by=bot.uuid, age_days=400)
    locked = world.add_agent_token("Default agent token", created_by=None, revoke_allowed=False, age_days=600)
    # agents connected with the then-current tokens, long before any rotation: two in the Default cluster, one
    # legacy unclustered macOS agent (linux-large has none connected)
    for n in (1, 2):
        world.connect_agent(
            f"default-agent-{n}", token=t_default.value, hostname=f"ci-default-{n}.contoso.example", age_days=3 + n
        )
    world.connect_agent(
        "legacy-mac-1", token=legacy.value, hostname="mac-mini-01.contoso.example", operating_system="macOS",
        meta_data=("os=macos",), age_days=12,
    )
    keyturn = world.create_api_token(
        KEYTURN_SCOPES, graphql=True, description="keyturn: agent token rotation", user_uuid=bot.uuid, age_days=30
    )
    connector = world.create_api_token(
        CONNECTOR_SCOPES,
        graphql=True,
        description="ConductorOne Buildkite connector",
        user_uuid=member.uuid,
        age_days=200,
    )
    world.counters.clear()
    world.seeded = SeededBuildkite(
        organization=world.org.slug,
        organization_id=world.org.id,
        keyturn_token=keyturn.value,
        connector_token=connector.value,
        user_email=bot.email,
        clusters={default.name: default.uuid, large.name: large.uuid},
        cluster_tokens={t_default.description: t_default.uuid, t_large.description: t_large.uuid},
        agent_tokens={
            str(legacy.description): legacy.uuid,
            str(locked.description): locked.uuid,
        },
    )
    return world


# -- the services ------------------------------------------------------------------------------------


def _rate_limit_headers(world: BuildkiteWorld, api: Api, seconds: int) -> dict[str, str]:
    """The headers of an injected 429: the window's budget is spent and resets in ``seconds``."""
    with world.lock:
        limit = world.limits[api].limit
    return {"RateLimit-Remaining": "0", "RateLimit-Limit": str(limit), "RateLimit-Reset": str(seconds)}


class BuildkiteGraphQLService(Service):
    """``graphql.buildkite.com``: ``POST /v1``."""

    name = "buildkite-graphql"

    def __init__(self, state: SandboxState, world: BuildkiteWorld) -> None:
        super().__init__(state)
        self.world = world
        self.route("POST", GRAPHQL_PATH, self.graphql)

    def not_found(self, req: Request) -> Response:
        return json_response(404, {"errors": [{"message": f"No route for {req.method} {req.path}"}]})

    def internal_error(self, req: Request) -> Response:
        return json_response(500, {"errors": [{"message": "the keyturn sandbox emulator failed (see its log)"}]})

    def call_names(self, req: Request, template: str) -> list[str]:
        """Faults name GraphQL calls by their operation name (``operationName``, else the document's first)."""
        names = super().call_names(req, template)
        try:
            body = json.loads(req.body.decode("utf-8-sig")) if req.body else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            return names
        op = body.get("operationName") if isinstance(body, dict) else None
        if not op and isinstance(body, dict) and isinstance(body.get("query"), str):
            m = re.search(r"\b(?:query|mutation)\s+([A-Za-z_][A-Za-z0-9_]*)", body["query"])
            op = m.group(1) if m else None
        if isinstance(op, str) and op:
            names.append(op)
        return names

    def rate_limit_headers(self, seconds: int) -> dict[str, str]:
        return _rate_limit_headers(self.world, "graphql", seconds)

    def injected_error(self, status: int, req: Request) -> Response:
        if status == 429:
            message = f"Your organization has exceeded the limit of complexity points. Please try again in {self.state.fault_retry_after} seconds."
        else:
            message = f"Buildkite is having trouble (HTTP {status}; keyturn sandbox fault injection)."
        return json_response(status, {"errors": [{"message": message}]})

    def graphql(self, req: Request) -> Response:
        from app.sandbox.buildkite_graphql import execute_request

        w = self.world
        tok = w.authenticate(req.bearer())
        if tok is None or not tok.graphql:
            with w.lock:
                w.counters["graphql.unauthenticated"] += 1
            return json_response(401, {"errors": [{"message": GRAPHQL_AUTH_MESSAGE}]})
        allowed, headers, reset = w.charge("graphql")
        if not allowed:
            with w.lock:
                w.counters["graphql.rate_limited"] += 1
                limit = w.limits["graphql"].limit
            message = (
                f"Your organization has exceeded the limit of {limit} complexity points. "
                f"Please try again in {reset} seconds."
            )
            return json_response(429, {"errors": [{"message": message}]}, headers)
        try:
            body = json.loads(req.body.decode("utf-8-sig")) if req.body else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return json_response(400, {"errors": [{"message": f"The request body is not valid JSON: {exc}"}]}, headers)
        status, payload, bugs = execute_request(w, tok, body)
        for bug in bugs:
            self.state.record_internal_error(bug)
        return json_response(status, payload, headers)


class BuildkiteRestService(Service):
    """``api.buildkite.com`` (``/v2/access-token``) plus buildkite.com's API access token page."""

    name = "buildkite-rest"

    def __init__(self, state: SandboxState, world: BuildkiteWorld) -> None:
        super().__init__(state)
        self.world = world
        self.route("GET", "/", self.hello)
        self.route("GET", ACCESS_TOKEN_PATH, self.get_access_token)
        self.route("DELETE", ACCESS_TOKEN_PATH, self.delete_access_token)
        self.route("GET", NEW_TOKEN_PATH, self.new_token_page)
        self.route("POST", "/user/api-access-tokens", self.create_token_page)

    def not_found(self, req: Request) -> Response:
        return json_response(404, {"message": "Not Found"})

    def method_not_allowed(self, req: Request, allowed: Any) -> Response:
        resp = json_response(405, {"message": f"{req.method} is not allowed here"})
        resp.headers["Allow"] = ", ".join(sorted(set(allowed)))
        return resp

    def internal_error(self, req: Request) -> Response:
        return json_response(500, {"message": "the keyturn sandbox emulator failed (see its log)"})

    def rate_limit_headers(self, seconds: int) -> dict[str, str]:
        return {"RateLimit-Scope": "rest", **_rate_limit_headers(self.world, "rest", seconds)}

    def injected_error(self, status: int, req: Request) -> Response:
        if status == 429:
            message = f"You have exceeded your API rate limit. Please wait {self.state.fault_retry_after} seconds before making more requests."
        else:
            message = f"Buildkite is having trouble (HTTP {status}; keyturn sandbox fault injection)."
        return json_response(status, {"message": message})

    def hello(self, req: Request) -> Response:
        return json_response(200, {"message": "\U0001f6e0", "timestamp": int(self.world.clock())})

    def _auth(self, req: Request, operation: str) -> tuple[ApiAccessToken | None, Response | None, dict[str, str]]:
        w = self.world
        tok = w.authenticate(req.bearer())
        if tok is None:
            with w.lock:
                w.counters["rest.unauthenticated"] += 1
            return None, json_response(401, {"message": REST_AUTH_MESSAGE}), {}
        allowed, headers, reset = w.charge("rest")
        headers = {"RateLimit-Scope": "rest", **headers}
        if not allowed:
            with w.lock:
                w.counters["rest.rate_limited"] += 1
                rl = w.limits["rest"]
                body = {
                    "message": f"You have exceeded your API rate limit. Please wait {reset} seconds before making more requests.",
                    "scope": "rest",
                    "limit": rl.limit,
                    "current": rl.used,
                    "reset": reset,
                }
            return None, json_response(429, body, headers), headers
        with w.lock:
            w.counters[f"rest.{operation}"] += 1
        return tok, None, headers

    def get_access_token(self, req: Request) -> Response:
        tok, denied, headers = self._auth(req, "access_token.get")
        if denied is not None:
            return denied
        assert tok is not None
        w = self.world
        with w.lock:
            user = w.users[tok.user_uuid]
            payload = {
                "uuid": tok.uuid,
                "scopes": tok.all_scopes,
                "description": tok.description,
                "created_at": rest_time(tok.created_at),
                "expires_at": rest_time(tok.expires_at),
                "user": {"name": user.name, "email": user.email},
            }
        return json_response(200, payload, headers)

    def delete_access_token(self, req: Request) -> Response:
        tok, denied, headers = self._auth(req, "access_token.delete")
        if denied is not None:
            return denied
        assert tok is not None
        with self.world.lock:
            tok.revoked, tok.revoked_at, tok.revoked_via = True, self.world.clock(), "rest"
        return Response(204, b"", headers)

    # -- buildkite.com's "New API Access Token" page (no API can create one) ---------------------

    def new_token_page(self, req: Request) -> Response:
        description = req.arg("description", ignore_case=False) or ""
        wanted = req.query.get("scopes[]", [])
        boxes = "\n".join(
            f'<label><input type="checkbox" name="scopes[]" value="{s}"{" checked" if s in wanted else ""}> {s}</label><br>'
            for s in rest_scope_names()
        )
        page = f"""<!doctype html>
<html><head><title>New API Access Token (keyturn sandbox)</title></head><body>
<h1>New API Access Token</h1>
<p>The keyturn sandbox stands in for buildkite.com here. The token is shown once.</p>
<form method="post" action="/user/api-access-tokens">
<p><label>Description <input name="description" value="{html.escape(description, quote=True)}"></label></p>
<p>Organization: {html.escape(self.world.org.name)} ({html.escape(self.world.org.slug)})</p>
<fieldset><legend>Scopes (graphql = Enable GraphQL API access)</legend>
{boxes}
</fieldset>
<p><button type="submit">Create New API Access Token</button></p>
</form></body></html>
"""
        return html_response(200, page, {"Cache-Control": "no-store"})

    def create_token_page(self, req: Request) -> Response:
        try:
            form = parse_qs(req.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return html_response(400, "<p>The form cannot be parsed.</p>")
        scopes = form.get("scopes[]", [])
        description = (form.get("description") or [""])[0].strip()
        if not description:
            return html_response(422, "<p>Description can't be blank.</p>")
        if not scopes:
            return html_response(422, "<p>Select at least one scope.</p>")
        try:
            tok = self.world.create_api_token(scopes, graphql="graphql" in scopes, description=description)
        except ValueError as exc:
            return html_response(422, f"<p>{html.escape(str(exc))}</p>")
        page = f"""<!doctype html>
<html><head><title>API Access Token created (keyturn sandbox)</title></head><body>
<h1>API Access Token created</h1>
<p>Copy it now: it will not be shown again.</p>
<p><code id="token">{html.escape(tok.value)}</code></p>
<p>Scopes: {html.escape(" ".join(tok.all_scopes))}</p>
</body></html>
"""
        return html_response(201, page, {"Cache-Control": "no-store"})


# -- the page without a browser (the demo's terminal path) -------------------------------------------


class _TokenPageParser(HTMLParser):
    """The form on the "New API Access Token" page (its action, description and ticked scopes), or the token
    and the message on the page that answers it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.action: str | None = None
        self.fields: list[tuple[str, str]] = []
        self.token: str | None = None
        self.messages: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("name"):
            if a.get("type") != "checkbox" or "checked" in a:
                self.fields.append((a["name"], a.get("value", "")))
        elif tag == "code" and a.get("id") == "token":
            self._in = "token"
        elif tag == "p" and self._in is None:
            self._in = "p"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "token":
            self.token = (self.token or "") + data
        elif self._in == "p" and data.strip():
            self.messages.append(data.strip())


def create_on_token_page(url: str, ca_bundle: Path | None) -> SecretValue:
    """Do on the sandbox's pre-filled "New API Access Token" page what a person does in a browser: open it,
    submit its form as it stands (the description and the scopes it ticked), read the token it shows once.

    For the demo, whose page is served over HTTPS with the sandbox's own CA that browsers do not trust. Loopback
    only (never a real buildkite.com). The value comes back as a SecretValue and is never logged or raised.
    """
    from urllib.parse import urljoin, urlsplit

    from app.errors import KeyturnError
    from app.net import http_client, is_loopback
    from app.secret import SecretValue

    host = urlsplit(url).hostname or ""
    if not is_loopback(host) or urlsplit(url).path != NEW_TOKEN_PATH:
        raise KeyturnError(f"only the sandbox's own token page can be filled in from the terminal, not {host or url}")
    with http_client(ca_bundle, follow_redirects=False) as client:
        page = client.get(url)
        if page.status_code != 200:
            raise KeyturnError(f"the sandbox's token page answered HTTP {page.status_code}")
        form = _TokenPageParser()
        form.feed(page.text)
        if form.action is None:
            raise KeyturnError("the sandbox's token page has no form to submit")
        answer = client.post(
            urljoin(url, form.action),
            content=urlencode(form.fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    done = _TokenPageParser()
    done.feed(answer.text)
    if answer.status_code != 201 or not done.token:
        why = "; ".join(m for m in done.messages) or f"HTTP {answer.status_code}"
        raise KeyturnError(f"the sandbox's token page did not create the token: {why}")
    return SecretValue(done.token.strip())


# -- standalone (tests and provider work without the whole Sandbox) ---------------------------------


class BuildkiteStandalone:
    """Both Buildkite servers on 127.0.0.1 over HTTPS with their own CA, for tests that need only Buildkite.

    ``with BuildkiteStandalone(directory) as bk:`` then ``bk.world``, ``bk.graphql_url`` (ends in ``/v1``),
    ``bk.rest_url``, ``bk.ca_path`` and ``bk.client_ssl_context()``; ``bk.state.internal_errors`` lists
    emulator bugs. ``world`` defaults to a freshly seeded one on ``state``'s clock.
    """

    def __init__(
        self, directory: Path | str, *, world: BuildkiteWorld | None = None, state: SandboxState | None = None
    ) -> None:
        from app.sandbox.state import SandboxState

        self.directory = Path(directory)
        self.state = state or SandboxState()
        self.world = world or seed_buildkite(self.state)
        self.ca_path = self.directory / "ca.pem"
        self.graphql_url = ""
        self.rest_url = ""
        self._servers: list[Any] = []
        self._tls: Any = None

    def start(self) -> BuildkiteStandalone:
        from app.sandbox.http import TLSServer
        from app.sandbox.tls import SandboxTLS

        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._tls = SandboxTLS()
        self._tls.write_ca(self.ca_path)
        ctx = self._tls.server_context(self.directory)
        graphql = TLSServer(BuildkiteGraphQLService(self.state, self.world), ctx)
        try:
            rest = TLSServer(BuildkiteRestService(self.state, self.world), ctx)
        except BaseException:
            graphql.server_close()
            raise
        self._servers = [graphql, rest]
        for s in self._servers:
            s.start()
        self.graphql_url = graphql.url + GRAPHQL_PATH
        self.rest_url = rest.url
        return self

    def client_ssl_context(self) -> Any:
        if self._tls is None:
            raise RuntimeError("start the servers first")
        return self._tls.client_context()

    def stop(self) -> None:
        servers, self._servers = self._servers, []
        for s in servers:
            s.stop()

    def __enter__(self) -> BuildkiteStandalone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
