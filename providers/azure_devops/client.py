"""The Azure DevOps PAT Lifecycle API (api-version 7.2-preview.1) and the new PAT's verification call.

Wire contract: ``app/sandbox/contracts/azure-devops/tokens-7.2/tokens.json`` (List is under
``x-ms-paths``). Awkward parts handled here: errors inside HTTP 200 (``patTokenError``), a sign-in
page (HTML, or HTTP 203) instead of JSON when the Entra token is refused, continuation paging, and
the maximum-lifespan policy that silently clamps ``validTo``.

httpx is imported on first use; only ids, names, paths and statuses are logged, never a header,
a body or a token value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from app.errors import AmbiguousResultError, AuthExpiredError, ProviderError, one_line
from app.net import (
    MAX_PAGES,
    RETRY_WAIT_CAP,
    LimitExceededError,
    Listing,
    Outcome,
    Transient,
    answer_failure,
    check_url,
    http_client,
    retry_sleep,
    times,
    transport_failure,
    with_retries,
)
from app.secret import SecretValue
from providers.azure_devops.scopes import FULL_ACCESS, scope_string
from providers.base import MintedToken, MintRequest, TokenInfo

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("keyturn.providers.azure_devops")

# The one api-version of the PAT Lifecycle API: the vendored 7.2 swagger's (tokens-7.2/tokens.json,
# parameters.api-Version-preview.1: "This should be set to '7.2-preview.1'"), the contract the sandbox enforces.
# 7.2 adds patTokenErrorMessage, the server's own text, which _pat_error_text shows.
API_VERSION = "7.2-preview.1"
POOLS_API_VERSION = "7.1"
DEFAULT_VSSPS_URL = "https://vssps.dev.azure.com"
DEFAULT_BASE_URL = "https://dev.azure.com"

RETRY_AFTER_CAP = RETRY_WAIT_CAP  # seconds: a longer Retry-After is cut to this
CLAMP_TOLERANCE = timedelta(minutes=1)
POOL_SCOPES = frozenset({"vso.agentpools", "vso.agentpools_manage", FULL_ACCESS})
NOT_FOUND_ERRORS = frozenset(
    {"tokenNotFound", "authorizationNotFound", "hostAuthorizationNotFound", "invalidAuthorizationId"}
)

_GLOBAL_PAT = (
    "all-organizations PATs are blocked by policy (and stop working on 2026-12-01 anyway): "
    "create it for this organization only (all_orgs = false)"
)
_BAD_IDENTITY = (
    "Azure DevOps creates PATs only for a user signed in with an Entra user token of the bot "
    "(service principals and managed identities cannot create PATs)"
)
_BAD_ENTRA_GRANT = (
    "Azure DevOps refused the Entra token: it must be the bot's user token for Azure DevOps "
    "(resource 499b84ac-1321-427f-aa17-267ca6975798)"
)
_BAD_CLIENT = (
    "Azure DevOps refused the sign-in's client application: use a client id allowed to manage PATs "
    "(the default Visual Studio client 872cd9fa-d31f-45e0-9eab-6e460a02d1f1)"
)
_UNKNOWN_PAT = "Azure DevOps does not know that token (authorizationId)"

# patTokenError (SessionTokenError in the swagger) -> what it means for the engineer.
PAT_TOKEN_ERRORS: dict[str, str] = {
    "displayNameRequired": "a display name is required",
    "invalidDisplayName": "the display name is not accepted (too long or invalid characters)",
    "invalidValidTo": "the expiry date is not accepted (it must be in the future)",
    "invalidScope": "one or more scopes are unknown or not allowed; check the scope ids",
    "userIdRequired": _BAD_IDENTITY,
    "invalidUserId": _BAD_IDENTITY,
    "invalidUserType": _BAD_IDENTITY,
    "accessDenied": "access denied: the bot may not manage PATs in this organization (check its access level)",
    "failedToIssueAccessToken": "Azure DevOps failed to issue the token; try again later",
    "invalidClient": _BAD_CLIENT,
    "invalidClientType": _BAD_CLIENT,
    "invalidClientId": _BAD_CLIENT,
    "invalidTargetAccounts": "the target organization is not accepted: is the bot a member of it?",
    "hostAuthorizationNotFound": _UNKNOWN_PAT,
    "authorizationNotFound": _UNKNOWN_PAT,
    "tokenNotFound": _UNKNOWN_PAT,
    "invalidAuthorizationId": "the authorizationId is not a valid token id",
    "invalidToken": "the token is not valid",
    "failedToUpdateAccessToken": "Azure DevOps failed to update the token; try again later",
    "sourceNotSupported": "the request's source is not allowed (an IP or conditional access policy)",
    "invalidSourceIP": "the request's source IP is not allowed by the organization's policy",
    "invalidSource": "the request's source is not allowed (an IP or conditional access policy)",
    "duplicateHash": "Azure DevOps generated a duplicate token; try again",
    "sshPolicyDisabled": "SSH authentication is disabled by policy",
    "failedToReadTenantPolicy": "Azure DevOps could not read the tenant's PAT policies; try again later",
    "failedToReadOrgPolicy": "Azure DevOps could not read the organization's PAT policies; try again later",
    "globalPatPolicyViolation": _GLOBAL_PAT,
    "globalPATCreationBlocked": _GLOBAL_PAT,
    "fullScopePatPolicyViolation": (
        "full-access PATs are blocked by the organization's policy: pick custom scopes instead of Full access"
    ),
    "patLifespanPolicyViolation": (
        "the expiry is beyond the organization's maximum PAT lifespan: choose a shorter validity"
    ),
    "invalidTokenType": _BAD_ENTRA_GRANT,
    "invalidAudience": _BAD_ENTRA_GRANT,
    "invalidSubject": _BAD_ENTRA_GRANT,
    "deploymentHostNotSupported": "this Azure DevOps deployment does not offer the PAT Lifecycle API",
    "disablePatCreationPolicyViolation": (
        "PAT creation is disabled by the organization's policy: ask an administrator to allow the bot to create PATs"
    ),
    "expiredPatCannotBeExtended": "an expired PAT cannot be extended: create a new one",
}



def parse_time(value: object) -> datetime | None:
    """ISO 8601 from Azure DevOps (7-digit fractions, 'Z') -> aware UTC; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def format_time(dt: datetime) -> str:
    """Aware (or naive = UTC) datetime -> '2026-03-01T12:00:00.000Z', as the API's examples write it."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _human_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def token_info(pat: dict[str, Any], *, status: str | None = None, now: datetime | None = None) -> TokenInfo:
    """A PatToken object -> TokenInfo (never the value).

    ``status`` is what the listings said ("active", "expired", "revoked"); without it, the expiry decides.
    """
    expires_at = parse_time(pat.get("validTo"))
    if status is None:
        status = "expired" if _expired(expires_at, now) else "active"
    targets = pat.get("targetAccounts")
    if targets is None:
        target_text = "all"
    else:
        n = len(targets) if isinstance(targets, list) else 0
        target_text = "1 org" if n == 1 else f"{n} orgs"
    extra = {"targetAccounts": target_text, "status": status}
    if valid_from := parse_time(pat.get("validFrom")):
        extra["validFrom"] = valid_from.isoformat()
    return TokenInfo(
        id=str(pat.get("authorizationId") or ""),
        name=str(pat.get("displayName") or ""),
        expires_at=expires_at,
        scopes=tuple(str(pat.get("scope") or "").split()),
        active=status == "active",
        extra=extra,
    )


def _expired(expires_at: datetime | None, now: datetime | None = None) -> bool:
    return expires_at is not None and expires_at <= (now or datetime.now(UTC))


def _is_html(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").lower().startswith("text/html")


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _token_not_found(response: httpx.Response) -> bool:
    """A 404 about the token (gone: fine for get/revoke), not about the organization (a real error)."""
    body = _json_object(response) or {}
    return "HostNotFound" not in str(body.get("typeKey") or "") and "organization" not in str(body.get("message") or "")


def _server_message(response: httpx.Response, redact: tuple[str, ...] = ()) -> str | None:
    """The ``message`` of an Azure DevOps JSON error body, one line; None when there is none."""
    body = _json_object(response)
    if body is not None and isinstance(body.get("message"), str) and body["message"].strip():
        return one_line(body["message"], redact=redact)
    return None


class PatClient:
    """PAT Lifecycle calls for one organization, authenticated by ``bearer()`` (the bot's Entra user token).

    ``transport`` (an ``httpx.BaseTransport``) replaces the network in tests; ``sleep`` the retry waits.
    """

    def __init__(
        self,
        account_name: str,
        organization: str,
        *,
        bearer: Callable[[], str],
        vssps_url: str | None = None,
        base_url: str | None = None,
        ca_bundle: Path | None = None,
        transport: Any = None,
        sleep: Callable[[float], None] = retry_sleep,
    ) -> None:
        self.account_name = account_name
        self.organization = organization
        self._org_path = "/" + quote(organization, safe="")
        self._vssps = check_url(vssps_url or DEFAULT_VSSPS_URL, f"accounts.{account_name}.vssps_url")
        self._base = check_url(base_url or DEFAULT_BASE_URL, f"accounts.{account_name}.base_url")
        self._bearer = bearer
        self._ca_bundle = ca_bundle
        self._transport = transport
        self._sleep = sleep
        self._http: Any = None

    @property
    def _pats_url(self) -> str:
        return f"{self._vssps}{self._org_path}/_apis/tokens/pats"

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = self._new_client()
        return self._http  # type: ignore[no-any-return]

    def _new_client(self) -> httpx.Client:
        extra = {"transport": self._transport} if self._transport is not None else {}
        return http_client(self._ca_bundle, **extra)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- the PAT Lifecycle API -------------------------------------------------------------------

    def iter_pats(self, display_filter: str = "all") -> Iterator[dict[str, Any]]:
        """Every PatToken the list API returns for ``displayFilterOption``, following continuationToken."""
        params: dict[str, str] = {"displayFilterOption": display_filter, "api-version": API_VERSION}
        what = f"could not list the PATs of {self.organization}"
        listing = Listing(what, urlsplit(self._vssps).netloc, items="PATs", max_pages=MAX_PAGES)
        while True:
            body = self._pat_call("GET", params, what=what)
            pats = [pat for pat in body.get("patTokens") or [] if isinstance(pat, dict)]
            listing.page(len(pats))  # before yielding: a listing past a bound yields nothing of that page
            yield from pats
            cont = body.get("continuationToken")
            if not cont:
                return
            listing.next(cont)
            params = {**params, "continuationToken": str(cont)}

    def _ids(self, display_filter: str) -> set[str]:
        return {str(p.get("authorizationId")) for p in self.iter_pats(display_filter)}

    def list_tokens(self, *, include_inactive: bool = False) -> list[TokenInfo]:
        """Active tokens (one listing); with ``include_inactive``, all of them with their status.

        A PatToken has no status field: ``active`` is what the ``active`` listing holds (the server's
        clock decides expiry); an inactive token that has not reached its validTo here is looked up in
        the ``revoked`` listing, which is fetched only when there is such a token."""
        now = datetime.now(UTC)
        if not include_inactive:
            return [token_info(p, status="active", now=now) for p in self.iter_pats("active")]
        active = self._ids("active")
        pats = list(self.iter_pats("all"))
        unsure = any(
            str(p.get("authorizationId")) not in active and not _expired(parse_time(p.get("validTo")), now)
            for p in pats
        )
        revoked = self._ids("revoked") if unsure else set()
        out = []
        for pat in pats:
            pid = str(pat.get("authorizationId"))
            status = "active" if pid in active else "revoked" if pid in revoked else "expired"
            out.append(token_info(pat, status=status, now=now))
        return out

    def get_token(self, token_id: str) -> TokenInfo | None:
        """One token; None when Azure DevOps does not know it. Its status comes from the listings, as above."""
        what = f"could not read PAT {token_id} of {self.organization}"
        body = self._pat_call(
            "GET", {"authorizationId": token_id, "api-version": API_VERSION}, what=what, none_if_missing=True
        )
        pat = body.get("patToken") if body else None
        if not isinstance(pat, dict):
            return None
        pid = str(pat.get("authorizationId"))
        if pid in self._ids("active"):
            status = "active"
        elif not _expired(parse_time(pat.get("validTo"))) and pid in self._ids("revoked"):
            status = "revoked"
        else:
            status = "expired"
        return token_info(pat, status=status)

    def create(self, request: MintRequest) -> MintedToken:
        """POST a new PAT. Sent again only when it never left (a failed connection); an unknown outcome raises
        AmbiguousResultError (the engine reconciles), a 429 stops with "try again in N s"."""
        what = f"could not create PAT {request.display_name!r} in {self.organization}"
        if request.expires_at is None:
            raise ProviderError(f"{what}: Azure DevOps PATs always expire; give an expiry date")
        if not request.scopes:
            raise ProviderError(f"{what}: no scopes given")
        body = {
            "displayName": request.display_name,
            "scope": scope_string(request.scopes),
            "validTo": format_time(request.expires_at),
            "allOrgs": bool(request.all_orgs),
        }
        result = self._pat_call("POST", {"api-version": API_VERSION}, what=what, json_body=body, idempotent=False)
        pat = result.get("patToken")
        if not isinstance(pat, dict) or not pat.get("authorizationId"):
            raise AmbiguousResultError(f"{what}: Azure DevOps answered without the new token's id")
        value = pat.get("token")
        info = token_info(pat)
        if not isinstance(value, str) or not value:
            raise AmbiguousResultError(
                f"{what}: Azure DevOps created token {info.id} but sent no value",
                hint="revoke it; keyturn cannot use a token it never saw",
            )
        notes: list[str] = []
        requested = request.expires_at if request.expires_at.tzinfo else request.expires_at.replace(tzinfo=UTC)
        if info.expires_at is not None and info.expires_at < requested - CLAMP_TOLERANCE:
            notes.append(
                f"the organization's maximum PAT lifespan clamped the expiry to {_human_time(info.expires_at)} "
                f"(asked for {_human_time(requested)})"
            )
        log.info("created PAT %s (%s) in %s", info.id, info.name, self.organization)
        return MintedToken(info=info, value=SecretValue(value), notes=tuple(notes))

    def revoke(self, token_id: str) -> None:
        """DELETE a PAT; an unknown or already revoked token is not an error."""
        what = f"could not revoke PAT {token_id} in {self.organization}"
        self._pat_call(
            "DELETE", {"authorizationId": token_id, "api-version": API_VERSION}, what=what, none_if_missing=True
        )
        log.info("revoked PAT %s in %s", token_id, self.organization)

    def _pat_call(
        self,
        method: str,
        params: dict[str, str],
        *,
        what: str,
        json_body: dict[str, Any] | None = None,
        idempotent: bool = True,
        none_if_missing: bool = False,
    ) -> dict[str, Any]:
        """One PAT API call -> its JSON object ({} for an empty body or a missing token with none_if_missing)."""
        redact = (self._bearer(),)  # cached: the same Entra token the request carries
        response = self._send(
            self._client(),
            method,
            self._pats_url,
            params=params,
            json_body=json_body,
            authorization=lambda: f"Bearer {self._bearer()}",
            idempotent=idempotent,
            what=what,
        )
        status = response.status_code
        if status in (203,) or _is_html(response) or 300 <= status < 400:
            raise AuthExpiredError(
                f"the Entra sign-in of {self.account_name} expired or was refused "
                f"(Azure DevOps answered {method} {response.url.path} with a sign-in page); sign in again"
            )
        if status == 404 and none_if_missing and _token_not_found(response):
            return {}
        if status in (401, 403):
            msg = _server_message(response, redact)
            if msg is None and status == 401:
                raise AuthExpiredError(
                    f"the Entra sign-in of {self.account_name} expired or was refused (HTTP 401); sign in again"
                )
            raise ProviderError(f"{what}: HTTP {status}: {msg or 'access denied'}")
        if status >= 400:
            body = _json_object(response)
            if body and body.get("patTokenError") not in (None, "none"):
                raise ProviderError(self._pat_error_text(what, str(body["patTokenError"]), body, redact))
            msg = _server_message(response, redact)
            raise ProviderError(f"{what}: HTTP {status}" + (f": {msg}" if msg else ""))
        if not response.content.strip():
            if idempotent:
                return {}
            raise AmbiguousResultError(f"{what}: Azure DevOps answered HTTP {status} with an empty body")
        body = _json_object(response)
        if body is None:
            if idempotent:
                raise ProviderError(f"{what}: Azure DevOps answered HTTP {status} with a body that is not JSON")
            raise AmbiguousResultError(f"{what}: Azure DevOps answered HTTP {status} with a body that is not JSON")
        error = body.get("patTokenError")
        if error and error != "none":
            if none_if_missing and error in NOT_FOUND_ERRORS:
                return {}
            raise ProviderError(self._pat_error_text(what, str(error), body, redact))
        return body

    @staticmethod
    def _pat_error_text(what: str, error: str, body: dict[str, Any], redact: tuple[str, ...]) -> str:
        explanation = PAT_TOKEN_ERRORS.get(error, "Azure DevOps refused the request")
        pat = body.get("patToken")
        value = pat.get("token") if isinstance(pat, dict) else None
        if isinstance(value, str):
            redact = (*redact, value)
        text = f"{what}: {explanation} (patTokenError {one_line(error, redact=redact, limit=60)})"
        server = body.get("patTokenErrorMessage")
        if isinstance(server, str) and server.strip():
            text += f": {one_line(server, redact=redact)}"
        return text

    # -- verification with the new PAT ---------------------------------------------------------

    def verify(self, token: MintedToken) -> str:
        """One call the new PAT's scopes allow, Basic auth, on a fresh client (no cookies carried over)."""
        if POOL_SCOPES.intersection(token.info.scopes):
            path = f"{self._org_path}/_apis/distributedtask/pools"
            params = {"api-version": POOLS_API_VERSION}
        else:
            path = f"{self._org_path}/_apis/connectionData"
            params = {}
        host = urlsplit(self._base).netloc
        secret = token.value.reveal()
        encoded = _b64(f":{secret}")
        basic = "Basic " + encoded
        call = f"GET {path}"
        with self._new_client() as fresh:
            response = self._send(
                fresh,
                "GET",
                self._base + path,
                params=params,
                json_body=None,
                authorization=lambda: basic,
                idempotent=True,
                what=f"could not verify the new token ({call})",
            )
            status = response.status_code
            refused = f"the new token was refused by {host}: {call} -> {status}"
            if status in (203, 401) or _is_html(response) or 300 <= status < 400:
                raise ProviderError(refused, hint="check that the token is active and its scopes allow this call")
            if status == 403:
                msg = _server_message(response, redact=(secret, encoded))
                raise ProviderError(f"the new token may not {call} (HTTP 403)" + (f": {msg}" if msg else ""))
            if status >= 400:
                msg = _server_message(response, redact=(secret, encoded))
                raise ProviderError(f"could not verify the new token: {call} -> {status}" + (f": {msg}" if msg else ""))
            body = _json_object(response)
        if body is None:
            raise ProviderError(f"could not verify the new token: {call} -> {status} with a body that is not JSON")
        if "pools" in path:
            count = body.get("count")
            if not isinstance(count, int):
                count = len(body.get("value") or [])
            return f"{call} -> {status} ({count} pool{'s' if count != 1 else ''})"
        user = body.get("authenticatedUser")
        descriptor = str(user.get("descriptor") or "") if isinstance(user, dict) else ""
        if not isinstance(user, dict) or "PublicAccess" in descriptor or "Anonymous" in descriptor:
            raise ProviderError(f"{refused} (answered as an anonymous user)")
        who = user.get("providerDisplayName") or user.get("customDisplayName")
        if not who:
            return f"{call} -> {status}"
        return f"{call} -> {status} (authenticated as {one_line(who, redact=(secret, encoded), limit=80)})"

    # -- transport: app.net's retry policy; an unknown outcome of a creation is ambiguous --------------

    def _send(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        *,
        params: dict[str, str],
        json_body: dict[str, Any] | None,
        authorization: Callable[[], str],
        idempotent: bool,
        what: str,
    ) -> httpx.Response:
        """One call under app.net.with_retries. Idempotent calls are tried again (timeouts, resets, 429 after its
        Retry-After, 5xx, a 2xx JSON answer that does not parse) up to MAX_ATTEMPTS; a creation only when it was
        not sent (a failed connection). For a creation a 429 stops with "try again in N s", and a reset, a timeout
        or a 5xx raises AmbiguousResultError (the caller reconciles)."""
        import httpx

        host = urlsplit(url).netloc
        path = urlsplit(url).path

        def once() -> httpx.Response:
            headers = {"Authorization": authorization(), "Accept": "application/json"}
            try:
                response = client.request(method, url, params=params, json=json_body, headers=headers)
            except LimitExceededError as exc:  # the answer was too large: never retried
                if not idempotent:
                    raise AmbiguousResultError(
                        f"{what}: {exc.message}; the token may or may not have been created",
                        hint="list the tokens by name before minting again",
                    ) from None
                raise LimitExceededError(f"{what}: {exc.message}", hint=exc.hint) from None
            except httpx.TransportError as exc:
                raise transport_failure(exc, url) from None
            status = response.status_code
            log.info("%s %s -> %d", method, path, status)
            failure = answer_failure(status, response.headers, cap=RETRY_AFTER_CAP)
            if failure is not None:
                raise failure
            if idempotent and 200 <= status < 300 and _malformed(response):
                raise Transient("a malformed answer", Outcome.UNKNOWN, status=status)
            return response

        def unknown(failure: Transient, problems: list[str]) -> httpx.Response:
            said = f"{host} answered {failure.problem}" if failure.status is not None else f"{failure.problem} ({host})"
            raise AmbiguousResultError(
                f"{what}: {said}; the token may or may not have been created",
                hint="list the tokens by name before minting again",
            )

        def gave_up(failure: Transient, problems: list[str]) -> ProviderError:
            if failure.outcome is Outcome.RATE_LIMITED:
                wait = failure.wait
                return ProviderError(
                    f"{what}: Azure DevOps is rate limiting the bot (HTTP 429 {times(len(problems))})",
                    hint=f"try again in {wait:.0f} s" if wait is not None else "try again later",
                )
            return ProviderError(_gave_up(what, host, problems))

        return with_retries(
            once,
            idempotent=idempotent,
            unknown=unknown,
            gave_up=gave_up,
            sleep=self._sleep,
            log=log,
            call=f"{method} {path}",
        )


def _malformed(response: httpx.Response) -> bool:
    """A JSON answer whose body does not parse (a proxy or a broken server cut it short)."""
    if "json" not in response.headers.get("content-type", "").lower() or not response.content.strip():
        return False
    try:
        response.json()
    except ValueError:
        return True
    return False


def _gave_up(what: str, host: str, problems: list[str]) -> str:
    """'could not list the PATs of org: vssps.dev.azure.com answered HTTP 503 after 3 attempts; try again later'."""
    n = len(problems)
    if len(set(problems)) == 1 and problems[0].startswith("HTTP "):
        return f"{what}: {host} answered {problems[0]} after {n} attempts; try again later"
    said = problems[0] if len(set(problems)) == 1 else ", then ".join(problems)
    return f"{what}: {said} ({host}) after {n} attempts; try again later"


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()
