"""The ConductorOne emulator over loopback HTTPS: sign-in with signed assertions, contract checks, sync states."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.config import parse_config
from app.followups.conductorone import client_assertion, parse_client_secret
from app.sandbox.conductorone import (
    ENV_CONFIG_TYPE,
    c1_spec,
    make_client_secret,
    seed_conductorone,
)
from app.secret import SecretValue

C1Harness = Any  # the `c1` fixture (tests/followups/conftest.py)

ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def token_form(client_id: str, assertion: str, **extra: str) -> dict[str, str]:
    form = {
        "client_id": client_id,
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION,
        "client_assertion": assertion,
    }
    form.update(extra)
    return form


def signed(c1: C1Harness, secret: str | None = None, aud: str | None = None, now: float | None = None) -> str:
    """An assertion of the seeded client; its aud defaults to the host the client id names (as the SDK signs it)."""
    key = parse_client_secret(SecretValue(secret or c1.seeded.client_secret), "test")
    return client_assertion(c1.seeded.client_id, key, aud or f"{c1.seeded.tenant}.conductor.one", now)


def connector_path(c1: C1Harness) -> str:
    return f"{c1.url}/api/v1/apps/{c1.seeded.app_id}/connectors/{c1.seeded.connector_id}"


def update_body(token: str = "bkua_new", org: str = "keyturn-sandbox", **connector: Any) -> dict[str, Any]:
    conn: dict[str, Any] = {
        "config": {"@type": ENV_CONFIG_TYPE, "configuration": {"api_token": token, "organization": org}}
    }
    conn.update(connector)
    return {"connector": conn, "updateMask": "config"}


# -- sign-in ------------------------------------------------------------------------------------------


def test_secret_format_matches_the_sdks(c1: C1Harness) -> None:
    secret = c1.seeded.client_secret
    prefix, _, jwk_b64 = secret.rpartition(":")
    assert prefix == "secret-token:conductorone.com:v1"
    jwk = json.loads(base64.urlsafe_b64decode(jwk_b64 + "=" * (-len(jwk_b64) % 4)))
    assert set(jwk) == {"kty", "crv", "x", "d"} and jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
    assert "=" not in jwk_b64
    assert c1.seeded.client_id.endswith(f"@{c1.seeded.tenant}.conductor.one/pcc")


def test_token_with_a_real_signed_assertion(c1: C1Harness) -> None:
    assertion = signed(c1)
    header = json.loads(base64.urlsafe_b64decode(assertion.split(".")[0] + "=="))
    assert header["alg"] == "EdDSA" and header["nonce"]
    with c1.http() as http:
        resp = http.post(c1.url + "/auth/v1/token", data=token_form(c1.seeded.client_id, assertion))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["access_token"]
        got = http.get(connector_path(c1), headers={"Authorization": f"Bearer {body['access_token']}"})
    assert got.status_code == 200
    assert c1.world.counters["token.issued"] == 1


@pytest.mark.parametrize(
    "case",
    ["wrong-key", "wrong-aud", "other-tenant-aud", "aud-with-port", "expired", "unknown-client", "replayed", "tampered", "alg-none"],
)
def test_token_refusals(c1: C1Harness, case: str) -> None:
    client_id = c1.seeded.client_id
    if case == "wrong-key":
        other, _ = make_client_secret()
        assertion = signed(c1, secret=other)
    elif case == "wrong-aud":  # where the request arrived (the old emulator's rule) is not the client id's host
        assertion = signed(c1, aud="127.0.0.1")
    elif case == "other-tenant-aud":
        assertion = signed(c1, aud="other-tenant.conductor.one")
    elif case == "aud-with-port":  # the SDK strips the port from the audience
        assertion = signed(c1, aud=f"{c1.seeded.tenant}.conductor.one:443")
    elif case == "expired":
        assertion = signed(c1, now=time.time() - 3600)
    elif case == "unknown-client":
        assertion, client_id = signed(c1), "someone@else.conductor.one/pcc"
    elif case == "replayed":
        assertion = signed(c1)
        with c1.http() as http:
            assert http.post(c1.url + "/auth/v1/token", data=token_form(client_id, assertion)).status_code == 200
    elif case == "tampered":
        h, p, s = signed(c1).split(".")
        claims = json.loads(base64.urlsafe_b64decode(p + "=="))
        claims["exp"] += 3600
        p = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        assertion = f"{h}.{p}.{s}"
    else:
        h = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
        assertion = h + "." + signed(c1).split(".")[1] + "."
    with c1.http() as http:
        resp = http.post(c1.url + "/auth/v1/token", data=token_form(client_id, assertion))
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"] == "invalid_client"
    assert assertion not in resp.text


def test_token_form_is_checked(c1: C1Harness) -> None:
    with c1.http() as http:
        extra = http.post(c1.url + "/auth/v1/token", data=token_form(c1.seeded.client_id, signed(c1), scope="x"))
        as_json = http.post(c1.url + "/auth/v1/token", json=token_form(c1.seeded.client_id, signed(c1)))
        grant = http.post(
            c1.url + "/auth/v1/token", data=token_form(c1.seeded.client_id, signed(c1), grant_type="password")
        )
    assert extra.status_code == 400 and "scope" in extra.json()["error_description"]
    assert as_json.status_code == 400
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"


def test_api_needs_a_bearer_token(c1: C1Harness) -> None:
    with c1.http() as http:
        none = http.get(connector_path(c1))
        bad = http.get(connector_path(c1), headers={"Authorization": "Bearer not-issued"})
    assert none.status_code == 401 and none.json()["code"] == 16
    assert bad.status_code == 401


# -- connector API ------------------------------------------------------------------------------------


def test_get_never_returns_the_api_token(c1: C1Harness, c1_token: Callable[[], str]) -> None:
    with c1.http() as http:
        resp = http.get(connector_path(c1), headers={"Authorization": f"Bearer {c1_token()}"})
    assert resp.status_code == 200
    connector = resp.json()["connectorView"]["connector"]
    assert connector["config"] == {"@type": ENV_CONFIG_TYPE, "configuration": {"organization": "keyturn-sandbox"}}
    assert "bkua_old-value" not in resp.text
    assert connector["status"]["status"] == "SYNC_STATUS_DONE"
    assert c1_spec().validate("c1.api.app.v1.ConnectorServiceGetResponse", resp.json(), direction="response") == []


def test_update_then_force_sync_moves_through_the_states(c1: C1Harness, c1_token: Callable[[], str]) -> None:
    c1.world.sync_queue_s, c1.world.sync_run_s = 10, 10  # driven by the emulator clock below
    auth = {"Authorization": f"Bearer {c1_token()}"}
    with c1.http() as http:
        upd = http.post(connector_path(c1), json=update_body(id=c1.seeded.connector_id), headers=auth)
        assert upd.status_code == 200, upd.text
        before = upd.json()["connectorView"]["connector"]["status"]
        assert "bkua_new" not in upd.text
        assert http.post(connector_path(c1) + "/force_sync", json={}, headers=auth).status_code == 200

        def status() -> dict[str, Any]:
            r = http.get(connector_path(c1), headers=auth)
            assert r.status_code == 200
            return dict(r.json()["connectorView"]["connector"]["status"])

        assert status() == before  # queued: nothing visible yet
        c1.state.advance_clock(11)
        running = status()
        assert running["status"] == "SYNC_STATUS_RUNNING" and running["startedAt"] != before["startedAt"]
        assert "completedAt" not in running
        c1.state.advance_clock(10)
        done = status()
    assert done["status"] == "SYNC_STATUS_DONE" and done["completedAt"] > done["startedAt"]
    rec = c1.world.connector()
    assert rec is not None and rec.api_token == "bkua_new" and rec.settings["organization"] == "keyturn-sandbox"
    assert c1.world.counters["sync.done"] == 1


def test_fail_next_sync(c1: C1Harness, c1_token: Callable[[], str]) -> None:
    c1.world.sync_queue_s, c1.world.sync_run_s = 1, 1
    c1.world.fail_next_sync("buildkite: 401 Unauthorized")
    auth = {"Authorization": f"Bearer {c1_token()}"}
    with c1.http() as http:
        assert http.post(connector_path(c1) + "/force_sync", headers=auth).status_code == 200  # empty body is fine
        c1.state.advance_clock(3)
        status = http.get(connector_path(c1), headers=auth).json()["connectorView"]["connector"]["status"]
    assert status["status"] == "SYNC_STATUS_ERROR" and status["lastError"] == "buildkite: 401 Unauthorized"
    assert c1.world.counters["sync.error"] == 1


BAD_BODIES: list[tuple[str, Callable[[C1Harness], Any], str]] = [
    ("unknown top-level property", lambda c: {**update_body(), "apiToken": "x"}, "unknown property"),
    ("unknown connector property", lambda c: update_body(apiToken="x"), "unknown property"),
    ("wrong type of updateMask", lambda c: {**update_body(), "updateMask": 5}, "expected string"),
    ("wrong type of displayName", lambda c: update_body(displayName=7), "expected string"),
    ("read-only property", lambda c: update_body(createdAt="2026-01-01T00:00:00Z"), "read-only"),
    ("no updateMask", lambda c: {"connector": update_body()["connector"]}, "updateMask is required"),
    ("mask other than config", lambda c: {**update_body(), "updateMask": "config,displayName"}, "only"),
    ("config without @type", lambda c: update_body(config={"configuration": {}}), "@type"),
    (
        "unknown setting",
        lambda c: update_body(
            config={"@type": ENV_CONFIG_TYPE, "configuration": {"api_token": "t", "organization": "o", "x": "y"}}
        ),
        "unknown setting",
    ),
    (
        "organization missing",
        lambda c: update_body(config={"@type": ENV_CONFIG_TYPE, "configuration": {"api_token": "t"}}),
        "organization is required",
    ),
    ("id mismatch", lambda c: update_body(id="someone-else"), "does not match"),
    ("not an object", lambda c: ["config"], "expected object"),
]


@pytest.mark.parametrize(("label", "make", "expect"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_update_rejects_bodies_that_break_the_contract(
    c1: C1Harness, c1_token: Callable[[], str], label: str, make: Callable[[C1Harness], Any], expect: str
) -> None:
    with c1.http() as http:
        resp = http.post(connector_path(c1), json=make(c1), headers={"Authorization": f"Bearer {c1_token()}"})
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == 3 and expect in body["message"], body
    rec = c1.world.connector()
    assert rec is not None and rec.api_token == "bkua_old-value"
    assert c1.world.updates == []


def test_force_sync_body_is_checked(c1: C1Harness, c1_token: Callable[[], str]) -> None:
    with c1.http() as http:
        resp = http.post(
            connector_path(c1) + "/force_sync", json={"now": True}, headers={"Authorization": f"Bearer {c1_token()}"}
        )
    assert resp.status_code == 400 and "unknown property" in resp.json()["message"]


def test_unknown_connector_and_forbidden(c1: C1Harness, c1_token: Callable[[], str]) -> None:
    auth = {"Authorization": f"Bearer {c1_token()}"}
    c1.world.forbid("update")
    with c1.http() as http:
        missing = http.get(f"{c1.url}/api/v1/apps/{c1.seeded.app_id}/connectors/nope", headers=auth)
        denied = http.post(connector_path(c1), json=update_body(), headers=auth)
        delete = http.delete(connector_path(c1), headers=auth)
    assert missing.status_code == 404 and missing.json()["code"] == 5
    assert denied.status_code == 403 and denied.json()["code"] == 7
    assert delete.status_code == 501


def test_a_response_that_breaks_the_contract_is_a_loud_500(c1: C1Harness, c1_token: Callable[[], str]) -> None:
    token = c1_token()
    with c1.world.lock:
        rec = c1.world.connectors[(c1.seeded.app_id, c1.seeded.connector_id)]
        rec.sync_status = "SYNC_STATUS_BOGUS"
    with c1.http() as http:
        resp = http.get(connector_path(c1), headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 500 and resp.json()["code"] == 13
    assert len(c1.state.internal_errors) == 1
    assert "SYNC_STATUS_BOGUS" in c1.state.internal_errors[0]
    c1.state.internal_errors.clear()  # expected here; the fixture asserts none are left


def test_request_counters(c1: C1Harness, c1_token: Callable[[], str]) -> None:
    token = c1_token()
    with c1.http() as http:
        http.get(connector_path(c1), headers={"Authorization": f"Bearer {token}"})
    assert c1.state.requests.count("conductorone", "POST", "/auth/v1/token") == 1
    assert c1.state.requests.count("conductorone", "GET", "/api/v1/apps/{app_id}/connectors/{id}") == 1
    assert c1.world.counters["connector.get"] == 1


def test_seed_and_the_follow_up_block_load_as_keyturn_config(tmp_path: Any) -> None:
    world = seed_conductorone(lambda: time.time(), tenant="acme", organization="acme-bk", api_token="bkua_x")
    block = world.follow_up_toml("bk-api", base_url="https://127.0.0.1:4443")
    import tomllib

    text = (
        '[accounts.bk]\nplatform = "buildkite"\norganization = "acme-bk"\n\n'
        '[targets.bk-api]\naccount = "bk"\ntoken_name = "c1"\nscopes = ["read_user"]\n\n' + block
    )
    config = parse_config(tomllib.loads(text), tmp_path / "keyturn.toml")
    spec = config.targets["bk-api"].follow_ups[0]
    assert spec.kind == "conductorone-connector"
    assert world.seeded is not None
    assert (spec.app_id, spec.connector_id, spec.client_id) == (
        world.seeded.app_id,
        world.seeded.connector_id,
        world.seeded.client_id,
    )
    assert spec.client_secret == "file:sandbox-c1.secret" and spec.base_url == "https://127.0.0.1:4443"
    assert world.seeded.client_secret not in block
    assert "client_secret=" not in repr(world.seeded)


def test_direct_http_without_tls_trust_fails(c1: C1Harness) -> None:
    with httpx.Client(timeout=5) as http, pytest.raises(httpx.ConnectError):
        http.get(connector_path(c1))
