"""The Buildkite REST emulator (``/v2/access-token``, the token page), seeds, value formats and the config block."""

from __future__ import annotations

import base64
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.sandbox.buildkite import (
    CONNECTOR_SCOPES,
    REST_AUTH_MESSAGE,
    BuildkiteStandalone,
    BuildkiteWorld,
    parse_node_id,
    rest_scope_names,
    seed_buildkite,
)
from app.sandbox.state import SandboxState


@pytest.fixture
def bk(tmp_path: Path) -> Iterator[BuildkiteStandalone]:
    with BuildkiteStandalone(tmp_path / "bk") as servers:
        yield servers
    assert servers.state.internal_errors == [], "the emulator itself failed"


@pytest.fixture
def http(bk: BuildkiteStandalone) -> Iterator[httpx.Client]:
    with httpx.Client(verify=bk.client_ssl_context(), timeout=10) as client:
        yield client


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def seeded(bk: BuildkiteStandalone) -> tuple[str, str]:
    s = bk.world.seeded
    assert s is not None
    return s.keyturn_token, s.connector_token


# -- /v2/access-token --------------------------------------------------------------------------------


def test_get_access_token_describes_the_calling_token(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    keyturn, connector = seeded(bk)
    resp = http.get(f"{bk.rest_url}/v2/access-token", headers=bearer(connector))
    assert resp.status_code == 200
    body = resp.json()
    record = bk.world.api_token(connector)
    assert record is not None
    assert body == {
        "uuid": record.uuid,
        "scopes": ["read_teams", "read_organizations", "read_user", "graphql"],
        "description": "ConductorOne Buildkite connector",
        "created_at": body["created_at"],
        "expires_at": None,
        "user": {"name": "ConductorOne Connector", "email": "c1-connector@contoso.example"},
    }
    created = datetime.strptime(body["created_at"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
    assert created < datetime.now(UTC)
    assert resp.headers["RateLimit-Scope"] == "rest" and resp.headers["RateLimit-Limit"] == "200"
    mine = http.get(f"{bk.rest_url}/v2/access-token", headers=bearer(keyturn)).json()
    assert mine["scopes"] == [
        "read_agents",
        "write_agents",
        "read_clusters",
        "write_clusters",
        "read_organizations",
        "read_user",
        "graphql",
    ]
    assert set(mine["scopes"]) <= set(rest_scope_names())  # the schema's APIAccessTokenScopes, lower-cased
    assert bk.world.api_token(connector).uses == 1  # type: ignore[union-attr]
    assert bk.world.counters["rest.access_token.get"] == 2


def test_delete_revokes_the_token_that_calls_it(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    keyturn, connector = seeded(bk)
    resp = http.delete(f"{bk.rest_url}/v2/access-token", headers=bearer(connector))
    assert resp.status_code == 204 and resp.content == b""
    record = bk.world.api_token(connector)
    assert record is not None and record.revoked and record.revoked_via == "rest"
    after = http.get(f"{bk.rest_url}/v2/access-token", headers=bearer(connector))
    assert after.status_code == 401 and after.json() == {"message": REST_AUTH_MESSAGE}
    assert http.delete(f"{bk.rest_url}/v2/access-token", headers=bearer(connector)).status_code == 401
    graphql = http.post(bk.graphql_url, json={"query": "{ viewer { id } }"}, headers=bearer(connector))
    assert graphql.status_code == 401
    assert bk.world.token_status(connector) == "revoked"
    # the other token is untouched
    assert http.get(f"{bk.rest_url}/v2/access-token", headers=bearer(keyturn)).status_code == 200


def test_rest_authentication_errors(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    for headers in ({}, bearer("bkua_" + "f" * 40), {"Authorization": "Basic Zm9vOmJhcg=="}):
        resp = http.get(f"{bk.rest_url}/v2/access-token", headers=headers)
        assert resp.status_code == 401 and resp.json() == {"message": REST_AUTH_MESSAGE}
        assert "RateLimit-Remaining" not in resp.headers
    expiring = bk.world.create_api_token(["read_user"], graphql=False, expires_at=bk.world.clock() + 60)
    assert http.get(f"{bk.rest_url}/v2/access-token", headers=bearer(expiring.value)).status_code == 200
    bk.state.advance_clock(61)
    assert http.get(f"{bk.rest_url}/v2/access-token", headers=bearer(expiring.value)).status_code == 401
    assert bk.world.counters["rest.unauthenticated"] == 4
    assert http.get(f"{bk.rest_url}/v2/nothing").json() == {"message": "Not Found"}
    hello = http.get(f"{bk.rest_url}/").json()
    assert set(hello) == {"message", "timestamp"}


def test_rest_rate_limit_429(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    keyturn, _ = seeded(bk)
    bk.world.rate_limit(True, limit=2, api="rest")
    for remaining in ("1", "0"):
        ok = http.get(f"{bk.rest_url}/v2/access-token", headers=bearer(keyturn))
        assert ok.status_code == 200 and ok.headers["RateLimit-Remaining"] == remaining
    limited = http.get(f"{bk.rest_url}/v2/access-token", headers=bearer(keyturn))
    assert limited.status_code == 429
    headers = limited.headers
    assert headers["RateLimit-Scope"] == "rest" and headers["RateLimit-Limit"] == "2"
    assert headers["RateLimit-Remaining"] == "0" and 0 < int(headers["RateLimit-Reset"]) <= 60
    body = limited.json()
    assert body["scope"] == "rest" and body["limit"] == 2 and body["current"] == 3
    assert body["message"].startswith("You have exceeded your API rate limit. Please wait ")
    # GraphQL has its own budget
    assert http.post(bk.graphql_url, json={"query": "{ viewer { id } }"}, headers=bearer(keyturn)).status_code == 200
    bk.state.advance_clock(60)
    assert http.get(f"{bk.rest_url}/v2/access-token", headers=bearer(keyturn)).status_code == 200


# -- the "New API Access Token" page (no API can create one) -----------------------------------------


def test_token_page_creates_a_token_with_the_requested_scopes(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    page = http.get(
        f"{bk.rest_url}/user/api-access-tokens/new",
        params=[("description", "C1 connector (rotated)"), *[("scopes[]", s) for s in (*CONNECTOR_SCOPES, "graphql")]],
    )
    assert page.status_code == 200 and 'value="C1 connector (rotated)"' in page.text
    checked = re.findall(r'value="([a-z_]+)" checked', page.text)
    assert checked == sorted(checked, key=list(rest_scope_names()).index)
    assert set(checked) == {*CONNECTOR_SCOPES, "graphql"}
    created = http.post(
        f"{bk.rest_url}/user/api-access-tokens",
        data={"description": "C1 connector (rotated)", "scopes[]": checked},
    )
    assert created.status_code == 201
    match = re.search(r'<code id="token">(bkua_[0-9a-f]{40})</code>', created.text)
    assert match is not None
    value = match.group(1)
    described = http.get(f"{bk.rest_url}/v2/access-token", headers=bearer(value)).json()
    assert sorted(described["scopes"]) == sorted([*CONNECTOR_SCOPES, "graphql"])
    assert bk.world.connector_token_check(value, "contoso-sandbox") is None
    bad = http.post(f"{bk.rest_url}/user/api-access-tokens", data={"description": "x", "scopes[]": ["read_nothing"]})
    assert bad.status_code == 422


# -- seeds, formats, helpers -------------------------------------------------------------------------


def test_seeds_and_value_formats() -> None:
    state = SandboxState()
    world = seed_buildkite(state)
    s = world.seeded
    assert s is not None and s.organization == "contoso-sandbox"
    assert world.org.has_unclustered_agents  # created before 2024-02-26
    assert parse_node_id(s.organization_id) == ("Organization", world.org.uuid)
    assert set(s.clusters) == {"Default cluster", "linux-large"}
    assert re.fullmatch(r"bkua_[0-9a-f]{40}", s.keyturn_token) and re.fullmatch(r"bkua_[0-9a-f]{40}", s.connector_token)
    tokens = {t.description: t for t in world.cluster_tokens()}
    soon, never = tokens["Default cluster agents"], tokens["linux-large agents"]
    assert soon.expires_at is not None and 0 < soon.expires_at - state.time() <= 5 * 86400
    assert never.expires_at is None
    org_part = base64.b64encode(str(world.org.number).encode()).decode().rstrip("=")
    for t in tokens.values():
        assert re.fullmatch(rf"bkct_{org_part}\.[1-9A-HJ-NP-Za-km-z]{{70}}", t.value)
        assert base64.b64decode(t.id).decode() == f"ClusterToken---{t.uuid}"
    agents = {t.description: t for t in world.agent_tokens()}
    assert agents["Default agent token"].revoke_allowed is False and agents["Legacy macOS agents"].revoke_allowed
    assert all(re.fullmatch(r"[0-9a-f]{64}", t.value) for t in agents.values())
    connector = world.api_token(s.connector_token)
    assert connector is not None and connector.all_scopes == [
        "read_teams",
        "read_organizations",
        "read_user",
        "graphql",
    ]
    assert s.connector_token not in repr(connector)
    assert s.keyturn_token not in repr(s)
    assert world.counters == {}
    assert world.token_status("nope") == "unknown"


def test_an_org_created_after_the_cutoff_has_no_unclustered_tokens(tmp_path: Path) -> None:
    state = SandboxState()
    world = BuildkiteWorld(state.time, created_at=datetime(2024, 3, 1, tzinfo=UTC))
    admin = world.add_user("Admin", "admin@example.com")
    token = world.create_api_token(["read_user"], graphql=True, user_uuid=admin.uuid)
    with (
        BuildkiteStandalone(tmp_path / "bk", world=world, state=state) as bk,
        httpx.Client(verify=bk.client_ssl_context(), timeout=10) as http,
    ):
        query = "mutation($o: ID!) { agentTokenCreate(input: {organizationID: $o}) { tokenValue } }"
        resp = http.post(
            bk.graphql_url, json={"query": query, "variables": {"o": world.org.id}}, headers=bearer(token.value)
        )
        assert "not available to organizations created after 2024-02-26" in resp.json()["errors"][0]["message"]
        listed = http.post(
            bk.graphql_url,
            json={"query": '{ organization(slug: "contoso-sandbox") { agentTokens(first: 5) { count } } }'},
            headers=bearer(token.value),
        )
        assert listed.json() == {"data": {"organization": {"agentTokens": {"count": 0}}}}
    assert state.internal_errors == []


def test_connector_token_check_for_conductorone() -> None:
    world = seed_buildkite(SandboxState())
    _, connector = world.seeded.keyturn_token, world.seeded.connector_token  # type: ignore[union-attr]
    assert world.connector_token_check(connector, "contoso-sandbox") is None
    assert "not found" in str(world.connector_token_check(connector, "other-org"))
    narrow = world.create_api_token(["read_user"], graphql=True)
    assert "read_teams, read_organizations" in str(world.connector_token_check(narrow.value, "contoso-sandbox"))
    world.revoke_api_token(connector)
    assert (
        world.connector_token_check(connector, "contoso-sandbox") == "buildkite: GET /v2/access-token: 401 Unauthorized"
    )
    with pytest.raises(ValueError, match="unknown scope"):
        world.create_api_token(["read_everything"])


def test_follow_up_toml_account_block() -> None:
    world = seed_buildkite(SandboxState())
    text = world.follow_up_toml(graphql_url="https://127.0.0.1:1234/v1", rest_url="https://127.0.0.1:5678")
    assert tomllib.loads(text) == {
        "accounts": {
            "buildkite": {
                "platform": "buildkite",
                "organization": "contoso-sandbox",
                "api_token": "file:sandbox-buildkite.token",
                "graphql_url": "https://127.0.0.1:1234/v1",
                "rest_url": "https://127.0.0.1:5678",
            }
        }
    }
    assert world.seeded.keyturn_token not in text  # type: ignore[union-attr]
