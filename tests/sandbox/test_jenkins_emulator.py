"""The Jenkins emulator over real loopback HTTPS: sessions, crumbs, errors in 200, versions, revoke semantics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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
        assert set(data) == {"tokenUuid", "tokenName", "tokenValue", "expirationDate", "aboutToExpire"}
        assert data["expirationDate"] == "never" and data["aboutToExpire"] is False  # no expirationDuration: never
        assert jk.world.token_status(data["tokenValue"]) == "active"
        # ApiTokenProperty.doGenerateNewToken: an expiry before today is an error inside a 200
        r = c.post(GEN, data={"newTokenName": "x", "expirationDuration": "-3"})
        assert r.status_code == 200 and r.json() == {"status": "error", "message": "Expiration date is in the past."}


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


# -- the answers of ApiTokenProperty.java (doGenerateNewToken, getExpirationDate, doRevoke) at jenkins-2.548 and master --


def generate(jk: JenkinsStandalone, form: dict[str, str], headers: dict[str, str] | None = None) -> httpx.Response:
    user, value, _ = seeded(jk)
    with client(jk, (user, value)) as c:
        return c.post(GEN, data=form, headers=headers or {})


def test_blank_name_is_named_by_jenkins(jk: JenkinsStandalone) -> None:
    """``newTokenName.isBlank()``: Messages.Token_Created_on(ISO_OFFSET_DATE_TIME.format(now)), not an error."""
    r = generate(jk, {"newTokenName": "   "})
    assert r.status_code == 200 and r.json()["status"] == "ok"
    name = r.json()["data"]["tokenName"]
    assert name.startswith("Token created on 20") and name.endswith("Z") and "T" in name
    assert jk.world.token(r.json()["data"]["tokenUuid"]) is not None


@pytest.mark.parametrize("duration", ["abc", "1.5", "5_0", "99999999999", "custom"])
def test_a_duration_java_cannot_parse_is_a_500(jk: JenkinsStandalone, duration: str) -> None:
    """Integer.parseInt / LocalDate.parse throw inside the action: Stapler's error page, nothing created."""
    before = len(jk.world.tokens())
    r = generate(jk, {"newTokenName": "x", "expirationDuration": duration, "tokenExpiration": "next week"})
    assert r.status_code == 500 and "application/json" not in r.headers["content-type"]
    assert len(jk.world.tokens()) == before


def test_expiration_date_is_the_day_in_the_requests_locale(jk: JenkinsStandalone) -> None:
    today = jk.world.today()
    day = today + timedelta(days=30)
    r = generate(jk, {"newTokenName": "a", "expirationDuration": " 30 "})  # trimmed, as getExpirationDate does
    data = r.json()["data"]
    assert data["expirationDate"] == f"{day.month}/{day.day}/{day.year % 100:02d}"  # en_US SHORT: M/d/yy
    assert data["aboutToExpire"] is False
    r = generate(jk, {"newTokenName": "b", "expirationDuration": "30"}, {"Accept-Language": "de-DE,de;q=0.9"})
    assert r.json()["data"]["expirationDate"] == f"{day.day:02d}.{day.month:02d}.{day.year % 100:02d}"
    r = generate(jk, {"newTokenName": "c", "expirationDuration": "0"})  # today: allowed, about to expire
    assert r.json()["status"] == "ok" and r.json()["data"]["aboutToExpire"] is True
    r = generate(jk, {"newTokenName": "d", "expirationDuration": "custom", "tokenExpiration": day.isoformat()})
    assert r.json()["data"]["expirationDate"] == f"{day.month}/{day.day}/{day.year % 100:02d}"
    r = generate(jk, {"newTokenName": "e", "expirationDuration": "never"})
    assert r.json()["data"]["expirationDate"] == "never"
    # the token works through its expiration day (HashedToken.isExpired: expiration.isBefore(today))
    t = jk.world.token(r.json()["data"]["tokenUuid"])
    assert t is not None and t.expires_at is None
    t = jk.world.token(generate(jk, {"newTokenName": "f", "expirationDuration": "1"}).json()["data"]["tokenUuid"])
    assert t is not None and t.expires_at is not None
    assert datetime.fromtimestamp(t.expires_at, UTC).date() == today + timedelta(days=2)


def test_before_2548_there_is_no_expiry_in_the_answer(jk: JenkinsStandalone) -> None:
    jk.world.version = OLD_VERSION
    r = generate(jk, {"newTokenName": "a", "expirationDuration": "abc"})  # the parameter does not exist: ignored
    assert r.status_code == 200 and set(r.json()["data"]) == {"tokenUuid", "tokenName", "tokenValue"}


def test_revoke_needs_a_uuid_and_the_user_or_an_administrator(jk: JenkinsStandalone) -> None:
    """doRevoke: u.checkPermission(Jenkins.ADMINISTER), then a blank tokenUuid is a 400. User.getACL lets the user
    and every administrator revoke; adminCanGenerateNewTokens only gates generating."""
    user, value, _ = seeded(jk)
    s = jk.world.seeded
    assert s is not None and jk.world.admin_can_generate_new_tokens is False
    with client(jk, (user, value)) as c:
        r = c.post(REVOKE, data={"tokenUuid": "  "})
        assert r.status_code == 400 and "The tokenUuid cannot be empty" in r.text
    victim = jk.world.add_token(user, "victim")
    with client(jk, (s.admin, s.admin_token)) as c:
        assert c.post(GEN, data={"newTokenName": "by-admin"}).status_code == 403  # generating: not without the property
        r = c.post(REVOKE, data={"tokenUuid": victim.uuid})
        assert r.status_code == 200 and jk.world.token_status(victim.value) == "revoked"
    jk.world.add_user("someone")
    other = jk.world.add_token("someone", "theirs")
    with client(jk, ("someone", other.value)) as c:
        r = c.post(REVOKE, data={"tokenUuid": SEED_TOKEN_UUID})
    assert r.status_code == 403 and "someone is missing the Overall/Administer permission" in r.text
    assert jk.world.token_status(value) == "active"


@pytest.mark.parametrize("given", ["2.504", "2.479.3", "2.579", "old", "new"])
def test_sandbox_up_takes_a_release_number(given: str) -> None:
    from app.sandbox.jenkins import release

    assert release(given) == {"old": OLD_VERSION, "new": NEW_VERSION}.get(given, given)


@pytest.mark.parametrize("given", ["3.0", "2.5x", "latest", "2.99"])
def test_sandbox_up_refuses_what_is_no_release_in_one_line(given: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    import app.cli

    result = CliRunner().invoke(app.cli.cli, ["sandbox", "up", "--dir", str(tmp_path / "sb"), "--jenkins-version", given])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"--jenkins-version {given!r} is not a Jenkins release" in result.output
    assert not (tmp_path / "sb").exists()  # nothing started, nothing written
