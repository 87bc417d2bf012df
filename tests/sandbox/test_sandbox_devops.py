"""The Azure DevOps emulator (vssps PAT Lifecycle API + dev.azure.com) over real sockets with httpx."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.sandbox import DEVOPS_RESOURCE, Sandbox
from app.sandbox.swagger import parse_date_time, tokens_spec

API = {"api-version": "7.2-preview.1"}


class Ado:
    """A tiny client: just enough to drive the emulator in tests."""

    def __init__(self, sb: Sandbox, http: httpx.Client, token: str) -> None:
        self.sb, self.http, self.token = sb, http, token
        self.url = f"{sb.urls['vssps']}/{sb.state.org}/_apis/tokens/pats"

    def call(
        self, method: str, params: dict | None = None, json: object = None, token: str | None = None, **kw
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", **kw.pop("headers", {})}
        return self.http.request(method, self.url, params={**API, **(params or {})}, json=json, headers=headers, **kw)

    def create(self, **body: object) -> httpx.Response:
        payload = {"displayName": "new-token", "scope": "vso.agentpools", "validTo": iso(days=30), "allOrgs": False}
        payload.update(body)
        return self.call("POST", json=payload)

    def list_all(self, **params: str) -> tuple[list[dict], int]:
        tokens, pages, cont = [], 0, None
        while True:
            p = dict(params)
            if cont:
                p["continuationToken"] = cont
            resp = self.call("GET", p)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert tokens_spec().validate("PagedPatTokens", body, direction="response", nullable=True) == []
            tokens += body["patTokens"]
            pages += 1
            cont = body.get("continuationToken")
            if not cont:
                return tokens, pages


def iso(days: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def basic(pat: str, user: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pat}".encode()).decode()}


@pytest.fixture
def ado(sb: Sandbox, http: httpx.Client, user_token: Callable[[], str]) -> Ado:
    return Ado(sb, http, user_token())


def test_create_returns_the_value_once_and_records_it(ado: Ado, sb: Sandbox) -> None:
    resp = ado.create(displayName="keda-agent-pools-2", scope="vso.agentpools_manage", validTo=iso(days=90))
    assert resp.status_code == 200
    body = resp.json()
    assert body["patTokenError"] == "none"
    pat = body["patToken"]
    assert len(pat["token"]) == 52 and pat["token"] == pat["token"].lower()
    assert pat["targetAccounts"] == [sb.state.org_id]
    assert tokens_spec().validate("PatTokenResult", body, direction="response", nullable=True) == []
    (rec,) = sb.state.pats_named("keda-agent-pools-2")
    assert rec.value == pat["token"] and rec.authorization_id == pat["authorizationId"]
    got = ado.call("GET", {"authorizationId": pat["authorizationId"]}).json()
    assert got["patToken"]["token"] is None and got["patToken"]["displayName"] == "keda-agent-pools-2"
    glob = ado.create(displayName="global", allOrgs=True).json()["patToken"]
    assert glob["targetAccounts"] is None


def test_list_pages_and_filters(ado: Ado, sb: Sandbox) -> None:
    active, pages = ado.list_all()
    names = [t["displayName"] for t in active]
    assert names == ["daily-checks", "keda-agent-pools", "laptop-git"]  # alice's token is not the bot's
    assert pages == 2 and all(t["token"] is None for t in active)
    everything, _ = ado.list_all(displayFilterOption="all", sortByOption="displayDate", isSortAscending="false")
    assert len(everything) == 5
    valid_to = [parse_date_time(t["validTo"]) for t in everything]
    assert valid_to == sorted(valid_to, reverse=True)
    assert [t["displayName"] for t in ado.list_all(displayFilterOption="revoked")[0]] == ["old-release-bot"]
    assert [t["displayName"] for t in ado.list_all(displayFilterOption="Expired")[0]] == ["ci-artifacts"]
    first = ado.call("GET").json()
    assert first["continuationToken"] and len(first["patTokens"]) == 2
    mixed = ado.call("GET", {"continuationToken": first["continuationToken"], "displayFilterOption": "all"})
    assert mixed.status_code == 400 and mixed.json()["typeKey"] == "ArgumentException"
    assert ado.call("GET", {"displayFilterOption": "bogus"}).status_code == 400
    assert sb.state.requests.count("vssps", "GET", "/{org}/_apis/tokens/pats") >= 8


def test_revoke(ado: Ado, sb: Sandbox) -> None:
    (keda,) = sb.state.pats_named("keda-agent-pools")
    resp = ado.call("DELETE", {"authorizationId": keda.authorization_id})
    assert resp.status_code == 200 and resp.content == b""
    assert sb.state.pat(keda.authorization_id).revoked  # type: ignore[union-attr]
    assert ado.call("DELETE", {"authorizationId": "00000000-0000-0000-0000-000000000000"}).status_code == 404
    assert ado.call("DELETE", {"authorizationId": "not-a-guid"}).status_code == 400


def test_update(ado: Ado, sb: Sandbox) -> None:
    (daily,) = sb.state.pats_named("daily-checks")
    body = {"authorizationId": daily.authorization_id, "displayName": "daily-checks-renamed", "validTo": iso(days=60)}
    resp = ado.call("PUT", json=body).json()
    assert resp["patTokenError"] == "none" and resp["patToken"]["displayName"] == "daily-checks-renamed"
    (expired,) = sb.state.pats_named("ci-artifacts")
    resp = ado.call("PUT", json={"authorizationId": expired.authorization_id, "validTo": iso(days=10)}).json()
    assert resp["patTokenError"] == "expiredPatCannotBeExtended"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"displayName": ""}, "displayNameRequired"),
        ({"scope": "vso.agentpool"}, "invalidScope"),
        ({"scope": "vso.pats_manage"}, "invalidScope"),
        ({"scope": ""}, "invalidScope"),
        ({"validTo": iso(days=-1)}, "invalidValidTo"),
    ],
)
def test_pat_errors_come_inside_http_200(ado: Ado, sb: Sandbox, body: dict, error: str) -> None:
    before = len(sb.state.pats())
    resp = ado.call("POST", json={"displayName": "x", "scope": "vso.build", "validTo": iso(days=5), **body})
    assert resp.status_code == 200
    assert resp.json()["patToken"] is None and resp.json()["patTokenError"] == error
    assert len(sb.state.pats()) == before


def test_7_2_adds_the_error_message(ado: Ado) -> None:
    resp = ado.call("POST", {"api-version": "7.2-preview.1"}, json={"displayName": "", "scope": "vso.build"}).json()
    assert resp["patTokenError"] == "displayNameRequired" and resp["patTokenErrorMessage"]
    assert tokens_spec().validate("PatTokenResult", resp, direction="response", nullable=True) == []


@pytest.mark.parametrize("version", ["7.1-preview.1", "7.1-preview", "7.0-preview.1", "6.1-preview"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_other_versions_of_the_pat_api_are_refused(ado: Ado, sb: Sandbox, version: str, method: str) -> None:
    """Only the api-version of the swagger the emulator enforces (tokens-7.2) is served."""
    before = len(sb.state.pats())
    body = {"displayName": "v", "scope": "vso.build", "validTo": iso(days=5)} if method == "POST" else None
    params = {"api-version": version}
    if method == "DELETE":
        params["authorizationId"] = "00000000-0000-0000-0000-000000000001"
    resp = ado.call(method, params, json=body)
    assert resp.status_code == 400, resp.text
    err = resp.json()
    assert err["typeKey"] == "VssVersionNotSupportedException"
    assert version in err["message"] and "7.2-preview.1" in err["message"]
    assert len(sb.state.pats()) == before
    via_accept = ado.http.get(
        ado.url, headers={"Authorization": f"Bearer {ado.token}", "Accept": f"application/json;api-version={version}"}
    )
    assert via_accept.status_code == 400


@pytest.mark.parametrize(
    "scope",
    [
        "vso.loadtest",
        "vso.loadtest_write",
        "vso.hooks",
        "vso.hooks_write",
        "vso.hooks_interact",
        "vso.settings",
        "vso.settings_write",
        "vso.pats_manage",
        "vso.build vso.loadtest",
    ],
)
def test_scopes_absent_from_the_scope_table_are_invalid_scope(ado: Ado, sb: Sandbox, scope: str) -> None:
    resp = ado.create(displayName="retired-scope", scope=scope)
    assert resp.status_code == 200
    body = resp.json()
    assert body["patToken"] is None and body["patTokenError"] == "invalidScope"
    bad = next(s for s in scope.split() if s != "vso.build")
    assert repr(bad) in body["patTokenErrorMessage"] and "vso.build'" not in body["patTokenErrorMessage"]
    assert "not in the published scope table" in body["patTokenErrorMessage"]
    assert tokens_spec().validate("PatTokenResult", body, direction="response", nullable=True) == []
    assert sb.state.pats_named("retired-scope") == []
    # an update to such a scope is refused the same way
    created = ado.create(displayName="to-update", scope="vso.build").json()["patToken"]
    upd = ado.call("PUT", json={"authorizationId": created["authorizationId"], "scope": scope}).json()
    assert upd["patTokenError"] == "invalidScope"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"displayName": "x", "scope": ["vso.build"], "validTo": iso(days=5)}, "$.scope: expected a string"),
        (
            {"displayName": "x", "scope": "vso.build", "validTo": iso(days=5), "expiresInDays": 5},
            "$.expiresInDays: unknown property",
        ),
        ({"displayName": "x", "scope": "vso.build", "validTo": "2030-01-01T00:00:00"}, "time zone"),
        ({"displayName": "x", "scope": "vso.build", "allOrgs": "false"}, "$.allOrgs: expected a boolean"),
    ],
)
def test_contract_check_rejects_bad_bodies(ado: Ado, sb: Sandbox, body: dict, problem: str) -> None:
    resp = ado.call("POST", json=body)
    assert resp.status_code == 400
    err = resp.json()
    assert set(err) == {"$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId"}
    assert problem in err["message"]
    assert sb.state.pats_named("x") == []


@pytest.mark.parametrize(
    ("version", "type_key"),
    [
        (None, "VssVersionNotSpecifiedException"),
        ("7.1", "VssInvalidPreviewVersionException"),
        ("8.0-preview.1", "VssVersionOutOfRangeException"),
        ("6.1-preview", "VssVersionNotSupportedException"),
        ("7.1-preview.1", "VssVersionNotSupportedException"),
        ("banana", "VssInvalidApiVersionException"),
    ],
)
def test_api_version_is_required(sb: Sandbox, http: httpx.Client, ado: Ado, version: str | None, type_key: str) -> None:
    params = {} if version is None else {"api-version": version}
    resp = http.get(ado.url, params=params, headers={"Authorization": f"Bearer {ado.token}"})
    assert resp.status_code == 400 and resp.json()["typeKey"] == type_key
    ok = http.get(ado.url, params={"api-version": "7.2-preview.1"}, headers={"Authorization": f"Bearer {ado.token}"})
    assert ok.status_code == 200
    via_accept = http.get(
        ado.url,
        headers={"Authorization": f"Bearer {ado.token}", "Accept": "application/json;api-version=7.2-preview.1"},
    )
    assert via_accept.status_code == 200


def test_bad_session_gets_the_sign_in_page(ado: Ado, sb: Sandbox, app_token: Callable[[str], str]) -> None:
    assert ado.call("GET").status_code == 200
    assert sb.state.expire_user_tokens() >= 1
    resp = ado.call("GET")
    assert resp.status_code == 203
    assert resp.headers["content-type"].startswith("text/html")
    assert "Azure DevOps Services | Sign In" in resp.text
    assert ado.call("GET", token="garbage").status_code == 203
    suppressed = ado.call("GET", headers={"X-TFS-FedAuthRedirect": "Suppress"})
    assert suppressed.status_code == 401 and "WWW-Authenticate" in suppressed.headers
    app_only = ado.call("GET", token=app_token(DEVOPS_RESOURCE))
    assert app_only.status_code == 401 and "Service principals cannot" in app_only.json()["message"]


def test_policies(ado: Ado, sb: Sandbox) -> None:
    sb.state.set_policy(max_lifespan_days=30)
    clamped = ado.create(displayName="clamped", validTo=iso(days=90)).json()
    assert clamped["patTokenError"] == "none"
    valid_to = parse_date_time(clamped["patToken"]["validTo"])
    assert abs(valid_to - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    sb.state.set_policy(block_full_scope=True, block_global=True)
    assert ado.create(scope="app_token").json()["patTokenError"] == "fullScopePatPolicyViolation"
    assert ado.create(allOrgs=True).json()["patTokenError"] == "globalPATCreationBlocked"
    assert ado.create(scope="vso.build").json()["patTokenError"] == "none"
    sb.state.policy().disable_pat_creation = True
    assert ado.create().json()["patTokenError"] == "disablePatCreationPolicyViolation"


def test_fault_injection_on_create(ado: Ado, sb: Sandbox) -> None:
    sb.state.inject_fault("pats.create", "500-after-create")
    resp = ado.create(displayName="after-500")
    assert resp.status_code == 500 and resp.json()["typeKey"] == "VssServiceException"
    assert len(sb.state.pats_named("after-500")) == 1

    sb.state.inject_fault("pats.create", "500-before-create")
    assert ado.create(displayName="before-500").status_code == 500
    assert sb.state.pats_named("before-500") == []

    sb.state.inject_fault("pats.create", "reset-after-create")
    with pytest.raises(httpx.TransportError):
        ado.create(displayName="after-reset")
    assert len(sb.state.pats_named("after-reset")) == 1

    sb.state.inject_fault("pats.list", "503")
    assert ado.call("GET").status_code == 503
    assert ado.call("GET").status_code == 200  # once
    with pytest.raises(ValueError, match="no fault"):
        sb.state.inject_fault("pats.list", "reset-after-create")


def test_pat_use_on_the_organisation_host(ado: Ado, sb: Sandbox, http: httpx.Client) -> None:
    base = f"{sb.urls['devops']}/{sb.state.org}/_apis"
    keda_value = ado.create(displayName="k", scope="vso.agentpools_manage").json()["patToken"]["token"]
    code_value = ado.create(displayName="c", scope="vso.code_write").json()["patToken"]["token"]

    me = http.get(f"{base}/connectionData", headers=basic(keda_value))
    assert me.status_code == 200 and me.json()["authenticatedUser"]["id"] == sb.state.bot_oid
    pools = http.get(
        f"{base}/distributedtask/pools", params={"api-version": "7.1"}, headers=basic(keda_value, "anything")
    )
    assert pools.status_code == 200 and pools.json()["count"] == len(pools.json()["value"]) > 0
    denied = http.get(f"{base}/distributedtask/pools", params={"api-version": "7.1"}, headers=basic(code_value))
    assert denied.status_code == 403 and "vso.agentpools" in denied.json()["message"]
    (rec,) = sb.state.pats_named("k")
    assert rec.uses == 2

    ado.call("DELETE", {"authorizationId": rec.authorization_id})
    assert http.get(f"{base}/connectionData", headers=basic(keda_value)).status_code == 401
    assert sb.state.pat(rec.authorization_id).failed_uses == 1  # type: ignore[union-attr]

    (expired,) = sb.state.pats_named("ci-artifacts")
    resp = http.get(f"{base}/connectionData", headers=basic(expired.value))
    assert resp.status_code == 401 and "expired" in resp.text
    assert http.get(f"{base}/connectionData", headers=basic("x" * 52)).status_code == 401
    assert http.get(f"{base}/connectionData").status_code == 401

    sb.state.advance_clock(timedelta(days=31))  # the code PAT (30 days) expires
    assert http.get(f"{base}/connectionData", headers=basic(code_value)).status_code == 401
