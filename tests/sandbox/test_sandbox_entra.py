"""The Entra emulator against the real azure-identity / MSAL credentials, and over the wire."""

from __future__ import annotations

import re
import time
import warnings

import httpx
import msal.authority
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, DeviceCodeCredential, UsernamePasswordCredential

from app.sandbox import DEVOPS_RESOURCE, VAULT_RESOURCE, Sandbox, skip_user_realm_discovery
from app.sandbox.entra import jwt_claims

PUBLIC_CLIENT = "872cd9fa-d31f-45e0-9eab-6e460a02d1f1"
DEVOPS_SCOPE = f"{DEVOPS_RESOURCE}/.default"


def common(sb: Sandbox) -> dict:
    return {
        "authority": sb.urls["entra"],
        "disable_instance_discovery": True,
        "connection_verify": str(sb.ca_path),
    }


def test_device_code_credential(sb: Sandbox) -> None:
    prompts = []
    cred = DeviceCodeCredential(
        client_id=PUBLIC_CLIENT,
        tenant_id=sb.state.tenant_id,
        prompt_callback=lambda uri, code, expires: prompts.append((uri, code, expires)),
        **common(sb),
    )
    token = cred.get_token(DEVOPS_SCOPE)
    (uri, code, _expires) = prompts[0]
    assert uri == f"{sb.urls['entra']}/devicelogin"
    assert re.fullmatch(r"[A-Z0-9]{9}", code)
    claims = jwt_claims(token.token)
    assert claims["aud"] == DEVOPS_RESOURCE
    assert claims["upn"] == sb.state.bot_email and claims["oid"] == sb.state.bot_oid
    issued = sb.state.lookup_token(token.token)
    assert issued is not None and issued.kind == "user" and issued.audience == DEVOPS_RESOURCE
    by_route = sb.state.requests.by_route("entra")
    assert by_route[("POST", "/{tenant}/oauth2/v2.0/devicecode")] == 1
    assert by_route[("GET", "/{tenant}/v2.0/.well-known/openid-configuration")] >= 1


def test_device_code_waits_for_approval_without_hammering(tmp_path) -> None:
    with Sandbox(tmp_path / "d", auto_approve_device_code=0.6) as sb:
        cred = DeviceCodeCredential(
            client_id=PUBLIC_CLIENT, tenant_id=sb.state.tenant_id, prompt_callback=lambda *a: None, **common(sb)
        )
        t0 = time.monotonic()
        cred.get_token(DEVOPS_SCOPE)
        assert time.monotonic() - t0 >= 0.5
        polls = sb.state.requests.count("entra", "POST", "/{tenant}/oauth2/v2.0/token")
        assert 2 <= polls <= 8  # pending polls are held ~0.25 s each, not a busy loop


def test_device_code_manual_approval_on_the_page(tmp_path) -> None:
    with (
        Sandbox(tmp_path / "d", auto_approve_device_code=-1) as sb,
        httpx.Client(verify=sb.client_ssl_context()) as http,
    ):
        base = f"{sb.urls['entra']}/{sb.state.tenant_id}/oauth2/v2.0"
        flow = http.post(f"{base}/devicecode", data={"client_id": PUBLIC_CLIENT, "scope": DEVOPS_SCOPE}).json()
        assert flow["interval"] == 0 and flow["expires_in"] == 900
        poll = {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": PUBLIC_CLIENT,
            "device_code": flow["device_code"],
        }
        pending = http.post(f"{base}/token", data=poll)
        assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
        page = http.get(flow["verification_uri"])
        assert page.status_code == 200 and "<form" in page.text
        assert http.post(flow["verification_uri"], data={"code": "WRONGCODE"}).status_code == 400
        assert http.post(flow["verification_uri"], data={"code": flow["user_code"].lower()}).status_code == 200
        done = http.post(f"{base}/token", data=poll)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["scope"] == DEVOPS_SCOPE and body["token_type"] == "Bearer"
        assert {"id_token", "client_info", "refresh_token", "expires_in"} <= body.keys()
        again = http.post(f"{base}/token", data=poll)
        assert again.json()["error"] == "invalid_grant"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # ROPC is deprecated; keyturn warns about it
def test_username_password_credential(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # MSAL's realm discovery drops the authority's port; the documented workaround skips it for loopback.
    monkeypatch.setattr(msal.authority.Authority, "_domains_without_user_realm_discovery", set())
    skip_user_realm_discovery("127.0.0.1")
    email, password = sb.state.bot_credentials
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cred = UsernamePasswordCredential(PUBLIC_CLIENT, email, password, tenant_id=sb.state.tenant_id, **common(sb))
        bad = UsernamePasswordCredential(
            PUBLIC_CLIENT, email, "not-the-password", tenant_id=sb.state.tenant_id, **common(sb)
        )
    token = cred.get_token(DEVOPS_SCOPE)
    assert jwt_claims(token.token)["upn"] == email
    with pytest.raises(ClientAuthenticationError, match="AADSTS50126"):
        bad.get_token(DEVOPS_SCOPE)


def test_user_realm_endpoint(sb: Sandbox, http: httpx.Client) -> None:
    resp = http.get(f"{sb.urls['entra']}/common/userrealm/{sb.state.bot_email}", params={"api-version": "1.0"})
    assert resp.json()["account_type"] == "Managed"
    other = http.get(f"{sb.urls['entra']}/common/userrealm/x@elsewhere.example", params={"api-version": "1.0"})
    assert other.json()["account_type"] == "Unknown"


def test_client_secret_credential(sb: Sandbox) -> None:
    cred = ClientSecretCredential(sb.state.tenant_id, sb.state.sp_client_id, sb.state.sp_client_secret, **common(sb))
    token = cred.get_token(f"{VAULT_RESOURCE}/.default")
    claims = jwt_claims(token.token)
    assert claims["aud"] == VAULT_RESOURCE and claims["appid"] == sb.state.sp_client_id
    assert "upn" not in claims and claims["idtyp"] == "app"
    wrong = ClientSecretCredential(sb.state.tenant_id, sb.state.sp_client_id, "wrong", **common(sb))
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        wrong.get_token(f"{VAULT_RESOURCE}/.default")


def test_token_endpoint_errors(sb: Sandbox, http: httpx.Client, password_grant) -> None:
    wrong = password_grant(DEVOPS_SCOPE, password="nope")
    assert wrong.status_code == 400
    body = wrong.json()
    assert body["error"] == "invalid_grant" and body["error_codes"] == [50126]
    assert body["error_description"].startswith("AADSTS50126:")
    multi = password_grant(f"{DEVOPS_SCOPE} {VAULT_RESOURCE}/.default")
    assert multi.json()["error"] == "invalid_scope"
    tenant = http.get(f"{sb.urls['entra']}/not-a-tenant/v2.0/.well-known/openid-configuration")
    assert tenant.status_code == 400 and tenant.json()["error"] == "invalid_tenant"


def test_refresh_token_grant(sb: Sandbox, http: httpx.Client, password_grant) -> None:
    first = password_grant(DEVOPS_SCOPE).json()
    url = f"{sb.urls['entra']}/{sb.state.tenant_id}/oauth2/v2.0/token"
    data = {
        "grant_type": "refresh_token",
        "client_id": PUBLIC_CLIENT,
        "refresh_token": first["refresh_token"],
        "scope": f"{VAULT_RESOURCE}/.default offline_access",
    }
    second = http.post(url, data=data)
    assert second.status_code == 200
    assert jwt_claims(second.json()["access_token"])["aud"] == VAULT_RESOURCE
    sb.state.expire_user_tokens(refresh_tokens=True)
    assert http.post(url, data=data).json()["error_codes"] == [50173]
