"""AzureDevOpsProvider: the declared Provider contract, import cost, and how it ties Entra sign-in to the PAT client."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.identity
import httpx
import pytest
from azure.core.credentials import AccessToken

from app.config import Account
from app.errors import AuthExpiredError
from app.secret import SecretValue
from providers.azure_devops.provider import AzureDevOpsProvider
from providers.base import Interaction, MintRequest, Provider

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_provider_loads_no_backend_library():
    code = (
        "import sys, providers.azure_devops, providers.azure_devops.provider\n"
        "assert providers.azure_devops.AzureDevOpsProvider is providers.azure_devops.provider.AzureDevOpsProvider\n"
        "heavy = [m for m in ('azure.identity', 'azure.core', 'msal', 'httpx', 'textual') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_implements_every_protocol_member():
    assert issubclass(AzureDevOpsProvider, Provider)
    for name, member in inspect.getmembers(Provider, inspect.isfunction):
        if name.startswith("_"):
            continue
        ours = getattr(AzureDevOpsProvider, name)
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(member).parameters), name
    for name in ("sign_in", "list_tokens", "get_token", "mint", "verify", "revoke", "close"):
        assert name in vars(AzureDevOpsProvider), name  # the required methods, not the base's NotImplementedError
    assert (AzureDevOpsProvider.platform, AzureDevOpsProvider.token_kind) == ("azure-devops", "pat")
    assert AzureDevOpsProvider.CAN_REVOKE_ALL_EXCEPT is False


class FakeDeviceCode:
    made = 0

    def __init__(self, **kwargs: Any) -> None:
        FakeDeviceCode.made += 1
        self.prompt = kwargs["prompt_callback"]

    def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
        self.prompt("https://microsoft.com/devicelogin", "CODE", datetime.now(UTC))
        return AccessToken("entra-access-token", int(time.time()) + 3600)


@pytest.fixture
def provider(monkeypatch, fake_ado):
    FakeDeviceCode.made = 0
    monkeypatch.setattr(azure.identity, "DeviceCodeCredential", FakeDeviceCode)
    prompts: list[Any] = []
    acc = Account(
        platform="azure-devops",
        organization="contoso",
        vssps_url="https://vssps.example.test",
        base_url="https://dev.example.test",
    )
    p = AzureDevOpsProvider(
        "ado-bot",
        acc,
        ca_bundle=None,
        resolve_secret=SecretValue,
        interaction=Interaction(on_device_code=prompts.append),
        transport=httpx.MockTransport(fake_ado.handler),
    )
    p.prompts = prompts  # type: ignore[attr-defined]
    yield p
    p.close()


def test_a_whole_cycle(provider, fake_ado):
    old = fake_ado.add("keda-agents", days=5, scope="vso.agentpools_manage")
    provider.sign_in()
    provider.sign_in()  # idempotent: one device-code prompt
    assert len(provider.prompts) == 1
    assert [t.id for t in provider.list_tokens()] == [old["authorizationId"]]
    new = provider.mint(MintRequest("keda-agents", ("vso.agentpools_manage",), datetime.now(UTC) + timedelta(days=90)))
    assert provider.verify(new) == "GET /contoso/_apis/distributedtask/pools -> 200 (3 pools)"
    provider.revoke(old["authorizationId"])
    after = provider.get_token(old["authorizationId"])
    assert after is not None and not after.active
    assert provider.get_token(new.info.id).active


def test_auth_expired_forgets_the_sign_in(provider, fake_ado):
    provider.sign_in()
    fake_ado.override = lambda req: httpx.Response(203, html="<html>Sign in</html>")
    with pytest.raises(AuthExpiredError):
        provider.list_tokens()
    fake_ado.override = None
    provider.sign_in()  # a new device-code sign-in, not the refused cached token
    assert FakeDeviceCode.made == 2 and len(provider.prompts) == 2
    assert provider.list_tokens() == []


def test_auth_expired_with_azure_cli_says_az_login(monkeypatch, fake_ado):
    class Cli:
        def __init__(self, **kw: Any) -> None:
            pass

        def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
            return AccessToken("entra-access-token", int(time.time()) + 3600)

    monkeypatch.setattr(azure.identity, "AzureCliCredential", Cli)
    acc = Account(
        platform="azure-devops",
        organization="contoso",
        sign_in="azure-cli",
        tenant_id="contoso.onmicrosoft.com",
        vssps_url="https://vssps.example.test",
    )
    fake_ado.override = lambda req: httpx.Response(200, html="<html>Sign in</html>")
    p = AzureDevOpsProvider(
        "ado-bot",
        acc,
        ca_bundle=None,
        resolve_secret=SecretValue,
        interaction=Interaction(),
        transport=httpx.MockTransport(fake_ado.handler),
    )
    with pytest.raises(AuthExpiredError) as info:
        p.list_tokens()
    assert "az login --tenant contoso.onmicrosoft.com" in str(info.value)
    p.close()


def test_catalogue_never_offers_scopes_absent_from_the_scope_table():
    """Retired (vso.loadtest*) and non-public (vso.hooks*, vso.settings*) ids are not offered nor accepted."""
    from providers.azure_devops.scopes import load_catalogue

    catalogue = load_catalogue()
    absent = ["vso.loadtest", "vso.loadtest_write", "vso.hooks", "vso.hooks_write", "vso.hooks_interact",
              "vso.settings", "vso.settings_write", "vso.pats", "vso.pats_manage"]
    assert catalogue.validate(absent) == absent
    assert not catalogue.all_scope_ids() & set(absent)
    offered = {lv.scope for g in catalogue.groups for lv in g.levels}
    assert not offered & set(absent)
    for words in ("load test", "loadtest", "service hooks", "settings"):
        assert not {lv.scope for g in catalogue.search(words) for lv in g.levels} & set(absent)
