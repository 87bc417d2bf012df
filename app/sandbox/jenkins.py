"""Jenkins (and a CloudBees CI controller / Operations Center): user API tokens, sessions and crumbs.

One server (``name = "jenkins"``), like one controller. Endpoints (what keyturn uses):

- ``GET /whoAmI/api/json``: who the request is authenticated as (anonymous gets 200 with ``"anonymous": true``).
- ``GET /api/json``: the root object (``_class`` tells Jenkins from an Operations Center).
- ``GET /crumbIssuer/api/json``: a crumb bound to the caller's session (a session is created when there is none).
- ``POST /login`` or ``/j_spring_security_check`` (form ``j_username``, ``j_password``): 302 with a
  ``JSESSIONID.<node>`` cookie; bad credentials: 302 to ``/loginError`` without a cookie.
- ``POST /user/{id}/descriptorByName/jenkins.security.ApiTokenProperty/generateNewToken`` (form
  ``newTokenName``; from 2.548 ``expirationDuration``: days, ``never`` or ``custom`` with ``tokenExpiration``
  ``yyyy-mm-dd``): ``{"status":"ok","data":{tokenUuid,tokenName,tokenValue}}``, from 2.548 with ``expirationDate``
  (the day in the request's locale, short style: ``4/27/26`` in en-US, ``27.04.26`` in de-DE; or ``"never"``) and
  ``aboutToExpire``. A blank name is accepted ("Token created on <ISO date-time>"); a duration Java cannot parse
  is an HTTP 500 (the "Oops!" page); a date before today is HTTP 200 ``{"status":"error","message":"Expiration
  date is in the past."}`` (``ApiTokenProperty.java`` ``doGenerateNewToken`` / ``getExpirationDate``).
- ``POST .../ApiTokenProperty/revoke`` (``tokenUuid``): 200 whether or not the uuid exists; a blank one is a 400.
- ``POST .../ApiTokenProperty/revokeAllExcept`` (``tokenUuid``): revokes every other token of the user.
- ``GET /user/{id}/security/`` (and the older ``/user/{id}/configure``): the user's page, whose token list is
  rendered like Jenkins' ``ApiTokenProperty/config.jelly`` of the emulated release (:func:`security_page_html`):
  below 2.505 one ``div.token-list-existing-item`` row per live token with a hidden ``tokenUuid`` input and a
  ``tokenName`` text box; from 2.505 one ``div.token-card`` per token whose ``id`` is the uuid. Both show each
  token's use count and last use (``ApiTokenStats``), or "No statistics available" with
  ``world.usage_statistics = False``. Only the user (or an administrator) sees it. The only place Jenkins lists a
  user's tokens; ``world.security_page = False`` makes it 404 (a controller whose page keyturn cannot read).

Semantics reproduced (Jenkins' source): a valid session cookie takes precedence over an ``Authorization: Basic``
header (a revoked token's header rides along unnoticed); a POST authenticated by a session needs the crumb of
*that* session (``Jenkins-Crumb`` header or form field), otherwise 403 "No valid crumb was included in the
request"; a POST authenticated by Basic with an API token needs no crumb; Basic with a password is subject to
the crumb check (and has no session to bind one to). Only the user may mint their own tokens, unless the
controller runs with ``adminCanGenerateNewTokens`` and the caller is an administrator (otherwise a bare 403, as
``HttpResponses.forbidden()``); the user or any administrator may revoke them (``User.getACL``; otherwise 403
"<caller> is missing the Overall/Administer permission"). Dates are rendered in the request's locale
(``Accept-Language``: en-US, en-GB, de-DE, ja-JP), else ``world.locale`` (the JVM default, en-US). Every answer carries ``X-Jenkins: <version>``; ``world.version`` switches between an old
release without token expiry (:data:`OLD_VERSION`) and one with it (:data:`NEW_VERSION`). ``world.cloudbees``
(``"controller"`` or ``"operations-center"``) appends the product to ``X-Jenkins`` as CloudBees does
(``2.548 (CloudBees CI Client Controller 2.548)``) and, for an Operations Center, changes the root ``_class``. Like Jenkins, a request authenticated with an API token gets a session cookie
back (``world.sessions_on_basic``): a client that keeps cookies carries that session from then on. A token's use
is counted like ``ApiTokenStats`` counts it: once per request whose Basic header matched it, before the request is
served (a session of the same user wins and counts nothing); :meth:`JenkinsWorld.consumer_call` is a job calling
Jenkins with a token value.

The world is :class:`JenkinsWorld` (not in ``SandboxState``); :class:`JenkinsStandalone` serves it alone.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import copy
import json
import re
import secrets
import threading
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs

from app.sandbox.http import Request, Response, Service, html_response, json_response

if TYPE_CHECKING:
    from app.sandbox.state import SandboxState

OLD_VERSION = "2.479.3"  # an LTS without token expiry
NEW_VERSION = "2.548"  # expirationDuration / expirationDate arrive
EXPIRY_SINCE = (2, 548)
DESCRIPTOR = "/user/{user}/descriptorByName/jenkins.security.ApiTokenProperty"
CRUMB_FIELD = "Jenkins-Crumb"
NO_CRUMB = "No valid crumb was included in the request"
NODE = "node0keyturn"  # the cookie name's suffix (JSESSIONID.<hash> in real Jenkins)
COOKIE = f"JSESSIONID.{NODE}"
# CloudBees products name themselves in X-Jenkins after the core version, e.g. "1.625.16.2 (CloudBees Jenkins
# Operations Center 1.8)" (CloudBees KB "Customer environment validation tests for a CJOC environment")
CLOUDBEES_PRODUCTS = {"controller": "CloudBees CI Client Controller", "operations-center": "CloudBees CI Operations Center"}
OC_CLASS = "com.cloudbees.opscenter.server.model.OperationsCenter"

SEED_USER = "keyturn-bot"
SEED_TOKEN_NAME = "ci-deploy"  # noqa: S105 (a name)
SEED_TOKEN_UUID = "5f0e7c3a-1b2d-4e6f-8a9b-0c1d2e3f4a5b"  # noqa: S105 (an id)

Role = Literal["controller", "operations-center"]


def version_tuple(version: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


OLDEST = (2, 400)  # the emulator renders the rows of 2.479.3 for everything older than 2.505: no claim below this


def release(text: str) -> str:
    """``sandbox up --jenkins-version``: "old", "new" or a weekly / LTS release number ("2.504", "2.479.3")."""
    from app.errors import ConfigError

    named = {"old": OLD_VERSION, "new": NEW_VERSION}.get(text.strip().lower())
    if named:
        return named
    if not re.fullmatch(r"2\.\d{3}(\.\d{1,2})?", text.strip()) or version_tuple(text) < OLDEST:
        raise ConfigError(f"--jenkins-version {text!r} is not a Jenkins release the sandbox emulates",
                          hint="give 'old', 'new' or a release from 2.400 on, e.g. 2.479.3, 2.504, 2.505, 2.548, 2.579")
    return text.strip()


def token_value() -> str:
    """A Jenkins API token value: ``11`` + 32 hex characters (the shape of Jenkins' ApiTokenStore values)."""
    return "11" + secrets.token_hex(16)


@dataclass
class JenkinsUser:
    id: str
    full_name: str
    password: str = field(repr=False)
    admin: bool = False


@dataclass
class JenkinsToken:
    uuid: str
    name: str
    value: str = field(repr=False)
    user: str
    created_at: float
    expires_at: float | None = None
    revoked: bool = False
    uses: int = 0  # ApiTokenStats.useCounter: requests whose Basic header matched it
    last_used_at: float | None = None  # ApiTokenStats.lastUseDate

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A world saved before ``last_used_at`` existed (app.sandbox.persist) counted uses without a date: take the
        creation time, so the page shows the count (Jenkins itself hides a count that has no date)."""
        state = dict(state)
        if "last_used_at" not in state:
            state["last_used_at"] = state.get("created_at") if state.get("uses") else None
        self.__dict__.update(state)


@dataclass
class JenkinsSession:
    id: str = field(repr=False)
    user: str | None  # None: anonymous
    crumb: str = field(repr=False)


@dataclass(frozen=True)
class SeededJenkins:
    controller: str
    user: str
    password: str = field(repr=False)
    token_name: str
    token_uuid: str
    token_value: str = field(repr=False)
    admin: str
    admin_password: str = field(repr=False)
    admin_token: str = field(repr=False)


@dataclass
class Auth:
    user: str | None
    via: Literal["session", "token", "password", "anonymous"]
    session: JenkinsSession | None = None
    set_cookie: str | None = None


class JenkinsWorld:
    """One controller's users, API tokens, sessions and switches. Every method takes the lock.

    Switches added after worlds were first saved (``app.sandbox.persist``) have a class-level default too, so a
    world pickled by an older keyturn loads with them."""

    usage_statistics: bool = True  # ApiTokenPropertyConfiguration.usageStatisticsEnabled (Jenkins' default: true)
    locale: str = "en-US"  # the JVM's default locale, used when a request's Accept-Language names none it knows
    # the locale plugin's "ignore browser preference and force this language to all users": the request's
    # Accept-Language no longer counts, every date is in `locale`
    ignore_accept_language: bool = False
    # a run's hook, not part of the saved world: called before the security page is rendered (the sandbox's deploy
    # jobs can run "all the time", so a gate sees them); never pickled (see __getstate__)
    before_page: Callable[[], object] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("before_page", None)  # a closure over the sandbox: belongs to a run, and cannot be pickled
        return state

    def __init__(self, clock: Callable[[], float], *, name: str = "jenkins", version: str = NEW_VERSION) -> None:
        self.clock = clock
        self.name = name
        self.version = version
        self.admin_can_generate_new_tokens = False
        self.cloudbees: Role | None = None
        self.sessions_on_basic = True
        self.security_page = True
        self.usage_statistics = True
        self.lock = threading.RLock()
        self.users: dict[str, JenkinsUser] = {}
        self._tokens: dict[str, JenkinsToken] = {}
        self._sessions: dict[str, JenkinsSession] = {}
        self.counters: Counter[str] = Counter()
        self.seeded: SeededJenkins | None = None

    @property
    def supports_expiry(self) -> bool:
        return version_tuple(self.version) >= EXPIRY_SINCE

    # -- records -------------------------------------------------------------------------------

    def add_user(self, user_id: str, *, full_name: str | None = None, password: str | None = None, admin: bool = False) -> JenkinsUser:
        user = JenkinsUser(user_id, full_name or user_id, password or secrets.token_urlsafe(15), admin)
        with self.lock:
            self.users[user_id] = user
        return copy.copy(user)

    def add_token(
        self, user: str, name: str, *, value: str | None = None, token_uuid: str | None = None, expires_at: float | None = None
    ) -> JenkinsToken:
        token = JenkinsToken(token_uuid or str(uuidlib.uuid4()), name, value or token_value(), user, self.clock(), expires_at)
        with self.lock:
            if user not in self.users:
                raise KeyError(user)
            self._tokens[token.uuid] = token
        return copy.copy(token)

    def tokens(self, user: str | None = None) -> list[JenkinsToken]:
        with self.lock:
            return [copy.copy(t) for t in self._tokens.values() if user is None or t.user == user]

    def token(self, token_uuid: str) -> JenkinsToken | None:
        with self.lock:
            t = self._tokens.get(token_uuid)
            return copy.copy(t) if t else None

    def token_status(self, value: str) -> str:
        """"active", "revoked", "expired" or "unknown"."""
        with self.lock:
            t = next((t for t in self._tokens.values() if secrets.compare_digest(t.value, value)), None)
            if t is None:
                return "unknown"
            if t.revoked:
                return "revoked"
            if t.expires_at is not None and t.expires_at <= self.clock():
                return "expired"
            return "active"

    def revoke(self, token_uuid: str) -> bool:
        with self.lock:
            t = self._tokens.get(token_uuid)
            if t is None or t.revoked:
                return False
            t.revoked = True
            return True

    def sessions(self) -> int:
        with self.lock:
            return len(self._sessions)

    def drop_sessions(self) -> None:
        """Forget every session (a restart): old cookies then mean nothing and their crumbs are invalid."""
        with self.lock:
            self._sessions.clear()

    def new_session(self, user: str | None) -> JenkinsSession:
        s = JenkinsSession(secrets.token_hex(16), user, secrets.token_hex(32))
        with self.lock:
            self._sessions[s.id] = s
        return s

    def session(self, session_id: str) -> JenkinsSession | None:
        with self.lock:
            return self._sessions.get(session_id)

    # -- authentication ------------------------------------------------------------------------

    def basic(self, user_id: str, secret: str) -> Literal["token", "password"] | None:
        with self.lock:
            user = self.users.get(user_id)
            if user is None:
                return None
            now = self.clock()
            for t in self._tokens.values():
                if t.user == user_id and secrets.compare_digest(t.value, secret):
                    if t.revoked or (t.expires_at is not None and t.expires_at <= now):
                        return None
                    self._count_use(t, now)
                    return "token"
            if secrets.compare_digest(user.password, secret):
                return "password"
            return None

    def _count_use(self, t: JenkinsToken, now: float) -> None:
        """``ApiTokenProperty.matchesPassword`` -> ``ApiTokenStats.updateUsageForId`` -> ``notifyUse``: one more use
        and the last use date, for every request whose Basic header matched the token, before it is served (so a
        page read with a token shows that read). With usage statistics disabled nothing is recorded."""
        if self.usage_statistics:
            t.uses += 1
            t.last_used_at = now

    def consumer_call(self, value: str, *, user: str | None = None) -> bool:
        """A consumer of the token (the deploy jobs) calls Jenkins with ``user:value`` as Basic auth, as a job's
        ``curl -u`` would: True when Jenkins accepts it as an API token (the use is counted like any request's),
        False when it is refused (revoked, expired, unknown: a 401). ``user`` defaults to the token's owner."""
        with self.lock:
            if user is None:
                raw = value.encode("utf-8")
                owner = next((t.user for t in self._tokens.values() if secrets.compare_digest(t.value.encode("utf-8"), raw)), None)
            else:
                owner = user
            ok = owner is not None and self.basic(owner, value) == "token"
            self.counters["consumer_calls" if ok else "consumer_refused"] += 1
            return ok

    def uses(self, token_uuid: str) -> int:
        """How many requests Jenkins counted for the token (what its card or row on the security page says)."""
        with self.lock:
            t = self._tokens.get(token_uuid)
            return t.uses if t is not None else 0

    def generate(self, user: str, name: str, expires_on: date | None) -> JenkinsToken:
        """``ApiTokenStore.generateNewToken(name, expirationDate)``: the expiry is a calendar day (a ``LocalDate`` in
        the JVM's zone, UTC here); ``HashedToken.isExpired`` is ``expiration.isBefore(today)``, so the token works
        through that whole day and dies at the next midnight (``expires_at``)."""
        return self.add_token(user, name, expires_at=_end_of_day(expires_on) if expires_on is not None else None)

    def today(self) -> date:
        """``LocalDate.now()`` in the JVM's zone (UTC here)."""
        return _day(self.clock())

    def config_toml(self, base_url: str, *, account: str = "jenkins", target: str = "jenkins",
                    api_token_ref: str = "file:sandbox-jenkins.token",  # noqa: S107 (a reference)
                    password_ref: str | None = None) -> str:
        """The ``[accounts.<account>]`` and ``[targets.<target>]`` blocks pointing keyturn at this controller.

        ``password_ref`` (a reference to the seeded user's password) makes keyturn sign in with a session, whose
        requests Jenkins does not count as token uses: the consumer gate then reads exact job counts in every run."""
        seeded = self.seeded
        assert seeded is not None

        def q(v: str) -> str:
            return json.dumps(v)

        return "\n".join(
            [
                f"[accounts.{account}]",
                'platform = "jenkins"',
                f"organization = {q(self.name)}",
                f"base_url = {q(base_url)}",
                f"user = {q(seeded.user)}",
                f"api_token = {q(api_token_ref)}",
                *([f"password = {q(password_ref)}"] if password_ref else []),
                "",
                f"[targets.{target}]",
                f"account = {q(account)}",
                f"token_name = {q(seeded.token_name)}",
                f"token_uuid = {q(seeded.token_uuid)}",
                'scopes = ["user"]  # a Jenkins API token carries all of its user\'s permissions',
                "",
            ]
        )


def seed_jenkins(
    clock: Callable[[], float] | SandboxState,
    *,
    name: str = "jenkins",
    version: str = NEW_VERSION,
    token_value: str | None = None,
) -> JenkinsWorld:
    """User ``keyturn-bot`` (a password and one token ``ci-deploy`` with a known uuid) and an administrator."""
    tick: Callable[[], float] = clock if callable(clock) else clock.time
    world = JenkinsWorld(tick, name=name, version=version)
    bot = world.add_user(SEED_USER, full_name="Keyturn Bot")
    admin = world.add_user("jenkins-admin", full_name="Jenkins Administrator", admin=True)
    tok = world.add_token(bot.id, SEED_TOKEN_NAME, value=token_value, token_uuid=SEED_TOKEN_UUID)
    admin_tok = world.add_token(admin.id, "admin-cli")
    world.counters.clear()
    world.seeded = SeededJenkins(
        controller=name, user=bot.id, password=bot.password, token_name=tok.name, token_uuid=tok.uuid,
        token_value=tok.value, admin=admin.id, admin_password=admin.password, admin_token=admin_tok.value,
    )
    return world


def _attr(text: str) -> str:
    import html

    return html.escape(text, quote=True)


# -- the security page: ApiTokenProperty/config.jelly as each emulated release renders it ----------------------------
#
# Templates read from github.com/jenkinsci/jenkins (see providers/jenkins/SOURCE.md): the rows of jenkins-2.479.3
# (f:repeatable of div.token-list-existing-item), the cards of 2.505 (PR #10484, merge 78160c62417240c9), the card
# class without "jenkins-card" from 2.539 (commit 2fa902c78c, #11321) and the expiry line from 2.548 (#23859, commit
# 5490f91afa). The emulated JVM runs in UTC with the en_US locale; 2.548 is taken to run on Java 21, whose CLDR data
# put a NARROW NO-BREAK SPACE before AM/PM in medium times, 2.479.3 on Java 17 (a plain space). Icons (l:icon, which
# inlines the symbol's SVG paths) are reduced to an empty <svg>; everything a reader of the page looks at (classes,
# ids, attributes, texts and their nesting) is the template's.

CARDS_SINCE = (2, 505)
PLAIN_CARD_SINCE = (2, 539)
TOKEN_EXPIRY_UI_SINCE = (2, 548)
PROPERTY = "jenkins.security.ApiTokenProperty"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _java_medium(ts: float, *, nnbsp: bool) -> str:
    """``i:formatDate type="both" dateStyle="medium" timeStyle="medium"`` for en_US: "Jan 26, 2026, 4:28:34 AM"."""
    d = datetime.fromtimestamp(ts, UTC)
    hour = d.hour % 12 or 12
    sep = "\u202f" if nnbsp else " "
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}, {hour}:{d.minute:02d}:{d.second:02d}{sep}{'AM' if d.hour < 12 else 'PM'}"


# DateTimeFormatter.ofLocalizedDate(FormatStyle.SHORT) with the CLDR data of Java 9+ (the JDK's default provider), for
# the locales the emulator speaks: en_US "M/d/yy", en_GB "dd/MM/y", de_DE "dd.MM.yy", ja_JP "y/MM/dd"
SHORT_DATES: dict[str, Callable[[date], str]] = {
    "en-US": lambda d: f"{d.month}/{d.day}/{d.year % 100:02d}",
    "en-GB": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
    "de-DE": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year % 100:02d}",
    "ja-JP": lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
}
LANGUAGES = {"en": "en-US", "de": "de-DE", "ja": "ja-JP"}


def _java_short_date(day: date, locale: str = "en-US") -> str:
    """``DateTimeFormatter.ofLocalizedDate(FormatStyle.SHORT).withLocale(locale)``: "4/26/26" in en_US."""
    return SHORT_DATES[locale](day)


def request_locale(accept_language: str | None, default: str) -> str:
    """``Functions.getCurrentLocale()``: the request's locale (the servlet's, from ``Accept-Language``), else the
    JVM's default; a language the emulator has no data for falls back to the default."""
    for part in (accept_language or "").split(","):
        tag = part.split(";", 1)[0].strip()
        if not tag:
            continue
        lang, _, region = tag.replace("_", "-").partition("-")
        full = f"{lang.lower()}-{region.upper()}" if region else LANGUAGES.get(lang.lower(), "")
        if full in SHORT_DATES:
            return full
        if lang.lower() in LANGUAGES:
            return LANGUAGES[lang.lower()]
    return default


def _day(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _end_of_day(day: date) -> float:
    """The first instant after ``day`` (UTC): when a token whose ``expirationDate`` is ``day`` stops matching."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + 86400


def expires_on(token: JenkinsToken) -> date | None:
    """The token's ``expirationDate`` (the last day it works), from ``expires_at``."""
    return _day(token.expires_at - 1) if token.expires_at is not None else None


def _days_elapsed(ts: float, now: float) -> int:
    """``Util.daysElapsedSince``: calendar days between the dates in the JVM's zone, at least 0."""
    return max(0, (_day(now) - _day(ts)).days)


def _period(start: date, end: date) -> tuple[int, int, int]:
    """``java.time.Period.between(start, end)`` as (years, months, days), for start <= end."""
    months = (end.year * 12 + end.month) - (start.year * 12 + start.month)
    if months > 0 and end.day < start.day:
        months -= 1
    y, m = divmod(start.year * 12 + start.month - 1 + months, 12)
    shifted = date(y, m + 1, min(start.day, calendar.monthrange(y, m + 1)[1]))
    return months // 12, months % 12, (end - shifted).days


def _ago(kind: Literal["created", "lastUsed"], ts: float, now: float) -> str:
    """``TokenInfoAndStats.createdDaysAgo`` / ``lastUsedDaysAgo`` with jenkins/security/Messages.properties (2.505+)."""
    years, months, days = _period(_day(ts), _day(now)) if _day(ts) <= _day(now) else (0, 0, 0)
    head = "Created" if kind == "created" else "Last used"
    over = "" if kind == "created" else "over "
    if years > 1:
        return f"{head} {over}{years} years ago"
    if years == 1:
        return f"{head} over a year ago"
    if months > 1:
        return f"{head} {over}{months} months ago"
    if months == 1:
        return f"{head} over a month ago"
    if days > 14:
        return f"{head} {over}{days // 7} weeks ago"
    if days >= 7:
        return f"{head} over a week ago"
    if days == 0:
        return f"{head} today"
    if days == 1:
        return f"{head} yesterday"
    return f"{head} {days} days ago"


def _icon(symbol: str, cls: str = "") -> str:
    return f'<svg class="svg-icon {cls}" aria-hidden="true" focusable="false" data-symbol="{symbol}"></svg>'


def _entry(title: str, body: str) -> str:
    """``f:entry title=... help=...`` (lib/form/entry.jelly with helpLink.jelly and helpArea.jelly)."""
    return (
        '<div class="jenkins-form-item tr ">'
        f'<div class="jenkins-form-label help-sibling">{title}'
        f'<a href="#" class="jenkins-help-button" tooltip="Help for feature: {title}" '
        f'helpURL="/descriptor/{PROPERTY}/help/tokenStore"><span>?</span></a></div>'
        f'<div class="setting-main">{body}</div>'
        '<div class="validation-error-area">\n</div>'
        '<div class="help-area tr"><div class="help"><div class="jenkins-spinner">Loading...</div></div></div>'
        "</div>"
    )


def _rows(tokens: list[JenkinsToken], desc: str, now: float, statistics: bool, can_generate: bool) -> str:
    """jenkins-2.479.3: ``f:repeatable name="tokenStore"`` whose master copy is the "new token" row."""
    revoke_a = (
        '<a href="#" class="jenkins-button jenkins-button--tertiary jenkins-!-destructive-color '
        'api-token-property-token-revoke{hidden}" data-message-if-legacy-revoked="The legacy token has been revoked" '
        'data-confirm="Are you sure you want to revoke this token? Applications that are using it will be not able to '
        f'connect anymore." data-confirm-title="Revoke Token" data-target-url="{desc}/revoke">'
        f'{_icon("trash")}</a>'
    )
    new_item = (
        '<div class="token-list-item token-list-new-item">'
        '<input type="hidden" class="token-uuid-input" name="tokenUuid">'
        '<input class="jenkins-input   token-name" name="tokenName" value="" type="text" placeholder="Default name">'
        "\u00a0"
        '<span class="new-token-value"></span>'
        '<span class="token-save"><button class="jenkins-button" type="button" tabindex="0" '
        f'id="api-token-property-token-save" data-target-url="{desc}/generateNewToken">\nGenerate\n</button></span>'
        '<span class="token-cancel"><span class="repeatable-delete show-if-not-only">'
        '<button type="button" class="jenkins-button repeatable-delete">Cancel</button></span></span>'
        '<div class="controls-container">'
        '<button class="jenkins-copy-button jenkins-hidden jenkins-button--tertiary" type="button" text="" '
        f'tooltip="Copy this token">{_icon("copy")}</button>'
        + revoke_a.replace("{hidden}", " hidden-button").replace(
            ' data-message-if-legacy-revoked="The legacy token has been revoked"', "")
        + "</div>"
        '<div class="error token-error-message"></div>'
        '<div class="warning display-after-generation">Copy this token now, because it cannot be recovered in the '
        "future.</div></div>"
    )
    chunks = [f'<div class="repeated-chunk to-be-removed" name="tokenStore"><div class="repeated-chunk__header"></div>{new_item}</div>']
    for t in tokens:
        days_old = _days_elapsed(t.created_at, now)
        age = "age-argh" if days_old > 360 else "age-mmmh" if days_old > 180 else "age-ok"
        if not statistics:
            stats = '<span class="no-statistics" title="Token usage statistics are currently disabled">\nNo statistics available\n</span>'
        elif t.uses > 0 and t.last_used_at is None:
            stats = '<span class="token-use-counter" title="There is no last use date for that token">\nNever used\n</span>'
        elif t.uses > 0:
            assert t.last_used_at is not None
            stats = (
                f'<span class="token-use-counter" title="{_java_medium(t.last_used_at, nnbsp=False)}">\n'
                f"Used <b>{t.uses:,}</b> time(s), last time was <b>{_days_elapsed(t.last_used_at, now):,}</b> day(s) ago\n</span>"
            )
        else:
            stats = (
                '<span class="token-use-counter"><strong title="We strongly recommend that you revoke tokens which you '
                f'do not plan to use">{_icon("warning", "icon-warning icon-sm")}\nNever used\n</strong></span>'
            )
        chunks.append(
            '<div class="repeated-chunk" name="tokenStore"><div class="repeated-chunk__header"></div>'
            '<div class="token-list-item token-list-existing-item force-dirty-panel ">'
            f'<input type="hidden" class="token-uuid-input" name="tokenUuid" value="{_attr(t.uuid)}">'
            f'<input class="jenkins-input   token-name" name="tokenName" value="{_attr(t.name)}" type="text">'
            f'<span class="token-creation {age}" title="{_java_medium(t.created_at, nnbsp=False)}">Created {days_old:,} day(s) ago</span>'
            f'<span class="to-right">{stats}{revoke_a.replace("{hidden}", "")}</span>'
            "</div></div>"
        )
    add = '<button type="button" class="jenkins-button repeatable-add">\nAdd new Token\n</button>' if can_generate else ""
    body = (
        '<div class="token-list ignore-dirty-panel">'
        f'<div class="token-list-item token-list-empty-item {"hidden-message" if tokens else ""}">'
        '<div class="list-empty-message">There are no registered tokens for this user.</div></div>'
        f'<div class="repeated-container">{"".join(chunks)}<div class="repeatable-insertion-point"></div>{add}</div>'
        "</div>"
    )
    return _entry("Current token(s)", body)


def _cards(tokens: list[JenkinsToken], desc: str, now: float, statistics: bool, can_generate: bool, version: tuple[int, ...],
           locale: str = "en-US") -> str:
    """2.505 and later: ``div#api-token-list`` of ``div.token-card``, the hidden templates the page's script clones."""
    card_cls = "token-card" if version >= PLAIN_CARD_SINCE else "token-card jenkins-card"
    expiry_ui = version >= TOKEN_EXPIRY_UI_SINCE

    def edit() -> str:
        return (
            '<button type="button" class="jenkins-button jenkins-button--tertiary api-token-property-token-rename" '
            f'data-target-url="{desc}/rename" data-rename-title="Rename token" data-button-text="Rename" '
            f'data-rename-message="New name" tooltip="Rename">{_icon("edit", "icon-sm")}</button>'
        )

    def revoke(uuid: str | None) -> str:
        data_uuid = f' data-token-uuid="{_attr(uuid)}"' if uuid is not None else ""  # ${token.uuid} null: omitted
        return (
            '<button type="button" class="jenkins-button jenkins-button--tertiary jenkins-!-destructive-color '
            'api-token-property-token-revoke" data-message-if-legacy-revoked="The legacy token has been revoked" '
            'data-confirm="Are you sure you want to revoke this token? Applications that are using it will be not able '
            f'to connect anymore." data-confirm-title="Revoke token" data-button-text="Revoke"{data_uuid} '
            f'data-target-url="{desc}/revoke" tooltip="Revoke">{_icon("trash", "icon-sm")}</button>'
        )

    add = ""
    if can_generate:
        extra = ' data-not-added="Token could not be added"' if expiry_ui else ""
        success = "" if expiry_ui else ' data-success-title="successfully created"'
        add = (
            '<button class="api-token-property-add jenkins-button jenkins-button--secondary" type="button" '
            f'data-target-url="{desc}/generateNewToken" data-prompt-message="Create new API token" '
            f'data-generate="Generate"{success} data-cancel="Cancel" data-button-done="Done"{extra} '
            'data-message-name="Name">Add new token</button>'
        )
    never_span = (
        '<span class="api-token-new-expiration token-creation" data-never="This token does not expire" '
        'data-expires-on="Expires on __DATA__"></span>' if expiry_ui
        else '<span class="token-creation" tooltip="Just Now">Created just now</span>'
    )
    templates = ""
    if expiry_ui:
        templates += (
            '<div id="api-token-add-template" class="jenkins-hidden"><div>'
            '<div class="jenkins-form-item tr "><div class="jenkins-form-label help-sibling">Name</div>'
            '<div class="setting-main"><input class="jenkins-input  " name="tokenName" value="" type="text"></div>'
            '<div class="validation-error-area">\n</div></div>'
            '<div class="jenkins-form-label">Expiration</div>'
            '<div class="token-expiration jenkins-!-margin-bottom-3"><div class="jenkins-select">'
            '<select class="jenkins-select__input" name="expirationDuration"><option value="7">7 Days</option>'
            '<option value="30" selected="true">30 Days</option><option value="60">60 Days</option>'
            '<option value="90">90 Days</option><option value="custom">Custom</option>'
            '<option value="never">No Expiration</option></select></div>'
            '<input type="date" name="tokenExpiration" class="jenkins-hidden jenkins-input token-expiration-date">'
            '<div class="jenkins-hidden warning token-warning">\nIt is not recommended to create tokens that never expire.\n</div>'
            "</div></div></div>"
        )
    templates += (
        '<div class="jenkins-hidden" id="api-token-row-template">'
        f'<div class="{card_cls}"><div class="token-card-inner">'
        '<div class="token-card__title"><span class="token-name"></span></div>'
        f'<div class="token-stats">{never_span}<span class="token-last-used">Never used</span></div></div>'
        '<div class="token-controls"><button type="button" class="jenkins-button jenkins-button--tertiary '
        f'api-token-property-token-show" data-button-done="Done" tooltip="Show">{_icon("key", "icon-sm")}</button>'
        f"{edit()}{revoke(None)}</div></div></div>"
        '<div class="jenkins-hidden" id="api-token-template"><div>'
        '<div class="jenkins-alert jenkins-alert-info">\nCopy this token now, because it cannot be recovered in the future.\n</div>'
        '<div class="api-token-new-form-row jenkins-quote jenkins-quote--monospace"><span class="api-token-new-value"></span>'
        '<button class="jenkins-copy-button jenkins-hidden jenkins-button--tertiary" type="button" text="" '
        f'tooltip="Copy token">{_icon("copy")}</button></div>'
        + (
            '<div style="height: 23px;"><span class="api-token-new-expiration" data-never="This token does not expire" '
            'data-expires-on="Expires on __DATA__"></span></div>' if expiry_ui else ""
        )
        + "</div></div>"
    )
    cards = []
    for t in tokens:
        days_old = _days_elapsed(t.created_at, now)
        old_cls = "jenkins-!-error-color" if days_old > 360 else "jenkins-!-warning-color" if days_old > 180 else "jenkins-!-text-color-secondary"
        created_fmt = _java_medium(t.created_at, nnbsp=True)
        if not expiry_ui:
            creation = f'<span class="token-creation {old_cls}" tooltip="{created_fmt}">{_ago("created", t.created_at, now)}</span>'
        elif t.expires_at is not None and t.expires_at <= now:
            creation = f'<span class="error token-creation" tooltip="Created on {created_fmt}">\nThis token has expired\n</span>'
        elif t.expires_at is None:
            creation = f'<span class="warning token-creation" tooltip="Created on {created_fmt}">\nThis token does not expire\n</span>'
        else:
            last_day = expires_on(t)
            assert last_day is not None
            soon = "warning" if last_day < _day(now + 7 * 86400) else ""  # HashedToken.isAboutToExpire
            creation = (
                f'<span class="{soon} token-creation" tooltip="Created on {created_fmt}">\n'
                f"Expires on {_java_short_date(last_day, locale)}\n</span>"
            )
        if not statistics:
            stats = '<span class="no-statistics" tooltip="Token usage statistics are currently disabled">\nNo statistics available\n</span>'
        elif t.uses > 0 and t.last_used_at is None:
            stats = '<span tooltip="There is no last use date for that token">\nNever used\n</span>'
        elif t.uses > 0:
            assert t.last_used_at is not None
            days_use = _days_elapsed(t.last_used_at, now)
            no_use = "jenkins-!-error-color" if days_use > 360 else "jenkins-!-warning-color" if days_use > 180 else "jenkins-!-text-color-secondary"
            stats = (
                f'<span class="{no_use}" tooltip="{_java_medium(t.last_used_at, nnbsp=True)}">\n'
                f'{_ago("lastUsed", t.last_used_at, now)}\n</span>'
                f'<span class="token-use-counter">{t.uses}</span>'
            )
        else:
            tip = "We recommend that you revoke tokens which you do not plan to use." if days_old > 7 else ""
            icon = _icon("warning", "icon-sm") if days_old > 7 else ""
            stats = f'<div class="token-never-used {old_cls}" tooltip="{tip}">{icon}\nNever used\n</div>'
        cards.append(
            f'<div class="{card_cls} " id="{_attr(t.uuid)}"><div class="token-card-inner">'
            f'<div class="token-card__title " tooltip=""><span class="token-name">{_attr(t.name)}</span></div>'
            f'<div class="token-stats">{creation}<span class="token-last-used">{stats}</span></div></div>'
            f'<div class="token-controls">{edit()}{revoke(t.uuid)}</div></div>'
        )
    empty = "" if not tokens else "jenkins-hidden"
    body = (
        '<div class="token-list ignore-dirty-panel">'
        f'<div class="token-list-empty-item {empty} jenkins-!-margin-bottom-2">'
        f'<div class="jenkins-notice">{_icon("key")}<div>No API tokens configured</div>'
        f'<div class="jenkins-notice__description">{add}</div></div></div>'
        f'<div id="api-tokens" class="{"" if tokens else "jenkins-hidden"}"><div id="api-token-list">{"".join(cards)}</div>{add}</div>'
        "</div>"
    )
    adjunct = (
        f'<link rel="stylesheet" type="text/css" href="/adjuncts/keyturn/{PROPERTY.replace(".", "/")}/resources.css">'
        f'<script src="/adjuncts/keyturn/{PROPERTY.replace(".", "/")}/resources.js" type="text/javascript"></script>'
    )
    return templates + adjunct + _entry("Current token(s)", body)


def security_page_html(
    tokens: list[JenkinsToken], *, user: str, now: float, version: str, statistics: bool = True, can_generate: bool = True,
    locale: str = "en-US",
) -> str:
    """The user's security page as ``version`` renders it: rows before 2.505, cards from it (live tokens only)."""
    v = version_tuple(version)
    desc = DESCRIPTOR.format(user=_attr(user))
    ordered = sorted(tokens, key=lambda t: t.name.lower())  # ApiTokenStore.getTokenListSortedByName
    inner = _cards(ordered, desc, now, statistics, can_generate, v, locale) if v >= CARDS_SINCE else _rows(ordered, desc, now, statistics, can_generate)
    return (
        "<!DOCTYPE html><html><head><title>Security [Jenkins]</title></head><body>"
        '<div id="main-panel"><h1>Security</h1>'
        f'<form method="post" name="config" action="configSubmit">{inner}</form></div></body></html>'
    )


# -- the service -------------------------------------------------------------------------------------


def _expiration_date(duration: str, custom: str, today: date) -> date | None:
    """``DescriptorImpl.getExpirationDate`` (2.548+): "" or "never" -> none; "custom" -> ``LocalDate.parse(
    tokenExpiration)``; otherwise ``today.plusDays(Integer.parseInt(duration))``. ValueError where Java throws."""
    if duration in ("", "never"):
        return None
    if duration == "custom":
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", custom):  # ISO_LOCAL_DATE
            raise ValueError(custom)
        return date.fromisoformat(custom)
    if not re.fullmatch(r"[+-]?\d+", duration) or not -(2**31) <= int(duration) < 2**31:  # Integer.parseInt
        raise ValueError(duration)
    return today + timedelta(days=int(duration))


def _oops() -> Response:
    """An uncaught exception in a Stapler action: Jenkins' "Oops!" error page with HTTP 500 (no stack trace shown
    to a user without Overall/Administer)."""
    body = ('<html><head><title>Jenkins</title></head><body><div id="main-panel"><h1>Oops!</h1>'
            "<p>A problem occurred while processing the request.</p></div></body></html>")
    return html_response(500, body, reason="Server Error")


def _error_without_stack(code: int, message: str) -> Response:
    """``HttpResponses.errorWithoutStack(code, message)``: the container's error page with that status and message."""
    return html_response(code, f"<html><body><h2>HTTP ERROR {code} {message}</h2></body></html>", reason=message)


def _cookie_session(req: Request) -> str | None:
    raw = req.header("Cookie") or ""
    for part in raw.split(";"):
        k, _, v = part.strip().partition("=")
        if k == COOKIE and v:
            return v
    return None


class JenkinsService(Service):
    name = "jenkins"

    def __init__(self, state: SandboxState, world: JenkinsWorld) -> None:
        super().__init__(state)
        self.world = world
        self.route("GET", "/whoAmI/api/json", self._who_am_i)
        self.route("GET", "/api/json", self._root)
        self.route("GET", "/crumbIssuer/api/json", self._crumb)
        self.route("POST", "/login", self._login)
        self.route("POST", "/j_spring_security_check", self._login)
        self.route("POST", DESCRIPTOR + "/generateNewToken", self._generate)
        self.route("POST", DESCRIPTOR + "/revoke", self._revoke)
        self.route("POST", DESCRIPTOR + "/revokeAllExcept", self._revoke_all_except)
        self.route("GET", "/user/{user}/security/", self._security_page)
        self.route("GET", "/user/{user}/configure", self._security_page)

    def handle(self, req: Request) -> Response:
        resp = super().handle(req)
        version = self.world.version
        if self.world.cloudbees:
            version = f"{version} ({CLOUDBEES_PRODUCTS[self.world.cloudbees]} {version})"
        resp.headers["X-Jenkins"] = version
        return resp

    # -- helpers -------------------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self.world.lock:
            self.world.counters[key] += 1

    def _auth(self, req: Request) -> Auth | Response:
        if _cookie_session(req) is not None:
            self._count("requests_with_cookie")
        sid = _cookie_session(req)
        session = self.world.session(sid) if sid else None
        header = req.header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        basic = scheme.lower() == "basic"
        user, sep, secret = "", "", ""
        if basic:
            try:
                user, sep, secret = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return html_response(400, "<html><body>Bad Authorization header</body></html>")
        # BasicHeaderProcessor.authenticationIsRequired: a session already authenticated as the user the Basic header
        # names wins, and the header is not even looked at (no token use is counted); an anonymous session, or one of
        # another user, is authenticated again from the header
        if session is not None and (not basic or (session.user is not None and session.user == user)):
            self._count("auth_session")
            return Auth(session.user, "session" if session.user else "anonymous", session)
        if not basic:
            return Auth(None, "anonymous")
        how = self.world.basic(user, secret) if sep else None
        if how is None:
            self._count("auth_refused")
            return html_response(
                401,
                f"<html><body><h2>HTTP ERROR 401 Invalid password/token for user: {user}</h2></body></html>",
                {"WWW-Authenticate": 'Basic realm="Jenkins"'},
                reason="Unauthorized",
            )
        self._count(f"auth_{how}")
        auth = Auth(user, how)
        if how == "token" and self.world.sessions_on_basic:
            s = self.world.new_session(user)
            auth.set_cookie = f"{COOKIE}={s.id}; Path=/; Secure; HttpOnly"
        return auth

    def _with_cookie(self, auth: Auth, resp: Response) -> Response:
        if auth.set_cookie:
            resp.headers["Set-Cookie"] = auth.set_cookie
        return resp

    @staticmethod
    def _form(req: Request) -> dict[str, str]:
        try:
            parsed = parse_qs(req.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return {}
        return {k: v[0] for k, v in parsed.items()}

    @staticmethod
    def _forbidden(text: str = "") -> Response:
        body = f"<html><body><h2>HTTP ERROR 403 {text or 'Forbidden'}</h2></body></html>"
        return html_response(403, body, reason=text or "Forbidden")

    def _check_post(self, req: Request, form: dict[str, str], action: Literal["generate", "revoke"]) -> Auth | Response:
        """Authenticate a POST to a user's descriptor and apply the crumb and permission rules.

        Generating: ``hasCurrentUserRightToGenerateNewToken`` = ``canCurrentUserControlObject(ADMIN_CAN_GENERATE_NEW_
        TOKENS, owner)``: the user; an administrator only with ``adminCanGenerateNewTokens``; else
        ``HttpResponses.forbidden()``, a bare 403. Revoking: ``u.checkPermission(Jenkins.ADMINISTER)`` on the user,
        whose ``User.getACL`` grants a signed-in user everything on themselves and otherwise asks the authorization
        strategy: the user or any administrator; else an ``AccessDeniedException3`` page "<name> is missing the
        Overall/Administer permission"."""
        auth = self._auth(req)
        if isinstance(auth, Response):
            return auth
        if auth.via in ("session", "password", "anonymous"):
            crumb = req.header(CRUMB_FIELD) or form.get(CRUMB_FIELD)
            if auth.session is None or not crumb or not secrets.compare_digest(crumb, auth.session.crumb):
                self._count("crumb_refused")
                return self._forbidden(NO_CRUMB)
        if auth.user is None:
            return self._forbidden("anonymous is missing the Overall/Read permission")
        target = req.params["user"]
        with self.world.lock:
            if target not in self.world.users:
                return html_response(404, "<html><body>Not Found</body></html>")
            caller = self.world.users[auth.user]
        if auth.user == target:
            return auth
        if action == "revoke" and not caller.admin:
            self._count("permission_refused")
            return self._forbidden(f"{auth.user} is missing the Overall/Administer permission")
        if action == "generate" and not (caller.admin and self.world.admin_can_generate_new_tokens):
            self._count("permission_refused")
            return self._forbidden()
        return auth

    def _locale(self, req: Request) -> str:
        return self.world.locale if self.world.ignore_accept_language else request_locale(req.header("Accept-Language"), self.world.locale)

    # -- handlers ------------------------------------------------------------------------------

    def _who_am_i(self, req: Request) -> Response:
        auth = self._auth(req)
        if isinstance(auth, Response):
            return auth
        name = auth.user or "anonymous"
        body = {
            "_class": "hudson.security.WhoAmI",
            "anonymous": auth.user is None,
            "authenticated": auth.user is not None,
            "authorities": ["authenticated"] if auth.user else [],
            "details": None,
            "name": name,
            "toString": f"Authentication: {name}",
        }
        return self._with_cookie(auth, json_response(200, body))

    def _root(self, req: Request) -> Response:
        auth = self._auth(req)
        if isinstance(auth, Response):
            return auth
        cls = OC_CLASS if self.world.cloudbees == "operations-center" else "hudson.model.Hudson"
        body = {"_class": cls, "mode": "NORMAL", "nodeDescription": "the built-in node", "useSecurity": True}
        return self._with_cookie(auth, json_response(200, body))

    def _crumb(self, req: Request) -> Response:
        auth = self._auth(req)
        if isinstance(auth, Response):
            return auth
        session = auth.session
        cookie = auth.set_cookie
        if session is None:
            if auth.set_cookie:
                session = self.world.session(auth.set_cookie.split("=", 1)[1].split(";", 1)[0])
            if session is None:
                session = self.world.new_session(auth.user)
                cookie = f"{COOKIE}={session.id}; Path=/; Secure; HttpOnly"
        assert session is not None
        body = {"_class": "hudson.security.csrf.DefaultCrumbIssuer", "crumb": session.crumb, "crumbRequestField": CRUMB_FIELD}
        resp = json_response(200, body)
        if cookie:
            resp.headers["Set-Cookie"] = cookie
        return resp

    def _login(self, req: Request) -> Response:
        form = self._form(req)
        user_id = form.get("j_username", "")
        with self.world.lock:
            user = self.world.users.get(user_id)
            ok = user is not None and secrets.compare_digest(user.password, form.get("j_password", ""))
        if not ok:
            self._count("login_refused")
            return Response(302, b"", {"Location": f"{self.base_url}/loginError"})
        s = self.world.new_session(user_id)
        self._count("login")
        return Response(302, b"", {"Location": f"{self.base_url}/", "Set-Cookie": f"{COOKIE}={s.id}; Path=/; Secure; HttpOnly"})

    def _generate(self, req: Request) -> Response:
        """``ApiTokenProperty.DescriptorImpl.doGenerateNewToken`` of the emulated release (see the module docstring)."""
        form = self._form(req)
        auth = self._check_post(req, form, "generate")
        if isinstance(auth, Response):
            return auth
        name = form.get("newTokenName", "")
        if not name.strip():  # newTokenName.isBlank(): Messages.Token_Created_on(ISO_OFFSET_DATE_TIME.format(now))
            now = datetime.fromtimestamp(self.world.clock(), UTC)
            name = "Token created on " + now.isoformat(timespec="microseconds").replace("+00:00", "Z")
        expires: date | None = None
        if self.world.supports_expiry:  # before 2.548 the parameter does not exist and is ignored
            raw = form.get("expirationDuration", "").strip()
            try:
                expires = _expiration_date(raw, form.get("tokenExpiration", ""), self.world.today())
            except ValueError:  # Integer.parseInt / LocalDate.parse throw: Stapler's error page, HTTP 500
                return _oops()
            if expires is not None and self.world.today() > expires:
                return json_response(200, {"status": "error", "message": "Expiration date is in the past."})
        token = self.world.generate(req.params["user"], name, expires)
        self._count("generated")
        data: dict[str, Any] = {"tokenUuid": token.uuid, "tokenName": token.name, "tokenValue": token.value}
        if self.world.supports_expiry:
            locale = self._locale(req)
            data["expirationDate"] = _java_short_date(expires, locale) if expires is not None else "never"
            data["aboutToExpire"] = expires is not None and expires < self.world.today() + timedelta(days=7)
        return self._with_cookie(auth, json_response(200, {"status": "ok", "data": data}))

    def _revoke(self, req: Request) -> Response:
        """``doRevoke``: ``u.checkPermission(Jenkins.ADMINISTER)`` (the user, or an administrator), then a blank
        ``tokenUuid`` is a 400; an unknown uuid is a 200 like a known one (``revokeToken`` returns quietly)."""
        form = self._form(req)
        auth = self._check_post(req, form, "revoke")
        if isinstance(auth, Response):
            return auth
        token_uuid = form.get("tokenUuid", "")
        if not token_uuid.strip():
            return _error_without_stack(400, "The tokenUuid cannot be empty")
        with self.world.lock:
            t = self.world.token(token_uuid)
            if t is not None and t.user == req.params["user"]:
                self.world.revoke(t.uuid)
                self._count("revoked")
        return self._with_cookie(auth, Response(200))  # even for an unknown uuid

    def _security_page(self, req: Request) -> Response:
        auth = self._auth(req)
        if isinstance(auth, Response):
            return auth
        target = req.params["user"]
        with self.world.lock:
            known = target in self.world.users
            caller = self.world.users.get(auth.user or "")
        if not self.world.security_page or not known:
            return html_response(404, "<html><body>Not Found</body></html>")
        if auth.user is None:  # Jenkins sends anonymous to the login page
            return Response(302, b"", {"Location": f"{self.base_url}/login?from=%2Fuser%2F{target}%2Fsecurity%2F"})
        if auth.user != target and not (caller is not None and caller.admin):
            return self._forbidden(f"{auth.user} is missing the Overall/Administer permission")
        hook = self.world.before_page
        if hook is not None:
            hook()  # e.g. the deploy jobs call Jenkins now: counted before the page is rendered, as if they had run
        with self.world.lock:
            can_generate = auth.user == target or (caller is not None and caller.admin and self.world.admin_can_generate_new_tokens)
        live = [t for t in self.world.tokens(target) if not t.revoked]  # revokeToken removes it from the token store
        body = security_page_html(
            live, user=target, now=self.world.clock(), version=self.world.version,
            statistics=self.world.usage_statistics, can_generate=can_generate,
            locale=self._locale(req),
        )
        return self._with_cookie(auth, html_response(200, body))

    def _revoke_all_except(self, req: Request) -> Response:
        """``doRevokeAllExcept``: the permission and the blank-uuid rule of ``doRevoke``."""
        form = self._form(req)
        auth = self._check_post(req, form, "revoke")
        if isinstance(auth, Response):
            return auth
        keep = form.get("tokenUuid", "")
        if not keep.strip():
            return _error_without_stack(400, "The tokenUuid cannot be empty")
        for t in self.world.tokens(req.params["user"]):
            if t.uuid != keep and self.world.revoke(t.uuid):
                self._count("revoked")
        return self._with_cookie(auth, Response(200))


# -- standalone ----------------------------------------------------------------------------------------


class JenkinsStandalone:
    """The Jenkins emulator alone on 127.0.0.1 over HTTPS: ``with JenkinsStandalone(dir) as jk:`` then
    ``jk.world``, ``jk.url``, ``jk.ca_path``, ``jk.client_ssl_context()``; ``jk.state.internal_errors``."""

    def __init__(self, directory: Path | str, *, world: JenkinsWorld | None = None, state: SandboxState | None = None) -> None:
        from app.sandbox.state import SandboxState

        self.directory = Path(directory)
        self.state = state or SandboxState()
        self.world = world or seed_jenkins(self.state)
        self.ca_path = self.directory / "ca.pem"
        self.url = ""
        self._server: Any = None
        self._tls: Any = None

    def start(self) -> JenkinsStandalone:
        from app.sandbox.http import TLSServer
        from app.sandbox.tls import SandboxTLS

        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._tls = SandboxTLS()
        self._tls.write_ca(self.ca_path)
        self._server = TLSServer(JenkinsService(self.state, self.world), self._tls.server_context(self.directory))
        self._server.start()
        self.url = self._server.url
        return self

    def client_ssl_context(self) -> Any:
        if self._tls is None:
            raise RuntimeError("start the server first")
        return self._tls.client_context()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> JenkinsStandalone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
