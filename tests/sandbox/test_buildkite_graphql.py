"""The Buildkite GraphQL emulator over loopback HTTPS: Buildkite's real schema executed by graphql-core."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLSchema, OperationDefinitionNode, build_schema, parse, validate

from app.sandbox.buildkite import (
    GRAPHQL_AUTH_MESSAGE,
    SCHEMA_PATH,
    BuildkiteStandalone,
    parse_node_id,
)

OPERATIONS_PATH = Path(__file__).resolve().parents[2] / "app" / "sandbox" / "contracts" / "buildkite" / "operations.graphql"
OPERATIONS = OPERATIONS_PATH.read_text(encoding="utf-8")
ORG = "contoso-sandbox"


@pytest.fixture
def bk(tmp_path: Path) -> Iterator[BuildkiteStandalone]:
    with BuildkiteStandalone(tmp_path / "bk") as servers:
        yield servers
    assert servers.state.internal_errors == [], "the emulator itself failed"


@pytest.fixture
def http(bk: BuildkiteStandalone) -> Iterator[httpx.Client]:
    with httpx.Client(verify=bk.client_ssl_context(), timeout=10) as client:
        yield client


def post(
    http: httpx.Client,
    bk: BuildkiteStandalone,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    operation: str | None = None,
    token: str | None = "keyturn",
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    seeded = bk.world.seeded
    assert seeded is not None
    value = {"keyturn": seeded.keyturn_token, "connector": seeded.connector_token}.get(token or "", token)
    if value:
        headers["Authorization"] = f"Bearer {value}"
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    if operation is not None:
        body["operationName"] = operation
    return http.post(bk.graphql_url, json=body, headers=headers)


def run(http: httpx.Client, bk: BuildkiteStandalone, operation: str, **variables: Any) -> dict[str, Any]:
    """One operation of the contract's operations.graphql; asserts it ran without errors."""
    resp = post(http, bk, OPERATIONS, variables, operation=operation)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "errors" not in body, body
    return dict(body["data"])


def org_id(http: httpx.Client, bk: BuildkiteStandalone) -> str:
    return str(run(http, bk, "GetOrganizationId", slug=ORG)["organization"]["id"])


@cache
def local_schema() -> GraphQLSchema:
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))


def graphql_core_says(query: str) -> list[dict[str, Any]]:
    """What graphql-core's validate() answers for ``query`` against the vendored schema."""
    return [dict(e.formatted) for e in validate(local_schema(), parse(query))]


def cluster_gid(bk: BuildkiteStandalone, name: str) -> str:
    cluster = bk.world.cluster(name)
    assert cluster is not None
    return cluster.id


def in_minutes(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


CREATE_CLUSTER_TOKEN = """
mutation($org: ID!, $cluster: ID!, $description: String!, $expiresAt: DateTime, $ips: String) {
  clusterAgentTokenCreate(input: {organizationId: $org, clusterId: $cluster, description: $description,
                                  expiresAt: $expiresAt, allowedIpAddresses: $ips}) {
    tokenValue
    clusterAgentToken { id uuid description expiresAt allowedIpAddresses }
  }
}
"""


# -- the contract's operations -----------------------------------------------------------------------


def test_every_contract_operation_validates_and_runs(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    document = parse(OPERATIONS)
    assert validate(local_schema(), document) == []
    names = {d.name.value for d in document.definitions if isinstance(d, OperationDefinitionNode) and d.name}
    done: set[str] = set()

    def op(name: str, **variables: Any) -> dict[str, Any]:
        done.add(name)
        return run(http, bk, name, **variables)

    viewer = op("ViewerOrganizations")["viewer"]
    assert viewer["user"]["email"] == "buildkite-bot@contoso.example"
    assert [e["node"]["slug"] for e in viewer["organizations"]["edges"]] == [ORG]
    org = op("GetOrganizationId", slug=ORG)["organization"]
    assert parse_node_id(org["id"]) == ("Organization", org["uuid"])

    clusters = op("ListClusters", slug=ORG)["organization"]["clusters"]
    assert clusters["count"] == 2 and not clusters["pageInfo"]["hasNextPage"]
    large = next(e["node"] for e in clusters["edges"] if e["node"]["name"] == "linux-large")

    listed = op("ListAgentTokens", slug=ORG)["organization"]["agentTokens"]
    assert listed["count"] == 2
    legacy = next(e["node"] for e in listed["edges"] if e["node"]["description"] == "Legacy macOS agents")
    assert legacy["permissions"]["agentTokenRevoke"]["allowed"] is True
    got = op("GetAgentToken", slug=f"{ORG}/{legacy['uuid']}")["agentToken"]
    assert got["id"] == legacy["id"] and got["revokedAt"] is None

    created = op("AgentTokenCreate", organizationId=org["id"], description="keyturn rotation", public=False)
    new_agent = created["agentTokenCreate"]
    assert re.fullmatch(r"[0-9a-f]{64}", new_agent["tokenValue"])
    revoked = op("AgentTokenRevoke", id=legacy["id"], reason="rotated by keyturn")["agentTokenRevoke"]["agentToken"]
    assert revoked["revokedReason"] == "rotated by keyturn" and revoked["revokedAt"]

    tokens = op("ListClusterAgentTokens", slug=ORG, clusterId=large["uuid"])["organization"]["cluster"]
    assert tokens["name"] == "linux-large" and tokens["agentTokens"]["count"] == 1
    everything = op("ListClustersWithAgentTokens", slug=ORG)["organization"]["clusters"]["edges"]
    assert sum(e["node"]["agentTokens"]["count"] for e in everything) == 2

    made = op(
        "ClusterAgentTokenCreate",
        organizationId=org["id"],
        clusterId=large["id"],
        description="linux-large agents (rotated)",
        expiresAt=in_minutes(60 * 24 * 90),
        allowedIpAddresses="10.0.0.0/8 192.168.1.0/24",
    )["clusterAgentTokenCreate"]
    assert made["tokenValue"].startswith("bkct_")
    assert made["clusterAgentToken"]["cluster"]["uuid"] == large["uuid"]
    updated = op(
        "ClusterAgentTokenUpdate",
        organizationId=org["id"],
        id=made["clusterAgentToken"]["id"],
        description="linux-large agents (2026)",
        allowedIpAddresses="10.0.0.0/8",
    )["clusterAgentTokenUpdate"]["clusterAgentToken"]
    assert updated["description"] == "linux-large agents (2026)" and updated["allowedIpAddresses"] == "10.0.0.0/8"
    assert updated["expiresAt"] == made["clusterAgentToken"]["expiresAt"]  # immutable
    old_uuid = bk.world.seeded.cluster_tokens["linux-large agents"]  # type: ignore[union-attr]
    old = bk.world.cluster_token(old_uuid)
    assert old is not None
    gone = op("ClusterAgentTokenRevoke", organizationId=org["id"], id=old.id)["clusterAgentTokenRevoke"]
    assert gone["deletedClusterAgentTokenId"] == old.id

    api_tokens = op("ListOrganizationApiAccessTokens", slug=ORG)["organization"]["apiAccessTokens"]["edges"]
    scopes = {e["node"]["description"]: e["node"]["scopes"] for e in api_tokens}
    assert scopes["ConductorOne Buildkite connector"] == ["READ_TEAMS", "READ_ORGANIZATIONS", "READ_USER", "GRAPHQL"]
    connector = next(e["node"] for e in api_tokens if e["node"]["description"] == "ConductorOne Buildkite connector")
    removed = op("OrganizationApiAccessTokenRevoke", organizationId=org["id"], apiAccessTokenId=connector["id"])
    assert removed["organizationApiAccessTokenRevoke"]["revokedApiAccessTokenId"] == connector["id"]
    # the connector's token still authenticates, but the organization is out of its reach
    resp = post(http, bk, OPERATIONS, {"slug": ORG}, operation="GetOrganizationId", token="connector")
    assert resp.json() == {"data": {"organization": None}}

    assert done == names, f"operations not exercised: {sorted(names - done)}"
    counters = bk.world.counters
    assert counters["graphql.clusterAgentTokenCreate"] == 1 and counters["graphql.agentTokenRevoke"] == 1


def test_a_field_buildkite_lacks_is_rejected_as_graphql_core_words_it(
    bk: BuildkiteStandalone, http: httpx.Client
) -> None:
    query = 'query { organization(slug: "contoso-sandbox") { id agentTokens(first: 1) { edges { node { value } } } } }'
    resp = post(http, bk, query)
    assert resp.status_code == 200
    body = resp.json()
    assert "data" not in body
    assert body["errors"] == graphql_core_says(query)
    assert body["errors"][0]["message"] == "Cannot query field 'value' on type 'AgentToken'."
    assert body["errors"][0]["locations"] == [{"line": 1, "column": query.index("value") + 1}]
    # the documented sharp edges are the schema's own: no cursor on Cluster.agentTokens, organizationID
    no_cursor = (
        'query { organization(slug: "x") { cluster(id: "x") { agentTokens(first: 1, after: "MQ") { count } } } }'
    )
    body = post(http, bk, no_cursor).json()
    assert body == {"errors": graphql_core_says(no_cursor)}
    assert body["errors"][0]["message"] == "Unknown argument 'after' on field 'Cluster.agentTokens'."
    lower_d = 'mutation { agentTokenCreate(input: {organizationId: "x"}) { tokenValue } }'
    body = post(http, bk, lower_d).json()
    assert body == {"errors": graphql_core_says(lower_d)}
    assert "Did you mean 'organizationID'?" in body["errors"][-1]["message"]
    assert bk.world.counters["graphql.invalid"] == 3


def test_syntax_errors_missing_query_and_string_variables(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    broken = post(http, bk, "query { organization(slug: ")
    assert broken.status_code == 200
    assert broken.json()["errors"][0]["message"].startswith("Syntax Error:")
    headers = {"Authorization": f"Bearer {bk.world.seeded.keyturn_token}"}  # type: ignore[union-attr]
    empty = http.post(bk.graphql_url, json={"variables": {}}, headers=headers)
    assert empty.json() == {"errors": [{"message": "No query string was present"}]}
    # Buildkite's own curl example sends the variables as a JSON string
    as_string = http.post(
        bk.graphql_url,
        json={"query": "query($s: ID!) { organization(slug: $s) { slug } }", "variables": '{"s": "contoso-sandbox"}'},
        headers=headers,
    )
    assert as_string.json() == {"data": {"organization": {"slug": ORG}}}
    not_json = http.post(bk.graphql_url, content=b"{nope", headers=headers)
    assert not_json.status_code == 400


def test_fields_the_sandbox_does_not_emulate_say_so(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    resp = post(http, bk, 'query { organization(slug: "contoso-sandbox") { slug pipelines(first: 1) { count } } }')
    body = resp.json()
    assert body["data"] == {"organization": {"slug": ORG, "pipelines": None}}
    assert body["errors"][0]["message"] == "The keyturn sandbox does not emulate Organization.pipelines"
    assert body["errors"][0]["path"] == ["organization", "pipelines"]
    root = post(
        http,
        bk,
        'mutation { pipelineCreate(input: {organizationId: "x", name: "p", repository: {url: "u"}}) { clientMutationId } }',
    )
    assert "does not emulate Mutation.pipelineCreate" in root.json()["errors"][0]["message"]


# -- paging ------------------------------------------------------------------------------------------


def test_clusters_page_with_first_and_after(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    names: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        variables: dict[str, Any] = {"slug": ORG, "first": 1}
        if after is not None:
            variables["after"] = after
        conn = run(http, bk, "ListClusters", **variables)["organization"]["clusters"]
        pages += 1
        assert conn["count"] == 2 and len(conn["edges"]) == 1
        names += [e["node"]["name"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert pages == 2 and names == ["Default cluster", "linux-large"]
    newest_first = post(
        http,
        bk,
        'query { organization(slug: "contoso-sandbox") { clusters(first: 5, order: RECENTLY_CREATED) { edges { node { name } } } } }',
    )
    edges = newest_first.json()["data"]["organization"]["clusters"]["edges"]
    assert [e["node"]["name"] for e in edges] == ["linux-large", "Default cluster"]
    bad = run_raw = post(http, bk, OPERATIONS, {"slug": ORG, "after": "@@"}, operation="ListClusters")
    assert run_raw.status_code == 200 and bad.json()["errors"][0]["message"] == "Invalid cursor: '@@'"


def test_token_lists_have_first_but_no_cursor(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    default = bk.world.cluster("Default cluster")
    assert default is not None
    for i in range(2):
        bk.world.add_cluster_token(default.uuid, f"extra {i}", created_by=None)
    conn = run(http, bk, "ListClusterAgentTokens", slug=ORG, clusterId=default.uuid, first=2)["organization"]["cluster"]
    tokens = conn["agentTokens"]
    assert tokens["count"] == 3 and len(tokens["edges"]) == 2 and tokens["pageInfo"]["hasNextPage"] is True
    # cluster(id:) takes the cluster's UUID, not its GraphQL id
    by_gid = run(http, bk, "ListClusterAgentTokens", slug=ORG, clusterId=default.id)
    assert by_gid["organization"]["cluster"] is None
    unrevoked = run(http, bk, "ListAgentTokens", slug=ORG, first=1, revoked=False)["organization"]["agentTokens"]
    assert unrevoked["count"] == 2 and len(unrevoked["edges"]) == 1


# -- cluster agent tokens ----------------------------------------------------------------------------


def test_cluster_token_create_shows_the_value_once_and_revoke_deletes(
    bk: BuildkiteStandalone, http: httpx.Client
) -> None:
    oid = org_id(http, bk)
    large = bk.world.cluster("linux-large")
    assert large is not None
    resp = post(
        http,
        bk,
        CREATE_CLUSTER_TOKEN,
        {"org": oid, "cluster": large.id, "description": "keyturn", "expiresAt": in_minutes(60), "ips": "10.1.0.0/16"},
    )
    created = resp.json()["data"]["clusterAgentTokenCreate"]
    value = created["tokenValue"]
    assert re.fullmatch(r"bkct_[A-Za-z0-9]+\.[1-9A-HJ-NP-Za-km-z]{70}", value)
    token = created["clusterAgentToken"]
    assert base64.b64decode(token["id"]).decode() == f"ClusterToken---{token['uuid']}"
    assert token["allowedIpAddresses"] == "10.1.0.0/16" and token["expiresAt"].endswith("Z")
    record = bk.world.cluster_token(token["uuid"])
    assert record is not None and record.value == value and record.created_by is not None
    assert bk.world.token_status(value) == "active"
    # listing never shows the value again (the deprecated `token` field is empty)
    listed = post(
        http,
        bk,
        "query($s: ID!, $c: ID!) { organization(slug: $s) { cluster(id: $c) { agentTokens(first: 10) { edges { node { uuid token } } } } } }",
        {"s": ORG, "c": large.uuid},
    )
    edges = listed.json()["data"]["organization"]["cluster"]["agentTokens"]["edges"]
    assert {"uuid": token["uuid"], "token": ""} in [e["node"] for e in edges]
    assert value not in listed.text

    revoke = run(http, bk, "ClusterAgentTokenRevoke", organizationId=oid, id=token["id"])
    assert revoke["clusterAgentTokenRevoke"]["deletedClusterAgentTokenId"] == token["id"]
    record = bk.world.cluster_token(token["uuid"])
    assert record is not None and record.revoked and record.revoked_by is not None
    assert record.revoked_with == bk.world.api_token(bk.world.seeded.keyturn_token).uuid  # type: ignore[union-attr]
    assert bk.world.token_status(value) == "revoked"
    assert token["uuid"] not in [t.uuid for t in bk.world.cluster_tokens("linux-large")]
    again = post(http, bk, OPERATIONS, {"organizationId": oid, "id": token["id"]}, operation="ClusterAgentTokenRevoke")
    body = again.json()
    assert body["data"] == {"clusterAgentTokenRevoke": None}
    assert body["errors"][0]["message"].startswith("Couldn't find a cluster agent token")
    assert bk.world.counters["graphql.clusterAgentTokenRevoke.rejected"] == 1


def test_expires_at_must_be_ten_minutes_ahead_and_not_null(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    oid = org_id(http, bk)
    cid = cluster_gid(bk, "Default cluster")
    before = len(bk.world.cluster_tokens(include_revoked=True))
    base = {"org": oid, "cluster": cid, "description": "too soon"}

    soon = post(http, bk, CREATE_CLUSTER_TOKEN, {**base, "expiresAt": in_minutes(9)}).json()
    assert soon["data"] == {"clusterAgentTokenCreate": None}
    assert soon["errors"][0]["message"] == "Validation failed: Expires at must be at least 10 minutes in the future"
    assert soon["errors"][0]["path"] == ["clusterAgentTokenCreate"] and soon["errors"][0]["locations"]

    null = post(http, bk, CREATE_CLUSTER_TOKEN, {**base, "expiresAt": None}).json()
    assert null["errors"][0]["message"].startswith("expiresAt can't be null")

    garbage = post(http, bk, CREATE_CLUSTER_TOKEN, {**base, "expiresAt": "next tuesday"}).json()
    assert "data" not in garbage
    assert garbage["errors"][0]["message"] == (
        "Variable '$expiresAt' has invalid value: 'next tuesday' is not an ISO-8601 date and time"
    )

    bad_ips = post(http, bk, CREATE_CLUSTER_TOKEN, {**base, "ips": "10.0.0.0/8 not-an-ip"}).json()
    assert "not-an-ip" in bad_ips["errors"][0]["message"]
    assert len(bk.world.cluster_tokens(include_revoked=True)) == before

    never = post(http, bk, CREATE_CLUSTER_TOKEN, {**base, "description": "no expiry"}).json()
    assert never["data"]["clusterAgentTokenCreate"]["clusterAgentToken"]["expiresAt"] is None
    eleven = post(http, bk, CREATE_CLUSTER_TOKEN, {**base, "expiresAt": in_minutes(11)}).json()
    assert eleven["data"]["clusterAgentTokenCreate"]["clusterAgentToken"]["expiresAt"]
    # the emulator's clock moves: the token expires for agents, and stays listed
    uuid = eleven["data"]["clusterAgentTokenCreate"]["clusterAgentToken"]["uuid"]
    value = eleven["data"]["clusterAgentTokenCreate"]["tokenValue"]
    bk.state.advance_clock(timedelta(minutes=12))
    assert bk.world.token_status(value) == "expired"
    assert uuid in [t.uuid for t in bk.world.cluster_tokens("Default cluster")]
    # expiresAt is immutable: the update input has no such field
    update = (
        'mutation($o: ID!, $i: ID!) { clusterAgentTokenUpdate(input: {organizationId: $o, id: $i, description: "d",'
        ' expiresAt: "2030-01-01T00:00:00Z"}) { clientMutationId } }'
    )
    upd = post(http, bk, update, {"o": oid, "i": "x"}).json()
    assert upd == {"errors": graphql_core_says(update)}
    assert "not to include unknown field 'expiresAt'" in upd["errors"][0]["message"]
    assert bk.world.counters["graphql.clusterAgentTokenCreate.rejected"] == 3


# -- unclustered agent tokens ------------------------------------------------------------------------


def test_unclustered_token_create_and_revoke(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    oid = org_id(http, bk)
    created = run(http, bk, "AgentTokenCreate", organizationId=oid, description="Rotated macOS agents")
    payload = created["agentTokenCreate"]
    node = payload["agentTokenEdge"]["node"]
    assert node["public"] is False and node["description"] == "Rotated macOS agents"
    record = bk.world.agent_token(node["uuid"])
    assert record is not None and record.value == payload["tokenValue"] and not record.revoked

    revoked = run(http, bk, "AgentTokenRevoke", id=node["id"], reason="keyturn rotation r-1")
    token = revoked["agentTokenRevoke"]["agentToken"]
    assert token["revokedReason"] == "keyturn rotation r-1"
    record = bk.world.agent_token(node["uuid"])
    assert record is not None and record.revoked and record.revoked_reason == "keyturn rotation r-1"
    bot = bk.world.user(record.revoked_by or "")
    assert bot is not None and bot.email == "buildkite-bot@contoso.example"
    assert bk.world.token_status(payload["tokenValue"]) == "revoked"
    # still listed, with revokedAt; `revoked: false` filters it out
    listed = run(http, bk, "ListAgentTokens", slug=ORG, revoked=False)["organization"]["agentTokens"]["edges"]
    assert node["uuid"] not in [e["node"]["uuid"] for e in listed]
    again = post(http, bk, OPERATIONS, {"id": node["id"], "reason": "again"}, operation="AgentTokenRevoke").json()
    assert again["errors"][0]["message"] == "This agent token has already been revoked"


def test_agent_token_revoke_needs_a_reason(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    uuid = bk.world.seeded.agent_tokens["Legacy macOS agents"]  # type: ignore[union-attr]
    gid = bk.world.agent_token(uuid).id  # type: ignore[union-attr]
    no_reason = "mutation($id: ID!) { agentTokenRevoke(input: {id: $id}) { clientMutationId } }"
    missing = post(http, bk, no_reason, {"id": gid}).json()
    assert missing == {"errors": graphql_core_says(no_reason)}
    assert missing["errors"][0]["message"] == (
        "Expected value of type 'AgentTokenRevokeInput' to include required field 'reason', found: { id: $id }."
    )
    null = post(http, bk, OPERATIONS, {"id": gid, "reason": None}, operation="AgentTokenRevoke").json()
    assert null["errors"][0]["message"] == (
        "Variable '$reason' has invalid value: Expected value of non-null type 'String!' not to be None."
    )
    blank = post(http, bk, OPERATIONS, {"id": gid, "reason": "  "}, operation="AgentTokenRevoke").json()
    assert blank["errors"][0]["message"] == "Validation failed: Reason can't be blank"
    assert bk.world.agent_token(uuid).revoked is False  # type: ignore[union-attr]


def test_revoke_permission_false_is_honoured(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    uuid = bk.world.seeded.agent_tokens["Default agent token"]  # type: ignore[union-attr]
    listed = run(http, bk, "ListAgentTokens", slug=ORG)["organization"]["agentTokens"]["edges"]
    perm = next(e["node"]["permissions"]["agentTokenRevoke"] for e in listed if e["node"]["uuid"] == uuid)
    assert perm == {"allowed": False, "code": "not_allowed", "message": "This agent token can't be revoked"}
    gid = bk.world.agent_token(uuid).id  # type: ignore[union-attr]
    refused = post(http, bk, OPERATIONS, {"id": gid, "reason": "rotation"}, operation="AgentTokenRevoke").json()
    assert refused["data"] == {"agentTokenRevoke": None}
    assert refused["errors"][0]["message"] == "This agent token can't be revoked"
    assert not bk.world.agent_token(uuid).revoked  # type: ignore[union-attr]
    assert bk.world.counters["graphql.agentTokenRevoke.rejected"] == 1
    bk.world.set_revoke_allowed(uuid, True)
    run(http, bk, "AgentTokenRevoke", id=gid, reason="rotation")
    assert bk.world.agent_token(uuid).revoked  # type: ignore[union-attr]


def test_node_and_agent_token_lookups(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    uuid = bk.world.seeded.cluster_tokens["Default cluster agents"]  # type: ignore[union-attr]
    gid = bk.world.cluster_token(uuid).id  # type: ignore[union-attr]
    node = post(
        http,
        bk,
        "query($id: ID!) { node(id: $id) { id ... on ClusterToken { description expiresAt cluster { name } } } }",
        {"id": gid},
    )
    data = node.json()["data"]["node"]
    assert data["description"] == "Default cluster agents" and data["cluster"]["name"] == "Default cluster"
    assert datetime.fromisoformat(data["expiresAt"]) < datetime.now(UTC) + timedelta(days=6)  # expires soon
    assert post(http, bk, 'query { node(id: "bm9wZQ==") { id } }').json() == {"data": {"node": None}}
    missing = run(http, bk, "GetAgentToken", slug=f"{ORG}/00000000-0000-0000-0000-000000000000")
    assert missing == {"agentToken": None}


# -- who may call ------------------------------------------------------------------------------------


def test_authentication_errors(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    query = "query { viewer { user { name } } }"
    expected = {"errors": [{"message": GRAPHQL_AUTH_MESSAGE}]}
    for token in (None, "bkua_" + "0" * 40):
        resp = post(http, bk, query, token=token)
        assert resp.status_code == 401 and resp.json() == expected
    bk.world.set_graphql_access(bk.world.seeded.connector_token, False)  # type: ignore[union-attr]
    no_graphql = post(http, bk, query, token="connector")
    assert no_graphql.status_code == 401 and no_graphql.json() == expected
    bk.world.revoke_api_token(bk.world.seeded.keyturn_token)  # type: ignore[union-attr]
    assert post(http, bk, query).status_code == 401
    assert bk.world.counters["graphql.unauthenticated"] == 4
    assert http.get(bk.graphql_url).status_code == 405


def test_a_member_that_is_not_admin_may_read_but_not_manage(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    viewer = post(http, bk, "query { viewer { user { name } } }", token="connector").json()
    assert viewer == {"data": {"viewer": {"user": {"name": "ConductorOne Connector"}}}}
    oid = org_id(http, bk)
    resp = post(
        http,
        bk,
        CREATE_CLUSTER_TOKEN,
        {"org": oid, "cluster": cluster_gid(bk, "linux-large"), "description": "x"},
        token="connector",
    ).json()
    assert resp["errors"][0]["message"] == "You must be an organization administrator to create cluster agent tokens"
    listed = post(http, bk, OPERATIONS, {"slug": ORG}, operation="ListAgentTokens", token="connector").json()
    perms = [
        e["node"]["permissions"]["agentTokenRevoke"] for e in listed["data"]["organization"]["agentTokens"]["edges"]
    ]
    assert all(p["allowed"] is False and p["code"] == "not_admin" for p in perms)
    audit = post(http, bk, OPERATIONS, {"slug": ORG}, operation="ListOrganizationApiAccessTokens", token="connector")
    assert "administrator" in audit.json()["errors"][0]["message"]
    token = bk.world.api_token(bk.world.seeded.connector_token)  # type: ignore[union-attr]
    assert token is not None and token.uses == 4


def test_rate_limit_answers_429_with_headers(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    query = "query { viewer { user { uuid } } }"
    off = post(http, bk, query)
    assert off.status_code == 200 and off.headers["RateLimit-Limit"] == "20000"
    bk.world.rate_limit(True, limit=3, window=60)
    remaining = []
    for _ in range(3):
        resp = post(http, bk, query)
        assert resp.status_code == 200
        remaining.append(resp.headers["RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    limited = post(http, bk, query)
    assert limited.status_code == 429
    assert limited.headers["RateLimit-Limit"] == "3" and limited.headers["RateLimit-Remaining"] == "0"
    reset = int(limited.headers["RateLimit-Reset"])
    assert 0 < reset <= 60
    assert limited.json() == {
        "errors": [
            {
                "message": f"Your organization has exceeded the limit of 3 complexity points. Please try again in {reset} seconds."
            }
        ]
    }
    assert bk.world.counters["graphql.rate_limited"] == 1
    bk.state.advance_clock(61)
    assert post(http, bk, query).status_code == 200
    bk.world.rate_limit(False)
    for _ in range(4):
        assert post(http, bk, query).status_code == 200


# -- a real client -----------------------------------------------------------------------------------


def test_the_gql_client_with_its_httpx_transport(bk: BuildkiteStandalone) -> None:
    from gql import Client, GraphQLRequest
    from gql.transport.exceptions import TransportQueryError
    from gql.transport.httpx import HTTPXTransport

    seeded = bk.world.seeded
    assert seeded is not None
    transport = HTTPXTransport(
        url=bk.graphql_url,
        headers={"Authorization": f"Bearer {seeded.keyturn_token}"},
        verify=bk.client_ssl_context(),
        timeout=10,
    )
    # the client validates locally against the same schema before sending
    client = Client(transport=transport, schema=local_schema())
    with client as session:
        org = session.execute(
            GraphQLRequest(OPERATIONS, operation_name="GetOrganizationId", variable_values={"slug": ORG})
        )
        oid = org["organization"]["id"]
        clusters = session.execute(
            GraphQLRequest(OPERATIONS, operation_name="ListClusters", variable_values={"slug": ORG, "first": 1})
        )
        cluster = clusters["organization"]["clusters"]["edges"][0]["node"]
        created = session.execute(
            GraphQLRequest(
                OPERATIONS,
                operation_name="ClusterAgentTokenCreate",
                variable_values={"organizationId": oid, "clusterId": cluster["id"], "description": "via gql"},
            )
        )
        assert created["clusterAgentTokenCreate"]["tokenValue"].startswith("bkct_")
        assert transport.response_headers is not None and "RateLimit-Remaining" in transport.response_headers
        with pytest.raises(TransportQueryError) as info:
            session.execute(
                GraphQLRequest(
                    OPERATIONS,
                    operation_name="ClusterAgentTokenCreate",
                    variable_values={
                        "organizationId": oid,
                        "clusterId": cluster["id"],
                        "description": "too soon",
                        "expiresAt": in_minutes(5),
                    },
                )
            )
        assert "at least 10 minutes" in str(info.value)
    assert bk.world.counters["graphql.clusterAgentTokenCreate"] == 2
