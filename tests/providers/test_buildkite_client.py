"""Buildkite providers' edge cases behind httpx.MockTransport: errors in 200, scopes, 429, ambiguity, expiry, canary."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.config import Account, Target
from app.errors import AmbiguousResultError, KeyturnError, ProviderError
from app.secret import SecretValue
from providers.base import Interaction, MintRequest, Provider, RotationContext, TokenInfo
from providers.buildkite.agent_tokens import UnclusteredAgentTokenProvider
from providers.buildkite.api_token import ApiAccessTokenProvider
from providers.buildkite.cluster_tokens import ClusterAgentTokenProvider
from providers.buildkite.common import BuildkiteBase
from providers.buildkite.provider import make_buildkite_provider

CANARY = "bkua_CANARY0123456789abcdef0123456789abcdef"
GQL = "https://graphql.example.test/v1"
REST = "https://api.example.test"
ORG_ID = "T3JnYW5pemF0aW9uLS0tb3Jn"
CLUSTER = {"id": "Q2x1c3Rlci0tLWMx", "uuid": "c1", "name": "linux", "description": None}

Handler = Callable[[httpx.Request], httpx.Response]


def gql_ok(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"data": data}, headers=headers)


def gql_err(message: str, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"message": message}]}, headers=headers)


class Fake:
    """Routes by operation name (GraphQL) or method+path (REST); records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []
        self.ops: dict[str, list[Handler] | Handler] = {}
        self.rest: dict[str, Handler] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1":
            body = json.loads(request.content)
            self.bodies.append(body)
            handler = self.ops[body["operationName"]]
            if isinstance(handler, list):
                handler = handler.pop(0) if len(handler) > 1 else handler[0]
            return handler(request)
        return self.rest[f"{request.method} {request.url.path}"](request)

    def sent(self, op: str) -> list[dict[str, Any]]:
        return [b for b in self.bodies if b["operationName"] == op]


def provider(fake: Fake, secrets: dict[str, str] | None = None, **target: Any) -> tuple[BuildkiteBase, list[float]]:
    values = {"env:BK": CANARY, **(secrets or {})}
    account = Account(platform="buildkite", organization="org", api_token="env:BK", graphql_url=GQL, rest_url=REST)
    sleeps: list[float] = []
    p = make_buildkite_provider(
        "bk",
        account,
        "t",
        Target(account="bk", token_name="agents", **target),
        ca_bundle=None,
        resolve_secret=lambda ref: SecretValue(values[ref]),
        interaction=Interaction(),
        transport=httpx.MockTransport(fake),
        sleep=sleeps.append,
    )
    return p, sleeps


def cluster_fake() -> Fake:
    f = Fake()
    f.ops["GetOrganizationId"] = lambda r: gql_ok({"organization": {"id": ORG_ID, "uuid": "o", "slug": "org", "name": "Org"}})
    f.ops["ListClusters"] = lambda r: gql_ok(
        {"organization": {"clusters": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "edges": [{"node": CLUSTER}]}}}
    )
    return f


def test_errors_inside_200_become_one_line() -> None:
    f = cluster_fake()
    f.ops["ListClusterAgentTokens"] = lambda r: gql_err("Something\nwent wrong " + CANARY)
    p, _ = provider(f, token_type="cluster-agent-token", cluster="linux")
    with pytest.raises(ProviderError) as err:
        p.list_tokens()
    assert str(err.value).endswith("Something went wrong <redacted>")
    assert "\n" not in str(err.value)


def test_refused_graphql_asks_rest_for_scopes() -> None:
    f = Fake()
    f.ops["GetOrganizationId"] = lambda r: gql_err("Authentication required. Please supply a valid API Access Token", 401)
    f.rest["GET /v2/access-token"] = lambda r: httpx.Response(200, json={"uuid": "u", "scopes": ["read_agents"]})
    p, _ = provider(f, token_type="unclustered-agent-token")
    with pytest.raises(ProviderError, match=r"lacks GraphQL access .scope 'graphql' missing") as err:
        p.sign_in()
    assert "Authentication required" not in str(err.value)
    assert f.requests[-1].headers["Authorization"] == f"Bearer {CANARY}"


def test_refused_token_unknown_everywhere() -> None:
    f = Fake()
    f.ops["GetOrganizationId"] = lambda r: gql_err("Authentication required", 401)
    f.rest["GET /v2/access-token"] = lambda r: httpx.Response(401, json={"message": "Authentication required"})
    p, _ = provider(f, token_type="unclustered-agent-token")
    with pytest.raises(ProviderError, match="unknown, revoked or expired"):
        p.sign_in()


def test_429_query_waits_reset_capped_and_retries() -> None:
    f = cluster_fake()
    f.ops["ListClusters"] = [
        lambda r: gql_err("exceeded", 429, {"RateLimit-Reset": "500", "RateLimit-Remaining": "0"}),
        cluster_fake().ops["ListClusters"],  # type: ignore[list-item]
    ]
    f.ops["ListClusterAgentTokens"] = lambda r: gql_ok(
        {"organization": {"cluster": {**CLUSTER, "agentTokens": {"count": 0, "pageInfo": {"hasNextPage": False}, "edges": []}}}}
    )
    p, sleeps = provider(f, token_type="cluster-agent-token", cluster="linux")
    assert p.list_tokens() == []
    assert sleeps == [60.0]
    assert len(f.sent("ListClusters")) == 2


def test_429_mutation_is_not_retried() -> None:
    f = cluster_fake()
    f.ops["ClusterAgentTokenCreate"] = lambda r: gql_err("exceeded", 429, {"RateLimit-Reset": "7"})
    p, sleeps = provider(f, token_type="cluster-agent-token", cluster="linux")
    with pytest.raises(ProviderError, match="rate limiting") as err:
        p.mint(MintRequest("new", (), None))
    assert not isinstance(err.value, AmbiguousResultError)
    assert "try again in 7 s" in str(err.value)
    assert len(f.sent("ClusterAgentTokenCreate")) == 1 and sleeps == []


@pytest.mark.parametrize("failure", ["500", "timeout", "reset"])
def test_mutation_failure_is_ambiguous_and_not_retried(failure: str) -> None:
    f = cluster_fake()

    def boom(r: httpx.Request) -> httpx.Response:
        if failure == "timeout":
            raise httpx.ReadTimeout("slow", request=r)
        if failure == "reset":
            raise httpx.RemoteProtocolError("reset", request=r)
        return httpx.Response(502, text="<html>bad gateway</html>")

    f.ops["ClusterAgentTokenCreate"] = boom
    p, _ = provider(f, token_type="cluster-agent-token", cluster="linux")
    with pytest.raises(AmbiguousResultError, match="may or may not"):
        p.mint(MintRequest("new", (), None))
    assert len(f.sent("ClusterAgentTokenCreate")) == 1


def test_query_5xx_is_retried() -> None:
    f = cluster_fake()
    f.ops["GetOrganizationId"] = [lambda r: httpx.Response(503, text="down"), f.ops["GetOrganizationId"]]  # type: ignore[list-item]
    p, sleeps = provider(f, token_type="unclustered-agent-token")
    p.sign_in()
    assert sleeps == [1.0]


def test_expiry_under_ten_minutes_refused_before_any_call() -> None:
    f = cluster_fake()
    p, _ = provider(f, token_type="cluster-agent-token", cluster="linux")
    with pytest.raises(ProviderError, match="less than 10 minutes ahead") as err:
        p.mint(MintRequest("new", (), datetime.now(UTC) + timedelta(minutes=5)))
    assert "\n" not in str(err.value) and f.requests == []


def test_null_is_never_sent_and_expiry_is_when_given() -> None:
    f = cluster_fake()
    node = {"id": "Q1QtLS10MQ==", "uuid": "t1", "description": "new", "expiresAt": None, "allowedIpAddresses": None,
            "cluster": CLUSTER}
    f.ops["ClusterAgentTokenCreate"] = lambda r: gql_ok(
        {"clusterAgentTokenCreate": {"tokenValue": "bkct_x.secret", "clusterAgentToken": node}}
    )
    p, _ = provider(f, token_type="cluster-agent-token", cluster="linux", validity_days=None)
    p.mint(MintRequest("new", (), None))
    variables = f.sent("ClusterAgentTokenCreate")[0]["variables"]
    assert "expiresAt" not in variables and "allowedIpAddresses" not in variables
    assert None not in variables.values()
    assert variables["organizationId"] == ORG_ID and variables["clusterId"] == CLUSTER["id"]
    p.mint(MintRequest("new", (), datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)))
    assert f.sent("ClusterAgentTokenCreate")[1]["variables"]["expiresAt"] == "2099-01-02T03:04:05Z"
    for body in f.bodies:
        assert "null" not in json.dumps(body.get("variables", {}))


def test_cluster_paging_follows_cursor() -> None:
    f = cluster_fake()
    pages = [
        {"pageInfo": {"hasNextPage": True, "endCursor": "c1"}, "edges": [{"node": {**CLUSTER, "name": "a", "uuid": "a"}}]},
        {"pageInfo": {"hasNextPage": False, "endCursor": None}, "edges": [{"node": CLUSTER}]},
    ]
    f.ops["ListClusters"] = [lambda r, pg=pg: gql_ok({"organization": {"clusters": pg}}) for pg in pages]  # type: ignore[misc]
    f.ops["ClusterAgentTokenRevoke"] = lambda r: gql_ok({"clusterAgentTokenRevoke": {"deletedClusterAgentTokenId": "x"}})
    f.ops["ListClusterAgentTokens"] = lambda r: gql_ok(
        {"organization": {"cluster": {**CLUSTER, "agentTokens": {"count": 0, "pageInfo": {"hasNextPage": False}, "edges": []}}}}
    )
    p, _ = provider(f, token_type="cluster-agent-token", cluster="c1")
    p.list_tokens()
    assert f.sent("ListClusters")[1]["variables"]["after"] == "c1"
    assert f.sent("ListClusterAgentTokens")[0]["variables"]["clusterId"] == "c1"


def api_fake(scopes: list[str], uuid: str = "new-uuid") -> Fake:
    f = Fake()
    f.rest["GET /v2/access-token"] = lambda r: httpx.Response(200, json={"uuid": uuid, "scopes": scopes, "description": "c1"})
    return f


@pytest.mark.parametrize(("pasted", "kind"), [("bkct_abc.def", "cluster agent token"), ("bkar_abc", "agent access token")])
def test_pasted_agent_token_refused(pasted: str, kind: str) -> None:
    f = api_fake([])
    p, _ = provider(f, token_type="api-access-token", preset="conductorone")
    with pytest.raises(KeyturnError, match=kind) as err:
        p.mint(MintRequest("c1", (), None), RotationContext(paste=lambda url: SecretValue(pasted)))
    assert pasted not in str(err.value) and f.requests == []


def test_scope_mismatch_names_missing_and_extra() -> None:
    f = api_fake(["read_teams", "write_builds"])
    p, _ = provider(f, token_type="api-access-token", preset="conductorone")
    ctx = RotationContext(paste=lambda url: SecretValue(CANARY))
    with pytest.raises(ProviderError) as err:
        p.mint(MintRequest("c1", ("read_teams", "read_organizations", "read_user"), None), ctx)
    msg = str(err.value)
    assert "missing read_organizations, read_user, GraphQL access; extra write_builds" in msg
    assert CANARY not in msg and "api-access-tokens/new" in msg


def test_no_paste_no_new_token_explains_creation_page() -> None:
    p, _ = provider(Fake(), token_type="api-access-token", preset="conductorone")
    with pytest.raises(KeyturnError, match="no API that creates") as err:
        p.mint(MintRequest("ConductorOne connector", (), None))
    url = p.creation_url("ConductorOne connector")
    assert url == (
        "https://buildkite.com/user/api-access-tokens/new?description=ConductorOne%20connector"
        "&scopes%5B%5D=read_teams&scopes%5B%5D=read_organizations&scopes%5B%5D=read_user&scopes%5B%5D=graphql"
    )
    assert url in str(err.value)


def test_revoke_api_token_uses_old_value_and_checks_id() -> None:
    old = "bkua_old000000000000000000000000000000000"
    f = api_fake(["read_teams"], uuid="old-uuid")
    f.rest["DELETE /v2/access-token"] = lambda r: httpx.Response(204)
    p, _ = provider(f, {"env:OLD": old}, token_type="api-access-token", preset="conductorone", old_token="env:OLD")
    with pytest.raises(ProviderError, match="refusing"):
        p.revoke("other-uuid")
    assert all(r.method == "GET" for r in f.requests)
    p.revoke("old-uuid")
    assert f.requests[-1].method == "DELETE" and f.requests[-1].headers["Authorization"] == f"Bearer {old}"


def test_unclustered_revoke_not_allowed_is_clear() -> None:
    f = Fake()
    node = {"id": "QVQtLS14", "uuid": "x", "description": "locked", "public": False, "createdAt": None, "revokedAt": None,
            "revokedReason": None,
            "permissions": {"agentTokenRevoke": {"allowed": False, "code": "forbidden", "message": "Only admins may"}}}
    f.ops["ListAgentTokens"] = lambda r: gql_ok(
        {"organization": {"agentTokens": {"count": 1, "pageInfo": {"hasNextPage": False}, "edges": [{"node": node}]}}}
    )
    p, _ = provider(f, token_type="unclustered-agent-token")
    with pytest.raises(ProviderError, match=r"does not allow revoking agent token x .locked.: Only admins may"):
        p.revoke("QVQtLS14")
    assert f.sent("AgentTokenRevoke") == []


def test_canary_never_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    f = cluster_fake()
    f.ops["ClusterAgentTokenCreate"] = lambda r: gql_ok(
        {"clusterAgentTokenCreate": {"tokenValue": CANARY + "x", "clusterAgentToken": {
            "id": "i", "uuid": "u", "description": "d", "expiresAt": None, "allowedIpAddresses": None, "cluster": CLUSTER}}}
    )
    p, _ = provider(f, token_type="cluster-agent-token", cluster="linux")
    minted = p.mint(MintRequest("new", (), None))
    assert minted.value.reveal() == CANARY + "x"
    assert CANARY not in caplog.text and CANARY not in repr(minted)
    assert "ClusterAgentTokenCreate -> 200" in caplog.text


@pytest.mark.parametrize(
    ("token_type", "cls", "has_clusters", "made_by_hand"),
    [
        (None, ClusterAgentTokenProvider, True, False),
        ("cluster-agent-token", ClusterAgentTokenProvider, True, False),
        ("unclustered-agent-token", UnclusteredAgentTokenProvider, False, False),
        ("api-access-token", ApiAccessTokenProvider, False, True),
    ],
)
def test_one_class_per_token_kind(token_type: str | None, cls: type, has_clusters: bool, made_by_hand: bool) -> None:
    p, _ = provider(Fake(), token_type=token_type, cluster="linux")
    assert type(p) is cls and isinstance(p, Provider)
    assert p.platform == "buildkite" and p.token_kind == (token_type or "cluster-agent-token")
    assert (p.HAS_CLUSTERS, p.MADE_BY_HAND) == (has_clusters, made_by_hand)


def test_unknown_token_kind_is_refused() -> None:
    with pytest.raises(KeyturnError, match="'pat' is not a Buildkite token type"):
        provider(Fake(), token_type="pat")


def test_unclustered_revoke_reason_comes_from_the_rotation() -> None:
    f = Fake()
    node = {"id": "QVQtLS14", "uuid": "x", "description": "old", "public": False, "createdAt": None, "revokedAt": None,
            "revokedReason": None, "permissions": {"agentTokenRevoke": {"allowed": True}}}
    f.ops["ListAgentTokens"] = lambda r: gql_ok(
        {"organization": {"agentTokens": {"count": 1, "pageInfo": {"hasNextPage": False}, "edges": [{"node": node}]}}}
    )
    f.ops["AgentTokenRevoke"] = lambda r: gql_ok({"agentTokenRevoke": {"agentToken": {**node, "revokedAt": "2026-01-01T00:00:00Z"}}})
    p, _ = provider(f, token_type="unclustered-agent-token")
    p.revoke("QVQtLS14", RotationContext(rotation_id="r-1"))
    p.revoke("QVQtLS14")  # outside a rotation: the reason names the target
    assert [b["variables"]["reason"] for b in f.sent("AgentTokenRevoke")] == [
        "rotated by keyturn (rotation r-1)",
        "rotated by keyturn (target t)",
    ]


def test_api_token_old_value_on_resume_comes_from_the_stores_previous_values() -> None:
    """Resumed after the store step: old_token's reference already holds the new value; the old value is what the
    stores held before (ctx.previous_values), and the new token revokes itself only with ctx.value."""
    old, new = "bkua_old000000000000000000000000000000000", "bkua_new000000000000000000000000000000000"
    uuids = {f"Bearer {old}": "old-uuid", f"Bearer {new}": "new-uuid"}
    f = Fake()
    f.rest["GET /v2/access-token"] = lambda r: httpx.Response(200, json={"uuid": uuids[r.headers["Authorization"]], "scopes": []})
    f.rest["DELETE /v2/access-token"] = lambda r: httpx.Response(204)
    p, _ = provider(f, {"env:OLD": new}, token_type="api-access-token", preset="conductorone", old_token="env:OLD")
    minted = TokenInfo(id="new-uuid", name="c1", expires_at=None)
    resumed = RotationContext(rotation_id="r", minted=minted, minted_fingerprint=SecretValue(new).fingerprint,
                              previous_values=lambda: [SecretValue(new), SecretValue(old)])
    assert [t.id for t in p.list_tokens(resumed)] == ["old-uuid"]
    assert p.get_token("old-uuid", resumed) is not None
    with pytest.raises(ProviderError, match="refusing"):  # without the value, the new token is not this rotation's to revoke
        p.revoke("new-uuid", resumed)
    p.revoke("old-uuid", resumed)
    assert f.requests[-1].method == "DELETE" and f.requests[-1].headers["Authorization"] == f"Bearer {old}"
    p.revoke("new-uuid", RotationContext(rotation_id="r", minted=minted, value=SecretValue(new)))
    assert f.requests[-1].method == "DELETE" and f.requests[-1].headers["Authorization"] == f"Bearer {new}"
