"""Azure DevOps: the PAT Lifecycle API host (vssps) and the organisation host (dev.azure.com).

``VsspsService`` (stands for https://vssps.dev.azure.com), per ``tokens-7.2/tokens.json``:

- ``GET    /{org}/_apis/tokens/pats``: list (``displayFilterOption``, ``sortByOption``, ``isSortAscending``,
  ``continuationToken``, ``$top``); pages of ``page_size``; the last page has ``continuationToken: ""``.
- ``GET    /{org}/_apis/tokens/pats?authorizationId=``: one PAT.
- ``POST   /{org}/_apis/tokens/pats``: create (body checked against ``PatTokenCreateRequest``).
- ``PUT    /{org}/_apis/tokens/pats``: update (``PatTokenUpdateRequest``).
- ``DELETE /{org}/_apis/tokens/pats?authorizationId=``: revoke (200, empty body).

``api-version`` must be ``7.2-preview.1`` (or ``7.2-preview``), the version of the swagger enforced here (its
``api-Version-preview.1`` parameter: "This should be set to '7.2-preview.1'"); also accepted in the ``Accept`` header
like the real service. Other versions are refused with HTTP 400 (the real service would serve older versions with
their own contracts; the sandbox has one contract, so it refuses them: an assumption, see SOURCE.md). Authentication is an Entra **user** token for the Azure
DevOps resource. A missing, unknown, expired or foreign-audience token gets what a bad session gets
from the real service: HTTP 203 with the HTML sign-in page (or 401 when the request carries
``X-TFS-FedAuthRedirect: Suppress``). An app-only token gets a 401 JSON error: service principals
cannot manage PATs. PAT-domain errors come inside HTTP 200 as ``patTokenError`` (+
``patTokenErrorMessage``, 7.2 only). A scope id absent from Microsoft's scope table (the vendored
``scopes.json``; e.g. the retired ``vso.loadtest*``, the non-public ``vso.hooks*``, ``vso.settings*``) is
``invalidScope``. Every response body is validated against the swagger too.

``DevOpsService`` (stands for https://dev.azure.com): ``GET /{org}/_apis/connectionData`` and
``GET /{org}/_apis/distributedtask/pools`` with a PAT as Basic auth (any user name) or an Entra user token.
A revoked or expired PAT gets 401; a PAT without an agent-pool scope gets 403 on pools.

Azure Pipelines, per ``pipelines-7.1/pipelines.json`` (api-version ``7.1``; 7.0 and 7.2-preview too), same auth:

- ``GET  /{org}/{project}/_apis/pipelines/{pipelineId}``: Pipelines - Get (``vso.build``).
- ``GET  /{org}/{project}/_apis/pipelines/{pipelineId}/runs``: Runs - List, newest first (``vso.build``).
- ``POST /{org}/{project}/_apis/pipelines/{pipelineId}/runs``: Runs - Run Pipeline (``vso.build_execute``); the
  body is checked against ``RunPipelineParameters``: ``resources.repositories.self.refName`` must be a branch of
  the pipeline, ``variables`` only those it lets users set at queue time, no ``templateParameters`` (it declares
  none), ``previewRun`` answers the final YAML and queues nothing.
- ``GET  /{org}/{project}/_apis/pipelines/{pipelineId}/runs/{runId}``: Runs - Get (``vso.build``).

Every answer is validated against the ``Run`` / ``Pipeline`` definitions, in the wire form the swagger does not
spell out (see contracts/azure-devops/SOURCE.md): ``_links`` is the links themselves (``{"web": {"href"}}``), not
``ReferenceLinks.links``; a listing is ``{"count", "value"}`` (``VssJsonCollectionWrapper``), not a bare array.
A run behaves like the consumer it checks (``state.PipelineRecord``): when queued, it reads the latest version of
its Key Vault secret and calls the agent pools API with it (in-process, against the state: the PAT's ``uses``
count it); it stays ``inProgress`` for the pipeline's ``run_duration_s``, then is ``completed`` with ``succeeded``
when that token is an active PAT of the organization with every scope in ``needs``, else ``failed``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import uuid
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from app.sandbox.http import BadRequestBody, Request, Response, Service, html_response, json_response, text_response
from app.sandbox.state import DEVOPS_RESOURCE, IssuedToken, PatRecord, PipelineRecord, PipelineRun, SandboxState
from app.sandbox.swagger import CONTRACTS, SwaggerSpec, format_date_time, parse_date_time, tokens_spec

PATS_ROUTE = "/{org}/_apis/tokens/pats"
# The versions of the one swagger enforced (tokens-7.2/tokens.json, info.version "7.2-preview", operations'
# x-ms-docs-override-version "7.2-preview.1"); "7.2-preview" without the resource version resolves to it (assumption).
ACCEPTED_PAT_VERSIONS = ("7.2-preview.1", "7.2-preview")
ACCEPTED_POOL_VERSIONS = ("7.0", "7.1", "7.1-preview.1", "7.2-preview", "7.2-preview.1")
POOL_SCOPES = frozenset({"vso.agentpools", "vso.agentpools_manage", "app_token"})
PIPELINES_SPEC = CONTRACTS / "azure-devops" / "pipelines-7.1" / "pipelines.json"
ACCEPTED_PIPELINE_VERSIONS = ("7.1", "7.0", "7.1-preview.1", "7.2-preview", "7.2-preview.1")
PIPELINE_ROUTE = "/{org}/{project}/_apis/pipelines/{pipelineId}"
RUNS_ROUTE = PIPELINE_ROUTE + "/runs"
RUN_ROUTE = RUNS_ROUTE + "/{runId}"
READ_RUNS_SCOPE = "vso.build"  # the swagger's security of Pipelines - Get, Runs - List and Runs - Get
QUEUE_RUNS_SCOPE = "vso.build_execute"  # ... and of Runs - Run Pipeline
_VERSION = re.compile(r"^(\d+)\.(\d+)(-preview(?:\.(\d+))?)?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DEFAULT_VALIDITY = timedelta(days=30)

FILTERS = ("active", "revoked", "expired", "all")
SORTS = ("displayName", "displayDate", "status")

SIGN_IN_PAGE = """<!DOCTYPE html>
<html lang="en-US">
<head>
<meta charset="utf-8">
<title>Azure DevOps Services | Sign In</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
<div class="signin-page">
<h1>Azure DevOps Services | Sign In</h1>
<p>Sign in to your account to continue to Azure DevOps.</p>
<form method="get" action="https://app.vssps.visualstudio.com/_signin">
<input type="hidden" name="realm" value="vssps.dev.azure.com">
<input type="hidden" name="reply_to" value="https://vssps.dev.azure.com/">
<button type="submit">Sign in</button>
</form>
<p>(keyturn sandbox: your Microsoft Entra token is missing, expired or not for Azure DevOps.)</p>
</div>
</body>
</html>
"""


@cache
def valid_pat_scopes() -> frozenset[str]:
    """Scope ids a PAT may carry: every id of the vendored scope catalogue's groups (Microsoft's scope table) and
    app_token (Full access). Its ``not_in_picker`` ids (retired vso.loadtest*, non-public vso.hooks*, vso.settings*,
    the Entra-only vso.pats*) are not among them."""
    data = json.loads((CONTRACTS / "azure-devops" / "scopes.json").read_text(encoding="utf-8"))
    ids = {level["scope"] for group in data["groups"] for level in group["levels"]}
    ids.add(data["full_access"]["scope"])
    return frozenset(ids)


@cache
def pipelines_spec() -> SwaggerSpec:
    """The Azure DevOps Pipelines 7.1 swagger (vendored)."""
    return SwaggerSpec(PIPELINES_SPEC)


@cache
def _scope_parents() -> dict[str, str]:
    """scope -> the scope it includes (the vendored picker's ``inherits_from``): vso.build_execute -> vso.build."""
    data = json.loads((CONTRACTS / "azure-devops" / "scopes.json").read_text(encoding="utf-8"))
    return {lv["scope"]: lv["inherits_from"] for g in data["groups"] for lv in g["levels"] if lv.get("inherits_from")}


def scope_covers(granted: list[str] | tuple[str, ...], needed: str) -> bool:
    """Whether a PAT with ``granted`` scopes may do what ``needed`` allows (a broader level includes the narrower)."""
    if "app_token" in granted:
        return True
    parents = _scope_parents()
    for scope in granted:
        seen: set[str] = set()
        while scope and scope not in seen:
            if scope == needed:
                return True
            seen.add(scope)
            scope = parents.get(scope, "")
    return False


def checked_pipelines(definition: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate an outgoing Pipelines body (``Run`` or ``Pipeline``) in its wire form; an emulator bug fails loudly.

    ``_links`` goes on the wire as the links themselves (``{"self": {"href"}, "web": {"href"}, ...}``: .NET's
    ReferenceLinks serializes its ``links`` dictionary), so it is checked as that and the rest against the swagger."""
    links = payload.get("_links")
    problems = pipelines_spec().validate(
        definition, {k: v for k, v in payload.items() if k != "_links"}, direction="response"
    )
    if links is not None and not (
        isinstance(links, dict)
        and all(isinstance(v, dict) and set(v) == {"href"} and isinstance(v["href"], str) for v in links.values())
    ):
        problems.append("$._links: expected {name: {href: string}}")
    if problems:
        raise AssertionError(f"emulator response breaks {definition}: {'; '.join(problems)}")
    return payload


def ado_error(status: int, message: str, type_key: str, type_name: str | None = None) -> Response:
    """Azure DevOps' JSON error shape."""
    return json_response(
        status,
        {
            "$id": "1",
            "innerException": None,
            "message": message,
            "typeName": type_name
            or f"Microsoft.VisualStudio.Services.WebApi.{type_key}, Microsoft.VisualStudio.Services.WebApi",
            "typeKey": type_key,
            "errorCode": 0,
            "eventId": 3000,
        },
    )


def pat_json(rec: PatRecord, *, token: str | None = None) -> dict[str, Any]:
    return {
        "displayName": rec.display_name,
        "validTo": format_date_time(rec.valid_to),
        "scope": rec.scope,
        "targetAccounts": list(rec.target_accounts) if rec.target_accounts is not None else None,
        "validFrom": format_date_time(rec.valid_from),
        "authorizationId": rec.authorization_id,
        "token": token,
    }


def _checked(definition: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate an outgoing body; a contract violation is an emulator bug and must fail loudly."""
    problems = tokens_spec().validate(definition, payload, direction="response", nullable=True)
    if problems:
        raise AssertionError(f"emulator response breaks {definition}: {'; '.join(problems)}")
    return payload


class _AdoBase(Service):
    def not_found(self, req: Request) -> Response:
        return ado_error(
            404,
            f"The controller for path '{req.path}' was not found or does not implement IController.",
            "HttpException",
            "System.Web.HttpException, System.Web",
        )

    def method_not_allowed(self, req: Request, allowed: Any) -> Response:
        resp = ado_error(
            405,
            f"The requested resource does not support http method '{req.method}'.",
            "HttpException",
            "System.Web.HttpException, System.Web",
        )
        resp.headers["Allow"] = ", ".join(sorted(set(allowed)))
        return resp

    def internal_error(self, req: Request) -> Response:
        return ado_error(500, "The keyturn sandbox emulator failed (see its log).", "VssServiceException")

    def sign_in_page(self, req: Request) -> Response:
        if (req.header("X-TFS-FedAuthRedirect") or "").lower() == "suppress":
            return text_response(401, "", headers=self._challenge_headers())
        return html_response(
            203, SIGN_IN_PAGE, headers={"X-VSS-SandboxReason": "sign-in"}, reason="Non-Authoritative Information"
        )

    def _challenge_headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": f"Bearer authorization_uri=https://login.microsoftonline.com/{self.state.tenant_id}, "
            'Basic realm="https://tfsprodweu5.visualstudio.com/", TFS-Federated'
        }

    def user_token(self, req: Request) -> tuple[IssuedToken | None, Response | None]:
        """The caller's Entra user token for Azure DevOps, or the response to send instead."""
        auth = req.header("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            return None, ado_error(
                401,
                "The PAT Lifecycle Management API accepts only Microsoft Entra access tokens: a personal access "
                "token cannot be used to manage personal access tokens.",
                "UnauthorizedRequestException",
                "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, Microsoft.TeamFoundation.Framework.Server",
            )
        if scheme.lower() != "bearer" or not value.strip():
            return None, self.sign_in_page(req)
        tok = self.state.lookup_token(value.strip())
        if tok is None or not tok.active(self.state.time()) or tok.audience != DEVOPS_RESOURCE:
            return None, self.sign_in_page(req)
        if tok.kind != "user":
            return None, ado_error(
                401,
                "TF400813: The service principal or managed identity is not authorized to use the PAT Lifecycle "
                "Management API. Service principals cannot create or manage personal access tokens; sign in as a user.",
                "UnauthorizedRequestException",
                "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, Microsoft.TeamFoundation.Framework.Server",
            )
        return tok, None

    def org_missing(self, org: str) -> Response | None:
        if self.state.has_org(org):
            return None
        return ado_error(
            404,
            f"TF400813: The organization '{org}' does not exist or you are not allowed to access it.",
            "HostNotFoundException",
            "Microsoft.TeamFoundation.Framework.Server.HostNotFoundException, Microsoft.TeamFoundation.Framework.Server",
        )

    @staticmethod
    def api_version(req: Request) -> str | None:
        v = req.arg("api-version")
        if v is not None:
            return v
        accept = req.header("Accept") or ""
        m = re.search(r"api-version\s*=\s*([^;,\s]+)", accept)
        return m.group(1) if m else None

    def injected_error(self, status: int, req: Request) -> Response:
        if status == 429:
            return ado_error(
                429,
                "TF400733: The request has been throttled (keyturn sandbox fault injection). Retry after the delay.",
                "RequestThrottledException",
            )
        return self.fault_response(str(status))

    def fault_response(self, kind: str) -> Response:
        if kind == "503":
            return ado_error(
                503,
                "The service is temporarily unavailable (keyturn sandbox fault injection). Try again later.",
                "ServiceUnavailableException",
            )
        return ado_error(500, "An unexpected error occurred (keyturn sandbox fault injection).", "VssServiceException")


class VsspsService(_AdoBase):
    """The PAT Lifecycle Management API (vssps.dev.azure.com)."""

    _OPERATIONS = {"POST": "pats.create", "PUT": "pats.update", "DELETE": "pats.revoke"}

    def call_names(self, req: Request, template: str) -> list[str]:
        names = super().call_names(req, template)
        if template == PATS_ROUTE:
            op = "pats.get" if req.method == "GET" and req.arg("authorizationId") else self._OPERATIONS.get(req.method, "pats.list")
            names.append(op)
        return names

    name = "vssps"

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        for method, handler in (
            ("GET", self.get_or_list),
            ("POST", self.create),
            ("PUT", self.update),
            ("DELETE", self.revoke),
        ):
            self.route(method, PATS_ROUTE, handler, ignore_case=True)

    # -- common checks -------------------------------------------------------------------------

    def _preflight(self, req: Request) -> tuple[IssuedToken | None, str, Response | None]:
        tok, resp = self.user_token(req)
        if resp is not None:
            return None, "", resp
        org = req.params["org"]
        missing = self.org_missing(org)
        if missing is not None:
            return None, "", missing
        version = self.api_version(req)
        bad = self._check_version(req.method, version)
        if bad is not None:
            return None, "", bad
        return tok, version or "", None

    @staticmethod
    def _check_version(method: str, version: str | None) -> Response | None:
        if version is None:
            return ado_error(
                400,
                f'No api-version was supplied for the "{method}" request. The version must be supplied either as part '
                'of the Accept header (e.g. "application/json; api-version=1.0") or as a query parameter '
                '(e.g. "?api-version=1.0").',
                "VssVersionNotSpecifiedException",
            )
        if version in ACCEPTED_PAT_VERSIONS:
            return None
        m = _VERSION.match(version)
        if m is None:
            return ado_error(
                400,
                f"The api-version '{version}' is not in a valid format (e.g. '7.2-preview.1').",
                "VssInvalidApiVersionException",
            )
        major, minor = int(m.group(1)), int(m.group(2))
        if (major, minor) > (7, 2):
            return ado_error(
                400,
                f"The requested REST API version of {major}.{minor} is out of range for this server. The latest REST "
                "API version this server supports is 7.2.",
                "VssVersionOutOfRangeException",
            )
        if not m.group(3):
            return ado_error(
                400,
                f'The requested version "{major}.{minor}" of the resource is under preview. The -preview flag must be '
                f'supplied in the api-version for such requests. For example: "{major}.{minor}-preview"',
                "VssInvalidPreviewVersionException",
            )
        return ado_error(
            400,
            f"The keyturn sandbox accepts api-version {' or '.join(ACCEPTED_PAT_VERSIONS)} for the PAT "
            f"Lifecycle Management API, not '{version}'.",
            "VssVersionNotSupportedException",
        )

    def _result(
        self,
        version: str,
        rec: PatRecord | None,
        error: str = "none",
        message: str | None = None,
        token: str | None = None,
    ) -> Response:
        payload: dict[str, Any] = {
            "patToken": pat_json(rec, token=token) if rec is not None else None,
            "patTokenError": error,
        }
        if error != "none":  # 7.2 only, the one version accepted
            payload["patTokenErrorMessage"] = message or error
        return json_response(200, _checked("PatTokenResult", payload))

    def _pat_error(self, version: str, error: str, message: str) -> Response:
        return self._result(version, None, error, message)

    def _authorization_id(self, req: Request) -> tuple[str | None, Response | None]:
        value = req.arg("authorizationId")
        if value is None or value == "":
            return None, ado_error(
                400,
                "Value cannot be null.\r\nParameter name: authorizationId",
                "ArgumentNullException",
                "System.ArgumentNullException, mscorlib",
            )
        if not _UUID.match(value):
            return None, ado_error(
                400,
                f"The value '{value}' is not a valid authorizationId: it must be a GUID.",
                "ArgumentException",
                "System.ArgumentException, mscorlib",
            )
        return value, None

    def _own(self, tok: IssuedToken, org: str, authorization_id: str) -> PatRecord | None:
        """The live record, if it belongs to the caller (callers hold the lock)."""
        for p in self.state._pat_records(self.state.canonical_org(org)):
            if p.authorization_id.lower() == authorization_id.lower() and p.owner_oid == tok.oid:
                return p
        return None

    def _body(self, req: Request, definition: str) -> tuple[dict[str, Any] | None, Response | None]:
        try:
            body = req.json()
        except BadRequestBody as exc:
            return None, ado_error(400, f"{exc}", "VssRequestContentException")
        problems = tokens_spec().validate(definition, body, direction="request", nullable=False)
        if problems:
            return None, ado_error(
                400,
                f"The request body does not match {definition} (keyturn sandbox contract check): "
                + "; ".join(problems),
                "VssPropertyValidationException",
            )
        return body, None

    def _check_scope(self, scope: Any) -> str | None:
        """An error message if ``scope`` is not a space-separated list of known PAT scope ids."""
        if not isinstance(scope, str) or not scope.strip():
            return "A scope is required: give one or more space-separated scope ids (e.g. 'vso.agentpools vso.build')."
        unknown = [s for s in scope.split() if s not in valid_pat_scopes()]
        if unknown:
            return (
                f"The scope(s) {', '.join(repr(s) for s in unknown)} are not valid personal access token scopes: they "
                "are not in the published scope table (retired or not public). Scopes are space-separated ids such as "
                "'vso.code_write'."
            )
        return None

    # -- handlers ------------------------------------------------------------------------------

    def get_or_list(self, req: Request) -> Response:
        tok, version, resp = self._preflight(req)
        if resp is not None:
            return resp
        assert tok is not None
        if req.arg("authorizationId") is not None:
            return self._get(req, tok, version)
        return self._list(req, tok, version)

    def _get(self, req: Request, tok: IssuedToken, version: str) -> Response:
        fault = self.state.take_fault("pats.get")
        if fault:
            return self.fault_response(fault)
        auth_id, bad = self._authorization_id(req)
        if bad is not None:
            return bad
        assert auth_id is not None
        with self.state.lock:
            rec = self._own(tok, req.params["org"], auth_id)
            snapshot = copy.deepcopy(rec) if rec is not None else None
        if snapshot is None:
            return self._pat_error(
                version, "authorizationNotFound", f"No personal access token with authorizationId {auth_id} was found."
            )
        return self._result(version, snapshot)

    def _list(self, req: Request, tok: IssuedToken, version: str) -> Response:
        fault = self.state.take_fault("pats.list")
        if fault:
            return self.fault_response(fault)
        opts: dict[str, Any] = {}
        for name, choices, default in (
            ("displayFilterOption", FILTERS, "active"),
            ("sortByOption", SORTS, "displayName"),
        ):
            raw = req.arg(name)
            if raw is None:
                opts[name] = default
                continue
            match = next((c for c in choices if c.lower() == raw.lower()), None)
            if match is None:
                return ado_error(
                    400,
                    f"The value '{raw}' is not valid for {name}. Valid values are: {', '.join(choices)}.",
                    "ArgumentException",
                    "System.ArgumentException, mscorlib",
                )
            opts[name] = match
        raw_asc = req.arg("isSortAscending")
        if raw_asc is not None and raw_asc.lower() not in ("true", "false"):
            return ado_error(
                400,
                f"The value '{raw_asc}' is not valid for isSortAscending.",
                "ArgumentException",
                "System.ArgumentException, mscorlib",
            )
        ascending = raw_asc is None or raw_asc.lower() == "true"
        raw_top = req.arg("$top")
        size = self.state.page_size
        if raw_top is not None:
            if not raw_top.isdigit() or not 1 <= int(raw_top) <= 100:
                return ado_error(
                    400,
                    f"The value '{raw_top}' is not valid for $top (1 to 100).",
                    "ArgumentException",
                    "System.ArgumentException, mscorlib",
                )
            size = min(size, int(raw_top))
        key = {"f": opts["displayFilterOption"], "s": opts["sortByOption"], "a": ascending}
        offset = 0
        cont = req.arg("continuationToken")
        if cont:
            decoded = _decode_continuation(cont)
            if decoded is None:
                return ado_error(
                    400,
                    "The continuationToken is not valid.",
                    "ArgumentException",
                    "System.ArgumentException, mscorlib",
                )
            if any(decoded.get(k) != v for k, v in key.items()) or decoded.get("u") != tok.oid:
                return ado_error(
                    400,
                    "The continuationToken was issued for other filtering options; subsequent calls must supply the "
                    "same displayFilterOption, sortByOption and isSortAscending.",
                    "ArgumentException",
                    "System.ArgumentException, mscorlib",
                )
            offset = int(decoded.get("o", 0))
        now = self.state.now()
        mine = [p for p in self.state.pats(self.state.canonical_org(req.params["org"])) if p.owner_oid == tok.oid]
        wanted = opts["displayFilterOption"]
        if wanted != "all":
            mine = [p for p in mine if p.status(now) == wanted]
        order = {"active": 0, "expired": 1, "revoked": 2}
        sort_keys = {
            "displayName": lambda p: (p.display_name.casefold(), p.valid_to),
            "displayDate": lambda p: (p.valid_to, p.display_name.casefold()),
            "status": lambda p: (order[p.status(now)], p.display_name.casefold()),
        }
        mine.sort(key=sort_keys[opts["sortByOption"]], reverse=not ascending)
        page = mine[offset : offset + size]
        next_offset = offset + len(page)
        token = _encode_continuation({**key, "o": next_offset, "u": tok.oid}) if next_offset < len(mine) else ""
        payload = {"continuationToken": token, "patTokens": [pat_json(p) for p in page]}
        return json_response(200, _checked("PagedPatTokens", payload))

    def create(self, req: Request) -> Response:
        tok, version, resp = self._preflight(req)
        if resp is not None:
            return resp
        assert tok is not None
        fault = self.state.take_fault("pats.create")
        if fault in ("503", "500-before-create"):
            return self.fault_response("503" if fault == "503" else "500")
        body, bad = self._body(req, "PatTokenCreateRequest")
        if bad is not None:
            return bad
        assert body is not None
        org = self.state.canonical_org(req.params["org"])
        policy = self.state.policy(org)
        now = self.state.now()
        if policy.disable_pat_creation:
            return self._pat_error(
                version,
                "disablePatCreationPolicyViolation",
                "Your organization has a policy that restricts the creation of personal access tokens.",
            )
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip():
            return self._pat_error(version, "displayNameRequired", "A display name is required.")
        scope_problem = self._check_scope(body.get("scope"))
        if scope_problem:
            return self._pat_error(version, "invalidScope", scope_problem)
        scope = " ".join(str(body["scope"]).split())
        valid_to = now + DEFAULT_VALIDITY
        if body.get("validTo") is not None:
            valid_to = parse_date_time(body["validTo"])
            if valid_to <= now:
                return self._pat_error(
                    version, "invalidValidTo", "The expiration date (validTo) must be in the future."
                )
        all_orgs = bool(body.get("allOrgs", False))
        if all_orgs and policy.block_global:
            return self._pat_error(
                version,
                "globalPATCreationBlocked",
                "Your organization has a policy that restricts the creation of global personal access tokens "
                "(tokens for all accessible organizations).",
            )
        if "app_token" in scope.split() and policy.block_full_scope:
            return self._pat_error(
                version,
                "fullScopePatPolicyViolation",
                "Your organization has a policy that restricts the creation of full-scoped personal access tokens.",
            )
        if policy.max_lifespan_days is not None:
            limit = now + timedelta(days=policy.max_lifespan_days)
            valid_to = min(valid_to, limit)
        rec = self.state.add_pat(name, scope, valid_to, org=org, valid_from=now, all_orgs=all_orgs, owner_oid=tok.oid)
        if fault == "500-after-create":
            return self.fault_response("500")
        if fault == "reset-after-create":
            return Response(0, drop=True)
        return self._result(version, rec, token=rec.value)

    def update(self, req: Request) -> Response:
        tok, version, resp = self._preflight(req)
        if resp is not None:
            return resp
        assert tok is not None
        fault = self.state.take_fault("pats.update")
        if fault:
            return self.fault_response(fault)
        body, bad = self._body(req, "PatTokenUpdateRequest")
        if bad is not None:
            return bad
        assert body is not None
        auth_id = body.get("authorizationId")
        if not auth_id:
            return self._pat_error(version, "invalidAuthorizationId", "authorizationId is required.")
        org = self.state.canonical_org(req.params["org"])
        policy = self.state.policy(org)
        now = self.state.now()
        with self.state.lock:
            rec = self._own(tok, org, auth_id)
            if rec is None:
                return self._pat_error(
                    version,
                    "authorizationNotFound",
                    f"No personal access token with authorizationId {auth_id} was found.",
                )
            if rec.revoked:
                return self._pat_error(
                    version, "invalidAuthorizationId", "A revoked personal access token cannot be updated."
                )
            new_name = body.get("displayName", rec.display_name)
            if not isinstance(new_name, str) or not new_name.strip():
                return self._pat_error(version, "invalidDisplayName", "The display name cannot be empty.")
            new_scope = rec.scope
            if "scope" in body:
                scope_problem = self._check_scope(body["scope"])
                if scope_problem:
                    return self._pat_error(version, "invalidScope", scope_problem)
                new_scope = " ".join(str(body["scope"]).split())
            new_valid_to = rec.valid_to
            if body.get("validTo") is not None:
                if rec.expired(now):
                    return self._pat_error(
                        version, "expiredPatCannotBeExtended", "An expired personal access token cannot be extended."
                    )
                new_valid_to = parse_date_time(body["validTo"])
                if new_valid_to <= now:
                    return self._pat_error(
                        version, "invalidValidTo", "The expiration date (validTo) must be in the future."
                    )
                if policy.max_lifespan_days is not None:
                    new_valid_to = min(new_valid_to, rec.valid_from + timedelta(days=policy.max_lifespan_days))
            targets = rec.target_accounts
            if "allOrgs" in body:
                if body["allOrgs"] and policy.block_global:
                    return self._pat_error(
                        version, "globalPATCreationBlocked", "Global personal access tokens are blocked by policy."
                    )
                targets = None if body["allOrgs"] else [self.state.org_id]
            if "app_token" in new_scope.split() and policy.block_full_scope and new_scope != rec.scope:
                return self._pat_error(
                    version, "fullScopePatPolicyViolation", "Full-scoped personal access tokens are blocked by policy."
                )
            rec.display_name, rec.scope, rec.valid_to, rec.target_accounts = new_name, new_scope, new_valid_to, targets
            snapshot = copy.deepcopy(rec)
        return self._result(version, snapshot)

    def revoke(self, req: Request) -> Response:
        tok, _version, resp = self._preflight(req)
        if resp is not None:
            return resp
        assert tok is not None
        fault = self.state.take_fault("pats.revoke")
        if fault:
            return self.fault_response(fault)
        auth_id, bad = self._authorization_id(req)
        if bad is not None:
            return bad
        assert auth_id is not None
        with self.state.lock:
            rec = self._own(tok, req.params["org"], auth_id)
            if rec is not None:
                rec.revoked = True
        if rec is None:
            return ado_error(
                404,
                f"No personal access token with authorizationId {auth_id} was found.",
                "SessionTokenNotFoundException",
                "Microsoft.VisualStudio.Services.DelegatedAuthorization.SessionTokenNotFoundException, "
                "Microsoft.VisualStudio.Services.WebApi",
            )
        return Response(200)


def _encode_continuation(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_continuation(token: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("o"), int) else None


class DevOpsService(_AdoBase):
    """The organisation host (dev.azure.com): where a PAT is used."""

    name = "devops"

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.route("GET", "/{org}/_apis/connectionData", self.connection_data, ignore_case=True)
        self.route("GET", "/{org}/_apis/distributedtask/pools", self.pools, ignore_case=True)
        self.route("GET", PIPELINE_ROUTE, self.get_pipeline, ignore_case=True)
        self.route("GET", RUNS_ROUTE, self.list_runs, ignore_case=True)
        self.route("POST", RUNS_ROUTE, self.run_pipeline, ignore_case=True)
        self.route("GET", RUN_ROUTE, self.get_run, ignore_case=True)

    _PIPELINE_CALLS: dict[tuple[str, str], str] = {
        ("GET", PIPELINE_ROUTE): "devops.pipelines.get",
        ("GET", RUNS_ROUTE): "devops.runs.list",
        ("POST", RUNS_ROUTE): "devops.runs.run",
        ("GET", RUN_ROUTE): "devops.runs.get",
    }

    def call_names(self, req: Request, template: str) -> list[str]:
        names = super().call_names(req, template)
        if template.endswith("/connectionData"):
            names.append("devops.connectionData")
        elif template.endswith("/pools"):
            names.append("devops.pools")
        elif (req.method, template) in self._PIPELINE_CALLS:
            names.append(self._PIPELINE_CALLS[(req.method, template)])
        return names

    def _unauthorized(self, message: str) -> Response:
        return html_response(
            401,
            f"<!DOCTYPE html><html><head><title>Access Denied</title></head><body><h1>{message}</h1></body></html>",
            headers=self._challenge_headers(),
            reason="Unauthorized",
        )

    def _authenticate(self, req: Request) -> tuple[PatRecord | IssuedToken | None, Response | None]:
        """A PAT (Basic auth, any user name) or an Entra user token; else the response to send."""
        org = req.params["org"]
        missing = self.org_missing(org)
        auth = req.header("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None, self._unauthorized("TF400813: The user '' is not authorized to access this resource.")
            pat = decoded.partition(":")[2] if ":" in decoded else decoded
            status, rec = self.state.use_pat(pat, org)
            if status == "expired":
                return None, self._unauthorized("Access Denied: The Personal Access Token used has expired.")
            if status != "ok":
                return None, self._unauthorized("TF400813: The user '' is not authorized to access this resource.")
            if missing is not None:
                return None, missing
            return rec, None
        if scheme.lower() == "bearer":
            tok, resp = self.user_token(req)
            if resp is not None:
                return None, resp
            if missing is not None:
                return None, missing
            return tok, None
        return None, self._unauthorized("TF400813: The user '' is not authorized to access this resource.")

    def _user_json(self) -> dict[str, Any]:
        return {
            "id": self.state.bot_oid,
            "descriptor": f"Microsoft.IdentityModel.Claims.ClaimsIdentity;{self.state.tenant_id}\\{self.state.bot_email}",
            "subjectDescriptor": "aad." + base64.urlsafe_b64encode(self.state.bot_oid.encode()).decode().rstrip("="),
            "providerDisplayName": "keyturn bot",
            "isActive": True,
            "properties": {"Account": {"$type": "System.String", "$value": self.state.bot_email}},
            "resourceVersion": 2,
            "metaTypeId": 0,
        }

    def connection_data(self, req: Request) -> Response:
        who, resp = self._authenticate(req)
        if resp is not None:
            return resp
        fault = self.state.take_fault("devops.connectionData")
        if fault:
            return self.fault_response(fault)
        user = self._user_json()
        if isinstance(who, PatRecord):
            owner = self.state.user_by_oid(who.owner_oid)
            if owner is not None:
                user.update(
                    id=owner.oid,
                    providerDisplayName=owner.display_name,
                    properties={"Account": {"$type": "System.String", "$value": owner.email}},
                )
        return json_response(
            200,
            {
                "authenticatedUser": user,
                "authorizedUser": user,
                "instanceId": self.state.org_id,
                "deploymentId": str(uuid.UUID(int=uuid.UUID(self.state.org_id).int ^ 1)),
                "deploymentType": "hosted",
                "locationServiceData": {
                    "serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7",
                    "defaultAccessMappingMoniker": "PublicAccessMapping",
                    "lastChangeId": 1,
                    "lastChangeId64": 1,
                },
            },
        )

    def pools(self, req: Request) -> Response:
        who, resp = self._authenticate(req)
        if resp is not None:
            return resp
        version = self.api_version(req)
        if version is not None and version not in ACCEPTED_POOL_VERSIONS:
            return ado_error(
                400,
                f"The keyturn sandbox accepts api-version {', '.join(ACCEPTED_POOL_VERSIONS)} for agent pools, not '{version}'.",
                "VssVersionOutOfRangeException",
            )
        if isinstance(who, PatRecord) and not POOL_SCOPES & set(who.scopes):
            return self._pool_scope_missing(who)
        fault = self.state.take_fault("devops.pools")
        if fault:
            return self.fault_response(fault)
        created = format_date_time(datetime(2024, 3, 1, 9, 30, tzinfo=self.state.now().tzinfo))
        owner = {"displayName": "keyturn bot", "id": self.state.bot_oid, "uniqueName": self.state.bot_email}
        pools: list[dict[str, Any]] = [
            {"id": 1, "name": "Default", "isHosted": False, "poolType": "automation", "size": 3},
            {"id": 9, "name": "Azure Pipelines", "isHosted": True, "poolType": "automation", "size": 1},
            {"id": 14, "name": "keda-scaled-agents", "isHosted": False, "poolType": "automation", "size": 5},
        ]
        wanted = req.arg("poolName")
        if wanted:
            pools = [p for p in pools if p["name"].lower() == wanted.lower()]
        value = [
            {
                **p,
                "createdOn": created,
                "autoProvision": False,
                "autoUpdate": True,
                "autoSize": True,
                "targetSize": None,
                "agentCloudId": None,
                "createdBy": owner,
                "owner": owner,
                "scope": self.state.org_id,
                "isLegacy": False,
                "options": "none",
            }
            for p in pools
        ]
        return json_response(200, {"count": len(value), "value": value})

    @staticmethod
    def _pool_scope_missing(who: PatRecord) -> Response:
        return ado_error(
            403,
            "Access Denied: the personal access token used does not have the scope required to read agent pools "
            f"(one of {', '.join(sorted(POOL_SCOPES))}); its scopes are: {who.scope}.",
            "UnauthorizedRequestException",
            "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, Microsoft.TeamFoundation.Framework.Server",
        )

    # -- Azure Pipelines (pipelines-7.1/pipelines.json) ------------------------------------------

    def _pipelines_preflight(
        self, req: Request, scope: str
    ) -> tuple[PatRecord | IssuedToken | None, PipelineRecord | None, str, Response | None]:
        """Authenticate, check the api-version, the scope, the project and the pipeline: (who, pipeline copy,
        project id, None) or the response to send instead."""
        who, resp = self._authenticate(req)
        if resp is not None:
            return None, None, "", resp
        version = self.api_version(req)
        if version is None:
            return None, None, "", ado_error(
                400,
                f'No api-version was supplied for the "{req.method}" request. The version must be supplied either as part '
                'of the Accept header (e.g. "application/json; api-version=1.0") or as a query parameter '
                '(e.g. "?api-version=1.0").',
                "VssVersionNotSpecifiedException",
            )
        if version not in ACCEPTED_PIPELINE_VERSIONS:
            return None, None, "", ado_error(
                400,
                f"The keyturn sandbox accepts api-version {', '.join(ACCEPTED_PIPELINE_VERSIONS)} for pipelines, not '{version}'.",
                "VssVersionOutOfRangeException",
            )
        if isinstance(who, PatRecord) and not scope_covers(who.scopes, scope):
            verb = "queue runs of" if scope == QUEUE_RUNS_SCOPE else "read"
            return None, None, "", ado_error(
                403,
                f"Access Denied: the personal access token used does not have the scope required to {verb} pipelines "
                f"({scope}); its scopes are: {who.scope}.",
                "UnauthorizedRequestException",
                "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, Microsoft.TeamFoundation.Framework.Server",
            )
        project = self.state.project_of(req.params["project"])
        if project is None:
            return None, None, "", ado_error(
                404,
                f"TF200016: The following project does not exist: {req.params['project']}. Verify that the name of the "
                "project is correct and that the project exists on the specified Azure DevOps Server.",
                "ProjectDoesNotExistWithNameException",
                "Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, Microsoft.TeamFoundation.Core.WebApi",
            )
        raw = req.params["pipelineId"]
        pipeline = self.state.pipeline(int(raw)) if raw.isdigit() and len(raw) < 10 else None
        if pipeline is None or pipeline.project != project[0]:
            return None, None, "", ado_error(
                404,
                f"Pipeline with id {raw} does not exist in project {project[0]} (or you may not see it).",
                "PipelineNotFoundException",
                "Microsoft.Azure.Pipelines.WebApi.PipelineNotFoundException, Microsoft.Azure.Pipelines.WebApi",
            )
        return who, pipeline, project[1], None

    def _pipeline_base(self, org: str, project_id: str, p: PipelineRecord) -> str:
        return f"{self.base_url}/{org}/{project_id}"

    def _pipeline_ref(self, org: str, project_id: str, p: PipelineRecord) -> dict[str, Any]:
        base = self._pipeline_base(org, project_id, p)
        return {
            "url": f"{base}/_apis/pipelines/{p.id}?revision={p.revision}",
            "id": p.id,
            "revision": p.revision,
            "name": p.name,
            "folder": p.folder,
        }

    def _run_json(self, org: str, project_id: str, p: PipelineRecord, run: PipelineRun, *, full: bool) -> dict[str, Any]:
        """A Run as Runs - Get / Run Pipeline answer it (``full``), or as a listing item (no variables, resources)."""
        base = self._pipeline_base(org, project_id, p)
        now = self.state.time()
        state = run.state_at(now)
        self_url = f"{base}/_apis/pipelines/{p.id}/runs/{run.id}"
        out: dict[str, Any] = {
            "_links": {
                "self": {"href": self_url},
                "web": {"href": f"{base}/_build/results?buildId={run.id}"},
                "pipeline.web": {"href": f"{base}/_build/definition?definitionId={p.id}"},
                "pipeline": {"href": f"{base}/_apis/pipelines/{p.id}?revision={p.revision}"},
            },
            "pipeline": self._pipeline_ref(org, project_id, p),
            "state": state,
            "createdDate": format_date_time(datetime.fromtimestamp(run.created, tz=self.state.now().tzinfo)),
            "url": self_url,
            "id": run.id,
            "name": run.name,
        }
        if state == "completed":
            out["result"] = run.result
            out["finishedDate"] = format_date_time(datetime.fromtimestamp(run.finished_at(), tz=self.state.now().tzinfo))
        if full:
            out["resources"] = {
                "repositories": {
                    "self": {"repository": {"type": "azureReposGit"}, "refName": run.ref_name, "version": run.version}
                }
            }
            if run.variables:
                out["variables"] = {k: {"value": v} for k, v in run.variables.items()}
        return checked_pipelines("Run", out)

    def get_pipeline(self, req: Request) -> Response:
        _who, p, project_id, resp = self._pipelines_preflight(req, READ_RUNS_SCOPE)
        if resp is not None:
            return resp
        assert p is not None
        base = self._pipeline_base(req.params["org"], project_id, p)
        out = {
            "_links": {
                "self": {"href": f"{base}/_apis/pipelines/{p.id}?revision={p.revision}"},
                "web": {"href": f"{base}/_build/definition?definitionId={p.id}"},
            },
            "configuration": {"type": "yaml"},
            **self._pipeline_ref(req.params["org"], project_id, p),
        }
        return json_response(200, checked_pipelines("Pipeline", out))

    def list_runs(self, req: Request) -> Response:
        _who, p, project_id, resp = self._pipelines_preflight(req, READ_RUNS_SCOPE)
        if resp is not None:
            return resp
        assert p is not None
        runs = sorted(p.runs, key=lambda r: r.id, reverse=True)[:10000]  # "Gets top 10000 runs"
        value = [self._run_json(req.params["org"], project_id, p, r, full=False) for r in runs]
        return json_response(200, {"count": len(value), "value": value})

    def get_run(self, req: Request) -> Response:
        _who, p, project_id, resp = self._pipelines_preflight(req, READ_RUNS_SCOPE)
        if resp is not None:
            return resp
        assert p is not None
        raw = req.params["runId"]
        run = next((r for r in p.runs if raw.isdigit() and r.id == int(raw)), None)
        if run is None:
            return ado_error(
                404,
                f"The pipeline run {raw} of pipeline {p.id} could not be found.",
                "PipelineRunNotFoundException",
                "Microsoft.Azure.Pipelines.WebApi.PipelineRunNotFoundException, Microsoft.Azure.Pipelines.WebApi",
            )
        return json_response(200, self._run_json(req.params["org"], project_id, p, run, full=True))

    def run_pipeline(self, req: Request) -> Response:
        who, p, project_id, resp = self._pipelines_preflight(req, QUEUE_RUNS_SCOPE)
        if resp is not None:
            return resp
        assert p is not None
        try:
            body = req.json()
        except BadRequestBody as exc:
            return ado_error(400, f"{exc}", "VssRequestContentException")
        problems = pipelines_spec().validate("RunPipelineParameters", body, direction="request")
        if problems:
            return ado_error(
                400,
                "The request body does not match RunPipelineParameters (keyturn sandbox contract check): " + "; ".join(problems),
                "VssPropertyValidationException",
            )
        bad = self._run_parameters_problem(p, body)
        if bad is not None:
            return ado_error(400, bad, "PipelineValidationException",
                             "Microsoft.Azure.Pipelines.WebApi.PipelineValidationException, Microsoft.Azure.Pipelines.WebApi")
        repos = (body.get("resources") or {}).get("repositories") or {}
        ref = (repos.get("self") or {}).get("refName") or p.default_branch
        if body.get("previewRun"):
            out = {"finalYaml": f"# keyturn sandbox: the final YAML of {p.name}\ntrigger: none\nsteps:\n- script: ./daily-checks.sh\n",
                   "pipeline": self._pipeline_ref(req.params["org"], project_id, p), "id": -1, "name": ""}
            return json_response(200, checked_pipelines("Run", out))
        variables = {k: str(v.get("value", "")) for k, v in (body.get("variables") or {}).items()}
        queued_by = who.authorization_id if isinstance(who, PatRecord) else getattr(who, "oid", None)
        run = self.state.queue_run(p.id, self.consumer_check, ref_name=ref, variables=variables, queued_by=queued_by)
        current = self.state.pipeline(p.id)
        assert current is not None
        return json_response(200, self._run_json(req.params["org"], project_id, current, run, full=True))

    @staticmethod
    def _run_parameters_problem(p: PipelineRecord, body: dict[str, Any]) -> str | None:
        """What the real service would refuse in a RunPipelineParameters this pipeline cannot take, else None."""
        for name in (body.get("templateParameters") or {}):
            return f"Unexpected parameter '{name}'"  # the pipeline's YAML declares no parameters
        for name in (body.get("variables") or {}):
            if name not in p.queue_time_variables:
                return (
                    f"Could not queue the build because there were validation errors or warnings. Variable '{name}' "
                    "cannot be set at queue time: the pipeline does not let users override it when running it."
                )
        if body.get("stagesToSkip"):
            return f"Stage {body['stagesToSkip'][0]} not found."  # one job, no stages
        repos = (body.get("resources") or {}).get("repositories") or {}
        for alias, repo in repos.items():
            if alias != "self":
                return f"Repository resource '{alias}' is not defined in the pipeline."
            ref = repo.get("refName")
            if ref is not None and ref not in p.branches:
                return (
                    f"Unable to resolve the reference '{ref}' to a specific version. Verify the reference exists in "
                    "the source repository."
                )
        for kind in ("builds", "containers", "packages", "pipelines"):
            if (body.get("resources") or {}).get(kind):
                return f"The pipeline declares no {kind} resources."
        return None

    def consumer_check(self, p: PipelineRecord) -> tuple[Any, str, str | None]:
        """What the pipeline's job does, run when it is queued (the state's lock is held): read the latest version
        of its Key Vault secret, call the agent pools API with it. (result, reason, the PAT's authorization id)."""
        versions = self.state.secret_versions(p.vault, p.secret)
        if not versions:
            return "failed", f"Key Vault {p.vault}: secret {p.secret} not found", None
        latest = versions[-1]
        if not latest.enabled:
            return "failed", f"Key Vault {p.vault}: the latest version of {p.secret} is disabled (Forbidden)", None
        status, rec = self.state.use_pat(latest.value, self.state.org)
        checked = rec.authorization_id if rec is not None else None
        if status != "ok" or rec is None:
            said = {"unknown": "not a personal access token of this organization"}.get(status, f"a {status} PAT")
            return "failed", f"GET _apis/distributedtask/pools: 401 Unauthorized (the token in {p.secret} is {said})", checked
        if not POOL_SCOPES & set(rec.scopes):
            return "failed", f"GET _apis/distributedtask/pools: 403 (the token lacks an agent pools scope; it has {rec.scope})", checked
        missing = [s for s in p.needs if not scope_covers(rec.scopes, s)]
        if missing:
            return "failed", f"the checks need {', '.join(missing)}, which the token in {p.secret} lacks (it has {rec.scope})", checked
        if p.fail_with:
            return "failed", p.fail_with, checked
        return "succeeded", "agent pools, builds, pipeline resources and releases read with the token in Key Vault", checked

