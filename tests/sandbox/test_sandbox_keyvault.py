"""The Key Vault emulator with the real azure-keyvault-secrets SecretClient + ClientSecretCredential."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from app.sandbox import VAULT_RESOURCE, Sandbox


def client(sb: Sandbox, vault: str) -> SecretClient:
    cred = ClientSecretCredential(
        sb.state.tenant_id,
        sb.state.sp_client_id,
        sb.state.sp_client_secret,
        authority=sb.urls["entra"],
        disable_instance_discovery=True,
        connection_verify=str(sb.ca_path),
    )
    return SecretClient(
        sb.urls[f"vault:{vault}"],
        cred,
        api_version="7.5",
        verify_challenge_resource=False,
        connection_verify=str(sb.ca_path),
    )


def test_sdk_set_get_versions_and_tags(sb: Sandbox) -> None:
    kv = client(sb, "cftptl-intsvc")
    seeded = kv.get_secret("azure-devops-token")
    (daily,) = sb.state.pats_named("daily-checks")
    assert seeded.value == daily.value and seeded.properties.tags == {"created-by": "hand"}
    # the first request went out without a token and got the challenge; the SDK retried with one
    by_route = sb.state.requests.by_route("vault:cftptl-intsvc")
    assert by_route == {("GET", "/secrets/{name}/{version?}"): 2}  # the SDK asks for /secrets/NAME/
    assert sb.state.requests.count("entra", "POST", "/{tenant}/oauth2/v2.0/token") == 1

    new = kv.set_secret(
        "azure-devops-token",
        "new-value",
        tags={"keyturn-rotation": "r1", "state": "pending"},
        content_type="text/plain",
    )
    assert new.id == f"{sb.urls['vault:cftptl-intsvc']}/secrets/azure-devops-token/{new.properties.version}"
    assert kv.get_secret("azure-devops-token").value == "new-value"
    assert kv.get_secret("azure-devops-token", seeded.properties.version).value == daily.value

    updated = kv.update_secret_properties(
        "azure-devops-token", new.properties.version, tags={"keyturn-rotation": "r1", "state": "done"}
    )
    assert updated.tags == {"keyturn-rotation": "r1", "state": "done"}
    versions = sb.state.secret_versions("cftptl-intsvc", "azure-devops-token")
    assert [v.value for v in versions] == [daily.value, "new-value"]
    assert (
        versions[-1].tags == {"keyturn-rotation": "r1", "state": "done"} and versions[-1].content_type == "text/plain"
    )

    for i in range(3):
        kv.set_secret("azure-devops-token", f"v{i}")
    listed = list(kv.list_properties_of_secret_versions("azure-devops-token", max_page_size=2))
    assert len(listed) == 5
    assert by_route != sb.state.requests.by_route("vault:cftptl-intsvc")
    assert sb.state.requests.by_route("vault:cftptl-intsvc")[("GET", "/secrets/{name}/versions")] == 3  # 3 pages
    names = [p.name for p in kv.list_properties_of_secrets()]
    assert names == ["azure-devops-token", "buildkite-conductorone-token", "jenkins-api-token"]

    disabled = kv.update_secret_properties("azure-devops-token", enabled=False)
    assert disabled.enabled is False
    with pytest.raises(HttpResponseError) as info:
        kv.get_secret("azure-devops-token")
    assert info.value.status_code == 403


def test_missing_secret_and_denied_operation(sb: Sandbox) -> None:
    kv = client(sb, "rpe-prod")
    assert kv.get_secret("rpe-azure-devops-email").value == sb.state.bot_email
    with pytest.raises(ResourceNotFoundError) as missing:
        kv.get_secret("no-such-secret")
    assert missing.value.error is not None and missing.value.error.code == "SecretNotFound"
    sb.state.deny("rpe-prod", "get")
    with pytest.raises(HttpResponseError) as denied:
        kv.get_secret("rpe-azure-devops-password")
    assert denied.value.status_code == 403
    assert denied.value.error is not None and denied.value.error.code == "Forbidden"
    assert "does not have secrets get permission on key vault 'rpe-prod" in str(denied.value)
    sb.state.allow("rpe-prod")
    assert kv.get_secret("rpe-azure-devops-password").value == sb.state.bot_password


def test_challenge_and_wire_errors(
    sb: Sandbox, http: httpx.Client, app_token: Callable[[str], str], user_token: Callable[[], str]
) -> None:
    url = f"{sb.urls['vault:rpe-prod']}/secrets/rpe-azure-devops-email"
    challenge = http.get(url, params={"api-version": "7.5"})
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{sb.urls["entra"]}/{sb.state.tenant_id}", resource="https://vault.azure.net"'
    )
    token = app_token(VAULT_RESOURCE)
    auth = {"Authorization": f"Bearer {token}"}
    bad_version = http.get(url, params={"api-version": "2016-10-01"}, headers=auth)
    assert bad_version.status_code == 400 and bad_version.json()["error"]["code"] == "BadParameter"
    for version in ("7.4", "7.5", "7.6", "2025-07-01"):
        assert http.get(url, params={"api-version": version}, headers=auth).status_code == 200
    wrong_aud = http.get(url, params={"api-version": "7.5"}, headers={"Authorization": f"Bearer {user_token()}"})
    assert wrong_aud.status_code == 401 and "AKV10022" in wrong_aud.json()["error"]["message"]
    bad_body = http.put(url, params={"api-version": "7.5"}, headers=auth, json={"value": "x", "expiresOn": 5})
    assert bad_body.status_code == 400 and "unknown property" in bad_body.json()["error"]["message"]
    readonly = http.put(
        url, params={"api-version": "7.5"}, headers=auth, json={"value": "x", "attributes": {"created": 1}}
    )
    assert readonly.status_code == 400 and "read-only" in readonly.json()["error"]["message"]
    assert len(sb.state.secret_versions("rpe-prod", "rpe-azure-devops-email")) == 1
    sb.state.inject_fault("keyvault.set", "503")
    assert http.put(url, params={"api-version": "7.5"}, headers=auth, json={"value": "x"}).status_code == 503
    assert http.put(url, params={"api-version": "7.5"}, headers=auth, json={"value": "x"}).status_code == 200
