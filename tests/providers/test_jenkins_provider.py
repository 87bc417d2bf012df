"""JenkinsProvider end to end against the Jenkins emulator over real loopback HTTPS."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Account, Target
from app.errors import KeyturnError, ProviderError
from app.sandbox.jenkins import NEW_VERSION, OLD_VERSION, SEED_TOKEN_UUID, JenkinsStandalone, seed_jenkins
from app.sandbox.state import SandboxState
from app.secret import SecretValue
from providers.base import Interaction, MintedToken, MintRequest, Provider, RotationContext
from providers.jenkins.provider import JenkinsProvider

CANARY = "11c0ffee" + "ca" * 14  # the seeded token's value: must never reach a log line or a message


@pytest.fixture
def jk(tmp_path: Path) -> Iterator[JenkinsStandalone]:
    state = SandboxState()
    with JenkinsStandalone(tmp_path / "jk", state=state, world=seed_jenkins(state, token_value=CANARY)) as server:
        yield server
    assert server.state.internal_errors == [], "the emulator itself failed"


def make(
    jk: JenkinsStandalone,
    *,
    warnings: list[str] | None = None,
    account: dict[str, Any] | None = None,
    target: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    **kw: Any,
) -> JenkinsProvider:
    s = jk.world.seeded
    assert s is not None
    values = {"env:JK": s.token_value, "env:PW": s.password, "env:OLD": s.token_value, **(secrets or {})}
    acc = Account(**{"platform": "jenkins", "organization": "jenkins", "base_url": jk.url, "user": s.user,
                     "api_token": "env:JK", **(account or {})})
    tgt = Target(**{"account": "jenkins", "token_name": s.token_name, "token_uuid": s.token_uuid, "scopes": ["user"],
                    **(target or {})})
    sink = warnings if warnings is not None else []
    return JenkinsProvider(
        "jenkins", acc, "jenkins", tgt, ca_bundle=jk.ca_path, resolve_secret=lambda ref: SecretValue(values[ref]),
        interaction=Interaction(on_warning=sink.append), **kw,
    )


def minted_ctx(minted: MintedToken, *, with_value: bool = True) -> RotationContext:
    """What the engine tells the provider once the journal says this rotation minted ``minted``."""
    return RotationContext(rotation_id="r1", minted=minted.info, minted_fingerprint=minted.value.fingerprint,
                           value=minted.value if with_value else None)


def rotate(p: JenkinsProvider, expires_at: datetime | None) -> Any:
    p.sign_in()
    old = p.list_tokens()
    assert [(t.id, t.name) for t in old] == [(SEED_TOKEN_UUID, "ci-deploy")]
    minted = p.mint(MintRequest(display_name="ci-deploy-20260101-abcdef12", scopes=("user",), expires_at=expires_at))
    assert "200 as keyturn-bot" in p.verify(minted)
    ctx = minted_ctx(minted)
    p.revoke(old[0].id, ctx)  # proven: the old value now gets 401, and the uuid left the security page
    assert [t.id for t in p.list_tokens(ctx)] == [minted.info.id]
    return minted


def test_implements_the_declared_contract() -> None:
    assert issubclass(JenkinsProvider, Provider)
    for name, member in inspect.getmembers(Provider, inspect.isfunction):
        if not name.startswith("_"):
            ours = getattr(JenkinsProvider, name)
            assert list(inspect.signature(ours).parameters) == list(inspect.signature(member).parameters), name
    for name in ("sign_in", "list_tokens", "get_token", "mint", "verify", "revoke", "close", "revoke_all_except",
                 "lists_tokens", "owner", "retire_notice", "no_expiry_notice", "config_updates"):
        assert name in vars(JenkinsProvider), name  # implemented here, not the base's default
    assert (JenkinsProvider.platform, JenkinsProvider.token_kind) == ("jenkins", "api-token")
    assert JenkinsProvider.CAN_REVOKE_ALL_EXCEPT is True


@pytest.mark.parametrize("version", [NEW_VERSION, OLD_VERSION])
def test_rotation(jk: JenkinsStandalone, version: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    jk.world.version = version
    warnings: list[str] = []
    p = make(jk, warnings=warnings)
    expires = datetime.now(UTC) + timedelta(days=30)
    try:
        minted = rotate(p, expires)
    finally:
        p.close()
    assert p.server_version == version
    rec = jk.world.token(minted.info.id)
    assert rec is not None and not rec.revoked and rec.name == "ci-deploy-20260101-abcdef12"
    assert jk.world.token_status(CANARY) == "revoked"
    assert jk.world.token_status(minted.value.reveal()) == "active"
    if version == NEW_VERSION:
        assert rec.expires_at is not None and abs(rec.expires_at - expires.timestamp()) < 86400 + 5
        assert minted.info.expires_at is not None and warnings == []
    else:
        assert rec.expires_at is None and minted.info.expires_at is None
        assert any("never expires" in n for n in minted.notes)  # a note the engine says once
    # Jenkins handed out session cookies on every API-token answer; keyturn never sent one back
    assert jk.world.counters["requests_with_cookie"] == 0
    assert jk.world.counters["crumb_refused"] == 0
    text = caplog.text + " ".join(warnings) + " ".join(minted.notes)
    assert CANARY not in text and minted.value.reveal() not in text


def test_trap_a_cookie_keeping_client_sees_a_revoked_token_alive(jk: JenkinsStandalone) -> None:
    """Why verification must use a fresh cookie-less client: the emulator reproduces the trap."""
    s = jk.world.seeded
    assert s is not None
    with httpx.Client(base_url=jk.url, verify=jk.client_ssl_context(), auth=(s.user, CANARY)) as naive:
        assert naive.get("/whoAmI/api/json").status_code == 200  # picks up JSESSIONID
        jk.world.revoke(SEED_TOKEN_UUID)
        r = naive.get("/whoAmI/api/json")
        assert r.status_code == 200 and r.json()["name"] == s.user  # dead token, alive-looking
    p = make(jk)
    try:
        assert p.list_tokens() == []  # the provider is not fooled
    finally:
        p.close()


def test_password_mode_never_reuses_the_session_for_verification(jk: JenkinsStandalone) -> None:
    """Stateful mode: the session is the minting client's. Had verify or the revoke proof reused that cookie,
    the session (which takes precedence over Basic) would make the dead tokens below look alive and this fails."""
    p = make(jk, account={"api_token": None, "password": "env:PW"}, target={"old_token": "env:OLD"})
    try:
        p.sign_in()
        assert jk.world.counters["login"] == 1
        minted = p.mint(MintRequest(display_name="rotated", scopes=("user",), expires_at=None))
        p.verify(minted)
        p.revoke(SEED_TOKEN_UUID, minted_ctx(minted))  # proof: the old value gets 401 on a fresh client
        assert jk.world.token_status(CANARY) == "revoked"
        jk.world.revoke(minted.info.id)  # the new token dies behind keyturn's back
        with pytest.raises(ProviderError, match="refused by Jenkins"):
            p.verify(minted)
    finally:
        p.close()
    assert jk.world.counters["auth_session"] >= 2  # the mint and the revoke went through the session + crumb


def test_revoke_proof_catches_a_wrong_uuid(jk: JenkinsStandalone) -> None:
    p = make(jk, target={"token_uuid": "0f0f0f0f-0000-4000-8000-000000000000"})
    try:
        p.sign_in()
        minted = p.mint(MintRequest(display_name="next", scopes=("user",), expires_at=None))
        p.verify(minted)
        with pytest.raises(ProviderError, match="still works") as err:
            p.revoke("0f0f0f0f-0000-4000-8000-000000000000", minted_ctx(minted))  # Jenkins answers 200: only the 401 proof tells
    finally:
        p.close()
    assert jk.world.token_status(CANARY) == "active"
    assert CANARY not in str(err.value)


def test_error_inside_200_is_raised(jk: JenkinsStandalone) -> None:
    """Jenkins answers its JSON errors with HTTP 200 (HttpResponses.errorJSON): check() reads the status."""
    p = make(jk)
    try:
        p.sign_in()
        client = p._client
        what = "could not create"
        resp = client.post(client.descriptor_path("keyturn-bot") + "/generateNewToken",
                           {"newTokenName": "x", "expirationDuration": "-3"}, what=what, json_expected=True)
        assert resp.status_code == 200
        with pytest.raises(ProviderError, match=r"status 'error': Expiration date is in the past\."):
            client.check(resp, what)
        # a blank name is no error: Jenkins names the token itself
        minted = p.mint(MintRequest(display_name="   ", scopes=("user",), expires_at=None))
        assert minted.info.name.startswith("Token created on ")
    finally:
        p.close()


def test_admin_cannot_mint_for_another_user_without_the_property(jk: JenkinsStandalone) -> None:
    s = jk.world.seeded
    assert s is not None
    kw: dict[str, Any] = {"secrets": {"env:ADMIN": s.admin_token}, "account": {"api_token": "env:ADMIN"},
                          "target": {"old_token": "env:OLD"}, "auth_user": s.admin}
    p = make(jk, **kw)
    try:
        with pytest.raises(ProviderError, match="adminCanGenerateNewTokens") as err:
            p.mint(MintRequest(display_name="by-admin", scopes=("user",), expires_at=None))
        assert "sign in as keyturn-bot" in str(err.value)
        jk.world.admin_can_generate_new_tokens = True
        minted = p.mint(MintRequest(display_name="by-admin", scopes=("user",), expires_at=None))
        p.verify(minted)
        p.revoke(SEED_TOKEN_UUID, minted_ctx(minted))
    finally:
        p.close()
    assert jk.world.token_status(CANARY) == "revoked"
    assert jk.world.token_status(s.admin_token) == "active"


def test_cloudbees_controller_is_refused(jk: JenkinsStandalone) -> None:
    jk.world.cloudbees = "controller"
    p = make(jk)
    try:
        with pytest.raises(ProviderError, match="Operations Center"):
            p.sign_in()
        jk.world.cloudbees = "operations-center"
        p.sign_in()  # minting on the Operations Center is the right place
    finally:
        p.close()
    assert jk.world.counters["generated"] == 0


def test_no_valid_crumb_is_explained(jk: JenkinsStandalone) -> None:
    p = make(jk, account={"api_token": None, "password": "env:PW"}, target={"old_token": "env:OLD"})
    try:
        p.sign_in()
        jk.world.drop_sessions()  # a restart: the cookie means nothing, its crumb is bound to a dead session
        with pytest.raises(ProviderError, match="crumb is bound to the session cookie") as err:
            p.mint(MintRequest(display_name="x", scopes=("user",), expires_at=None))
        assert "\n" not in str(err.value)
        minted = p.mint(MintRequest(display_name="x", scopes=("user",), expires_at=None))  # signs in again
        p.verify(minted)
    finally:
        p.close()


def test_unknown_uuid_is_found_by_name_on_the_security_page(jk: JenkinsStandalone) -> None:
    """First rotation of a token made by hand: the user's security page lists it (uuid and name)."""
    s = jk.world.seeded
    assert s is not None
    jk.world.add_token(s.user, "someone's <laptop> & script")  # another token of the user, awkward name
    warnings: list[str] = []
    p = make(jk, warnings=warnings, target={"token_uuid": None})
    try:
        p.sign_in()
        listed = {t.id: t.name for t in p.list_tokens()}
        assert listed[SEED_TOKEN_UUID] == "ci-deploy"
        assert "someone's <laptop> & script" in listed.values()
        assert p.lists_tokens() is True
        minted = p.mint(MintRequest(display_name="ci-deploy-20260101-abcdef12", scopes=("user",), expires_at=None))
        ctx = minted_ctx(minted)
        p.revoke(SEED_TOKEN_UUID, ctx)  # proven by the old value's 401 and by the page
        assert SEED_TOKEN_UUID not in {t.id for t in p.list_tokens(ctx)}
        assert minted.info.id in {t.id for t in p.list_tokens(ctx)}
    finally:
        p.close()
    assert warnings == []
    assert len([t for t in jk.world.tokens(s.user) if not t.revoked]) == 2  # the other token lives on


def test_unknown_uuid_and_no_page_names_the_ways_out_in_order(jk: JenkinsStandalone) -> None:
    jk.world.security_page = False  # a controller whose page keyturn cannot read
    warnings: list[str] = []
    p = make(jk, warnings=warnings, target={"token_uuid": None})
    try:
        assert p.lists_tokens() is True  # no page read tried yet: nothing is known to be missing
        p.sign_in()
        assert p.list_tokens() == [] and p.lists_tokens() is False
    finally:
        p.close()
    (w,) = warnings
    page, console, everything = (w.index(x) for x in ("/user/keyturn-bot/security/", "script console", "--revoke-all-other-tokens"))
    assert page < console < everything  # offered in this order
    assert "ApiTokenProperty" in w and "tokenList" in w  # the script to run
    assert "EVERY other API token of keyturn-bot" in w


def test_revoke_all_except_keeps_only_the_new_token(jk: JenkinsStandalone) -> None:
    s = jk.world.seeded
    assert s is not None
    other = jk.world.add_token(s.user, "old laptop")
    jk.world.security_page = False
    p = make(jk, target={"token_uuid": None})
    try:
        p.sign_in()
        minted = p.mint(MintRequest(display_name="ci-deploy-20260101-abcdef12", scopes=("user",), expires_at=None))
        p.verify(minted)
        p.revoke_all_except(minted.info.id, minted_ctx(minted))
    finally:
        p.close()
    assert jk.world.token_status(s.token_value) == "revoked"
    assert jk.world.token_status(other.value) == "revoked"
    assert jk.world.token_status(minted.value.reveal()) == "active"
    assert jk.world.token_status(s.admin_token) == "active"  # another user's tokens are untouched


def test_revoke_proof_by_the_page_when_no_value_is_known(jk: JenkinsStandalone) -> None:
    """Resuming after the store step: the reference now holds the new token; the page proves the old uuid gone."""
    s = jk.world.seeded
    assert s is not None
    first = make(jk)
    try:
        first.sign_in()
        minted = first.mint(MintRequest(display_name="ci-deploy-20260101-abcdef12", scopes=("user",), expires_at=None))
    finally:
        first.close()
    warnings: list[str] = []
    resumed = make(jk, warnings=warnings, secrets={"env:JK": minted.value.reveal()})  # a new process, new value stored
    try:
        resumed.sign_in()
        # the journal's word (uuid and fingerprint, no value): the reference's value is the new token, not the old one
        resumed.revoke(SEED_TOKEN_UUID, minted_ctx(minted, with_value=False))
    finally:
        resumed.close()
    assert warnings == []
    assert jk.world.token_status(s.token_value) == "revoked"
    assert jk.world.token_status(minted.value.reveal()) == "active"


def test_the_minted_token_is_known_from_ctx_only(jk: JenkinsStandalone) -> None:
    """Nothing of a rotation stays in the provider: minting, or a call with a ctx, leaves no trace in the next call."""
    jk.world.security_page = False  # no list: only the ctx tells which token is the new one
    first = make(jk)
    try:
        first.sign_in()
        minted = first.mint(MintRequest(display_name="ci-deploy-20260101-abcdef12", scopes=("user",), expires_at=None))
        by_value = first.get_token(minted.info.id, minted_ctx(minted))  # checked with the value the ctx holds
        assert by_value is not None and by_value.name == "minted by keyturn"
        guessed = first.get_token(minted.info.id)  # no ctx: a uuid the caller knows counts as current while the old works
        assert guessed is not None and guessed.name == "ci-deploy"
    finally:
        first.close()
    resumed = make(jk, secrets={"env:JK": minted.value.reveal()})  # a new process, new value stored
    try:
        resumed.sign_in()
        assert resumed.list_tokens(minted_ctx(minted, with_value=False)) == []  # the old one is not knowable
        # the same provider without the ctx takes the reference's (new) value for the old token: nothing was kept
        assert [t.id for t in resumed.list_tokens()] == [SEED_TOKEN_UUID]
    finally:
        resumed.close()
    assert resumed.lists_tokens() is False  # list_tokens tried the page
    assert resumed.owner() == resumed.user == "keyturn-bot"


def test_refused_token_and_missing_settings(jk: JenkinsStandalone, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    jk.world.revoke(SEED_TOKEN_UUID)
    p = make(jk)
    try:
        with pytest.raises(ProviderError, match="refused") as err:
            p.sign_in()
    finally:
        p.close()
    assert CANARY not in str(err.value) and CANARY not in caplog.text
    with pytest.raises(KeyturnError, match="base_url"):
        make(jk, account={"base_url": None})


def test_stateless_client_jar_refuses_cookies(jk: JenkinsStandalone) -> None:
    from providers.jenkins.client import stateless_client

    s = jk.world.seeded
    assert s is not None
    with stateless_client(jk.ca_path, s.user, SecretValue(CANARY)) as c:
        r = c.get(jk.url + "/whoAmI/api/json")
        assert "set-cookie" in r.headers  # Jenkins offered a session...
        assert isinstance(c.cookies.jar, CookieJar) and len(c.cookies.jar) == 0  # ...and it was not kept


@pytest.mark.parametrize(
    ("header", "version", "product", "expiry"),
    [
        ("2.548", (2, 548), "", True),
        ("2.479.3", (2, 479, 3), "", False),
        ("2.548.1.2 (CloudBees CI Operations Center 2.548.1.2)", (2, 548, 1, 2), "CloudBees CI Operations Center 2.548.1.2", True),
        ("1.625.16.2 (CloudBees Jenkins Operations Center 1.8)", (1, 625, 16, 2), "CloudBees Jenkins Operations Center 1.8", False),
    ],
)
def test_x_jenkins_header(header: str, version: tuple[int, ...], product: str, expiry: bool) -> None:
    from providers.jenkins.client import server_info, version_tuple
    from providers.jenkins.provider import EXPIRY_SINCE

    info = server_info(httpx.Response(200, headers={"X-Jenkins": header}))
    assert version_tuple(info.version) == version and info.product == product
    assert (version_tuple(info.version) >= EXPIRY_SINCE) is expiry
    assert info.cloudbees is bool(product) and info.operations_center is ("Operations Center" in product)
