"""Jenkins (and a CloudBees CI controller / Operations Center): user API tokens, sessions and crumbs.

One server (``name = "jenkins"``), like one controller. Endpoints (what keyturn uses):

- ``GET /whoAmI/api/json``: who the request is authenticated as (anonymous gets 200 with ``"anonymous": true``).
- ``GET /api/json``: the root object (``_class`` tells Jenkins from an Operations Center).
- ``GET /crumbIssuer/api/json``: a crumb bound to the caller's session (a session is created when there is none).
- ``POST /login`` or ``/j_spring_security_check`` (form ``j_username``, ``j_password``): 302 with a
  ``JSESSIONID.<node>`` cookie; bad credentials: 302 to ``/loginError`` without a cookie.
- ``POST /user/{id}/descriptorByName/jenkins.security.ApiTokenProperty/generateNewToken`` (form
  ``newTokenName``, ``expirationDuration`` in days from 2.548): ``{"status":"ok","data":{tokenUuid,tokenName,
  tokenValue}}`` (+ ``expirationDate`` from 2.548); bad input: HTTP 200 ``{"status":"error","message"}``.
- ``POST .../ApiTokenProperty/revoke`` (``tokenUuid``): 200 whether or not the uuid exists.
- ``POST .../ApiTokenProperty/revokeAllExcept`` (``tokenUuid``): revokes every other token of the user.
- ``GET /user/{id}/security/`` (and the older ``/user/{id}/configure``): the user's page, whose token list is
  rendered like Jenkins' ``ApiTokenProperty/config.jelly``: one ``div.token-list-existing-item`` per live token
  with a hidden ``tokenUuid`` input and a ``tokenName`` text box. Only the user (or an administrator) sees it.
  The only place Jenkins lists a user's tokens; ``world.security_page = False`` makes it 404 (a controller whose
  page keyturn cannot read).

Semantics reproduced (Jenkins' source): a valid session cookie takes precedence over an ``Authorization: Basic``
header (a revoked token's header rides along unnoticed); a POST authenticated by a session needs the crumb of
*that* session (``Jenkins-Crumb`` header or form field), otherwise 403 "No valid crumb was included in the
request"; a POST authenticated by Basic with an API token needs no crumb; Basic with a password is subject to
the crumb check (and has no session to bind one to). Only the user may mint or revoke their own tokens, unless
the controller runs with ``adminCanGenerateNewTokens`` and the caller is an administrator (otherwise a bare 403,
as Jenkins answers). Every answer carries ``X-Jenkins: <version>``; ``world.version`` switches between an old
release without token expiry (:data:`OLD_VERSION`) and one with it (:data:`NEW_VERSION`). ``world.cloudbees``
(``"controller"`` or ``"operations-center"``) appends the product to ``X-Jenkins`` as CloudBees does
(``2.548 (CloudBees CI Client Controller 2.548)``) and, for an Operations Center, changes the root ``_class``. Like Jenkins, a request authenticated with an API token gets a session cookie
back (``world.sessions_on_basic``): a client that keeps cookies carries that session from then on.

The world is :class:`JenkinsWorld` (not in ``SandboxState``); :class:`JenkinsStandalone` serves it alone.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import secrets
import threading
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    uses: int = 0  # authenticated requests made with it


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
    """One controller's users, API tokens, sessions and switches. Every method takes the lock."""

    def __init__(self, clock: Callable[[], float], *, name: str = "jenkins", version: str = NEW_VERSION) -> None:
        self.clock = clock
        self.name = name
        self.version = version
        self.admin_can_generate_new_tokens = False
        self.cloudbees: Role | None = None
        self.sessions_on_basic = True
        self.security_page = True
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
                    t.uses += 1
                    return "token"
            if secrets.compare_digest(user.password, secret):
                return "password"
            return None

    def generate(self, user: str, name: str, days: int | None) -> JenkinsToken:
        expires = self.clock() + days * 86400 if days is not None else None
        return self.add_token(user, name, expires_at=expires)

    def config_toml(self, base_url: str, *, account: str = "jenkins", target: str = "jenkins",
                    api_token_ref: str = "file:sandbox-jenkins.token") -> str:  # noqa: S107 (a reference)
        """The ``[accounts.<account>]`` and ``[targets.<target>]`` blocks pointing keyturn at this controller."""
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


# -- the service -------------------------------------------------------------------------------------


def _attr(text: str) -> str:
    import html

    return html.escape(text, quote=True)


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
        if session is not None:  # the session wins: a Basic header next to it is not even looked at
            self._count("auth_session")
            return Auth(session.user, "session" if session.user else "anonymous", session)
        header = req.header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return Auth(None, "anonymous")
        try:
            user, sep, secret = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return html_response(400, "<html><body>Bad Authorization header</body></html>")
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

    def _check_post(self, req: Request, form: dict[str, str]) -> Auth | Response:
        """Authenticate a POST to a user's descriptor and apply the crumb and permission rules."""
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
        if auth.user != target and not (caller.admin and self.world.admin_can_generate_new_tokens):
            self._count("permission_refused")
            return self._forbidden()
        return auth

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
        form = self._form(req)
        auth = self._check_post(req, form)
        if isinstance(auth, Response):
            return auth
        name = form.get("newTokenName", "").strip()
        if not name:
            return json_response(200, {"status": "error", "message": "The token name is required"})
        if len(name) > 255:
            return json_response(200, {"status": "error", "message": "The token name is too long"})
        days: int | None = None
        raw_days = form.get("expirationDuration", "").strip()
        if raw_days and self.world.supports_expiry:  # an older Jenkins ignores the parameter it does not know
            try:
                days = int(raw_days)
            except ValueError:
                days = 0
            if days < 1:
                return json_response(200, {"status": "error", "message": f"Invalid expiration duration: {raw_days}"})
        token = self.world.generate(req.params["user"], name, days)
        self._count("generated")
        data: dict[str, Any] = {"tokenUuid": token.uuid, "tokenName": token.name, "tokenValue": token.value}
        if self.world.supports_expiry:
            data["expirationDate"] = (
                datetime.fromtimestamp(token.expires_at, UTC).strftime("%Y-%m-%d") if token.expires_at else None
            )
        return self._with_cookie(auth, json_response(200, {"status": "ok", "data": data}))

    def _revoke(self, req: Request) -> Response:
        form = self._form(req)
        auth = self._check_post(req, form)
        if isinstance(auth, Response):
            return auth
        with self.world.lock:
            t = self.world.token(form.get("tokenUuid", ""))
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
        now = self.world.clock()
        items = []
        for t in self.world.tokens(target):
            if t.revoked:
                continue  # revokeToken removes it from the user's token store
            days = int((now - t.created_at) // 86400)
            items.append(
                '<div class="token-list-item token-list-existing-item force-dirty-panel ">'
                f'<input type="hidden" class="token-uuid-input" name="tokenUuid" value="{_attr(t.uuid)}" />'
                f'<input name="tokenName" type="text" class="jenkins-input validated token-name" value="{_attr(t.name)}" />'
                f'<span class="token-creation age-ok">Created {days} day(s) ago</span>'
                '<span class="to-right"><a href="#" class="jenkins-button token-revoke" '
                f'data-target-url="/user/{_attr(target)}/descriptorByName/jenkins.security.ApiTokenProperty/revoke">'
                "Revoke</a></span></div>"
            )
        empty = "" if items else "<div class=\"list-empty-message\">There are no registered tokens for this user.</div>"
        body = (
            "<!DOCTYPE html><html><head><title>Security [Jenkins]</title></head><body>"
            f'<form method="post" action="configSubmit"><div class="jenkins-form-item"><div class="jenkins-form-label">'
            f"Current token(s)</div><div class=\"token-list ignore-dirty-panel\">{empty}{''.join(items)}"
            '<div class="token-list-item token-list-new-item"><input type="hidden" class="token-uuid-input" '
            'name="tokenUuid" value="" /><input name="tokenName" type="text" class="jenkins-input token-name" '
            'placeholder="Default name" /></div></div></div></form></body></html>'
        )
        return self._with_cookie(auth, html_response(200, body))

    def _revoke_all_except(self, req: Request) -> Response:
        form = self._form(req)
        auth = self._check_post(req, form)
        if isinstance(auth, Response):
            return auth
        keep = form.get("tokenUuid", "")
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
