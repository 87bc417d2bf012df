"""Microsoft Entra ID (login.microsoftonline.com), as far as MSAL / azure-identity use it.

Endpoints (``{tenant}`` = the sandbox tenant id, ``organizations`` or ``common``):

- ``GET  /{tenant}/v2.0/.well-known/openid-configuration``: MSAL's tenant discovery
  (with ``disable_instance_discovery=True`` it is the first call).
- ``POST /{tenant}/oauth2/v2.0/devicecode``: starts a device-code sign-in (``interval: 0``).
- ``POST /{tenant}/oauth2/v2.0/token``: grants ``urn:ietf:params:oauth:grant-type:device_code``,
  ``password``, ``client_credentials`` and ``refresh_token``.
- ``GET  /common/userrealm/{username}``: user realm discovery of the password flow ("Managed").
  MSAL builds that URL from the authority's host name *without its port*, so against a sandbox on
  a high port it reaches ``https://127.0.0.1:443``; see :func:`app.sandbox.skip_user_realm_discovery`.
- ``GET|POST /devicelogin``: the page the device-code prompt points to (enter the code to approve).

Device codes are approved automatically, as the bot, ``auto_approve_device_code`` seconds after they
were issued (negative: only by hand, on the page or with ``state.approve_device_code``). While a code
is pending the token endpoint holds the poll for up to 0.25 s before answering
``authorization_pending``: MSAL polls again at once when ``interval`` is 0.

Access tokens are JWT-shaped (header ``alg: none``) with ``aud`` = the resource of the requested scope
(``499b84ac-1321-427f-aa17-267ca6975798`` for Azure DevOps, ``https://vault.azure.net`` for Key Vault);
the state remembers each one so the other emulators can look it up.
"""

from __future__ import annotations

import base64
import html
import json
import secrets
import string
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from app.sandbox.http import Request, Response, Service, html_response, json_response
from app.sandbox.state import GRAPH_RESOURCE, DeviceFlow, IssuedToken, SandboxState, User

RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PENDING_HOLD_SECONDS = 0.25


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unsigned_jwt(claims: dict[str, Any]) -> str:
    header = b64url(json.dumps({"typ": "JWT", "alg": "none"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{payload}."


def jwt_claims(token: str) -> dict[str, Any]:
    """Decode the claims of a (sandbox) JWT without checking anything."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def split_scopes(scope: str) -> tuple[str | None, list[str], list[str]]:
    """'499b.../.default openid' -> (resource, ['499b.../.default'], ['.default'])."""
    resource_scopes = [s for s in scope.split() if s not in RESERVED_SCOPES]
    resources: list[str] = []
    perms: list[str] = []
    for s in resource_scopes:
        if "/" in s:
            res, _, perm = s.rpartition("/")
            res = res.rstrip("/")
        else:
            res, perm = GRAPH_RESOURCE, s
        resources.append(res)
        perms.append(perm)
    distinct = sorted(set(resources))
    if not distinct:
        return None, [], []
    if len(distinct) > 1:
        raise ValueError(distinct)
    return distinct[0], resource_scopes, perms


class EntraService(Service):
    name = "entra"

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.route("GET", "/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration)
        self.route("GET", "/{tenant}/.well-known/openid-configuration", self.openid_configuration)
        self.route("POST", "/{tenant}/oauth2/v2.0/devicecode", self.device_code)
        self.route("POST", "/{tenant}/oauth2/v2.0/token", self.token)
        self.route("GET", "/common/userrealm/{username}", self.user_realm)
        self.route("GET", "/devicelogin", self.device_login_page)
        self.route("POST", "/devicelogin", self.device_login_submit)

    # -- helpers -------------------------------------------------------------------------------

    def _tenant_ok(self, tenant: str) -> bool:
        return tenant.lower() in (self.state.tenant_id, "organizations", "common", "sandbox.example")

    def error(self, status: int, error: str, code: int, description: str) -> Response:
        trace, corr = uuid.uuid4(), uuid.uuid4()
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        text = f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {corr} Timestamp: {stamp}"
        return json_response(
            status,
            {
                "error": error,
                "error_description": text,
                "error_codes": [code],
                "timestamp": stamp,
                "trace_id": str(trace),
                "correlation_id": str(corr),
                "error_uri": f"https://login.microsoftonline.com/error?code={code}",
            },
        )

    def _bad_tenant(self, tenant: str) -> Response:
        return self.error(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into "
            "the correct cloud.",
        )

    @staticmethod
    def _form(req: Request) -> dict[str, str]:
        data = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in data.items()}

    # -- discovery -----------------------------------------------------------------------------

    def openid_configuration(self, req: Request) -> Response:
        tenant = req.params["tenant"]
        if not self._tenant_ok(tenant):
            return self._bad_tenant(tenant)
        base = f"{self.base_url}/{tenant}"
        issuer_tenant = "{tenantid}" if tenant.lower() in ("organizations", "common") else self.state.tenant_id
        return json_response(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{self.base_url}/{issuer_tenant}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "nbf",
                    "name",
                    "oid",
                    "tid",
                    "preferred_username",
                ],
                "kerberos_endpoint": f"{base}/kerberos",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            },
        )

    def user_realm(self, req: Request) -> Response:
        username = req.params["username"]
        domain = username.rpartition("@")[2].lower()
        with self.state.lock:
            known = any(u.email.lower().endswith("@" + domain) for u in self.state.users.values())
        body: dict[str, Any] = {
            "ver": "1.0",
            "account_type": "Managed" if known else "Unknown",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_audience_urn": "urn:federation:MicrosoftOnline",
        }
        if known:
            body["domain_name"] = domain
        return json_response(200, body)

    # -- device code ---------------------------------------------------------------------------

    def device_code(self, req: Request) -> Response:
        tenant = req.params["tenant"]
        if not self._tenant_ok(tenant):
            return self._bad_tenant(tenant)
        form = self._form(req)
        client_id = form.get("client_id", "")
        if not client_id:
            return self.error(
                400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
            )
        scope = form.get("scope", "")
        try:
            split_scopes(scope)
        except ValueError:
            return self._multi_resource()
        user_code = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(9))
        now = self.state.time()
        delay = self.state.auto_approve_device_code
        flow = DeviceFlow(
            device_code="dc." + secrets.token_urlsafe(40),
            user_code=user_code,
            client_id=client_id,
            scopes=scope.split(),
            created=now,
            expires_at=now + 900,
            approve_at=None if delay < 0 else now + delay,
        )
        with self.state.lock:
            self.state.device_flows[flow.device_code] = flow
        uri = f"{self.base_url}/devicelogin"
        return json_response(
            200,
            {
                "user_code": user_code,
                "device_code": flow.device_code,
                "verification_uri": uri,
                "expires_in": 900,
                "interval": 0,
                "message": f"To sign in, use a web browser to open the page {uri} and enter the code {user_code} "
                "to authenticate.",
            },
        )

    def device_login_page(self, req: Request) -> Response:
        code = html.escape(req.arg("otc") or "")
        delay = self.state.auto_approve_device_code
        note = (
            f"In the sandbox the code is approved automatically, as the bot, {delay:g} s after it was issued."
            if delay >= 0
            else "Enter the code to sign in as the sandbox bot."
        )
        return html_response(
            200,
            "<!DOCTYPE html><html><head><title>Sign in to your account (keyturn sandbox)</title></head><body>"
            "<h1>Enter code</h1><p>Enter the code displayed on your app or device.</p>"
            f"<form method='post' action='/devicelogin'><input name='code' value='{code}' autocomplete='off'>"
            f"<button type='submit'>Next</button></form><p>{html.escape(note)}</p></body></html>",
        )

    def device_login_submit(self, req: Request) -> Response:
        code = self._form(req).get("code", "")
        if self.state.approve_device_code(code):
            return html_response(
                200,
                "<!DOCTYPE html><html><body><h1>You're signed in</h1>"
                f"<p>Signed in as {html.escape(self.state.bot_email)}. You can close this window.</p></body></html>",
            )
        return html_response(
            400,
            "<!DOCTYPE html><html><body><h1>Enter code</h1><p>That code didn't work. Check the code and try again."
            "</p></body></html>",
        )

    # -- token endpoint ------------------------------------------------------------------------

    def token(self, req: Request) -> Response:
        tenant = req.params["tenant"]
        if not self._tenant_ok(tenant):
            return self._bad_tenant(tenant)
        form = self._form(req)
        grant = form.get("grant_type", "")
        if not form.get("client_id"):
            return self.error(
                400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
            )
        if grant == DEVICE_CODE_GRANT:
            return self._grant_device_code(form)
        if grant == "password":
            return self._grant_password(form)
        if grant == "client_credentials":
            return self._grant_client_credentials(form)
        if grant == "refresh_token":
            return self._grant_refresh_token(form)
        if not grant:
            return self.error(
                400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'."
            )
        return self.error(
            400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'."
        )

    def _multi_resource(self) -> Response:
        return self.error(
            400,
            "invalid_scope",
            28000,
            "Provided value for the input parameter scope is not valid because it contains more than one resource.",
        )

    def _grant_device_code(self, form: dict[str, str]) -> Response:
        code = form.get("device_code", "")
        deadline = time.monotonic() + PENDING_HOLD_SECONDS
        while True:
            with self.state.lock:
                flow = self.state.device_flows.get(code)
                if flow is None or flow.client_id != form["client_id"]:
                    return self.error(400, "bad_verification_code", 70000, "The provided device code is not valid.")
                now = self.state.time()
                if flow.redeemed:
                    return self.error(
                        400, "invalid_grant", 70000, "The provided device code has already been redeemed."
                    )
                if now >= flow.expires_at:
                    return self.error(
                        400,
                        "expired_token",
                        70020,
                        "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
                    )
                if flow.approved_by is None and flow.approve_at is not None and now >= flow.approve_at:
                    flow.approved_by = self.state.bot_oid
                if flow.approved_by is not None:
                    flow.redeemed = True
                    user = self.state.user_by_oid(flow.approved_by)
                    scope = form.get("scope") or " ".join(flow.scopes)
                    break
            if time.monotonic() >= deadline:
                return self.error(
                    400,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                )
            time.sleep(0.02)
        assert user is not None
        return self._user_tokens(user, form["client_id"], scope)

    def _grant_password(self, form: dict[str, str]) -> Response:
        username = form.get("username", "")
        user = self.state.user(username)
        if user is None:
            return self.error(
                400,
                "invalid_grant",
                50034,
                f"The user account {{EmailHidden}} does not exist in the {self.state.tenant_id} directory. To sign "
                "into this application, the account must be added to the directory.",
            )
        if not secrets.compare_digest(form.get("password", "").encode(), user.password.encode()):
            return self.error(
                400, "invalid_grant", 50126, "Error validating credentials due to invalid username or password."
            )
        return self._user_tokens(user, form["client_id"], form.get("scope", ""))

    def _grant_refresh_token(self, form: dict[str, str]) -> Response:
        with self.state.lock:
            rt = self.state.refresh_tokens.get(form.get("refresh_token", ""))
        if rt is None or rt.client_id != form["client_id"]:
            return self.error(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        if rt.revoked:
            return self.error(
                400,
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
            )
        user = self.state.user_by_oid(rt.oid)
        if user is None:
            return self.error(400, "invalid_grant", 50173, "The provided grant has expired due to it being revoked.")
        return self._user_tokens(user, form["client_id"], form.get("scope", ""))

    def _grant_client_credentials(self, form: dict[str, str]) -> Response:
        client_id = form["client_id"]
        sp = self.state.service_principals.get(client_id)
        if sp is None:
            return self.error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory 'keyturn sandbox'. This "
                "can happen if the application has not been installed by the administrator of the tenant or consented "
                "to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        if "client_secret" not in form:
            return self.error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if not secrets.compare_digest(form["client_secret"].encode(), sp.secret.encode()):
            return self.error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        scope = form.get("scope", "")
        try:
            resource, resource_scopes, perms = split_scopes(scope)
        except ValueError:
            return self._multi_resource()
        if resource is None or perms != [".default"]:
            return self.error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
                "with /.default suffixed to the resource identifier (application ID URI).",
            )
        now = self.state.time()
        exp = now + self.state.token_lifetime
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.state.tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(exp),
            "appid": client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": sp.oid,
            "sub": sp.oid,
            "tid": self.state.tenant_id,
            "roles": [],
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        access = unsigned_jwt(claims)
        self.state.add_token(
            IssuedToken(
                access, "app", resource, resource_scopes, client_id, self.state.tenant_id, sp.oid, None, now, exp
            )
        )
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.state.token_lifetime,
                "ext_expires_in": self.state.token_lifetime,
                "scope": " ".join(resource_scopes),
                "access_token": access,
            },
        )

    def _user_tokens(self, user: User, client_id: str, scope: str) -> Response:
        try:
            resource, resource_scopes, perms = split_scopes(scope)
        except ValueError:
            return self._multi_resource()
        if resource is None:
            resource, perms = GRAPH_RESOURCE, ["User.Read"]
        scp = " ".join("user_impersonation" if p == ".default" else p for p in perms)
        now = self.state.time()
        exp = now + self.state.token_lifetime
        tid = self.state.tenant_id
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{tid}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(exp),
            "appid": client_id,
            "appidacr": "0",
            "idtyp": "user",
            "name": user.display_name,
            "oid": user.oid,
            "scp": scp,
            "sub": user.oid,
            "tid": tid,
            "unique_name": user.email,
            "upn": user.email,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        access = unsigned_jwt(claims)
        self.state.add_token(
            IssuedToken(access, "user", resource, resource_scopes, client_id, tid, user.oid, user.email, now, exp)
        )
        id_token = unsigned_jwt(
            {
                "aud": client_id,
                "iss": f"{self.base_url}/{tid}/v2.0",
                "iat": int(now),
                "nbf": int(now),
                "exp": int(exp),
                "name": user.display_name,
                "oid": user.oid,
                "preferred_username": user.email,
                "sub": user.oid,
                "tid": tid,
                "ver": "2.0",
            }
        )
        client_info = b64url(json.dumps({"uid": user.oid, "utid": tid}).encode())
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "scope": " ".join(resource_scopes) or scp,
                "expires_in": self.state.token_lifetime,
                "ext_expires_in": self.state.token_lifetime,
                "access_token": access,
                "refresh_token": self.state.add_refresh_token(user.oid, client_id),
                "id_token": id_token,
                "client_info": client_info,
            },
        )
