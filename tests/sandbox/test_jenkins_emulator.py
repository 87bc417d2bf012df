"""The Jenkins emulator over real loopback HTTPS: sessions, crumbs, errors in 200, versions, revoke semantics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.sandbox.jenkins import (
    COOKIE,
    NEW_VERSION,
    NO_CRUMB,
    OLD_VERSION,
    SEED_TOKEN_UUID,
    SEED_USER,
    JenkinsStandalone,
)

GEN = f"/user/{SEED_USER}/descriptorByName/jenkins.security.ApiTokenProperty/generateNewToken"
REVOKE = f"/user/{SEED_USER}/descriptorByName/jenkins.security.ApiTokenProperty/revoke"


@pytest.fixture
def jk(tmp_path: Path) -> Iterator[JenkinsStandalone]:
    with JenkinsStandalone(tmp_path / "jk") as server:
        yield server
    assert server.state.internal_errors == []


def client(jk: JenkinsStandalone, auth: tuple[str, str] | None = None) -> httpx.Client:
    """A client that keeps no cookies between requests (tests pass them explicitly)."""
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx.Client(base_url=jk.url, verify=jk.client_ssl_context(), auth=auth, cookies=jar)


def seeded(jk: JenkinsStandalone) -> tuple[str, str, str]:
    s = jk.world.seeded
    assert s is not None
    return s.user, s.token_value, s.password


def session_cookie(resp: httpx.Response) -> str:
    raw = resp.headers["set-cookie"]
    assert raw.startswith(COOKIE + "=")
    return raw.split(";", 1)[0]


def login(jk: JenkinsStandalone, user: str, password: str) -> tuple[str, str]:
    """(cookie header, crumb) of a fresh password session."""
    with client(jk) as c:
        r = c.post("/j_spring_security_check", data={"j_username": user, "j_password": password})
        assert r.status_code == 302 and "loginError" not in r.headers["location"]
        cookie = session_cookie(r)
        r = c.get("/crumbIssuer/api/json", headers={"Cookie": cookie})
        assert r.status_code == 200 and "set-cookie" not in r.headers
        return cookie, r.json()["crumb"]


def test_who_am_i_and_version_header(jk: JenkinsStandalone) -> None:
    user, value, _ = seeded(jk)
    with client(jk, (user, value)) as c:
        r = c.get("/whoAmI/api/json")
    assert r.status_code == 200 and r.json()["name"] == user and r.headers["X-Jenkins"] == NEW_VERSION
    with client(jk, (user, "11" + "0" * 32)) as c:
        r = c.get("/whoAmI/api/json")
    assert r.status_code == 401
    with client(jk) as c:
        r = c.get("/whoAmI/api/json")
    assert r.status_code == 200 and r.json()["anonymous"] is True and r.json()["name"] == "anonymous"
    assert "CloudBees" not in r.headers["X-Jenkins"]


def test_basic_token_needs_no_crumb_and_error_inside_200(jk: JenkinsStandalone) -> None:
    user, value, _ = seeded(jk)
    with client(jk, (user, value)) as c:
        r = c.post(GEN, data={"newTokenName": "deploy-2"})
        assert r.status_code == 200 and r.json()["status"] == "ok"
        data = r.json()["data"]
        assert set(data) == {"tokenUuid", "tokenName", "tokenValue", "expirationDate"}
        assert jk.world.token_status(data["tokenValue"]) == "active"
        r = c.post(GEN, data={"newTokenName": "  "})
        assert r.status_code == 200 and r.json()["status"] == "error" and r.json()["message"]
        r = c.post(GEN, data={"newTokenName": "x", "expirationDuration": "-3"})
        assert r.status_code == 200 and r.json()["status"] == "error"


def test_crumb_is_bound_to_its_session(jk: JenkinsStandalone) -> None:
    user, _value, password = seeded(jk)
    cookie_a, crumb_a = login(jk, user, password)
    cookie_b, crumb_b = login(jk, user, password)
    assert crumb_a != crumb_b
    with client(jk) as c:
        r = c.post(GEN, data={"newTokenName": "a"}, headers={"Cookie": cookie_a})
        assert r.status_code == 403 and NO_CRUMB in r.text
        r = c.post(GEN, data={"newTokenName": "a"}, headers={"Cookie": cookie_a, "Jenkins-Crumb": crumb_b})
        assert r.status_code == 403 and NO_CRUMB in r.text
        r = c.post(GEN, data={"newTokenName": "a"}, headers={"Cookie": cookie_a, "Jenkins-Crumb": crumb_a})
        assert r.status_code == 200 and r.json()["status"] == "ok"
        r = c.post(GEN, data={"newTokenName": "b", "Jenkins-Crumb": crumb_b}, headers={"Cookie": cookie_b})
        assert r.status_code == 200 and r.json()["status"] == "ok"  # the crumb as a form field works too
    # a password in Basic auth has no session to bind a crumb to
    with client(jk, (user, password)) as c:
        r = c.post(GEN, data={"newTokenName": "c"})
    assert r.status_code == 403 and NO_CRUMB in r.text
    with client(jk) as c:
        r = c.post("/j_spring_security_check", data={"j_username": user, "j_password": "wrong"})
    assert r.status_code == 302 and r.headers["location"].endswith("/loginError") and "set-cookie" not in r.headers


def test_session_takes_precedence_over_basic(jk: JenkinsStandalone) -> None:
    """A session cookie picked up while the token was alive keeps a revoked token looking alive."""
    user, value, _ = seeded(jk)
    with client(jk, (user, value)) as c:
        r = c.get("/whoAmI/api/json")
        cookie = session_cookie(r)  # Jenkins hands API-token callers a session too
        assert c.post(REVOKE, data={"tokenUuid": SEED_TOKEN_UUID}).status_code == 200
    assert jk.world.token_status(value) == "revoked"
    with client(jk, (user, value)) as c:
        assert c.get("/whoAmI/api/json").status_code == 401
        r = c.get("/whoAmI/api/json", headers={"Cookie": cookie})
    assert r.status_code == 200 and r.json()["name"] == user


def test_revoke_answers_200_for_unknown_uuid(jk: JenkinsStandalone) -> None:
    user, value, _ = seeded(jk)
    with client(jk, (user, value)) as c:
        r = c.post(REVOKE, data={"tokenUuid": "00000000-0000-0000-0000-000000000000"})
        assert r.status_code == 200
        assert c.get("/whoAmI/api/json").status_code == 200
    assert jk.world.counters["revoked"] == 0


def test_version_switch(jk: JenkinsStandalone) -> None:
    user, value, _ = seeded(jk)
    jk.world.version = OLD_VERSION
    with client(jk, (user, value)) as c:
        r = c.post(GEN, data={"newTokenName": "old", "expirationDuration": "30"})
    assert r.headers["X-Jenkins"] == OLD_VERSION
    data = r.json()["data"]
    assert "expirationDate" not in data
    t = jk.world.token(data["tokenUuid"])
    assert t is not None and t.expires_at is None
    jk.world.version = NEW_VERSION
    with client(jk, (user, value)) as c:
        r = c.post(GEN, data={"newTokenName": "new", "expirationDuration": "30"})
    data = r.json()["data"]
    assert data["expirationDate"]
    t = jk.world.token(data["tokenUuid"])
    assert t is not None and t.expires_at is not None
    jk.state.advance_clock(31 * 86400)
    assert jk.world.token_status(data["tokenValue"]) == "expired"
    with client(jk, (user, data["tokenValue"])) as c:
        assert c.get("/whoAmI/api/json").status_code == 401


def test_admin_needs_admin_can_generate_new_tokens(jk: JenkinsStandalone) -> None:
    s = jk.world.seeded
    assert s is not None
    with client(jk, (s.admin, s.admin_token)) as c:
        r = c.post(GEN, data={"newTokenName": "by-admin"})
        assert r.status_code == 403
        jk.world.admin_can_generate_new_tokens = True
        r = c.post(GEN, data={"newTokenName": "by-admin"})
        assert r.status_code == 200 and r.json()["status"] == "ok"
    t = jk.world.token(r.json()["data"]["tokenUuid"])
    assert t is not None and t.user == s.user


def test_cloudbees_roles(jk: JenkinsStandalone) -> None:
    jk.world.cloudbees = "controller"
    with client(jk) as c:
        r = c.get("/api/json")
        assert r.headers["X-Jenkins"].endswith("(CloudBees CI Client Controller 2.548)")
        assert r.json()["_class"] == "hudson.model.Hudson"
        jk.world.cloudbees = "operations-center"
        r = c.get("/api/json")
        assert "opscenter" in r.json()["_class"] and "Operations Center" in r.headers["X-Jenkins"]


def test_config_toml(jk: JenkinsStandalone) -> None:
    import tomllib

    from app.config import Account, Target

    doc = tomllib.loads(jk.world.config_toml(jk.url))
    account = Account(**doc["accounts"]["jenkins"])
    target = Target(**doc["targets"]["jenkins"])
    assert account.platform == "jenkins" and account.user == SEED_USER and account.base_url == jk.url
    assert target.token_uuid == SEED_TOKEN_UUID and target.token_name == "ci-deploy"
