"""EntraUserAuth: which azure-identity credential, with which arguments, and one-line errors."""

from __future__ import annotations

import logging
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.identity
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError

from app.config import Account
from app.errors import KeyturnError, ProviderError
from app.secret import SecretValue
from providers.azure_devops.auth import ADO_SCOPE, EntraUserAuth
from providers.base import DeviceCodePrompt, Interaction

TENANT = "11111111-2222-3333-4444-555555555555"


class FakeCredential:
    """Stands in for an azure-identity credential; records how it was built and used."""

    made: list[FakeCredential] = []
    fail: Exception | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.calls: list[tuple[str, ...]] = []
        FakeCredential.made.append(self)

    def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
        self.calls.append(scopes)
        if FakeCredential.fail is not None:
            raise FakeCredential.fail
        if cb := self.kwargs.get("prompt_callback"):
            cb("https://microsoft.com/devicelogin", "ABCD-EFGH", datetime(2030, 1, 1, tzinfo=UTC))
        return AccessToken(f"entra-at-{len(FakeCredential.made)}", int(time.time()) + 3600)


@pytest.fixture(autouse=True)
def fake_identity(monkeypatch):
    FakeCredential.made = []
    FakeCredential.fail = None
    for name in ("DeviceCodeCredential", "AzureCliCredential", "UsernamePasswordCredential"):
        monkeypatch.setattr(azure.identity, name, type(name, (FakeCredential,), {}))
    return FakeCredential


def account(**kw: Any) -> Account:
    base: dict[str, Any] = {"platform": "azure-devops", "organization": "contoso", "tenant_id": TENANT}
    return Account(**{**base, **kw})


def auth(
    acc: Account,
    *,
    interaction: Interaction | None = None,
    ca_bundle: Path | None = None,
    secrets: dict[str, str] | None = None,
) -> EntraUserAuth:
    values = secrets or {}
    return EntraUserAuth(
        "ado-bot",
        acc,
        ca_bundle=ca_bundle,
        resolve_secret=lambda ref: SecretValue(values[ref]),
        interaction=interaction or Interaction(on_device_code=lambda p: None),
    )


def test_device_code_prompt_goes_to_the_interaction():
    prompts: list[DeviceCodePrompt] = []
    a = auth(account(), interaction=Interaction(on_device_code=prompts.append))
    assert a.bearer() == "entra-at-1"
    (cred,) = FakeCredential.made
    assert type(cred).__name__ == "DeviceCodeCredential"
    assert cred.kwargs["client_id"] == "872cd9fa-d31f-45e0-9eab-6e460a02d1f1"
    assert cred.kwargs["tenant_id"] == TENANT
    assert "authority" not in cred.kwargs and "disable_instance_discovery" not in cred.kwargs
    assert "connection_verify" not in cred.kwargs
    assert cred.calls == [(ADO_SCOPE,)]
    assert ADO_SCOPE == "499b84ac-1321-427f-aa17-267ca6975798/.default"
    (p,) = prompts
    assert p.verification_uri == "https://microsoft.com/devicelogin" and p.user_code == "ABCD-EFGH"
    assert "ABCD-EFGH" in p.message and "https://microsoft.com/devicelogin" in p.message
    assert p.expires_on == datetime(2030, 1, 1, tzinfo=UTC)


def test_token_is_cached_until_forgotten():
    a = auth(account())
    a.bearer()
    a.bearer()
    assert len(FakeCredential.made) == 1 and len(FakeCredential.made[0].calls) == 1
    a.forget()
    assert a.bearer() == "entra-at-2"
    assert len(FakeCredential.made) == 2


def test_sandbox_authority_and_ca_bundle(tmp_path):
    ca = tmp_path / "ca.pem"
    auth(account(authority="https://127.0.0.1:8443/"), ca_bundle=ca).bearer()
    kw = FakeCredential.made[0].kwargs
    assert kw["authority"] == "https://127.0.0.1:8443"
    assert kw["disable_instance_discovery"] is True
    assert kw["connection_verify"] == str(ca)


def test_plain_http_authority_is_refused():
    with pytest.raises(KeyturnError, match="plain HTTP"):
        auth(account(authority="http://login.example.com")).bearer()


def test_device_code_without_a_terminal():
    a = auth(account(), interaction=Interaction())
    with pytest.raises(KeyturnError) as info:
        a.bearer()
    text = str(info.value)
    assert "device-code sign-in of ado-bot needs a terminal" in text
    assert 'sign_in = "azure-cli"' in text
    assert FakeCredential.made == []


def test_azure_cli_flow():
    auth(account(sign_in="azure-cli")).bearer()
    (cred,) = FakeCredential.made
    assert type(cred).__name__ == "AzureCliCredential"
    assert cred.kwargs["tenant_id"] == TENANT


def test_azure_cli_generic_tenant_is_not_passed():
    auth(account(sign_in="azure-cli", tenant_id="organizations")).bearer()
    assert "tenant_id" not in FakeCredential.made[0].kwargs


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Azure CLI not found on path", "not installed or not on PATH"),
        (
            "Please run 'az login' to set up an account",
            f"not signed in as the bot of ado-bot: run az login --tenant {TENANT}",
        ),
    ],
)
def test_azure_cli_unavailable(raw, expected):
    FakeCredential.fail = CredentialUnavailableError(message=raw)
    with pytest.raises(ProviderError) as info:
        auth(account(sign_in="azure-cli")).bearer()
    assert expected in str(info.value)
    assert f"az login --tenant {TENANT}" in str(info.value)
    assert "\n" not in str(info.value)


PASSWORD_REFS = {
    "email": "vault:rpe-prod/rpe-azure-devops-email",
    "password": "vault:rpe-prod/rpe-azure-devops-password",
}
SECRETS = {PASSWORD_REFS["email"]: "bot@contoso.com", PASSWORD_REFS["password"]: "hunter2-canary"}


def test_password_flow_warns_and_resolves_secrets():
    warned: list[str] = []
    a = auth(
        account(sign_in="password", **PASSWORD_REFS), secrets=SECRETS, interaction=Interaction(on_warning=warned.append)
    )
    a.bearer()
    (cred,) = FakeCredential.made
    assert type(cred).__name__ == "UsernamePasswordCredential"
    assert cred.args == ("872cd9fa-d31f-45e0-9eab-6e460a02d1f1", "bot@contoso.com", "hunter2-canary")
    assert cred.kwargs["tenant_id"] == TENANT
    (w,) = warned
    assert "deprecated" in w and "MFA" in w and "device-code" in w


def test_password_flow_keeps_azure_identity_deprecation_warning_quiet(monkeypatch):
    monkeypatch.undo()  # the real UsernamePasswordCredential: construction makes no network call
    a = auth(account(sign_in="password", **PASSWORD_REFS), secrets=SECRETS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cred = a._make_credential()
    assert type(cred) is azure.identity.UsernamePasswordCredential
    assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []


AADSTS_CASES = [
    (
        "AADSTS50126: Error validating credentials due to invalid username or password. Trace ID: x",
        f"the bot's password was refused by Entra (AADSTS50126): check the secret {PASSWORD_REFS['password']}",
    ),
    (
        "AADSTS50076: Due to a configuration change made by your administrator, you must use MFA.",
        'multi-factor authentication for the bot of ado-bot (AADSTS50076), which the password flow cannot do (set sign_in = "device-code")',
    ),
    (
        "AADSTS50034: The user account bot@contoso.com does not exist in the directory.",
        f"Entra does not know the bot's user (AADSTS50034): check the secret {PASSWORD_REFS['email']}",
    ),
    (
        "AADSTS700016: Application with identifier 'x' was not found in the directory.",
        "Entra refused the client application",
    ),
    (
        "Authentication failed: AADSTS99999: Something brand new happened. Trace ID: 1 Correlation ID: 2",
        "Entra refused the sign-in of ado-bot: AADSTS99999: Something brand new happened.",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), AADSTS_CASES)
def test_entra_errors_become_one_line(raw, expected):
    FakeCredential.fail = ClientAuthenticationError(message=raw)
    with pytest.raises(ProviderError) as info:
        auth(account(sign_in="password", **PASSWORD_REFS), secrets=SECRETS).bearer()
    text = str(info.value)
    assert expected in text
    assert "\n" not in text and "Trace ID" not in text and "hunter2-canary" not in text


def test_device_code_timeout_message():
    FakeCredential.fail = ClientAuthenticationError(message="Timed out waiting for user to authenticate")
    with pytest.raises(ProviderError, match="nobody finished the device-code sign-in of ado-bot in time"):
        auth(account()).bearer()


def test_failed_sign_in_starts_afresh_next_time():
    FakeCredential.fail = ClientAuthenticationError(message="AADSTS70020: expired")
    a = auth(account())
    with pytest.raises(ProviderError, match="expired"):
        a.bearer()
    FakeCredential.fail = None
    a.bearer()
    assert len(FakeCredential.made) == 2


def test_azure_loggers_are_kept_off_the_terminal():
    auth(account()).bearer()
    for name in ("azure", "msal"):
        logger = logging.getLogger(name)
        assert logger.propagate is False
        assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)


def test_unreachable_entra_says_so():
    from azure.core.exceptions import ServiceRequestError

    err = ClientAuthenticationError(message="Authentication failed: HTTPSConnection(host='127.0.0.1', port=9): refused")
    err.__cause__ = ServiceRequestError("refused")
    FakeCredential.fail = err
    with pytest.raises(ProviderError) as info:
        auth(account(authority="https://127.0.0.1:9")).bearer()
    assert str(info.value).startswith("cannot reach Entra at 127.0.0.1:9 to sign in the bot of ado-bot")


def test_authority_on_another_port_skips_msal_user_realm_discovery(monkeypatch):
    import msal.authority

    hosts: set[str] = set()
    monkeypatch.setattr(msal.authority.Authority, "_domains_without_user_realm_discovery", hosts)
    auth(account(authority="https://login.microsoftonline.us")).bearer()
    assert hosts == set()  # the default port: realm discovery works there
    auth(account(authority="https://127.0.0.1:8443")).bearer()
    assert hosts == {"127.0.0.1"}
