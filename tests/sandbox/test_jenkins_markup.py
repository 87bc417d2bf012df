"""The Jenkins emulator's security page and use counting, as the emulated releases do it (issue 13, item 8).

The page follows core/src/main/resources/jenkins/security/ApiTokenProperty/config.jelly of each release (rows up to
2.504, e.g. jenkins-2.479.3; cards from 2.505, PR #10484; the card class without ``jenkins-card`` from 2.539,
2fa902c78c; the expiry line from 2.548, 5490f91afa); a use is counted the way ApiTokenProperty.matchesPassword ->
ApiTokenStats.updateUsageForId counts it: every request whose Basic header matched the token, before it is served.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import httpx
import pytest

from app.sandbox import persist
from app.sandbox.jenkins import (
    COOKIE,
    NEW_VERSION,
    OLD_VERSION,
    SEED_TOKEN_UUID,
    SEED_USER,
    JenkinsStandalone,
    JenkinsWorld,
    _ago,
    _period,
    security_page_html,
    seed_jenkins,
)
from providers.jenkins.security_page import parse_security_page

PAGE = f"/user/{SEED_USER}/security/"


@pytest.fixture
def jk(tmp_path: Path) -> Iterator[JenkinsStandalone]:
    with JenkinsStandalone(tmp_path / "jk") as server:
        yield server
    assert server.state.internal_errors == []


def client(jk: JenkinsStandalone, auth: tuple[str, str] | None = None) -> httpx.Client:
    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx.Client(base_url=jk.url, verify=jk.client_ssl_context(), auth=auth, cookies=jar)


def bot(jk: JenkinsStandalone) -> tuple[str, str, str]:
    s = jk.world.seeded
    assert s is not None
    return s.user, s.token_value, s.password


def page(jk: JenkinsStandalone, auth: tuple[str, str]) -> str:
    with client(jk, auth) as c:
        r = c.get(PAGE)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    return r.text


def test_2_548_renders_cards(jk: JenkinsStandalone) -> None:
    user, value, _ = bot(jk)
    jk.world.add_token(user, "Zeta <ops> & co", expires_at=jk.world.clock() + 3 * 86400)
    html = page(jk, (user, value))
    assert '<div id="api-token-list">' in html and "token-list-existing-item" not in html
    assert f'<div class="token-card " id="{SEED_TOKEN_UUID}">' in html  # 2.539+: no "jenkins-card"
    assert '<span class="token-name">ci-deploy</span>' in html
    assert '<span class="token-name">Zeta &lt;ops&gt; &amp; co</span>' in html
    # the page read itself is the seeded token's first use, counted before the page was rendered
    assert '<span class="token-use-counter">1</span>' in html and "\nLast used today\n" in html
    assert "\u202fAM" in html or "\u202fPM" in html  # Java 21 medium time
    assert 'class="warning token-creation"' in html and "This token does not expire" in html
    assert 'class="warning token-creation" tooltip="Created on ' in html
    assert "Expires on " in html  # the other token: "about to expire" (under 7 days) is a warning too
    assert '<div class="jenkins-hidden" id="api-token-row-template"><div class="token-card">' in html  # no uuid
    assert 'class="token-never-used jenkins-!-text-color-secondary" tooltip=""' in html
    assert value not in html
    parsed = parse_security_page(html)
    assert parsed is not None and parsed.markup == "cards"
    assert [t.name for t in parsed.tokens] == ["ci-deploy", "Zeta <ops> & co"]  # sorted by lower-cased name
    assert parsed.tokens[0].uses == 1 and parsed.tokens[1].uses == 0


def test_2_479_3_renders_rows(jk: JenkinsStandalone) -> None:
    jk.world.version = OLD_VERSION
    user, value, _ = bot(jk)
    jk.world.add_token(user, "another")
    html = page(jk, (user, value))
    assert "token-card" not in html and "api-token-list" not in html
    assert f'<input type="hidden" class="token-uuid-input" name="tokenUuid" value="{SEED_TOKEN_UUID}">' in html
    assert '<input class="jenkins-input   token-name" name="tokenName" value="ci-deploy" type="text">' in html
    assert "Used <b>1</b> time(s), last time was <b>0</b> day(s) ago" in html
    assert "\u202f" not in html  # Java 17
    assert '<strong title="We strongly recommend that you revoke tokens which you do not plan to use">' in html
    assert '<div class="repeated-chunk to-be-removed" name="tokenStore">' in html  # the master copy
    assert 'class="token-creation age-ok"' in html and "Created 0 day(s) ago" in html
    parsed = parse_security_page(html)
    assert parsed is not None and parsed.markup == "rows"
    assert [(t.name, t.uses) for t in parsed.tokens] == [("another", 0), ("ci-deploy", 1)]


@pytest.mark.parametrize(
    ("version", "card", "created"),
    [("2.505", "token-card jenkins-card ", "Created today"), ("2.538", "token-card jenkins-card ", "Created today"),
     ("2.539", "token-card ", "Created today"), ("2.547", "token-card ", "Created today"),
     ("2.548", "token-card ", "This token does not expire")],
)
def test_card_markup_follows_the_release(jk: JenkinsStandalone, version: str, card: str, created: str) -> None:
    jk.world.version = version
    html = page(jk, bot(jk)[:2])
    assert f'<div class="{card}" id="{SEED_TOKEN_UUID}">' in html
    assert created in html
    assert ('id="api-token-add-template"' in html) is (version == "2.548")


def test_every_basic_token_request_counts_and_nothing_else_does(jk: JenkinsStandalone) -> None:
    user, value, password = bot(jk)
    with client(jk, (user, value)) as c:
        r = c.get("/whoAmI/api/json")
        assert c.get("/whoAmI/api/json").status_code == 200
        assert c.get("/user/nobody/security/").status_code == 404  # authenticated, then not found: counted too
    assert jk.world.uses(SEED_TOKEN_UUID) == 3
    cookie = r.headers["set-cookie"].split(";", 1)[0]
    with client(jk, (user, value)) as c:  # a session of the same user wins: the header is not looked at
        assert c.get("/whoAmI/api/json", headers={"Cookie": cookie}).json()["name"] == user
    assert jk.world.uses(SEED_TOKEN_UUID) == 3
    with client(jk, (user, password)) as c:  # a password in Basic is no token use
        assert c.get("/whoAmI/api/json").status_code == 200
    with client(jk) as c:
        r = c.post("/j_spring_security_check", data={"j_username": user, "j_password": password})
        session = r.headers["set-cookie"].split(";", 1)[0]
        assert c.get(PAGE, headers={"Cookie": session}).status_code == 200  # a password session reads for free
        anon = c.get("/crumbIssuer/api/json").headers["set-cookie"].split(";", 1)[0]
    assert jk.world.uses(SEED_TOKEN_UUID) == 3
    with client(jk, (user, value)) as c:  # an anonymous session is authenticated again from the header
        assert c.get("/whoAmI/api/json", headers={"Cookie": anon}).json()["name"] == user
    assert jk.world.uses(SEED_TOKEN_UUID) == 4
    other = jk.world.add_token(user, "dies", expires_at=jk.world.clock() + 60)
    jk.state.advance_clock(120)
    with client(jk, (user, other.value)) as c:
        assert c.get("/whoAmI/api/json").status_code == 401  # expired: no match, no use
    jk.world.revoke(SEED_TOKEN_UUID)
    with client(jk, (user, value)) as c:
        assert c.get("/whoAmI/api/json").status_code == 401
    assert jk.world.uses(SEED_TOKEN_UUID) == 4 and jk.world.uses(other.uuid) == 0
    assert COOKIE in cookie


def test_usage_statistics_off(jk: JenkinsStandalone) -> None:
    jk.world.usage_statistics = False
    user, value, _ = bot(jk)
    html = page(jk, (user, value))
    assert jk.world.uses(SEED_TOKEN_UUID) == 0
    assert '<span class="no-statistics" tooltip="Token usage statistics are currently disabled">' in html
    parsed = parse_security_page(html)
    assert parsed is not None and parsed.stats_disabled
    jk.world.version = OLD_VERSION
    assert '<span class="no-statistics" title="Token usage statistics are currently disabled">' in page(jk, (user, value))


def test_consumer_call(jk: JenkinsStandalone) -> None:
    user, value, _ = bot(jk)
    assert jk.world.consumer_call(value) is True
    assert jk.world.consumer_call(value, user=user) is True
    assert jk.world.uses(SEED_TOKEN_UUID) == 2
    t = jk.world.token(SEED_TOKEN_UUID)
    assert t is not None and t.last_used_at == pytest.approx(jk.world.clock(), abs=5)
    assert jk.world.consumer_call("11" + "0" * 32) is False
    assert jk.world.consumer_call(value, user="jenkins-admin") is False  # the admin's name with the bot's token
    jk.world.revoke(SEED_TOKEN_UUID)
    assert jk.world.consumer_call(value) is False
    assert jk.world.uses(SEED_TOKEN_UUID) == 2
    assert jk.world.counters["consumer_calls"] == 2 and jk.world.counters["consumer_refused"] == 3


@pytest.mark.parametrize(
    ("days", "cards", "rows"),
    [(0, "Last used today", 0), (1, "Last used yesterday", 1), (6, "Last used 6 days ago", 6),
     (10, "Last used over a week ago", 10), (20, "Last used over 2 weeks ago", 20), (45, "Last used over a month ago", 45),
     (100, "Last used over 3 months ago", 100), (400, "Last used over a year ago", 400), (800, "Last used over 2 years ago", 800)],
)
def test_last_use_as_the_page_says_it(days: int, cards: str, rows: int) -> None:
    clock = [1_769_400_000.0]  # 2026-01-26T04:00:00Z
    world = seed_jenkins(lambda: clock[0])
    assert world.seeded is not None
    assert world.consumer_call(world.seeded.token_value)
    clock[0] += days * 86400
    new = security_page_html(world.tokens(SEED_USER), user=SEED_USER, now=clock[0], version=NEW_VERSION)
    assert f"\n{cards}\n" in new
    old = security_page_html(world.tokens(SEED_USER), user=SEED_USER, now=clock[0], version=OLD_VERSION)
    assert f"last time was <b>{rows:,}</b> day(s) ago" in old
    parsed = parse_security_page(new)
    assert parsed is not None
    low, high = parsed.tokens[0].last_used_days or (None, None)
    assert low is not None and low <= days and (high is None or days <= high)


def test_period_is_javas() -> None:
    assert _period(date(2026, 1, 31), date(2026, 3, 1)) == (0, 1, 1)  # Period.between -> P1M1D
    assert _period(date(2024, 2, 29), date(2025, 2, 28)) == (0, 11, 30)
    assert _period(date(2026, 1, 1), date(2026, 1, 15)) == (0, 0, 14)
    assert _ago("created", 0, 86400 * 15) == "Created 2 weeks ago"
    assert _ago("lastUsed", 0, 86400 * 15) == "Last used over 2 weeks ago"


def test_a_world_saved_before_use_counting_loads(tmp_path: Path) -> None:
    """app.sandbox.persist pickles the world: one saved by an older keyturn lacks the new switch and field."""
    from app.sandbox.state import SandboxState

    world = seed_jenkins(SandboxState())  # the clock is the state's bound `time`, as in a saved sandbox
    assert world.seeded is not None
    admin = next(t for t in world.tokens("jenkins-admin"))
    world._tokens[admin.uuid].uses = 5  # the older emulator counted uses, without a date
    del world.__dict__["usage_statistics"]
    for t in world._tokens.values():
        del t.__dict__["last_used_at"]
    loaded = persist.loads(persist.dumps({"format": persist.WORLD_FORMAT, "jenkins": world}))["jenkins"]
    assert isinstance(loaded, JenkinsWorld)
    assert loaded.usage_statistics is True
    assert loaded.token(SEED_TOKEN_UUID).last_used_at is None  # type: ignore[union-attr]
    migrated = loaded.token(admin.uuid)
    assert migrated is not None and migrated.uses == 5 and migrated.last_used_at == migrated.created_at
    shown = parse_security_page(security_page_html(loaded.tokens("jenkins-admin"), user="jenkins-admin",
                                                   now=loaded.clock(), version=NEW_VERSION))
    assert shown is not None and shown.tokens[0].uses == 5  # a count the page shows, not a hidden one
    html = security_page_html(loaded.tokens(SEED_USER), user=SEED_USER, now=loaded.clock(), version=NEW_VERSION)
    assert "Never used" in html
    assert loaded.consumer_call(world.seeded.token_value)
    assert loaded.uses(SEED_TOKEN_UUID) == 1
    assert "Last used today" in security_page_html(loaded.tokens(SEED_USER), user=SEED_USER, now=loaded.clock(), version=NEW_VERSION)


def test_before_page_hook_runs_before_rendering_and_is_not_saved(jk: JenkinsStandalone) -> None:
    user, value, _ = bot(jk)
    calls: list[int] = []

    def job() -> None:
        calls.append(1)
        assert jk.world.consumer_call(value)

    jk.world.before_page = job
    html = page(jk, (user, value))
    assert calls == [1]
    assert '<span class="token-use-counter">2</span>' in html  # the read and the job's call, both on the page
    saved = persist.loads(persist.dumps({"format": persist.WORLD_FORMAT, "jenkins": jk.world}))["jenkins"]
    assert saved.before_page is None and jk.world.before_page is job


def test_config_toml_can_name_the_password(jk: JenkinsStandalone) -> None:
    import tomllib

    from app.config import Account

    doc = tomllib.loads(jk.world.config_toml(jk.url, password_ref="file:sandbox-jenkins.password"))
    assert Account(**doc["accounts"]["jenkins"]).password == "file:sandbox-jenkins.password"
    assert "password" not in tomllib.loads(jk.world.config_toml(jk.url))["accounts"]["jenkins"]
