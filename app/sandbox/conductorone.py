"""ConductorOne (C1): the token endpoint and the connector API the ``conductorone-connector`` follow-up uses.

Routes (``contracts/conductorone/openapi-parts.json``, the used parts of C1's public OpenAPI 3.1 spec):

- ``POST /auth/v1/token``: client credentials with a JWT assertion, as C1's SDKs send it (form fields
  ``client_id``, ``grant_type=client_credentials``, ``client_assertion_type`` (jwt-bearer), ``client_assertion``).
  The assertion must be a JWS signed with EdDSA by the Ed25519 key of a seeded client, with
  ``iss = sub = client_id``, ``aud`` = the host the client id names (``<name>@<host>/pcc``, no port; not the
  loopback host the request reached), valid ``nbf``/``exp``, and
  a ``nonce`` header not seen before. Answers ``{"access_token", "token_type": "Bearer", "expires_in"}``;
  a refusal is ``401 {"error": "invalid_client", "error_description"}`` (``400 invalid_request`` for a
  malformed form). The spec only names this URL (``securitySchemes.oauth.tokenUrl``).
- ``GET  /api/v1/apps/{app_id}/connectors/{id}``: ConnectorService.Get -> ``ConnectorServiceGetResponse``.
  The connector's ``status`` (``ConnectorStatus``) is the sync status (there is no other endpoint for it).
  Secret settings (``api_token``) are never returned.
- ``POST /api/v1/apps/{app_id}/connectors/{id}``: ConnectorService.Update. The body must validate against
  ``ConnectorServiceUpdateRequestInput`` (unknown properties, wrong types, read-only properties -> 400),
  ``updateMask`` must be ``config`` (the only mask the sandbox implements), and ``connector.config`` must be
  the Buildkite connector's ``EnvConfig``: ``{"@type": "type.googleapis.com/c1.api.app.v1.EnvConfig",
  "configuration": {"api_token": "...", "organization": "..."}}`` (both strings, both required).
- ``POST /api/v1/apps/{app_id}/connectors/{connector_id}/force_sync``: ForceSync (body ``{}`` or empty). The
  sync is queued: it starts ``sync_queue_s`` later (after any sync already queued or running) and runs for
  ``sync_run_s`` (emulator clock, i.e. ``SandboxState.time()``), then ends in ``SYNC_STATUS_DONE``, or in
  ``SYNC_STATUS_ERROR`` with ``lastError`` when ``fail_next_sync()`` was called or ``token_check`` refuses
  the configured api_token.

API calls need ``Authorization: Bearer <access token from /auth/v1/token>``. Errors use the gRPC-gateway
shape C1 answers with: ``{"code": <grpc code>, "message": "...", "details": []}``. Every response body is
validated against the spec; a mismatch is an emulator bug: 500 plus ``state.internal_errors``.

The emulator keeps its world in :class:`ConductorOneWorld` (not in ``SandboxState``); tests reach it as
``world`` (``connector()``, ``updates``, ``counters``, ``fail_next_sync()``, ``forbid()``, ``seeded``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import secrets
import string
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

from app.config import ConductorOneConnector
from app.sandbox.http import BadRequestBody, Request, Response, Service, json_response
from app.sandbox.swagger import parse_date_time
from app.secret import fingerprint

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from app.sandbox.state import SandboxState

SPEC_PATH = Path(__file__).with_name("contracts") / "conductorone" / "openapi-parts.json"
ENV_CONFIG_TYPE = "type.googleapis.com/c1.api.app.v1.EnvConfig"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
BUILDKITE_CATALOG_ID = "2CAxwRi97USAHvLdVPpyuoITull"  # the Terraform provider's buildkiteCatalogID
SECRET_SETTINGS = frozenset({"api_token"})  # never returned by Get / Update
BUILDKITE_SETTINGS = ("api_token", "organization")
OPERATIONS = frozenset({"token", "get", "update", "force_sync"})
ACCESS_TOKEN_TTL = 3600
MAX_ASSERTION_LIFETIME = 600  # seconds between nbf/iat and exp the emulator accepts
CLOCK_SKEW = 30

# gRPC status codes used in C1's error bodies
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, INTERNAL, UNAUTHENTICATED, UNIMPLEMENTED = 3, 5, 7, 13, 16, 12

Direction = Literal["request", "response"]


# -- the contract ------------------------------------------------------------------------------------


class OpenApiParts:
    """A small validator for the vendored OpenAPI 3.1 parts.

    Enough JSON Schema for them: ``$ref`` to ``#/components/schemas/X``, ``oneOf``, ``type`` (a name or a
    list of names, "null" included), ``properties``, ``additionalProperties``, ``items``, ``enum`` and the
    formats ``date-time``, ``int32`` and ``uint32``. Like the other emulators it is stricter than JSON
    Schema's default: a property the schema does not define is an error unless ``additionalProperties`` allows
    it, and in requests a ``readOnly`` property is an error.
    """

    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.path = path
        self.doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        self.schemas: dict[str, Any] = self.doc["components"]["schemas"]

    def operation_schema(self, path: str, method: str, what: Literal["request", "response"]) -> str:
        """The schema name of an operation's JSON request body or 200 answer."""
        op = self.doc["paths"][path][method.lower()]
        if what == "request":
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        else:
            ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        return str(ref).removeprefix("#/components/schemas/")

    def validate(self, name: str, value: Any, *, direction: Direction) -> list[str]:
        if name not in self.schemas:
            raise KeyError(f"{self.path.name} has no schema {name!r}")
        errors: list[str] = []
        self._check({"$ref": f"#/components/schemas/{name}"}, value, "$", direction, errors)
        return errors

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        for _ in range(50):
            ref = schema.get("$ref")
            if ref is None:
                return schema
            if not str(ref).startswith("#/components/schemas/"):
                raise ValueError(f"unsupported $ref {ref!r}")
            schema = self.schemas[str(ref).removeprefix("#/components/schemas/")]
        raise ValueError("$ref loop")

    def _check(self, schema: dict[str, Any], value: Any, where: str, direction: Direction, errors: list[str]) -> None:
        schema = self._resolve(schema)
        if "oneOf" in schema:
            attempts: list[list[str]] = []
            for alt in schema["oneOf"]:
                sub: list[str] = []
                self._check(alt, value, where, direction, sub)
                if not sub:
                    return
                attempts.append(sub)
            # report the alternative that is not plain null (the useful message)
            non_null = [a for alt, a in zip(schema["oneOf"], attempts, strict=True) if alt.get("type") != "null"]
            errors.extend((non_null or attempts)[0])
            return
        types = schema.get("type")
        allowed = [types] if isinstance(types, str) else list(types or [])
        if not allowed and "properties" in schema:
            allowed = ["object"]
        if value is None:
            if "null" not in allowed:
                errors.append(f"{where}: null is not allowed here")
            return
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
            return
        kind = _json_kind(value)
        if kind == "integer" and "integer" not in allowed and "number" in allowed:
            kind = "number"
        if allowed and kind not in allowed:
            errors.append(f"{where}: expected {' or '.join(t for t in allowed if t != 'null')}, got {kind}")
            return
        if kind == "object":
            self._check_object(schema, value, where, direction, errors)
        elif kind == "array":
            for i, item in enumerate(value):
                self._check(schema.get("items", {}), item, f"{where}[{i}]", direction, errors)
        elif kind == "string" and schema.get("format") == "date-time":
            try:
                parse_date_time(value)
            except ValueError as exc:
                errors.append(f"{where}: {exc}")
        elif kind == "integer":
            fmt = schema.get("format")
            if fmt == "int32" and not -(2**31) <= value < 2**31:
                errors.append(f"{where}: {value} does not fit in int32")
            if fmt == "uint32" and not 0 <= value < 2**32:
                errors.append(f"{where}: {value} does not fit in uint32")

    def _check_object(
        self, schema: dict[str, Any], value: dict[str, Any], where: str, direction: Direction, errors: list[str]
    ) -> None:
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: required property {name!r} is missing")
        for name, item in value.items():
            sub_where = f"{where}.{name}"
            if name in props:
                sub = props[name]
                if direction == "request" and (sub.get("readOnly") or self._resolve(sub).get("readOnly")):
                    errors.append(f"{sub_where}: read-only property; a client must not send it")
                    continue
                self._check(sub, item, sub_where, direction, errors)
            elif isinstance(extra, dict):
                self._check(extra, item, sub_where, direction, errors)
            elif extra is True:
                continue
            else:
                errors.append(f"{sub_where}: unknown property (the contract defines {sorted(props)})")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@cache
def c1_spec() -> OpenApiParts:
    """The vendored ConductorOne OpenAPI parts."""
    return OpenApiParts()


GET_PATH = "/api/v1/apps/{app_id}/connectors/{id}"
FORCE_SYNC_PATH = "/api/v1/apps/{app_id}/connectors/{connector_id}/force_sync"


# -- the world ---------------------------------------------------------------------------------------


def ksuid() -> str:
    """An id that looks like C1's (27 base62 characters)."""
    alphabet = string.digits + string.ascii_uppercase + string.ascii_lowercase
    return "".join(secrets.choice(alphabet) for _ in range(27))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if "=" in text:
        raise ValueError("padded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rfc3339(ts: float) -> str:
    """Unix seconds -> RFC 3339 UTC with milliseconds, as C1 (protobuf JSON) writes timestamps."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def make_client_secret() -> tuple[str, Ed25519PublicKey]:
    """A client secret in C1's real format and its public key: ``secret-token:conductorone.com:v1:<JWK>``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    key = Ed25519PrivateKey.generate()
    d = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    x = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    jwk = json.dumps({"kty": "OKP", "crv": "Ed25519", "x": _b64url(x), "d": _b64url(d)}, separators=(",", ":"))
    return "secret-token:conductorone.com:v1:" + _b64url(jwk.encode()), key.public_key()


@dataclass
class ApiClient:
    client_id: str
    public_key: Ed25519PublicKey = field(repr=False)
    display_name: str = "keyturn"


@dataclass
class AccessToken:
    value: str = field(repr=False)
    client_id: str
    expires_at: float


@dataclass
class Sync:
    begin: float
    end: float
    error: str | None = None  # forced at enqueue time by fail_next_sync()


@dataclass
class ConnectorRecord:
    """A connector as the emulated C1 keeps it (``settings`` holds the secret api_token: look, don't log)."""

    id: str
    app_id: str
    catalog_id: str
    display_name: str
    settings: dict[str, str] = field(repr=False)
    created_at: float
    updated_at: float
    config_updated_at: float | None = None
    user_ids: list[str] = field(default_factory=list)
    sync_status: str = "SYNC_STATUS_DONE"
    sync_started_at: float | None = None
    sync_completed_at: float | None = None
    sync_updated_at: float | None = None
    last_error: str = ""
    queue: list[Sync] = field(default_factory=list)
    syncs: list[dict[str, Any]] = field(default_factory=list)  # finished syncs: begin, end, error, api_token fp
    deleted: bool = False

    @property
    def api_token(self) -> str | None:
        return self.settings.get("api_token")


@dataclass(frozen=True)
class SeededTenant:
    """What the lead writes into keyturn.toml (and the secret file) for the seeded tenant."""

    tenant: str
    app_id: str
    connector_id: str
    client_id: str
    client_secret: str = field(repr=False)
    organization: str


class ConductorOneWorld:
    """One emulated C1 tenant: API clients, access tokens, connectors, sync queue, switches, counters."""

    def __init__(self, clock: Callable[[], float], *, tenant: str = "keyturn-sandbox") -> None:
        self.clock = clock
        self.tenant = tenant
        self.lock = threading.RLock()
        self.clients: dict[str, ApiClient] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.connectors: dict[tuple[str, str], ConnectorRecord] = {}
        self.updates: list[dict[str, Any]] = []  # accepted Updates: app_id, connector_id, update_mask, settings, body
        self.counters: Counter[str] = Counter()
        self.sync_queue_s = 0.3
        self.sync_run_s = 0.7
        self.token_check: Callable[[str, str], str | None] | None = None  # (api_token, org) -> error or None
        self.seeded: SeededTenant | None = None
        self._fail_next: list[str] = []
        self._forbidden: set[str] = set()
        self._nonces: set[str] = set()

    # -- set-up --------------------------------------------------------------------------------

    def add_client(self, client_id: str | None = None) -> tuple[str, str]:
        """A new API client; returns (client_id, client_secret) in C1's formats."""
        secret, public = make_client_secret()
        client_id = client_id or f"keyturn-sandbox-{secrets.randbelow(90000) + 10000}@{self.tenant}.conductor.one/pcc"
        with self.lock:
            self.clients[client_id] = ApiClient(client_id, public)
        return client_id, secret

    def add_connector(
        self,
        settings: dict[str, str],
        *,
        app_id: str | None = None,
        connector_id: str | None = None,
        display_name: str = "Buildkite",
        catalog_id: str = BUILDKITE_CATALOG_ID,
    ) -> ConnectorRecord:
        now = self.clock()
        rec = ConnectorRecord(
            id=connector_id or ksuid(),
            app_id=app_id or ksuid(),
            catalog_id=catalog_id,
            display_name=display_name,
            settings=dict(settings),
            created_at=now - 86400 * 30,
            updated_at=now - 86400 * 30,
            config_updated_at=now - 86400 * 30,
            sync_started_at=now - 3600,
            sync_completed_at=now - 3590,
            sync_updated_at=now - 3590,
        )
        with self.lock:
            self.connectors[(rec.app_id, rec.id)] = rec
        return copy.deepcopy(rec)

    # -- switches ------------------------------------------------------------------------------

    def fail_next_sync(
        self, message: str = "buildkite: GET /v2/access-token: 401 Unauthorized", times: int = 1
    ) -> None:
        """Make the next ``times`` forced syncs end in ``SYNC_STATUS_ERROR`` with ``lastError = message``."""
        with self.lock:
            self._fail_next.extend([message] * times)

    def forbid(self, operation: str) -> None:
        """Make an operation ("token", "get", "update", "force_sync") answer 403 (401 for "token")."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; use one of {sorted(OPERATIONS)}")
        with self.lock:
            self._forbidden.add(operation)

    def allow(self, operation: str | None = None) -> None:
        with self.lock:
            self._forbidden = set() if operation is None else self._forbidden - {operation}

    def forbidden(self, operation: str) -> bool:
        with self.lock:
            return operation in self._forbidden

    # -- reading -------------------------------------------------------------------------------

    def connector(self, app_id: str | None = None, connector_id: str | None = None) -> ConnectorRecord | None:
        """A copy of a connector (default: the seeded one), its sync state brought up to date."""
        if app_id is None or connector_id is None:
            assert self.seeded is not None, "no seeded connector"
            app_id, connector_id = self.seeded.app_id, self.seeded.connector_id
        with self.lock:
            rec = self.connectors.get((app_id, connector_id))
            if rec is None:
                return None
            self.advance(rec)
            return copy.deepcopy(rec)

    # -- behaviour (callers hold no lock; these take it) ----------------------------------------

    def issue_token(self, client_id: str) -> AccessToken:
        tok = AccessToken("c1at_" + secrets.token_urlsafe(32), client_id, self.clock() + ACCESS_TOKEN_TTL)
        with self.lock:
            self.tokens[tok.value] = tok
            self.counters["token.issued"] += 1
        return tok

    def check_token(self, value: str | None) -> AccessToken | None:
        if not value:
            return None
        with self.lock:
            tok = self.tokens.get(value)
        if tok is None or self.clock() >= tok.expires_at:
            return None
        return tok

    def use_nonce(self, nonce: str) -> bool:
        """False when the nonce was seen before (a replayed assertion)."""
        with self.lock:
            if nonce in self._nonces:
                return False
            self._nonces.add(nonce)
            return True

    def enqueue_sync(self, rec: ConnectorRecord) -> Sync:
        """Queue a sync behind whatever is queued or running (caller holds the lock)."""
        now = self.clock()
        tail = rec.queue[-1].end if rec.queue else now
        begin = max(now + self.sync_queue_s, tail)
        sync = Sync(begin, begin + self.sync_run_s, self._fail_next.pop(0) if self._fail_next else None)
        rec.queue.append(sync)
        self.counters["sync.queued"] += 1
        return sync

    def advance(self, rec: ConnectorRecord) -> None:
        """Move the connector's syncs along to the emulator clock's now (caller holds the lock)."""
        now = self.clock()
        while rec.queue and now >= rec.queue[0].begin:
            sync = rec.queue[0]
            if rec.sync_started_at != sync.begin:
                rec.sync_status = "SYNC_STATUS_RUNNING"
                rec.sync_started_at = sync.begin
                rec.sync_completed_at = None
                rec.sync_updated_at = sync.begin
                rec.last_error = ""
                self.counters["sync.started"] += 1
            if now < sync.end:
                return
            error = sync.error
            if error is None and self.token_check is not None:
                error = self.token_check(rec.settings.get("api_token", ""), rec.settings.get("organization", ""))
            rec.sync_status = "SYNC_STATUS_ERROR" if error else "SYNC_STATUS_DONE"
            rec.sync_completed_at = sync.end
            rec.sync_updated_at = sync.end
            rec.last_error = error or ""
            rec.queue.pop(0)
            api_token = rec.settings.get("api_token")
            rec.syncs.append(
                {
                    "begin": sync.begin,
                    "end": sync.end,
                    "error": error,
                    "api_token_fingerprint": fingerprint(api_token) if api_token else None,
                }
            )
            self.counters["sync.error" if error else "sync.done"] += 1

    # -- JSON ----------------------------------------------------------------------------------

    def connector_json(self, rec: ConnectorRecord) -> dict[str, Any]:
        status: dict[str, Any] = {"status": rec.sync_status}
        if rec.sync_started_at is not None:
            status["startedAt"] = rfc3339(rec.sync_started_at)
        if rec.sync_completed_at is not None:
            status["completedAt"] = rfc3339(rec.sync_completed_at)
        if rec.sync_updated_at is not None:
            status["updatedAt"] = rfc3339(rec.sync_updated_at)
        if rec.last_error:
            status["lastError"] = rec.last_error
        public = {k: v for k, v in rec.settings.items() if k not in SECRET_SETTINGS}
        out: dict[str, Any] = {
            "id": rec.id,
            "appId": rec.app_id,
            "catalogId": rec.catalog_id,
            "displayName": rec.display_name,
            "description": "",
            "config": {"@type": ENV_CONFIG_TYPE, "configuration": public},
            "createdAt": rfc3339(rec.created_at),
            "updatedAt": rfc3339(rec.updated_at),
            "status": status,
            "userIds": list(rec.user_ids),
            "canResumeSync": False,
            "connectorApiVersion": 2,
        }
        if rec.config_updated_at is not None:
            out["configUpdatedAt"] = rfc3339(rec.config_updated_at)
        return out

    # -- the keyturn.toml block ----------------------------------------------------------------

    def follow_up_toml(
        self,
        target: str,
        *,
        base_url: str,
        client_secret_ref: str = "file:sandbox-c1.secret",  # noqa: S107 (a reference, not a secret)
        name: str = "ConductorOne Buildkite connector",
        sync_timeout_s: int = 60,
    ) -> str:
        """The ``[[targets.<target>.follow_ups]]`` block pointing keyturn at the seeded connector."""
        s = self.seeded
        assert s is not None, "seed the tenant first"

        def q(v: str) -> str:
            return json.dumps(v)

        return "\n".join(
            [
                f"[[targets.{target}.follow_ups]]",
                'kind = "conductorone-connector"',
                f"name = {q(name)}",
                f"tenant = {q(s.tenant)}",
                f"app_id = {q(s.app_id)}",
                f"connector_id = {q(s.connector_id)}",
                f"client_id = {q(s.client_id)}",
                f"client_secret = {q(client_secret_ref)}",
                f"organization = {q(s.organization)}",
                f"base_url = {q(base_url)}",
                f"sync_timeout_s = {int(sync_timeout_s)}",
                "",
            ]
        )


def seed_conductorone(
    clock: Callable[[], float] | SandboxState,
    *,
    tenant: str = "keyturn-sandbox",
    organization: str = "keyturn-sandbox",
    api_token: str | None = None,
) -> ConductorOneWorld:
    """A tenant with one API client and one Buildkite connector (its current api_token: ``api_token``).

    ``clock``: the sandbox state (its ``time``, so ``advance_clock`` moves syncs and token expiry too) or
    any ``() -> unix seconds``. ``world.seeded`` then says what to write into keyturn.toml.
    """
    tick: Callable[[], float] = clock if callable(clock) else clock.time
    world = ConductorOneWorld(tick, tenant=tenant)
    client_id, client_secret = world.add_client()
    old = api_token or "bkua_" + secrets.token_hex(20)
    rec = world.add_connector({"api_token": old, "organization": organization})
    world.seeded = SeededTenant(tenant, rec.app_id, rec.id, client_id, client_secret, organization)
    return world


# -- the service -------------------------------------------------------------------------------------


def c1_error(status: int, code: int, message: str) -> Response:
    """The gRPC-gateway error body C1's HTTP API answers with."""
    return json_response(status, {"code": code, "message": message, "details": []})


def oauth_error(status: int, error: str, description: str) -> Response:
    return json_response(
        status, {"error": error, "error_description": description}, headers={"Cache-Control": "no-store"}
    )


def _checked(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate an outgoing body; a contract violation is an emulator bug and must fail loudly."""
    problems = c1_spec().validate(name, payload, direction="response")
    if problems:
        raise AssertionError(f"emulator response breaks {name}: {'; '.join(problems)}")
    return payload


class ConductorOneService(Service):
    """The tenant's API host (stands for https://<tenant>.conductor.one)."""

    name = "conductorone"

    def __init__(self, state: SandboxState, world: ConductorOneWorld) -> None:
        super().__init__(state)
        self.world = world
        self.route("POST", "/auth/v1/token", self.token)
        self.route("GET", GET_PATH, self.get_connector)
        self.route("POST", GET_PATH, self.update_connector)
        self.route("POST", FORCE_SYNC_PATH, self.force_sync)

    # -- generic answers -----------------------------------------------------------------------

    def not_found(self, req: Request) -> Response:
        return c1_error(404, NOT_FOUND, f"no route for {req.method} {req.path}")

    def method_not_allowed(self, req: Request, allowed: Any) -> Response:
        return c1_error(
            501,
            UNIMPLEMENTED,
            f"{req.method} is not implemented here (the sandbox implements {', '.join(sorted(set(allowed)))})",
        )

    def internal_error(self, req: Request) -> Response:
        return c1_error(500, INTERNAL, "the keyturn sandbox emulator failed (see its log)")

    def injected_error(self, status: int, req: Request) -> Response:
        # gRPC codes: 8 RESOURCE_EXHAUSTED, 13 INTERNAL, 14 UNAVAILABLE
        code = {429: 8, 500: INTERNAL, 503: 14}.get(status, INTERNAL)
        return c1_error(status, code, f"HTTP {status} (keyturn sandbox fault injection)")

    def _bad(self, message: str) -> Response:
        with self.world.lock:
            self.world.counters["request.invalid"] += 1
        return c1_error(400, INVALID_ARGUMENT, message)

    # -- token endpoint ------------------------------------------------------------------------

    def token(self, req: Request) -> Response:
        w = self.world
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return oauth_error(400, "invalid_request", "the token request must be application/x-www-form-urlencoded")
        try:
            form = parse_qs(req.body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(req.body))
        except (UnicodeDecodeError, ValueError):
            return oauth_error(400, "invalid_request", "the form cannot be parsed")
        expected = {"client_id", "grant_type", "client_assertion_type", "client_assertion"}
        unknown = sorted(set(form) - expected)
        if unknown:
            return oauth_error(400, "invalid_request", f"unknown parameter(s): {', '.join(unknown)}")
        missing = sorted(k for k in expected if not form.get(k) or not form[k][0])
        if missing:
            return oauth_error(400, "invalid_request", f"missing parameter(s): {', '.join(missing)}")
        if any(len(v) > 1 for v in form.values()):
            return oauth_error(400, "invalid_request", "a parameter is repeated")
        if form["grant_type"][0] != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
        if form["client_assertion_type"][0] != ASSERTION_TYPE:
            return oauth_error(400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        client_id = form["client_id"][0]
        problem = self._verify_assertion(req, client_id, form["client_assertion"][0])
        if problem is None and w.forbidden("token"):
            problem = "the client is disabled"
        if problem is not None:
            with w.lock:
                w.counters["token.rejected"] += 1
            return oauth_error(401, "invalid_client", problem)
        tok = w.issue_token(client_id)
        return json_response(
            200,
            {"access_token": tok.value, "token_type": "Bearer", "expires_in": ACCESS_TOKEN_TTL},
            headers={"Cache-Control": "no-store"},
        )

    def _verify_assertion(self, req: Request, client_id: str, assertion: str) -> str | None:
        """None when the assertion is good, else why not (never echoing it)."""
        from cryptography.exceptions import InvalidSignature

        w = self.world
        with w.lock:
            client = w.clients.get(client_id)
        if client is None:
            return "unknown client_id"
        parts = assertion.split(".")
        if len(parts) != 3:
            return "client_assertion is not a compact JWS"
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return "client_assertion is not valid base64url JSON"
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return "client_assertion header and claims must be JSON objects"
        if header.get("alg") != "EdDSA":
            return f"client_assertion alg must be EdDSA, not {str(header.get('alg'))[:20]!r}"
        if "crit" in header:
            return "client_assertion has unsupported critical headers"
        try:
            client.public_key.verify(signature, (parts[0] + "." + parts[1]).encode("ascii"))
        except (InvalidSignature, ValueError):
            return "client_assertion signature does not verify with the client's key"
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            return "client_assertion iss and sub must be the client_id"
        # the host the client id names (ParseClientID), without its port: what the SDK puts in aud. That the server
        # refuses any other aud (not where the request arrived: the sandbox listens on loopback) is an assumption.
        host = urlsplit("//" + ConductorOneConnector.client_id_host(client_id)).hostname or ""
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not host or host not in auds:
            return f"client_assertion aud must be {host!r} (the host the client_id names, without a port)"
        now = w.clock()
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, nbf, iat)):
            return "client_assertion needs numeric exp, nbf and iat"
        assert isinstance(exp, int | float) and isinstance(nbf, int | float) and isinstance(iat, int | float)
        if now >= exp + CLOCK_SKEW:
            return "client_assertion has expired"
        if now + CLOCK_SKEW < nbf or now + CLOCK_SKEW < iat:
            return "client_assertion is not valid yet"
        if exp - min(nbf, iat) > MAX_ASSERTION_LIFETIME:
            return f"client_assertion lives longer than {MAX_ASSERTION_LIFETIME} s"
        nonce = header.get("nonce")
        if nonce is not None and not w.use_nonce(str(nonce)):
            return "client_assertion was already used (replayed nonce)"
        return None

    # -- API -----------------------------------------------------------------------------------

    def _auth(self, req: Request, operation: str) -> Response | None:
        if self.world.check_token(req.bearer()) is None:
            return c1_error(
                401, UNAUTHENTICATED, "unauthenticated: a valid bearer token from /auth/v1/token is required"
            )
        if self.world.forbidden(operation):
            return c1_error(
                403,
                PERMISSION_DENIED,
                f"permission denied: the API client may not {operation.replace('_', ' ')} this connector",
            )
        return None

    def _record(self, app_id: str, connector_id: str) -> ConnectorRecord | None:
        rec = self.world.connectors.get((app_id, connector_id))
        return None if rec is None or rec.deleted else rec

    def _body(self, req: Request, schema: str, *, empty_ok: bool = False) -> tuple[Any, Response | None]:
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        if empty_ok and not req.body:
            return {}, None
        if ctype != "application/json":
            return None, self._bad(f"Content-Type must be application/json, not {ctype or 'missing'!r}")
        try:
            body = req.json()
        except BadRequestBody as exc:
            return None, self._bad(str(exc))
        problems = c1_spec().validate(schema, body, direction="request")
        if problems:
            return None, self._bad(f"invalid {schema.removeprefix('c1.api.app.v1.')}: {'; '.join(problems[:5])}")
        return body, None

    def get_connector(self, req: Request) -> Response:
        if (denied := self._auth(req, "get")) is not None:
            return denied
        w = self.world
        with w.lock:
            rec = self._record(req.params["app_id"], req.params["id"])
            if rec is None:
                return c1_error(404, NOT_FOUND, f"connector {req.params['id']} not found in app {req.params['app_id']}")
            w.advance(rec)
            w.counters["connector.get"] += 1
            payload = {"connectorView": {"connector": w.connector_json(rec)}, "expanded": []}
        return json_response(200, _checked(c1_spec().operation_schema(GET_PATH, "get", "response"), payload))

    def update_connector(self, req: Request) -> Response:
        if (denied := self._auth(req, "update")) is not None:
            return denied
        body, bad = self._body(req, c1_spec().operation_schema(GET_PATH, "post", "request"))
        if bad is not None:
            return bad
        app_id, cid = req.params["app_id"], req.params["id"]
        mask = body.get("updateMask")
        if not mask:
            return self._bad('updateMask is required (e.g. "config")')
        paths = [p.strip() for p in str(mask).split(",") if p.strip()]
        unsupported = [p for p in paths if p != "config"]
        if unsupported:
            return self._bad(f'updateMask path(s) {", ".join(unsupported)}: the sandbox implements only "config"')
        connector = body.get("connector")
        if not isinstance(connector, dict):
            return self._bad("connector is required")
        if connector.get("id") not in (None, cid):
            return self._bad("connector.id does not match the id in the path")
        if connector.get("appId") not in (None, app_id):
            return self._bad("connector.appId does not match the app_id in the path")
        settings, problem = self._buildkite_settings(connector.get("config"))
        if problem is not None:
            return self._bad(problem)
        assert settings is not None
        w = self.world
        with w.lock:
            rec = self._record(app_id, cid)
            if rec is None:
                return c1_error(404, NOT_FOUND, f"connector {cid} not found in app {app_id}")
            w.advance(rec)
            now = w.clock()
            rec.settings = dict(settings)
            rec.updated_at = rec.config_updated_at = now
            w.updates.append(
                {
                    "app_id": app_id,
                    "connector_id": cid,
                    "update_mask": str(mask),
                    "settings": dict(settings),
                    "body": copy.deepcopy(body),
                }
            )
            w.counters["connector.update"] += 1
            payload = {"connectorView": {"connector": w.connector_json(rec)}, "expanded": []}
        return json_response(200, _checked(c1_spec().operation_schema(GET_PATH, "post", "response"), payload))

    @staticmethod
    def _buildkite_settings(config: Any) -> tuple[dict[str, str] | None, str | None]:
        """The Buildkite connector's EnvConfig -> its settings, or why it is not one."""
        if not isinstance(config, dict):
            return None, "connector.config is required with updateMask config"
        if config.get("@type") != ENV_CONFIG_TYPE:
            return None, f"connector.config.@type must be {ENV_CONFIG_TYPE}"
        unknown = sorted(set(config) - {"@type", "configuration"})
        if unknown:
            return None, f"connector.config: unknown field(s) {', '.join(unknown)}"
        values = config.get("configuration")
        if not isinstance(values, dict):
            return None, "connector.config.configuration must be an object of settings"
        unknown = sorted(set(values) - set(BUILDKITE_SETTINGS))
        if unknown:
            return (
                None,
                f"connector.config.configuration: unknown setting(s) {', '.join(unknown)} for the Buildkite connector",
            )
        for key in BUILDKITE_SETTINGS:
            if key not in values:
                return None, f"connector.config.configuration.{key} is required"
            if not isinstance(values[key], str):
                return None, f"connector.config.configuration.{key} must be a string"
            if not values[key].strip():
                return None, f"connector.config.configuration.{key} must not be empty"
        return {k: values[k] for k in BUILDKITE_SETTINGS}, None

    def force_sync(self, req: Request) -> Response:
        if (denied := self._auth(req, "force_sync")) is not None:
            return denied
        _, bad = self._body(req, c1_spec().operation_schema(FORCE_SYNC_PATH, "post", "request"), empty_ok=True)
        if bad is not None:
            return bad
        w = self.world
        with w.lock:
            rec = self._record(req.params["app_id"], req.params["connector_id"])
            if rec is None:
                return c1_error(
                    404, NOT_FOUND, f"connector {req.params['connector_id']} not found in app {req.params['app_id']}"
                )
            w.advance(rec)
            w.enqueue_sync(rec)
            w.counters["connector.force_sync"] += 1
        return json_response(200, _checked(c1_spec().operation_schema(FORCE_SYNC_PATH, "post", "response"), {}))
