"""AzureDevOpsProvider against the sandbox over real loopback sockets (TLS with the sandbox CA).

The real azure-identity DeviceCodeCredential and UsernamePasswordCredential talk to the Entra
emulator; the PAT client talks to the vssps and dev.azure.com emulators, which check every
request and response against the vendored swagger.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.config import Account, load_config
from app.errors import AmbiguousResultError, AuthExpiredError, ProviderError
from app.sandbox import Sandbox
from app.secret import SecretValue
from providers.azure_devops.provider import AzureDevOpsProvider
from providers.base import DeviceCodePrompt, Interaction, MintRequest

EMAIL_REF = "env:KEYTURN_TEST_BOT_EMAIL"
PASSWORD_REF = "env:KEYTURN_TEST_BOT_PASSWORD"


@dataclass
class Seen:
    prompts: list[DeviceCodePrompt] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def interaction(self) -> Interaction:
        return Interaction(on_device_code=self.prompts.append, on_warning=self.warnings.append)


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sb") as sandbox:
        yield sandbox
        assert sandbox.state.internal_errors == []  # the emulators met no contract violation


@pytest.fixture
def make(sb: Sandbox) -> Iterator[Callable[..., tuple[AzureDevOpsProvider, Seen]]]:
    """``make(sign_in=..., password=...)``: a provider for the sandbox's ``ado-bot`` account."""
    config = load_config(sb.config_path)
    ca = config.resolve_path(config.settings.ca_bundle) if config.settings.ca_bundle else None
    made: list[AzureDevOpsProvider] = []

    def build(sign_in: str | None = None, password: str | None = None) -> tuple[AzureDevOpsProvider, Seen]:
        account: Account = config.accounts["ado-bot"]
        if sign_in == "password":
            account = account.model_copy(update={"sign_in": "password", "email": EMAIL_REF, "password": PASSWORD_REF})
        email, real_password = sb.state.bot_credentials
        secrets = {EMAIL_REF: email, PASSWORD_REF: password if password is not None else real_password}
        seen = Seen()
        provider = AzureDevOpsProvider(
            "ado-bot",
            account,
            ca_bundle=ca,
            resolve_secret=lambda ref: SecretValue(secrets[ref]),
            interaction=seen.interaction(),
        )
        made.append(provider)
        return provider, seen

    yield build
    for p in made:
        p.close()


def in_days(n: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=n)


def test_device_code_sign_in_and_paged_listing(sb, make):
    provider, seen = make()
    provider.sign_in()
    provider.sign_in()  # idempotent
    (prompt,) = seen.prompts
    assert prompt.user_code and prompt.verification_uri.startswith("https://127.0.0.1:")
    assert prompt.user_code in prompt.message

    tokens = provider.list_tokens(include_inactive=True)
    by_id = {t.id: t for t in tokens}
    mine = [p for p in sb.state.pats() if p.owner_oid == sb.state.bot_oid]
    assert set(by_id) == {p.authorization_id for p in mine}  # every page, nobody else's tokens
    for rec in mine:
        info = by_id[rec.authorization_id]
        assert info.name == rec.display_name
        assert info.scopes == tuple(rec.scope.split())
        assert info.active == (rec.status(sb.state.now()) == "active")
        assert info.extra["status"] == rec.status(sb.state.now())
        assert info.expires_at is not None and abs(info.expires_at - rec.valid_to) < timedelta(seconds=1)
    assert len(mine) > sb.state.page_size  # so continuation paging was exercised


@pytest.fixture
def fresh_msal_realm_hosts(monkeypatch):
    """No host skips MSAL's user-realm discovery yet: the provider must arrange it for a sandbox port."""
    import msal.authority

    monkeypatch.setattr(msal.authority.Authority, "_domains_without_user_realm_discovery", set())


@pytest.mark.usefixtures("fresh_msal_realm_hosts")
def test_password_sign_in_warns_and_works(sb, make):
    provider, seen = make(sign_in="password")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        provider.sign_in()
    assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []  # we say it ourselves
    assert seen.prompts == []
    (warning,) = seen.warnings
    assert "deprecated" in warning and "device-code" in warning
    assert provider.list_tokens()


@pytest.mark.usefixtures("fresh_msal_realm_hosts")
def test_wrong_password_is_one_clear_line(sb, make):
    provider, _ = make(sign_in="password", password="not-the-password")
    with pytest.raises(ProviderError) as info:
        provider.sign_in()
    text = str(info.value)
    assert "password was refused by Entra" in text and PASSWORD_REF in text
    assert "not-the-password" not in text and "\n" not in text


def test_mint_verify_revoke_get(sb, make, caplog):
    caplog.set_level(logging.DEBUG)
    provider, _ = make()
    minted = provider.mint(MintRequest("keyturn-sandbox-keda", ("vso.agentpools_manage",), in_days(60)))
    (rec,) = sb.state.pats_named("keyturn-sandbox-keda")
    assert rec.authorization_id == minted.info.id
    assert minted.value.reveal() == rec.value
    assert rec.scope == "vso.agentpools_manage" and rec.target_accounts is not None  # allOrgs false
    assert minted.notes == ()

    detail = provider.verify(minted)
    assert detail == f"GET /{sb.state.org}/_apis/distributedtask/pools -> 200 (3 pools)"
    assert sb.state.pat(minted.info.id).uses == 1

    got = provider.get_token(minted.info.id)
    assert got is not None and got.active and got.name == "keyturn-sandbox-keda"

    provider.revoke(minted.info.id)
    provider.revoke(minted.info.id)  # again: not an error
    assert sb.state.pat(minted.info.id).revoked
    after = provider.get_token(minted.info.id)
    assert after is not None and not after.active and after.extra["status"] == "revoked"
    with pytest.raises(ProviderError, match="the new token was refused by"):
        provider.verify(minted)
    assert provider.get_token("00000000-0000-0000-0000-000000000000") is None

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert rec.value not in logged


def test_verify_without_pool_scopes_uses_connection_data(sb, make):
    provider, _ = make()
    minted = provider.mint(MintRequest("keyturn-sandbox-build", ("vso.build",), in_days(10)))
    assert provider.verify(minted).startswith(f"GET /{sb.state.org}/_apis/connectionData -> 200")


def test_lifespan_policy_clamp_is_noted(sb, make):
    sb.state.set_policy(max_lifespan_days=30)
    provider, _ = make()
    minted = provider.mint(MintRequest("keyturn-sandbox-clamped", ("vso.build",), in_days(180)))
    assert minted.info.expires_at is not None and minted.info.expires_at < in_days(31)
    (note,) = minted.notes
    assert "maximum PAT lifespan clamped the expiry" in note


@pytest.mark.parametrize(
    ("policy", "request_kw", "expected"),
    [
        ({"block_full_scope": True}, {"scopes": ("app_token",)}, "full-access PATs are blocked"),
        ({"block_global": True}, {"all_orgs": True}, "all_orgs = false"),
        ({"disable_pat_creation": True}, {}, "PAT creation is disabled"),
    ],
)
def test_policies_refuse_with_a_clear_message(sb, make, policy, request_kw, expected):
    sb.state.set_policy(**policy)
    provider, _ = make()
    kw = {"scopes": ("vso.build",), "all_orgs": False, **request_kw}
    with pytest.raises(ProviderError) as info:
        provider.mint(MintRequest("keyturn-sandbox-policy", kw["scopes"], in_days(10), all_orgs=kw["all_orgs"]))
    assert not isinstance(info.value, AmbiguousResultError)
    assert expected in str(info.value)
    assert sb.state.pats_named("keyturn-sandbox-policy") == []


def test_unknown_scope_is_refused(sb, make):
    provider, _ = make()
    with pytest.raises(ProviderError, match="scopes are unknown"):
        provider.mint(MintRequest("keyturn-sandbox-bad-scope", ("vso.no_such_scope",), in_days(10)))


def test_expired_entra_sign_in_then_sign_in_again(sb, make):
    provider, seen = make()
    provider.sign_in()
    assert sb.state.expire_user_tokens() >= 1
    with pytest.raises(AuthExpiredError, match="sign in again"):
        provider.list_tokens()
    provider.sign_in()
    assert len(seen.prompts) == 2  # a fresh device-code sign-in
    assert provider.list_tokens()


@pytest.mark.parametrize("fault", ["500-after-create", "reset-after-create"])
def test_create_with_unknown_outcome_is_ambiguous(sb, make, fault):
    provider, _ = make()
    sb.state.inject_fault("pats.create", fault)
    with pytest.raises(AmbiguousResultError):
        provider.mint(MintRequest("keyturn-sandbox-ambiguous", ("vso.build",), in_days(10)))
    # it was created: listing by name (what the engine does) finds it
    assert [t.name for t in provider.list_tokens() if t.active].count("keyturn-sandbox-ambiguous") == 1


def test_list_survives_a_transient_503(sb, make):
    provider, _ = make()
    provider._client._sleep = lambda seconds: None  # the backoff itself is unit-tested
    provider.sign_in()
    sb.state.inject_fault("pats.list", "503")
    assert provider.list_tokens()


@pytest.mark.parametrize("scope", ["vso.loadtest", "vso.hooks_write", "vso.settings"])
def test_server_pat_token_error_message_reaches_the_engineer(sb, make, scope):
    """A real invalidScope over HTTP: keyturn's error carries the 7.2 patTokenErrorMessage, on one line."""
    provider, _ = make()
    with pytest.raises(ProviderError) as info:
        provider.mint(MintRequest("keyturn-sandbox-retired", ("vso.build", scope), in_days(10)))
    text = str(info.value)
    assert not isinstance(info.value, AmbiguousResultError)
    assert "(patTokenError invalidScope)" in text
    assert f"The scope(s) '{scope}' are not valid personal access token scopes" in text  # the server's own text
    assert "\n" not in text and "\r" not in text
    assert sb.state.pats_named("keyturn-sandbox-retired") == []
