"""Jenkins as its source says it answers (jenkinsci/jenkins, see providers/jenkins/SOURCE.md): the locale expiry of
generateNewToken, who may revoke, and a token list keyturn cannot read being an error, never "no tokens"."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from app.errors import ProviderError
from app.sandbox.jenkins import SEED_TOKEN_UUID, security_page_html
from providers.base import MintRequest
from providers.jenkins.dates import expiry_day, readings
from providers.jenkins.security_page import UnreadablePageError, parse_security_page
from tests.providers.test_jenkins_provider import CANARY, jk, make  # noqa: F401 (jk is a fixture)

D = date(2026, 4, 27)


@pytest.mark.parametrize(
    ("text", "locale"),
    [("4/27/26", "en-US"), ("27/04/2026", "en-GB"), ("27.04.26", "de-DE"), ("2026/04/27", "ja-JP"), ("2026-04-27", "ISO")],
)
def test_a_short_date_of_any_locale_is_read_by_the_day_keyturn_asked_for(text: str, locale: str) -> None:
    assert expiry_day(text, D) == D, locale
    assert expiry_day(text, D + timedelta(days=1)) == D  # the controller's today may be keyturn's yesterday
    assert expiry_day(text, D + timedelta(days=5)) is None  # too far from what was asked: not trusted


def test_an_ambiguous_date_takes_the_reading_nearest_the_request() -> None:
    assert set(readings("5/4/26")) == {date(2026, 5, 4), date(2026, 4, 5)}
    assert expiry_day("5/4/26", date(2026, 4, 5)) == date(2026, 4, 5)  # d/M/yy
    assert expiry_day("5/4/26", date(2026, 5, 4)) == date(2026, 5, 4)  # M/d/yy
    assert expiry_day("27 avr. 2026", D) is None and expiry_day("never", D) is None and readings("") == []


def _mint(p: Any, days: int) -> Any:
    p.sign_in()
    return p.mint(MintRequest(display_name="d", scopes=("user",), expires_at=datetime.now(UTC) + timedelta(days=days)))


def test_mint_records_the_day_a_controller_forcing_its_locale_answers(jk: Any) -> None:  # noqa: F811
    jk.world.locale, jk.world.ignore_accept_language = "de-DE", True  # the locale plugin, forcing German
    p = make(jk)
    try:
        minted = _mint(p, 30)
    finally:
        p.close()
    day = jk.world.today() + timedelta(days=30)
    assert minted.info.expires_at == datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert minted.notes == ()  # read, not guessed


def test_an_expiry_keyturn_cannot_read_is_what_it_asked_for_and_said(jk: Any) -> None:  # noqa: F811
    p = make(jk)
    notes: list[str] = []
    try:
        p.sign_in()
        got = p._answered_expiry({"expirationDate": "27 avr. 2026"}, "30", notes)
    finally:
        p.close()
    asked = datetime.now(UTC).date() + timedelta(days=30)
    assert got == datetime(asked.year, asked.month, asked.day, tzinfo=UTC)
    assert len(notes) == 1 and "'27 avr. 2026'" in notes[0] and "security page" in notes[0]


def test_another_user_may_not_revoke_and_is_told_who_may(jk: Any) -> None:  # noqa: F811
    jk.world.add_user("someone")
    theirs = jk.world.add_token("someone", "theirs")
    p = make(jk, secrets={"env:SOMEONE": theirs.value}, account={"api_token": "env:SOMEONE"}, auth_user="someone")
    try:
        with pytest.raises(ProviderError, match="only keyturn-bot or a Jenkins administrator may revoke") as err:
            p.revoke(SEED_TOKEN_UUID)
    finally:
        p.close()
    assert "\n" not in str(err.value) and "adminCanGenerateNewTokens" not in str(err.value)
    assert jk.world.token_status(CANARY) == "active"


def test_an_administrator_revokes_without_admin_can_generate(jk: Any) -> None:  # noqa: F811
    s = jk.world.seeded
    assert s is not None and not jk.world.admin_can_generate_new_tokens
    p = make(jk, secrets={"env:ADMIN": s.admin_token}, account={"api_token": "env:ADMIN"}, auth_user=s.admin)
    try:
        p.revoke(SEED_TOKEN_UUID)
    finally:
        p.close()
    assert jk.world.token_status(CANARY) == "revoked"


def _page(jk: Any, version: str) -> str:  # noqa: F811
    return security_page_html(jk.world.tokens("keyturn-bot"), user="keyturn-bot", now=jk.world.clock(), version=version)


@pytest.mark.parametrize("version", ["2.479.3", "2.504", "2.505", "2.539", "2.548", "2.579"])
def test_a_token_list_in_an_unknown_markup_is_an_error_never_no_tokens(jk: Any, version: str) -> None:  # noqa: F811
    html = _page(jk, version)
    parsed = parse_security_page(html)
    assert parsed is not None and [t.uuid for t in parsed.tokens] == [SEED_TOKEN_UUID]
    renamed = html.replace("token-list-existing-item", "token-row").replace('class="token-card', 'class="api-token-card')
    with pytest.raises(UnreadablePageError, match="the page says tokens, but none in a markup keyturn knows"):
        parse_security_page(renamed, source="the page")
    no_id = html.replace(f'id="{SEED_TOKEN_UUID}"', "").replace(f'value="{SEED_TOKEN_UUID}"', "")
    with pytest.raises(UnreadablePageError, match="1 token"):
        parse_security_page(no_id, source="the page")


def test_the_provider_stops_on_an_unreadable_list(jk: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import app.sandbox.jenkins as emulator

    real = emulator.security_page_html
    monkeypatch.setattr(emulator, "security_page_html",
                        lambda *a, **kw: real(*a, **kw).replace('class="token-card', 'class="api-token-card'))
    p = make(jk)
    try:
        with pytest.raises(UnreadablePageError, match="cannot read the API token list on the security page of Jenkins"):
            p.list_tokens()
    finally:
        p.close()
    assert jk.world.token_status(CANARY) == "active"


def test_a_value_echoed_into_the_expiry_never_reaches_a_note(jk: Any) -> None:  # noqa: F811
    p = make(jk)
    notes: list[str] = []
    try:
        p._answered_expiry({"expirationDate": f"on {CANARY}", "tokenValue": CANARY}, "30", notes)
        p._answered_expiry({"expirationDate": f"on {CANARY}", "tokenValue": CANARY}, None, notes)
    finally:
        p.close()
    assert len(notes) == 2 and all(CANARY not in n for n in notes)
