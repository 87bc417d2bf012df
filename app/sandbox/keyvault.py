"""Azure Key Vault (secrets data plane), one server per vault like the real per-vault host.

Routes per ``secrets.7.5.json``:

- ``GET   /secrets``: GetSecrets (paged: ``maxresults``, ``nextLink`` with ``$skiptoken``).
- ``PUT   /secrets/{name}``: SetSecret (a new version; body ``SecretSetParameters``).
- ``GET   /secrets/{name}``, ``/secrets/{name}/``, ``/secrets/{name}/{version}``: GetSecret (latest or one version).
- ``GET   /secrets/{name}/versions``: GetSecretVersions (paged).
- ``PATCH /secrets/{name}/{version}`` (or no/empty version = latest): UpdateSecret (tags, attributes, contentType).

``api-version`` 7.5 (what keyturn pins), 7.4, 7.6 or 2025-07-01. A request without a bearer token gets the
real challenge: 401 with ``WWW-Authenticate: Bearer authorization="<entra>/<tenant>",
resource="https://vault.azure.net"``; the SDK then fetches a token and retries. Tokens must come
from the Entra emulator with the vault audience. Errors use Key Vault's ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import uuid
from typing import Any

from app.sandbox.http import BadRequestBody, Request, Response, Service, json_response
from app.sandbox.state import VAULT_RESOURCE, IssuedToken, SandboxState, SecretVersion
from app.sandbox.swagger import secrets_spec

ACCEPTED_VERSIONS = ("7.5", "7.4", "7.6", "2025-07-01")
NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
MAX_VALUE = 25 * 1024
DEFAULT_PAGE = 25


def kv_error(
    status: int, code: str, message: str, inner: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    hdrs = {"x-ms-error-code": code, "x-ms-request-id": str(uuid.uuid4())}
    hdrs.update(headers or {})
    return json_response(status, {"error": error}, headers=hdrs)


def _checked(definition: str, payload: dict[str, Any]) -> dict[str, Any]:
    problems = secrets_spec().validate(definition, payload, direction="response", nullable=True)
    if problems:
        raise AssertionError(f"emulator response breaks {definition}: {'; '.join(problems)}")
    return payload


class KeyVaultService(Service):
    """One vault. ``authority`` is the Entra emulator's base URL (for the challenge)."""

    def __init__(self, state: SandboxState, vault: str, authority: str) -> None:
        super().__init__(state)
        self.vault = vault
        self.name = f"vault:{vault}"
        self.authority = authority
        self.route("GET", "/secrets", self.list_secrets)
        self.route("GET", "/secrets/{name}/versions", self.list_versions)
        self.route("PUT", "/secrets/{name}", self.set_secret)
        self.route("GET", "/secrets/{name}", self.get_secret)
        self.route("GET", "/secrets/{name}/{version?}", self.get_secret)
        self.route("PATCH", "/secrets/{name}", self.update_secret)
        self.route("PATCH", "/secrets/{name}/{version?}", self.update_secret)

    # -- responses -----------------------------------------------------------------------------

    _OPERATIONS = {"PUT": "keyvault.set", "PATCH": "keyvault.update"}

    def call_names(self, req: Request, template: str) -> list[str]:
        names = super().call_names(req, template)
        if req.method == "GET":
            names.append("keyvault.list" if template in ("/secrets", "/secrets/{name}/versions") else "keyvault.get")
        elif req.method in self._OPERATIONS:
            names.append(self._OPERATIONS[req.method])
        return names

    def injected_error(self, status: int, req: Request) -> Response:
        if status == 429:
            return kv_error(429, "Throttled", "Request was not processed because too many requests were received (keyturn sandbox fault injection).")
        if status == 503:
            return kv_error(503, "ServiceUnavailable", "The service is unavailable (keyturn sandbox fault injection).")
        return kv_error(status, "InternalServerError", "An unexpected error occurred (keyturn sandbox fault injection).")

    def not_found(self, req: Request) -> Response:
        return kv_error(404, "NotFound", f"The requested resource {req.path} was not found on this vault.")

    def method_not_allowed(self, req: Request, allowed: Any) -> Response:
        return kv_error(405, "BadParameter", f"The requested resource does not support http method '{req.method}'.")

    def internal_error(self, req: Request) -> Response:
        return kv_error(500, "InternalServerError", "The keyturn sandbox emulator failed (see its log).")

    def _challenge(self, message: str) -> Response:
        header = f'Bearer authorization="{self.authority}/{self.state.tenant_id}", resource="{VAULT_RESOURCE}"'
        return kv_error(401, "Unauthorized", message, headers={"WWW-Authenticate": header})

    def secret_id(self, name: str, version: str | None = None) -> str:
        return f"{self.base_url}/secrets/{name}" + (f"/{version}" if version else "")

    @staticmethod
    def attributes(ver: SecretVersion) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": ver.enabled}
        if ver.not_before is not None:
            attrs["nbf"] = ver.not_before
        if ver.expires is not None:
            attrs["exp"] = ver.expires
        attrs.update(
            created=ver.created, updated=ver.updated, recoveryLevel="Recoverable+Purgeable", recoverableDays=90
        )
        return attrs

    def bundle(self, ver: SecretVersion, *, with_value: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if with_value:
            out["value"] = ver.value
        if ver.content_type is not None:
            out["contentType"] = ver.content_type
        out["id"] = self.secret_id(ver.name, ver.version)
        out["attributes"] = self.attributes(ver)
        if ver.tags is not None:
            out["tags"] = dict(ver.tags)
        return _checked("SecretBundle", out)

    def item(self, ver: SecretVersion, *, versioned: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.secret_id(ver.name, ver.version if versioned else None)}
        out["attributes"] = self.attributes(ver)
        if ver.tags is not None:
            out["tags"] = dict(ver.tags)
        if ver.content_type is not None:
            out["contentType"] = ver.content_type
        return out

    # -- checks --------------------------------------------------------------------------------

    def _preflight(self, req: Request, permission: str, fault_op: str) -> tuple[IssuedToken | None, Response | None]:
        value = req.bearer()
        if value is None:
            return None, self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        tok = self.state.lookup_token(value)
        if tok is None:
            return None, self._challenge(
                "AKV10032: Invalid issuer: the token was not issued by the sandbox's Entra emulator."
            )
        if tok.audience != VAULT_RESOURCE:
            return None, self._challenge(
                f"AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, found: {tok.audience}."
            )
        if not tok.active(self.state.time()):
            return None, self._challenge("AKV10013: Token is expired.")
        version = req.arg("api-version", ignore_case=False)
        if version is None:
            return None, kv_error(400, "BadParameter", "The 'api-version' query parameter is required.")
        if version not in ACCEPTED_VERSIONS:
            return None, kv_error(
                400,
                "BadParameter",
                f"The specified version ({version}) is not recognized. Consider using the latest supported version "
                f"(2025-07-01). The keyturn sandbox accepts {', '.join(ACCEPTED_VERSIONS)}.",
            )
        name = req.params.get("name")
        if name is not None and not NAME.match(name):
            return None, kv_error(400, "BadParameter", f"The request URI contains an invalid name: {name}")
        fault = self.state.take_fault(fault_op)
        if fault:
            if fault == "503":
                return None, kv_error(
                    503, "ServiceUnavailable", "The service is unavailable (keyturn sandbox fault injection)."
                )
            return None, kv_error(
                500, "InternalServerError", "An unexpected error occurred (keyturn sandbox fault injection)."
            )
        if self.state.denied(self.vault, permission):
            who = f"appid={tok.client_id};oid={tok.oid};iss=https://sts.windows.net/{tok.tenant_id}/"
            return None, kv_error(
                403,
                "Forbidden",
                f"The user, group or application '{who}' does not have secrets {permission} permission on key vault "
                f"'{self.vault};location=uksouth'. For help resolving this issue, please see "
                "https://go.microsoft.com/fwlink/?linkid=2125287",
                inner="AccessDenied",
            )
        return tok, None

    def _not_found(self, name: str, version: str | None = None) -> Response:
        what = f"{name}/{version}" if version else name
        return kv_error(
            404,
            "SecretNotFound",
            f"A secret with (name/id) {what} was not found in this key vault. If you recently deleted this secret you "
            "may be able to recover it using the correct recovery command. For help resolving this issue, please see "
            "https://go.microsoft.com/fwlink/?linkid=2125182",
        )

    def _body(self, req: Request, definition: str) -> tuple[dict[str, Any] | None, Response | None]:
        try:
            body = req.json()
        except BadRequestBody as exc:
            return None, kv_error(400, "BadParameter", f"{exc}")
        problems = secrets_spec().validate(definition, body, direction="request")
        if problems:
            return None, kv_error(
                400,
                "BadParameter",
                f"The request body does not match {definition} (keyturn sandbox contract check): "
                + "; ".join(problems),
            )
        return body, None

    def _find(self, name: str, version: str) -> SecretVersion | None:
        versions = self.state.secret_versions(self.vault, name)
        if not versions:
            return None
        if not version:
            return versions[-1]
        return next((v for v in versions if v.version == version.lower()), None)

    # -- handlers ------------------------------------------------------------------------------

    def set_secret(self, req: Request) -> Response:
        _tok, resp = self._preflight(req, "set", "keyvault.set")
        if resp is not None:
            return resp
        body, bad = self._body(req, "SecretSetParameters")
        if bad is not None:
            return bad
        assert body is not None
        if len(body["value"].encode("utf-8")) > MAX_VALUE:
            return kv_error(400, "BadParameter", "The secret value exceeds the maximum size of 25 KB.")
        attrs = body.get("attributes") or {}
        ver = self.state.set_secret(
            self.vault,
            req.params["name"],
            body["value"],
            tags=body.get("tags"),
            content_type=body.get("contentType"),
            enabled=attrs.get("enabled") is not False,
            not_before=attrs.get("nbf"),
            expires=attrs.get("exp"),
        )
        return json_response(200, self.bundle(ver))

    def get_secret(self, req: Request) -> Response:
        _tok, resp = self._preflight(req, "get", "keyvault.get")
        if resp is not None:
            return resp
        name, version = req.params["name"], req.params.get("version", "")
        ver = self._find(name, version)
        if ver is None:
            return self._not_found(name, version or None)
        if not ver.enabled:
            return kv_error(
                403, "Forbidden", "Operation get is not allowed on a disabled secret.", inner="SecretDisabled"
            )
        return json_response(200, self.bundle(ver))

    def update_secret(self, req: Request) -> Response:
        _tok, resp = self._preflight(req, "set", "keyvault.update")
        if resp is not None:
            return resp
        body, bad = self._body(req, "SecretUpdateParameters")
        if bad is not None:
            return bad
        assert body is not None
        name, version = req.params["name"], req.params.get("version", "")
        with self.state.lock:
            versions = self.state._versions(self.vault, name) or []
            live = (
                (versions[-1] if versions else None)
                if not version
                else next((v for v in versions if v.version == version.lower()), None)
            )
            if live is None:
                return self._not_found(name, version or None)
            if "contentType" in body:
                live.content_type = body["contentType"]
            if "tags" in body:
                live.tags = dict(body["tags"]) if body["tags"] is not None else None
            attrs = body.get("attributes") or {}
            if attrs.get("enabled") is not None:
                live.enabled = bool(attrs["enabled"])
            if "nbf" in attrs:
                live.not_before = attrs["nbf"]
            if "exp" in attrs:
                live.expires = attrs["exp"]
            live.updated = int(self.state.time())
            snapshot = copy.deepcopy(live)
        return json_response(200, self.bundle(snapshot, with_value=False))

    def _page(self, req: Request, items: list[dict[str, Any]], path: str) -> Response:
        raw_max = req.arg("maxresults")
        size = DEFAULT_PAGE
        if raw_max is not None:
            if not raw_max.isdigit() or not 1 <= int(raw_max) <= 25:
                return kv_error(400, "BadParameter", "maxresults must be an integer between 1 and 25.")
            size = int(raw_max)
        offset = 0
        skip = req.arg("$skiptoken")
        if skip:
            try:
                offset = int(json.loads(base64.urlsafe_b64decode(skip + "=" * (-len(skip) % 4)))["NextMarker"])
            except (binascii.Error, ValueError, KeyError, TypeError):
                return kv_error(400, "BadParameter", "The $skiptoken is not valid.")
        page = items[offset : offset + size]
        next_link = None
        if offset + size < len(items):
            token = base64.urlsafe_b64encode(json.dumps({"NextMarker": offset + size}).encode()).decode().rstrip("=")
            version = req.arg("api-version", ignore_case=False)
            next_link = f"{self.base_url}{path}?api-version={version}&$skiptoken={token}&maxresults={size}"
        return json_response(200, _checked("SecretListResult", {"value": page, "nextLink": next_link}))

    def list_versions(self, req: Request) -> Response:
        _tok, resp = self._preflight(req, "list", "keyvault.list")
        if resp is not None:
            return resp
        name = req.params["name"]
        versions = self.state.secret_versions(self.vault, name)
        items = [self.item(v, versioned=True) for v in versions]
        return self._page(req, items, f"/secrets/{name}/versions")

    def list_secrets(self, req: Request) -> Response:
        _tok, resp = self._preflight(req, "list", "keyvault.list")
        if resp is not None:
            return resp
        items = []
        for name in self.state.secret_names(self.vault):
            latest = self.state.latest_secret(self.vault, name)
            if latest is not None:
                items.append(self.item(latest, versioned=False))
        return self._page(req, items, "/secrets")
