"""Buildkite's GraphQL API, executed by graphql-core on the vendored schema: resolvers and the request flow.

``buildkite_schema()`` builds the schema from ``providers/buildkite/schema.graphql`` once and attaches
resolvers to the root fields; below the root, objects are dicts whose values are plain data or callables
``(info, **args)`` (graphql-core's default resolution). A field the sandbox does not fill in answers an
error naming it (``The keyturn sandbox does not emulate Organization.pipelines``) rather than a silent null.

Error wording: the validation and coercion messages are graphql-core's (Buildkite runs graphql-ruby, whose
words differ, e.g. "Field 'x' doesn't exist on type 'Y'"; a client must not match on either). The messages of
the mutations' own refusals follow Buildkite's REST wording (``Validation failed: ...``) where it is
documented and are the sandbox's own elsewhere; each comes back inside HTTP 200 with ``path`` and
``locations``, the mutation's field ``null``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache, wraps
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    StringValueNode,
    ValueNode,
    build_schema,
    execute_sync,
    parse,
    validate,
)

from app.sandbox.buildkite import (
    MIN_EXPIRY_S,
    SCHEMA_PATH,
    AgentToken,
    ApiAccessToken,
    BuildkiteAgent,
    BuildkiteUser,
    BuildkiteWorld,
    Cluster,
    ClusterQueue,
    ClusterToken,
    iso,
    node_id,
    parse_node_id,
)

MAX_PAGE = 500  # Buildkite: connections without first/last "may default to 500"

Resolver = Callable[..., Any]


@dataclass
class Context:
    """What every resolver sees as ``info.context``."""

    world: BuildkiteWorld
    token: ApiAccessToken
    user: BuildkiteUser
    now: float


def _ctx(info: GraphQLResolveInfo) -> Context:
    ctx = info.context
    assert isinstance(ctx, Context)
    return ctx


# -- the schema --------------------------------------------------------------------------------------


def _parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise GraphQLError(f"DateTime must be an ISO-8601 string, not {type(value).__name__}")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise GraphQLError(f"{value!r} is not an ISO-8601 date and time") from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _parse_datetime_literal(node: ValueNode, _variables: Any = None) -> datetime:
    if not isinstance(node, StringValueNode):
        raise GraphQLError("DateTime must be an ISO-8601 string")
    return _parse_datetime(node.value)


def _serialize_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, str):
        return value
    raise GraphQLError(f"cannot serialize {type(value).__name__} as DateTime")


@cache
def buildkite_schema() -> GraphQLSchema:
    """Buildkite's published schema with the sandbox's resolvers on its root fields (built once)."""
    schema = build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
    # DateTime: ISO-8601 strings in, aware datetimes to the resolvers (graphql-core 3.3 reads the coerce_* hooks)
    dt: Any = schema.type_map["DateTime"]
    dt.parse_value = dt.coerce_input_value = _parse_datetime
    dt.parse_literal = _parse_datetime_literal
    dt.coerce_input_literal = _parse_datetime_literal
    dt.serialize = dt.coerce_output_value = _serialize_datetime
    for root, table in ((schema.query_type, QUERY_RESOLVERS), (schema.mutation_type, MUTATION_RESOLVERS)):
        assert root is not None
        for name, fld in root.fields.items():
            fld.resolve = table.get(name) or _not_emulated_root(root.name, name)
    return schema


def _not_emulated_root(type_name: str, field_name: str) -> Resolver:
    def resolve(_root: Any, info: GraphQLResolveInfo, **_args: Any) -> Any:
        raise GraphQLError(f"The keyturn sandbox does not emulate {type_name}.{field_name}")

    return resolve


def field_resolver(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """graphql-core's default resolution, except that a key missing from a dict names the unemulated field."""
    if isinstance(source, Mapping):
        if info.field_name not in source:
            if info.field_name == "clientMutationId":
                return None
            raise GraphQLError(f"The keyturn sandbox does not emulate {info.parent_type.name}.{info.field_name}")
        value = source[info.field_name]
    else:
        value = getattr(source, info.field_name, None)
    if callable(value):
        return value(info, **args)
    return value


# -- connections -------------------------------------------------------------------------------------


def _cursor(position: int) -> str:
    """graphql-ruby's array cursors: base64 of the 1-based position, unpadded."""
    return base64.b64encode(str(position).encode()).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        n = int(base64.b64decode(cursor + "=" * (-len(cursor) % 4), validate=True).decode("ascii"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise GraphQLError(f"Invalid cursor: {cursor!r}") from None
    if n < 0:
        raise GraphQLError(f"Invalid cursor: {cursor!r}")
    return n


def connection(
    items: list[Any],
    view: Callable[[Any], dict[str, Any]],
    *,
    first: int | None = None,
    last: int | None = None,
    after: str | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """A Relay connection over ``items`` (count, edges, nodes, pageInfo)."""
    for name, value in (("first", first), ("last", last)):
        if value is not None and value < 0:
            raise GraphQLError(f"Argument '{name}' on a connection must be non-negative, got {value}")
    start, end = 0, len(items)
    if after is not None:
        start = max(start, _decode_cursor(after))
    if before is not None:
        end = min(end, _decode_cursor(before) - 1)
    window = list(range(start, max(start, end)))
    has_next = has_prev = False
    if first is not None and len(window) > min(first, MAX_PAGE):
        window, has_next = window[: min(first, MAX_PAGE)], True
    if last is not None and len(window) > min(last, MAX_PAGE):
        window, has_prev = window[-min(last, MAX_PAGE) :], True
    if first is None and last is None and len(window) > MAX_PAGE:
        window, has_next = window[:MAX_PAGE], True
    edges = [{"cursor": _cursor(i + 1), "node": view(items[i])} for i in window]
    return {
        "count": len(items),
        "edges": edges,
        "nodes": [e["node"] for e in edges],
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_prev,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


# -- views (dicts for graphql-core's default resolution) ---------------------------------------------


def user_view(world: BuildkiteWorld, uuid: str | None) -> dict[str, Any] | None:
    user = world.users.get(uuid) if uuid else None
    if user is None:
        return None
    digest = hashlib.sha256(user.email.strip().lower().encode()).hexdigest()
    return {
        "__typename": "User",
        "id": user.id,
        "uuid": user.uuid,
        "name": user.name,
        "email": user.email,
        "bot": False,
        "hasPassword": True,
        "avatar": {"url": f"https://www.gravatar.com/avatar/{digest}"},
    }


def _permission(allowed: bool, code: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {"allowed": allowed, "code": None if allowed else code, "message": None if allowed else message}


def org_view(ctx: Context) -> dict[str, Any]:
    world, org = ctx.world, ctx.world.org

    def clusters(
        info: GraphQLResolveInfo,
        first: int | None = None,
        last: int | None = None,
        after: str | None = None,
        before: str | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        items = list(world.clusters.values())
        if order == "RECENTLY_CREATED":
            items.sort(key=lambda c: c.created_at, reverse=True)
        else:  # NAME, Buildkite's order when none is given
            items.sort(key=lambda c: c.name.lower())
        return connection(items, lambda c: cluster_view(ctx, c), first=first, last=last, after=after, before=before)

    def cluster(info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
        c = world.clusters.get(id)  # the cluster's UUID, as Buildkite's cookbook passes it
        return cluster_view(ctx, c) if c is not None else None

    def agent_tokens(
        info: GraphQLResolveInfo, first: int | None = None, last: int | None = None, revoked: bool | None = None
    ) -> dict[str, Any] | None:
        if not org.has_unclustered_agents:
            return connection([], lambda t: {}, first=first, last=last)
        items = sorted(world.agent_token_records.values(), key=lambda t: t.created_at)
        if revoked is not None:
            items = [t for t in items if t.revoked == revoked]
        return connection(items, lambda t: agent_token_view(ctx, t), first=first, last=last)

    def api_access_tokens(
        info: GraphQLResolveInfo,
        first: int | None = None,
        last: int | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> dict[str, Any]:
        if not ctx.user.admin:
            raise GraphQLError(
                "You must be an organization administrator to see the API access tokens of this organization"
            )
        items = sorted(
            (t for t in world.api_tokens.values() if not t.revoked and org.slug in t.organizations),
            key=lambda t: t.created_at,
        )
        return connection(
            items, lambda t: api_access_token_view(ctx, t), first=first, last=last, after=after, before=before
        )

    def agents(info: GraphQLResolveInfo, **args: Any) -> dict[str, Any]:
        """``Organization.agents``: connected agents only (Buildkite's agents API: "agents in a disconnected state
        are not returned"), oldest connection first. ``clustered`` (schema default true) false leaves out "agents
        that belong to a cluster queue"; ``cluster`` filters "by membership of a given cluster": the schema does not
        say which id it takes, the sandbox takes the cluster's GraphQL id or its UUID, and answers no agents for
        one it does not know (what a client cannot tell from an empty cluster)."""
        world.counters["graphql.organization.agents"] += 1
        items = [a for a in world.agent_records.values() if a.connected]
        if args.get("clustered") is False:
            items = [a for a in items if a.queue_uuid is None]
        if args.get("cluster") is not None:
            wanted = args["cluster"]
            parsed = parse_node_id(wanted)
            ident = parsed[1] if parsed and parsed[0] == "Cluster" else wanted
            items = [a for a in items if a.cluster_uuid is not None and a.cluster_uuid == ident]
        if args.get("clusterQueue") is not None:
            queues = set()
            for q in args["clusterQueue"]:
                parsed = parse_node_id(q)
                queues.add(parsed[1] if parsed and parsed[0] == "ClusterQueue" else q)
            items = [a for a in items if a.queue_uuid in queues]
        if args.get("isRunningJob") is not None:
            items = [a for a in items if a.running_job == args["isRunningJob"]]
        if args.get("paused") is not None:
            items = [a for a in items if not args["paused"]]  # the sandbox pauses no agent
        for tag in args.get("metaData") or []:
            items = [a for a in items if tag in a.meta_data]
        if args.get("search"):
            term = str(args["search"]).lower()
            items = [a for a in items if term in a.name.lower() or any(term in t.lower() for t in a.meta_data)]
        items.sort(key=lambda a: (a.connected_at, a.name))
        return connection(
            items, lambda a: agent_view(ctx, a),
            first=args.get("first"), last=args.get("last"), after=args.get("after"), before=args.get("before"),
        )

    return {
        "__typename": "Organization",
        "id": org.id,
        "uuid": org.uuid,
        "slug": org.slug,
        "name": org.name,
        "clusters": clusters,
        "cluster": cluster,
        "agentTokens": agent_tokens,
        "apiAccessTokens": api_access_tokens,
        "agents": agents,
    }


def cluster_view(ctx: Context, c: Cluster) -> dict[str, Any]:
    world = ctx.world

    def agent_tokens(info: GraphQLResolveInfo, first: int | None = None, last: int | None = None) -> dict[str, Any]:
        # no after/before: Cluster.agentTokens has no cursor paging
        items = sorted(
            (t for t in world.cluster_token_records.values() if t.cluster_uuid == c.uuid and not t.revoked),
            key=lambda t: t.created_at,
        )
        return connection(items, lambda t: cluster_token_view(ctx, t), first=first, last=last)

    return {
        "__typename": "Cluster",
        "id": c.id,
        "uuid": c.uuid,
        "name": c.name,
        "description": c.description,
        "emoji": c.emoji,
        "color": c.color,
        "createdBy": user_view(world, c.created_by),
        "organization": lambda info: org_view(ctx),
        "agentTokens": agent_tokens,
    }


def cluster_queue_view(ctx: Context, q: ClusterQueue) -> dict[str, Any]:
    world = ctx.world
    return {
        "__typename": "ClusterQueue",
        "id": q.id,
        "uuid": q.uuid,
        "key": q.key,
        "description": q.description,
        "cluster": lambda info: cluster_view(ctx, world.clusters[q.cluster_uuid]),
        "dispatchPaused": False,
        "dispatchPausedAt": None,
        "hosted": False,
        "retryAgentAffinity": "prefer-warmest",
    }


def agent_view(ctx: Context, a: BuildkiteAgent) -> dict[str, Any]:
    world = ctx.world
    queue = world.queues.get(a.queue_uuid) if a.queue_uuid else None
    heartbeat = ctx.now if a.connected else (a.disconnected_at or a.lost_at)
    return {
        "__typename": "Agent",
        "id": a.id,
        "uuid": a.uuid,
        "name": a.name,
        "hostname": a.hostname,
        "connectionState": a.connection_state,
        "connectedAt": iso(a.connected_at),
        "disconnectedAt": iso(a.disconnected_at),
        "lostAt": iso(a.lost_at),
        "createdAt": iso(a.created_at),
        "heartbeatAt": iso(heartbeat),
        "isRunningJob": a.running_job,
        "job": None,  # "If isRunningJob true, but the job field is empty, the current user doesn't have access"
        "clusterQueue": cluster_queue_view(ctx, queue) if queue is not None else None,
        "ipAddress": a.ip_address,
        "metaData": list(a.meta_data),
        "operatingSystem": {"name": a.operating_system},
        "organization": lambda info: org_view(ctx),
        "paused": False,
        "pausedAt": None,
        "public": False,
        "isDeprecated": False,
        "versionHasKnownIssues": False,
        "userAgent": f"buildkite-agent/{a.version} ({a.operating_system.lower()}; amd64)",
        "version": a.version,
        "priority": 0,
    }


def cluster_token_view(ctx: Context, t: ClusterToken) -> dict[str, Any]:
    world = ctx.world
    return {
        "__typename": "ClusterToken",
        "id": t.id,
        "uuid": t.uuid,
        "description": t.description,
        "expiresAt": iso(t.expires_at),
        "allowedIpAddresses": t.allowed_ip_addresses,
        "createdBy": user_view(world, t.created_by),
        "cluster": lambda info: cluster_view(ctx, world.clusters[t.cluster_uuid]),
        "token": "",  # deprecated: "will soon return an empty string"; the value is shown once, at creation
    }


def _revoke_permission(ctx: Context, t: AgentToken) -> dict[str, Any]:
    if not ctx.user.admin:
        return _permission(False, "not_admin", "Only organization administrators can revoke agent tokens")
    if t.revoked:
        return _permission(False, "already_revoked", "This agent token has already been revoked")
    if not t.revoke_allowed:
        return _permission(False, "not_allowed", "This agent token can't be revoked")
    return _permission(True)


def agent_token_view(ctx: Context, t: AgentToken) -> dict[str, Any]:
    world = ctx.world
    return {
        "__typename": "AgentToken",
        "id": t.id,
        "uuid": t.uuid,
        "description": t.description,
        "public": t.public,
        "createdAt": iso(t.created_at),
        "createdBy": user_view(world, t.created_by),
        "revokedAt": iso(t.revoked_at),
        "revokedBy": user_view(world, t.revoked_by),
        "revokedReason": t.revoked_reason,
        "organization": lambda info: org_view(ctx),
        "permissions": {"agentTokenRevoke": _revoke_permission(ctx, t)},
        "token": "",  # deprecated and hidden after creation
    }


def api_access_token_view(ctx: Context, t: ApiAccessToken) -> dict[str, Any]:
    return {
        "__typename": "OrganizationAPIAccessToken",
        "id": t.id,
        "uuid": t.uuid,
        "description": t.description,
        "scopes": [s.upper() for s in t.all_scopes],
        "createdAt": iso(t.created_at),
        "expiresAt": iso(t.expires_at),
        "lastAccessedAt": iso(t.last_accessed_at),
        "ipAddress": "127.0.0.1" if t.last_accessed_at is not None else None,
        "owner": user_view(ctx.world, t.user_uuid),
    }


def viewer_view(ctx: Context) -> dict[str, Any]:
    def organizations(info: GraphQLResolveInfo, first: int | None = None, last: int | None = None) -> dict[str, Any]:
        orgs = [ctx.world.org] if _org_accessible(ctx) else []
        return connection(orgs, lambda _o: org_view(ctx), first=first, last=last)

    return {
        "__typename": "Viewer",
        "id": node_id("Viewer", ctx.user.uuid),
        "user": user_view(ctx.world, ctx.user.uuid),
        "organizations": organizations,
        "permissions": {"totpConfigure": _permission(False, "api", "TOTP can't be configured through the API")},
    }


# -- root fields -------------------------------------------------------------------------------------


def counted(name: str) -> Callable[[Resolver], Resolver]:
    """Count calls of a root field in ``world.counters`` (``graphql.<name>``; refusals ``graphql.<name>.rejected``)."""

    def wrap(fn: Resolver) -> Resolver:
        @wraps(fn)
        def resolve(root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
            world = _ctx(info).world
            world.counters[f"graphql.{name}"] += 1
            try:
                return fn(root, info, **args)
            except GraphQLError:
                world.counters[f"graphql.{name}.rejected"] += 1
                raise

        return resolve

    return wrap


def _org_accessible(ctx: Context) -> bool:
    return ctx.world.org.slug in ctx.token.organizations


@counted("viewer")
def resolve_viewer(_root: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    return viewer_view(_ctx(info))


@counted("organization")
def resolve_organization(
    _root: Any, info: GraphQLResolveInfo, slug: str | None = None, uuid: str | None = None
) -> dict[str, Any] | None:
    ctx = _ctx(info)
    org = ctx.world.org
    if slug is None and uuid is None:
        raise GraphQLError("Either a slug or a uuid must be provided")
    if (slug is not None and slug != org.slug) or (uuid is not None and uuid != org.uuid):
        return None
    return org_view(ctx) if _org_accessible(ctx) else None


@counted("agentToken")
def resolve_agent_token(_root: Any, info: GraphQLResolveInfo, slug: str) -> dict[str, Any] | None:
    ctx = _ctx(info)
    org_slug, _, token_uuid = slug.partition("/")
    if org_slug != ctx.world.org.slug or not _org_accessible(ctx):
        return None
    tok = ctx.world.agent_token_records.get(token_uuid)
    return agent_token_view(ctx, tok) if tok is not None else None


@counted("agent")
def resolve_agent(_root: Any, info: GraphQLResolveInfo, slug: str) -> dict[str, Any] | None:
    ctx = _ctx(info)
    org_slug, _, agent_uuid = slug.partition("/")
    if org_slug != ctx.world.org.slug or not _org_accessible(ctx):
        return None
    agent = ctx.world.agent_records.get(agent_uuid)
    return agent_view(ctx, agent) if agent is not None else None


@counted("node")
def resolve_node(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
    ctx = _ctx(info)
    world = ctx.world
    parsed = parse_node_id(id)
    if parsed is None or not _org_accessible(ctx):
        return None
    type_name, ident = parsed
    if type_name == "Organization" and ident == world.org.uuid:
        return org_view(ctx)
    if type_name == "Cluster" and ident in world.clusters:
        return cluster_view(ctx, world.clusters[ident])
    if type_name == "ClusterToken":
        ct = world.cluster_token_records.get(ident)
        return cluster_token_view(ctx, ct) if ct is not None and not ct.revoked else None
    if type_name == "AgentToken" and ident in world.agent_token_records:
        return agent_token_view(ctx, world.agent_token_records[ident])
    if type_name == "User":
        return user_view(world, ident)
    if type_name == "Agent" and ident in world.agent_records:
        return agent_view(ctx, world.agent_records[ident])
    if type_name == "ClusterQueue" and ident in world.queues:
        return cluster_queue_view(ctx, world.queues[ident])
    return None


# -- mutations ---------------------------------------------------------------------------------------


def _require_org(ctx: Context, gid: str) -> None:
    org = ctx.world.org
    if gid != org.id or not _org_accessible(ctx):
        raise GraphQLError(f"Couldn't find an organization with id {gid!r}")


def _require_admin(ctx: Context, what: str) -> None:
    if not ctx.user.admin:
        raise GraphQLError(f"You must be an organization administrator to {what}")


def _check_ips(value: str | None) -> str | None:
    if value is None:
        return None
    entries = value.split()
    for entry in entries:
        try:
            ipaddress.IPv4Network(entry, strict=False)
        except ValueError:
            raise GraphQLError(
                f"Validation failed: Allowed ip addresses {entry!r} is not a CIDR-notation IPv4 address"
            ) from None
    return " ".join(entries) or None


def _cluster_token(ctx: Context, gid: str) -> ClusterToken:
    parsed = parse_node_id(gid)
    tok = ctx.world.cluster_token_records.get(parsed[1]) if parsed and parsed[0] == "ClusterToken" else None
    if tok is None or tok.revoked:
        raise GraphQLError(f"Couldn't find a cluster agent token with id {gid!r}")
    return tok


@counted("clusterAgentTokenCreate")
def resolve_cluster_agent_token_create(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    world = ctx.world
    _require_org(ctx, input["organizationId"])
    _require_admin(ctx, "create cluster agent tokens")
    parsed = parse_node_id(input["clusterId"])
    cluster = world.clusters.get(parsed[1]) if parsed and parsed[0] == "Cluster" else None
    if cluster is None:
        raise GraphQLError(f"Couldn't find a cluster with id {input['clusterId']!r}")
    description = input["description"].strip()
    if not description:
        raise GraphQLError("Validation failed: Description can't be blank")
    expires_at: float | None = None
    if "expiresAt" in input:
        if input["expiresAt"] is None:
            raise GraphQLError("expiresAt can't be null: leave it out for a token that never expires")
        expires_at = input["expiresAt"].timestamp()
        assert expires_at is not None
        if expires_at < ctx.now + MIN_EXPIRY_S:
            raise GraphQLError("Validation failed: Expires at must be at least 10 minutes in the future")
    ips = _check_ips(input.get("allowedIpAddresses"))
    tok = world.add_cluster_token(
        cluster.uuid, description, created_by=ctx.user.uuid, expires_at=expires_at, allowed_ip_addresses=ips
    )
    return {
        "clientMutationId": input.get("clientMutationId"),
        "tokenValue": tok.value,
        "clusterAgentToken": cluster_token_view(ctx, tok),
    }


@counted("clusterAgentTokenUpdate")
def resolve_cluster_agent_token_update(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    _require_org(ctx, input["organizationId"])
    _require_admin(ctx, "update cluster agent tokens")
    tok = _cluster_token(ctx, input["id"])
    description = input["description"].strip()
    if not description:
        raise GraphQLError("Validation failed: Description can't be blank")
    tok.description = description
    if "allowedIpAddresses" in input:
        tok.allowed_ip_addresses = _check_ips(input["allowedIpAddresses"])
    return {"clientMutationId": input.get("clientMutationId"), "clusterAgentToken": cluster_token_view(ctx, tok)}


@counted("clusterAgentTokenRevoke")
def resolve_cluster_agent_token_revoke(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    _require_org(ctx, input["organizationId"])
    _require_admin(ctx, "revoke cluster agent tokens")
    tok = _cluster_token(ctx, input["id"])
    tok.revoked, tok.revoked_at, tok.revoked_by, tok.revoked_with = True, ctx.now, ctx.user.uuid, ctx.token.uuid
    return {"clientMutationId": input.get("clientMutationId"), "deletedClusterAgentTokenId": tok.id}


@counted("agentTokenCreate")
def resolve_agent_token_create(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    world = ctx.world
    _require_org(ctx, input["organizationID"])
    _require_admin(ctx, "create agent tokens")
    if not world.org.has_unclustered_agents:
        raise GraphQLError(
            "Unclustered agent tokens are not available to organizations created after 2024-02-26: "
            "create a cluster agent token instead"
        )
    description = input.get("description")
    tok = world.add_agent_token(
        description.strip() if isinstance(description, str) else None,
        created_by=ctx.user.uuid,
        public=bool(input.get("public", False)),
    )
    position = sorted(world.agent_token_records.values(), key=lambda t: t.created_at).index(tok) + 1
    return {
        "clientMutationId": input.get("clientMutationId"),
        "tokenValue": tok.value,
        "agentTokenEdge": {"cursor": _cursor(position), "node": agent_token_view(ctx, tok)},
        "organization": org_view(ctx),
    }


@counted("agentTokenRevoke")
def resolve_agent_token_revoke(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    world = ctx.world
    parsed = parse_node_id(input["id"])
    tok = world.agent_token_records.get(parsed[1]) if parsed and parsed[0] == "AgentToken" else None
    if tok is None or not _org_accessible(ctx):
        raise GraphQLError(f"Couldn't find an agent token with id {input['id']!r}")
    permission = _revoke_permission(ctx, tok)
    if not permission["allowed"]:
        raise GraphQLError(str(permission["message"]))
    reason = input["reason"].strip()
    if not reason:
        raise GraphQLError("Validation failed: Reason can't be blank")
    tok.revoked_at, tok.revoked_by, tok.revoked_reason, tok.revoked_with = (
        ctx.now,
        ctx.user.uuid,
        reason,
        ctx.token.uuid,
    )
    return {"clientMutationId": input.get("clientMutationId"), "agentToken": agent_token_view(ctx, tok)}


@counted("organizationApiAccessTokenRevoke")
def resolve_organization_api_access_token_revoke(
    _root: Any, info: GraphQLResolveInfo, input: dict[str, Any]
) -> dict[str, Any]:
    ctx = _ctx(info)
    world = ctx.world
    _require_org(ctx, input["organizationId"])
    _require_admin(ctx, "remove the organization from API access tokens")
    parsed = parse_node_id(input["apiAccessTokenId"])
    target = None
    if parsed and parsed[0] == "APIAccessToken":
        target = next((t for t in world.api_tokens.values() if t.uuid == parsed[1]), None)
    if target is None or target.revoked or world.org.slug not in target.organizations:
        raise GraphQLError(f"Couldn't find an API access token with id {input['apiAccessTokenId']!r}")
    target.organizations.discard(world.org.slug)
    return {"clientMutationId": input.get("clientMutationId"), "revokedApiAccessTokenId": target.id}


QUERY_RESOLVERS: dict[str, Resolver] = {
    "viewer": resolve_viewer,
    "organization": resolve_organization,
    "agent": resolve_agent,
    "agentToken": resolve_agent_token,
    "node": resolve_node,
}
MUTATION_RESOLVERS: dict[str, Resolver] = {
    "clusterAgentTokenCreate": resolve_cluster_agent_token_create,
    "clusterAgentTokenUpdate": resolve_cluster_agent_token_update,
    "clusterAgentTokenRevoke": resolve_cluster_agent_token_revoke,
    "agentTokenCreate": resolve_agent_token_create,
    "agentTokenRevoke": resolve_agent_token_revoke,
    "organizationApiAccessTokenRevoke": resolve_organization_api_access_token_revoke,
}


# -- one request -------------------------------------------------------------------------------------


def _errors(*messages: str) -> dict[str, Any]:
    return {"errors": [{"message": m} for m in messages]}


@lru_cache(maxsize=256)
def _checked_document(query: str) -> tuple[DocumentNode | None, list[dict[str, Any]]]:
    """Parse and validate once per distinct document (clients send the same few again and again)."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return None, [dict(exc.formatted)]
    problems = validate(buildkite_schema(), document)
    if problems:
        return None, [dict(e.formatted) for e in problems]
    return document, []


def execute_request(world: BuildkiteWorld, token: ApiAccessToken, body: Any) -> tuple[int, dict[str, Any], list[str]]:
    """Run one GraphQL request body for an authenticated token: (HTTP status, JSON payload, emulator bugs)."""
    if not isinstance(body, dict):
        return 400, _errors("The request body must be a JSON object"), []
    query = body.get("query")
    if query is None or query == "":
        return 200, _errors("No query string was present"), []
    if not isinstance(query, str):
        return 200, _errors("query must be a string"), []
    variables = body.get("variables")
    if isinstance(variables, str):  # Buildkite's own curl example sends "variables": "{ }"
        try:
            variables = json.loads(variables) if variables.strip() else {}
        except json.JSONDecodeError as exc:
            return 200, _errors(f"variables is not valid JSON: {exc}"), []
    if variables is not None and not isinstance(variables, dict):
        return 200, _errors("variables must be a JSON object"), []
    operation_name = body.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        return 200, _errors("operationName must be a string"), []
    schema = buildkite_schema()
    document, problems = _checked_document(query)
    if document is None:
        with world.lock:
            world.counters["graphql.invalid"] += 1
        return 200, {"errors": problems}, []
    with world.lock:
        ctx = Context(world, token, world.users[token.user_uuid], world.clock())
        result: ExecutionResult = execute_sync(
            schema,
            document,
            variable_values=variables,
            operation_name=operation_name,
            context_value=ctx,
            field_resolver=field_resolver,
        )
    payload: dict[str, Any] = {}
    if result.data is not None:
        payload["data"] = result.data
    bugs: list[str] = []
    if result.errors:
        payload["errors"] = [dict(e.formatted) for e in result.errors]
        for e in result.errors:
            if (e.original_error is not None and not isinstance(e.original_error, GraphQLError)) or (
                e.message.startswith("Cannot return null for non-nullable field")
            ):
                bugs.append(f"buildkite-graphql: {e.message} at {e.path}")
    if result.data is None and not result.errors:  # pragma: no cover - graphql-core always says why
        payload["data"] = None
    return 200, payload, bugs
