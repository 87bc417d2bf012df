"""HTTP calls to a Jenkins controller: Basic auth with an API token (no cookies, no crumb), or a password session.

Two kinds of clients:

- stateless (:func:`stateless_client`): Basic ``user:token`` on every request and a cookie jar that refuses every
  cookie (Jenkins hands out ``JSESSIONID`` cookies even to API-token requests, and a session cookie takes precedence
  over the Basic header: a client that kept one would see a revoked token as alive). Verification and the proof
  that a revoked token is dead always run on a *fresh* stateless client.
- stateful (:class:`JenkinsClient` with ``password``): ``/j_spring_security_check`` sign-in, then the session cookie
  and the session's crumb on every POST.

httpx is imported on first use. Only methods, paths and statuses are logged: never a header (the legacy token
endpoint returns the token in one), a body or a value.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import AmbiguousResultError, AuthExpiredError, ProviderError, one_line
from app.net import (
    LimitExceededError,
    Outcome,
    Transient,
    answer_failure,
    check_url,
    http_client,
    said_of,
    transport_failure,
    with_retries,
)
from app.secret import SecretValue

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("keyturn.providers.jenkins")

DESCRIPTOR = "descriptorByName/jenkins.security.ApiTokenProperty"
EXPIRY_SINCE = (2, 548)
NO_CRUMB = "No valid crumb was included in the request"
# Jenkins formats dates in the request's locale (Functions.getCurrentLocale: the servlet request's, from
# Accept-Language, else the JVM's default): asking for en-US makes generateNewToken's expirationDate "M/d/yy" and the
# page's texts English, unless a plugin (e.g. locale) forces another locale; providers.jenkins.dates reads any order.
LOCALE_HEADERS = {"Accept-Language": "en-US"}
CRUMB_EXPLAINED = (
    "Jenkins refused the POST: no valid crumb (a crumb is bound to the session cookie it was issued with; "
    "sign in again so the cookie and the crumb come from the same session)"
)



# -- keyturn's own uses of each API token, in this process ---------------------------------------------------------
# Jenkins counts one use of a token for every request whose Basic header matched it (ApiTokenProperty.matchesPassword
# -> ApiTokenStats.updateUsageForId), whatever the answer, except the 401 a token that matched nothing gets. The
# consumer gate reads those counts on the security page, so keyturn counts what it sent itself, by the token's
# fingerprint (never its value): [answered and not 401, sent without an answer (it may have been counted)].
_OWN_LOCK = threading.Lock()
_OWN_USES: dict[str, list[int]] = {}


def record_use(fingerprint: str, status: int | None) -> None:
    """One request sent with the token of ``fingerprint``: its status, or None when no answer came back."""
    if status == 401:
        return
    with _OWN_LOCK:
        counts = _OWN_USES.setdefault(fingerprint, [0, 0])
        counts[0 if status is not None else 1] += 1


def own_uses() -> dict[str, tuple[int, int]]:
    """(counted, maybe counted) requests this process sent with each token, by fingerprint."""
    with _OWN_LOCK:
        return {fp: (c[0], c[1]) for fp, c in _OWN_USES.items()}


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"2.548"`` -> (2, 548); CloudBees' ``"2.479.3.4 (CloudBees CI Client Controller 2.479.3.4)"`` -> (2, 479, 3, 4)."""
    out: list[int] = []
    for part in (version or "").split(" ", 1)[0].split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def _no_cookies() -> CookieJar:
    """A jar that accepts no cookie at all (``allowed_domains=[]``)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def stateless_client(ca_bundle: Path | None, user: str, token: SecretValue, *, transport: Any = None) -> Any:
    """A fresh client that authenticates with Basic ``user:token`` and never keeps a cookie."""
    import httpx

    kw: dict[str, Any] = {"transport": transport} if transport is not None else {}
    return http_client(ca_bundle, auth=httpx.BasicAuth(user, token.reveal()), cookies=_no_cookies(), follow_redirects=False,
                       headers=LOCALE_HEADERS, **kw)


@dataclass(frozen=True)
class ServerInfo:
    version: str | None  # the core version: X-Jenkins up to the first space
    product: str  # what CloudBees appends in parentheses ("CloudBees CI Operations Center 2.479.3.4"), else ""

    @property
    def cloudbees(self) -> bool:
        return "cloudbees" in self.product.lower()

    @property
    def operations_center(self) -> bool:
        return "operations center" in self.product.lower()


def server_info(resp: httpx.Response) -> ServerInfo:
    """From ``X-Jenkins``: Jenkins sends its version; CloudBees products add their name, e.g.
    ``1.625.16.2 (CloudBees Jenkins Operations Center 1.8)`` (CloudBees KB, CJOC environment validation tests)."""
    raw = (resp.headers.get("X-Jenkins") or "").strip()
    version, _, rest = raw.partition(" ")
    product = rest.strip().removeprefix("(").removesuffix(")") if rest else ""
    return ServerInfo(version or None, product)


class JenkinsClient:
    """Calls to one controller on behalf of ``auth_user`` (token or password)."""

    def __init__(
        self,
        base_url: str,
        auth_user: str,
        *,
        ca_bundle: Path | None,
        token: SecretValue | None = None,
        password: SecretValue | None = None,
        transport: Any = None,
    ) -> None:
        if (token is None) == (password is None):
            raise ValueError("give a token or a password")
        self.base_url = check_url(base_url, "accounts.*.base_url")
        self.auth_user = auth_user
        self.ca_bundle = ca_bundle
        self._transport = transport
        self._token = token
        self._password = password
        self._crumb: tuple[str, str] | None = None
        self._signed_in = False
        self.info = ServerInfo(None, "")
        self._secrets = tuple(s.reveal() for s in (token, password) if s is not None)
        self.token_fingerprint = token.fingerprint if token is not None else None  # which token signs every request
        if token is not None:
            self._http = stateless_client(ca_bundle, auth_user, token, transport=transport)
        else:
            kw: dict[str, Any] = {"transport": transport} if transport is not None else {}
            self._http = http_client(ca_bundle, follow_redirects=False, headers=LOCALE_HEADERS, **kw)  # a session: cookies kept

    @property
    def stateful(self) -> bool:
        return self._password is not None

    def close(self) -> None:
        self._http.close()

    def url(self, path: str) -> str:
        return self.base_url + path

    def _send(self, method: str, path: str, *, what: str, data: dict[str, str] | None = None,
              headers: dict[str, str] | None = None, ambiguous: bool = False, idempotent: bool | None = None,
              json_expected: bool = False) -> httpx.Response:
        """One call under app.net.with_retries. Idempotent ones (GETs, revoking) are tried again within bounds after
        a timeout, a reset, a 429/5xx or an unreadable JSON answer; the rest only when the request never left (a
        failed connection). Generating a token whose outcome is unknown raises AmbiguousResultError so the engine
        looks for it on the security page before minting again."""
        import httpx

        idempotent = method == "GET" if idempotent is None else idempotent
        url = self.url(path)

        def once() -> httpx.Response:
            fp = self.token_fingerprint
            try:
                resp = self._http.request(method, url, data=data, headers=headers)
            except LimitExceededError as exc:  # too large an answer: never retried
                if fp is not None:
                    record_use(fp, 200)
                if ambiguous:
                    raise AmbiguousResultError(f"{what}: {exc.message}; it may or may not have happened") from None
                raise LimitExceededError(f"{what}: {exc.message}", hint=exc.hint) from None
            except httpx.TransportError as exc:
                if fp is not None:
                    record_use(fp, None)
                raise transport_failure(exc, url) from None
            if fp is not None:
                record_use(fp, resp.status_code)
            log.info("jenkins %s %s -> %s", method, path, resp.status_code)
            self.info = server_info(resp)
            status = resp.status_code
            says_json = "json" in resp.headers.get("content-type", "")
            if status == 200 and (json_expected or says_json) and not _parses(resp):
                raise Transient("an unreadable answer (HTTP 200)", Outcome.UNKNOWN, status=status)
            failure = answer_failure(status, resp.headers)
            if failure is not None:
                raise failure
            return resp

        def gave_up(failure: Transient, problems: list[str]) -> ProviderError:
            if failure.outcome is Outcome.RATE_LIMITED:
                wait = failure.wait
                return ProviderError(f"{what}: Jenkins is refusing requests for now (HTTP 429)",
                                     hint=f"try again in {wait:.0f} s" if wait is not None else "try again later")
            if failure.status is None:
                return ProviderError(f"{what}: {said_of(problems)} ({self.base_url}); try again later")
            return ProviderError(f"{what}: Jenkins answered {said_of(problems)}; try again later")

        def unknown(failure: Transient, problems: list[str]) -> httpx.Response:
            if not ambiguous:
                raise gave_up(failure, problems)
            if failure.status is None:
                raise AmbiguousResultError(f"{what}: {failure.problem} after the request was sent; the outcome is unknown")
            raise AmbiguousResultError(f"{what}: Jenkins answered {failure.problem}; it may or may not have happened")

        return with_retries(once, idempotent=idempotent, unknown=unknown, gave_up=gave_up, log=log,
                            call=f"jenkins {method} {path}")

    def who_am_i(self, *, what: str) -> tuple[int, str | None]:
        """(status, the authenticated name; None when anonymous)."""
        resp = self._send("GET", "/whoAmI/api/json", what=what, json_expected=True)
        if resp.status_code != 200:
            return resp.status_code, None
        body = self._json(resp, what)
        return 200, None if body.get("anonymous") else str(body.get("name") or "")

    def security_page(self, user: str, *, what: str) -> str | None:
        """The HTML of the user's security page (``/security/``, else the older ``/configure``); None when neither
        can be read (404, a redirect to the login page, 403)."""
        from urllib.parse import quote

        from providers.jenkins.security_page import SecurityPage

        for page in ("security/", "configure"):
            path = f"/user/{quote(user, safe='')}/{page}"
            resp = self._send("GET", path, what=what)
            if resp.status_code == 200 and "html" in resp.headers.get("content-type", ""):
                # the page says where it came from, so a bound the parser meets can name the controller
                return SecurityPage(resp.text, source=f"the security page of Jenkins user {user} ({self.base_url}{path})")
            if resp.status_code != 404:
                return None
        return None

    def root_class(self) -> str:
        resp = self._send("GET", "/api/json?tree=_class", what="could not read the Jenkins root API")
        if resp.status_code != 200:
            return ""
        return str(self._json(resp, "could not read the Jenkins root API").get("_class") or "")

    def sign_in(self) -> None:
        """Password mode: a session cookie, then that session's crumb. Token mode: nothing to do."""
        if not self.stateful or self._signed_in:
            return
        assert self._password is not None
        what = f"could not sign in to Jenkins as {self.auth_user}"
        self._http.cookies.clear()
        resp = self._send(
            "POST", "/j_spring_security_check", what=what,
            data={"j_username": self.auth_user, "j_password": self._password.reveal(), "from": "/"},
        )
        if resp.status_code not in (200, 302, 303) or "loginError" in resp.headers.get("Location", "") or not self._http.cookies:
            raise ProviderError(f"{what}: Jenkins refused the user name or password", hint="check accounts.*.password")
        resp = self._send("GET", "/crumbIssuer/api/json", what=what)
        if resp.status_code == 404:
            self._crumb = None  # CSRF protection is off
        elif resp.status_code != 200:
            raise ProviderError(f"{what}: GET /crumbIssuer/api/json -> {resp.status_code}")
        else:
            body = self._json(resp, what)
            self._crumb = (str(body.get("crumbRequestField") or "Jenkins-Crumb"), str(body.get("crumb") or ""))
        self._signed_in = True

    def post(self, path: str, data: dict[str, str], *, what: str, ambiguous: bool = False, idempotent: bool = False,
             json_expected: bool = False) -> httpx.Response:
        headers = {}
        if self.stateful:
            self.sign_in()
            if self._crumb is not None:
                headers[self._crumb[0]] = self._crumb[1]
        return self._send("POST", path, what=what, data=data, headers=headers, ambiguous=ambiguous,
                          idempotent=idempotent, json_expected=json_expected)

    def descriptor_path(self, user: str) -> str:
        from urllib.parse import quote

        return f"/user/{quote(user, safe='')}/{DESCRIPTOR}"

    def _json(self, resp: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            raise ProviderError(f"{what}: Jenkins answered {resp.status_code} with something that is not JSON") from None
        if not isinstance(body, dict):
            raise ProviderError(f"{what}: Jenkins answered {resp.status_code} with unexpected JSON")
        return body

    def check(self, resp: httpx.Response, what: str, *, forbidden: str | None = None) -> dict[str, Any] | None:
        """Raise a one-line error for a failed answer; return the JSON body (``status`` checked) when there is one."""
        code = resp.status_code
        if code == 401:
            raise AuthExpiredError(f"{what}: Jenkins refused the credentials of {self.auth_user} (401)")
        if code == 403:
            text = resp.text if "text" in resp.headers.get("content-type", "") else ""
            if NO_CRUMB.lower() in (text + " " + (resp.reason_phrase or "")).lower():
                self._signed_in = False
                raise ProviderError(f"{what}: {CRUMB_EXPLAINED}")
            raise ProviderError(f"{what}: Jenkins answered 403" + (f": {forbidden}" if forbidden else ""))
        if code == 404:
            raise ProviderError(f"{what}: Jenkins answered 404 (no such user, or not a Jenkins controller at {self.base_url})")
        if code >= 300:
            raise ProviderError(f"{what}: Jenkins answered {code}")
        if "json" not in resp.headers.get("content-type", ""):
            return None
        body = self._json(resp, what)
        if "status" in body and body.get("status") != "ok":
            msg = one_line(body.get("message") or "no message", redact=self._secrets)
            raise ProviderError(f"{what}: Jenkins answered status {body.get('status')!r}: {msg}")
        return body


def token_alive(base_url: str, ca_bundle: Path | None, user: str, token: SecretValue, *, transport: Any = None) -> tuple[int, str | None]:
    """``GET /whoAmI/api/json`` with ``token`` on a brand-new cookie-less client: (status, authenticated name).
    Tried again within bounds (app.net.with_retries) after a timeout, a reset, a 429/5xx or an unreadable answer."""
    import httpx

    url = check_url(base_url, "accounts.*.base_url") + "/whoAmI/api/json"
    with stateless_client(ca_bundle, user, token, transport=transport) as http:

        def once() -> httpx.Response:
            try:
                resp = http.get(url)
            except LimitExceededError as exc:
                record_use(token.fingerprint, 200)
                raise LimitExceededError(f"could not call GET /whoAmI/api/json: {exc.message}", hint=exc.hint) from None
            except httpx.TransportError as exc:
                record_use(token.fingerprint, None)
                raise transport_failure(exc, url) from None
            record_use(token.fingerprint, resp.status_code)
            log.info("jenkins GET /whoAmI/api/json (fresh client) -> %s", resp.status_code)
            if resp.status_code == 200 and not _parses(resp):
                raise Transient("an unreadable answer (HTTP 200)", Outcome.UNKNOWN, status=200)
            failure = answer_failure(resp.status_code, resp.headers)
            if failure is not None:
                raise failure
            return resp

        resp = with_retries(
            once,
            idempotent=True,
            gave_up=lambda failure, problems: ProviderError(
                f"could not call GET /whoAmI/api/json on {base_url}: {said_of(problems)}; try again later"
            ),
            log=log,
            call="jenkins GET /whoAmI/api/json (fresh client)",
        )
    if resp.status_code != 200:
        return resp.status_code, None
    body = resp.json()
    if not isinstance(body, dict) or body.get("anonymous"):
        return 200, None
    return 200, str(body.get("name") or "")


def _parses(resp: httpx.Response) -> bool:
    try:
        resp.json()
    except ValueError:
        return False
    return True

