"""``conductorone-connector``: give ConductorOne's Buildkite connector the new API token, then sync it.

What it does (the ConductorOne public API, ``app/sandbox/contracts/conductorone/openapi-parts.json``):

1. Sign in with the tenant's client credentials, the way ConductorOne's own SDKs do (see below).
2. ``POST /api/v1/apps/{app_id}/connectors/{id}`` (ConnectorService.Update) with
   ``{"connector": {"id", "appId", "config": {"@type": "type.googleapis.com/c1.api.app.v1.EnvConfig",
   "configuration": {"api_token": NEW, "organization": ORG}}}, "updateMask": "config"}``: the shape the
   generated Terraform resource ``conductorone_integration_buildkite`` sends (ConductorOne/terraform-provider-
   conductorone, ``internal/provider/integration_buildkite_resource{,_sdk}.go``, commit c0922639c91e; the
   EnvConfig wrapper is its ``makeConnectorConfig``). Both keys are sent: the mask replaces the whole config.
3. ``POST /api/v1/apps/{app_id}/connectors/{connector_id}/force_sync`` with ``{}``, then poll
   ``GET /api/v1/apps/{app_id}/connectors/{id}`` and read ``connector.status`` (``ConnectorStatus``: the
   spec's ForceSync description says to poll it; there is no other sync-status endpoint). A sync counts as
   ours once ``status.startedAt`` differs from what the update answered; it must end in
   ``SYNC_STATUS_DONE`` within ``sync_timeout_s``. ``SYNC_STATUS_ERROR`` -> FollowUpError with ``lastError``.

Sign-in (ConductorOne/conductorone-sdk-go ``token_source.go``, commit 2eb88f849f45, and ``ParseClientID`` /
``NormalizeTenant`` in ``extra_sdk_options.go``): the client secret is ``secret-token:conductorone.com:v1:<JWK>``, four
``:``-separated fields of which the third must be ``v1`` and the fourth is the unpadded base64url of a JSON
Web Key holding an Ed25519 *private* key (``{"kty":"OKP","crv":"Ed25519","x":...,"d":...}``). The client
signs a JWT (JWS compact, ``alg: EdDSA``, a random ``nonce`` header) with claims ``iss = sub = client_id``,
``aud`` = the token host without its port, ``iat`` = now, ``nbf`` = now - 2 min, ``exp`` = now + 2 min, and
POSTs the form ``client_id``, ``grant_type=client_credentials``, ``client_assertion_type=urn:ietf:params:
oauth:client-assertion-type:jwt-bearer``, ``client_assertion`` to ``https://<host>/auth/v1/token``
(``components.securitySchemes.oauth`` names that token URL); the answer is ``{"access_token", "token_type",
"expires_in"}``.

The host: as the SDK does, it comes from the client id, ``<name>@<host>/pcc`` (``ParseClientID``: split at the
first ``@``, then at the first ``/``; the host goes through ``NormalizeTenant``: lower-cased, ``acme`` ->
``acme.conductor.one``). A client id without ``@`` and ``/`` is invalid (the SDK's ``ErrInvalidClientID``).
The config's ``tenant`` must name the same host after ``NormalizeTenant``; a mismatch is a config error at load
time (``ConductorOneConnector``), so no JWT is ever signed for another tenant's audience. ``base_url`` (the
sandbox's loopback server, or a proxy) only changes where the requests go: the ``aud`` stays the client id's
host, which is what the real server behind it checks.

Idempotence: ConductorOne never returns a secret connector setting (the Terraform resource reads back only
``organization``), so there is nothing to compare the new token with: ``find_done`` always says "not done"
and ``run`` is safe to repeat (the update sets the same config again; another forced sync is harmless).

``self_hosted = true``: the connector runs in your own cluster and reads its token from a deployment secret,
so the step is manual (ticked by hand, ``--skip-manual`` honoured) and names ``deployment_secret``.

The value is only ever in the update's JSON body: never in a log line, an exception or the journal; text the
server sends back is scrubbed of it before it reaches a message.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from app.config import ConductorOneConnector, Config
from app.errors import FollowUpError, KeyturnError
from app.followups import StepContext, StepDefaults, StepResult
from app.net import (
    LimitExceededError,
    Outcome,
    Transient,
    answer_failure,
    check_url,
    http_client,
    retry_sleep,
    said_of,
    transport_failure,
    with_retries,
)
from app.secret import SecretValue
from providers.base import GateCheck

if TYPE_CHECKING:
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger("keyturn.followups.conductorone")
T = TypeVar("T")

ENV_CONFIG_TYPE = "type.googleapis.com/c1.api.app.v1.EnvConfig"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_PATH = "/auth/v1/token"  # noqa: S105 (a URL path)
SYNC_DONE = "SYNC_STATUS_DONE"
SYNC_ERROR = "SYNC_STATUS_ERROR"
SYNC_RUNNING = "SYNC_STATUS_RUNNING"
SYNC_DISABLED = "SYNC_STATUS_DISABLED"
ASSERTION_LIFETIME_S = 120  # the SDK: exp = now + 2 min, nbf = now - 2 min


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if "=" in text:  # the SDK decodes RawURLEncoding: no padding allowed
        raise ValueError("padded")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_client_secret(secret: SecretValue, what: str) -> Ed25519PrivateKey:
    """``secret-token:conductorone.com:v1:<base64url JWK>`` -> the Ed25519 private key (like the SDK's parseSecret).

    Errors never quote the secret.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    bad = FollowUpError(
        f"{what}: not a ConductorOne client secret",
        hint="expected secret-token:conductorone.com:v1:<key>, as ConductorOne shows it when the client is created",
    )
    parts = secret.reveal().strip().split(":", 3)
    if len(parts) != 4 or parts[2] != "v1":
        raise bad
    try:
        jwk = json.loads(_b64url_decode(parts[3]))
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise ValueError("not an Ed25519 JWK")
        d = _b64url_decode(str(jwk["d"]))
        x = _b64url_decode(str(jwk["x"]))
        key = Ed25519PrivateKey.from_private_bytes(d)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != x:
        raise FollowUpError(f"{what}: the client secret's key pair does not match", hint="copy the whole secret again")
    return key


def audience(host: str) -> str:
    """The assertion's ``aud``: the token host without a port (the SDK: "the audience never expects a port")."""
    parsed = urlsplit("//" + host)
    return parsed.hostname or host


def client_assertion(client_id: str, key: Ed25519PrivateKey, aud: str, now: float | None = None) -> str:
    """A signed JWT (JWS compact, EdDSA) as ConductorOne's SDK builds it."""
    now = int(time.time() if now is None else now)
    header = {"alg": "EdDSA", "nonce": _b64url(secrets.token_bytes(16))}
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + ASSERTION_LIFETIME_S,
        "nbf": now - ASSERTION_LIFETIME_S,
        "iat": now,
    }
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    return signing_input + "." + _b64url(key.sign(signing_input.encode("ascii")))


def _raise_transient(resp: httpx.Response) -> None:
    """429 (nothing happened; wait for Retry-After) and 5xx (it may have happened) -> app.net's Transient."""
    failure = answer_failure(resp.status_code, resp.headers)
    if failure is not None:
        raise failure


def _one_line(text: str, limit: int = 200, value: SecretValue | None = None) -> str:
    """Server text for a message: the value scrubbed out, one line, at most ``limit`` characters."""
    text = str(text)
    if value is not None and value.reveal():
        text = text.replace(value.reveal(), "********")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConductorOneStep(StepDefaults):
    kind = "conductorone-connector"
    is_store = False
    needs_value = True

    # polling of the sync status: first wait, growth, cap (tests make them small)
    poll_interval = 1.0
    poll_growth = 1.5
    max_poll_interval = 5.0

    def __init__(self, step_id: str, spec: ConductorOneConnector) -> None:
        self.id = step_id
        self.spec = spec
        self.manual = spec.self_hosted
        self.title = spec.name or f"ConductorOne connector {spec.connector_id}"
        self.sync_timeout_s: float = float(spec.sync_timeout_s)
        self.sleep: Callable[[float], None] = time.sleep  # between sync polls
        self.retry_wait: Callable[[float], None] = retry_sleep  # before another attempt of a failed call
        self.clock: Callable[[], float] = time.monotonic
        self._access: tuple[SecretValue, float] | None = None  # (access token, monotonic expiry)

    # -- description ---------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"ConductorOne {self.spec.tenant}"

    def describe(self) -> str:
        s = self.spec
        if s.self_hosted:
            return f"manual: {self._manual_text()}"
        return (
            f"set api_token of ConductorOne connector {s.connector_id} (app {s.app_id}, tenant {s.tenant}) "
            f"with updateMask config, then force a sync and wait for it (up to {s.sync_timeout_s} s)"
        )

    def _manual_text(self) -> str:
        s = self.spec
        secret = s.deployment_secret or "the connector deployment's secret"
        return (
            f"self-hosted ConductorOne connector {s.connector_id} (tenant {s.tenant}): put the new token into "
            f"{secret} (the connector's api_token), then restart the connector so its next sync uses it"
        )

    # -- plumbing ------------------------------------------------------------------------------

    def _token_host(self) -> str:
        """The host (and port) the client id names, which the tenant must name too (checked at config load; again
        here, before any request, for a spec built without validation)."""
        s = self.spec
        host = ConductorOneConnector.client_id_host(s.client_id)
        if not host or host != ConductorOneConnector.normalize_tenant(s.tenant):
            raise FollowUpError(
                f"{self.title}: client_id {s.client_id!r} does not name tenant {s.tenant!r}'s host",
                hint="client_id is NAME@TENANT.conductor.one/pcc: use an API client of this tenant",
            )
        return host

    def _base_url(self) -> str:
        """Where requests go: base_url (the sandbox's loopback override) or https://<the client id's host>."""
        raw = self.spec.base_url or f"https://{self._token_host()}"
        try:
            return check_url(raw, f"{self.title}: base_url")
        except KeyturnError as exc:
            raise FollowUpError(exc.message, hint=exc.hint) from None

    def _http(self, config: Config) -> httpx.Client:
        ca = config.resolve_path(config.settings.ca_bundle) if config.settings.ca_bundle else None
        client: httpx.Client = http_client(ca)
        return client

    def _send(self, client: httpx.Client, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """One request; a transport failure becomes app.net's Transient (the retry policy decides what follows)."""
        import httpx

        try:
            resp = client.request(method, url, **kwargs)
        except LimitExceededError as exc:  # too large an answer: not tried again
            if method == "GET" or url.endswith(TOKEN_PATH):  # a read, or a sign-in: nothing changed
                raise FollowUpError(f"{self.where}: {what}: {exc.message}", hint=exc.hint) from None
            raise FollowUpError(
                f"{self.where}: {what}: {exc.message}; it may or may not have happened",
                hint=f"{exc.hint}; then `keyturn resume` repeats it (setting the connector again is safe)",
            ) from None
        except httpx.HTTPError as exc:
            failure = transport_failure(exc, url)
            log.warning("ConductorOne %s %s -> %s", method, urlsplit(url).path, failure.problem)
            host = urlsplit(url).netloc
            said = f"cannot reach {host}" if failure.outcome is Outcome.NOT_SENT else f"{failure.problem} ({host})"
            raise failure.reworded(said) from None
        log.info("ConductorOne %s %s -> %s", method, urlsplit(url).path, resp.status_code)
        return resp

    def _with_retries(self, call: Callable[[], T], what: str, *, idempotent: bool) -> T:
        """Run ``call`` (one request) under app.net.with_retries: when it is idempotent, timeouts, resets, 429, 5xx
        and unreadable answers are tried again. A non-idempotent call is tried again only after a 429 or a
        failed connection (nothing happened); otherwise FollowUpError (``keyturn resume`` repeats the step)."""

        def gave_up(_failure: Transient, problems: list[str]) -> FollowUpError:
            return FollowUpError(
                f"{self.where}: {what} failed: {said_of(problems)}; try again later",
                hint="check the tenant / base_url and the network, then `keyturn resume`",
            )

        def unknown(_failure: Transient, problems: list[str]) -> T:
            raise FollowUpError(
                f"{self.where}: {what}: {said_of(problems)}; it may or may not have happened",
                hint="`keyturn resume` repeats it (setting the connector again is safe)",
            )

        return with_retries(
            call,
            idempotent=idempotent,
            wait_out_rate_limit=True,  # refused: nothing happened; the new token already exists, so wait
            unknown=unknown,
            gave_up=gave_up,
            sleep=self.retry_wait,
            log=log,
            call=f"ConductorOne {what}",
        )

    def _refused(self, resp: httpx.Response, what: str, value: SecretValue | None = None) -> FollowUpError:
        text = ""
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            for key in ("message", "error_description", "error"):
                if isinstance(body.get(key), str) and body[key].strip():
                    text = body[key]
                    break
        if not text:
            text = resp.reason_phrase or "no details"
        hint = None
        if resp.status_code == 401:
            hint = "check client_id / client_secret (a ConductorOne API client of this tenant)"
        elif resp.status_code == 403:
            hint = "the API client needs a role that may edit this connector (e.g. connector administrator)"
        elif resp.status_code == 404:
            hint = "check app_id and connector_id (the connector's URL in ConductorOne shows both)"
        return FollowUpError(
            f"{self.where}: {what} refused ({resp.status_code}): {_one_line(text, value=value)}", hint=hint
        )

    def _sign_in(self, config: Config, client: httpx.Client, *, fresh: bool = False) -> str:
        if not fresh and self._access is not None and self.clock() < self._access[1]:
            return self._access[0].reveal()
        from app.secret_sources import resolve_plain

        what = f"{self.title}: client_secret"
        key = parse_client_secret(resolve_plain(config, self.spec.client_secret, what=what), what)
        host = self._token_host()  # the JWT's audience: the client id's host, wherever base_url sends the request
        base = self._base_url()

        def once() -> httpx.Response:
            form = {  # a new assertion each attempt: ConductorOne refuses a replayed nonce
                "client_id": self.spec.client_id,
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client_assertion(self.spec.client_id, key, audience(host)),
            }
            resp = self._send(client, "POST", base + TOKEN_PATH, "sign-in", data=form)
            _raise_transient(resp)
            if resp.status_code == 200:
                try:
                    resp.json()
                except ValueError:
                    raise Transient("an unreadable answer (HTTP 200)", Outcome.UNKNOWN, status=200) from None
            return resp

        resp = self._with_retries(once, f"sign-in (POST {TOKEN_PATH})", idempotent=True)  # another access token is harmless
        if resp.status_code != 200:
            raise self._refused(resp, f"sign-in as {self.spec.client_id}")
        try:
            body = resp.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in") or 300)
        except (ValueError, KeyError, TypeError):
            raise FollowUpError(f"{self.where}: sign-in answered without an access token") from None
        if not token:
            raise FollowUpError(f"{self.where}: sign-in answered with an empty access token")
        self._access = (SecretValue(token), self.clock() + max(expires_in - 60.0, 10.0))
        return token

    def _api(
        self,
        config: Config,
        client: httpx.Client,
        method: str,
        path: str,
        what: str,
        *,
        body: Any = None,
        value: SecretValue | None = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """One API call with the bearer token (signs in again once on 401); the JSON answer or FollowUpError."""
        url = self._base_url() + path
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = body

        def once() -> dict[str, Any]:
            resp = None
            for attempt in range(2):
                token = self._sign_in(config, client, fresh=attempt > 0)
                resp = self._send(client, method, url, what, headers={"Authorization": f"Bearer {token}"}, **kwargs)
                if resp.status_code != 401:
                    break
                self._access = None
            assert resp is not None
            _raise_transient(resp)
            if resp.status_code != 200:
                raise self._refused(resp, what, value)
            try:
                data = resp.json()
            except ValueError:
                raise Transient("an unreadable answer (HTTP 200)", Outcome.UNKNOWN, status=200) from None
            if not isinstance(data, dict):
                raise FollowUpError(f"{self.where}: {what}: unexpected answer")
            return data

        return self._with_retries(once, what, idempotent=idempotent)

    def _connector_path(self) -> str:
        from urllib.parse import quote

        return f"/api/v1/apps/{quote(self.spec.app_id, safe='')}/connectors/{quote(self.spec.connector_id, safe='')}"

    @staticmethod
    def _connector_of(answer: dict[str, Any]) -> dict[str, Any] | None:
        view = answer.get("connectorView")
        connector = view.get("connector") if isinstance(view, dict) else None
        return connector if isinstance(connector, dict) else None

    def _get(self, config: Config, client: httpx.Client) -> dict[str, Any]:
        what = f"reading connector {self.spec.connector_id}"
        connector = self._connector_of(self._api(config, client, "GET", self._connector_path(), what))
        if connector is None:
            raise FollowUpError(f"{self.where}: {what}: the answer has no connector")
        if connector.get("deletedAt"):
            raise FollowUpError(
                f"{self.where}: connector {self.spec.connector_id} was deleted", hint="check connector_id"
            )
        return connector

    def _organization(self, ctx: StepContext) -> str:
        if self.spec.organization:
            return self.spec.organization
        account = ctx.config.accounts.get(ctx.target.account)
        if account is None:
            raise FollowUpError(f"{self.title}: no organization", hint="set organization = '...' in this follow-up")
        return account.organization

    # -- the protocol --------------------------------------------------------------------------

    def preflight(self, config: Config) -> None:
        """Sign in and read the connector (nothing is changed)."""
        if self.spec.self_hosted:
            return None
        with self._http(config) as client:
            self._get(config, client)
        return None

    def find_done(self, ctx: StepContext) -> StepResult | None:
        # ConductorOne never gives a secret setting back, so whether the connector already holds this
        # token cannot be known: say "not done"; `run` is safe to repeat.
        return None

    def run(self, ctx: StepContext) -> StepResult:
        if self.spec.self_hosted:
            return self._run_manual(ctx)
        if ctx.value is None:
            raise FollowUpError(f"{self.title}: the new value is not available", hint="run `keyturn resume`")
        s = self.spec
        organization = self._organization(ctx)
        body = {
            "connector": {
                "id": s.connector_id,
                "appId": s.app_id,
                "config": {
                    "@type": ENV_CONFIG_TYPE,
                    "configuration": {"api_token": ctx.value.reveal(), "organization": organization},
                },
            },
            "updateMask": "config",
        }
        with self._http(ctx.config) as client:
            what = f"connector {s.connector_id} update"
            answer = self._api(
                ctx.config, client, "POST", self._connector_path(), what, body=body, value=ctx.value, idempotent=False
            )
            connector = self._connector_of(answer) or self._get(ctx.config, client)
            before = connector.get("status") if isinstance(connector.get("status"), dict) else {}
            config_updated_at = connector.get("configUpdatedAt") or connector.get("updatedAt")
            self._api(
                ctx.config,
                client,
                "POST",
                self._connector_path() + "/force_sync",
                f"connector {s.connector_id} force sync",
                body={},
            )
            ctx.interaction.progress(f"{self.where}: connector {s.connector_id} updated; waiting for the forced sync")
            status = self._wait_for_sync(ctx.config, client, before or {}, ctx.value, ctx.interaction.progress, give_up=False)
        detail = {
            "tenant": s.tenant,
            "app_id": s.app_id,
            "connector_id": s.connector_id,
            "organization": organization,
            "config_updated_at": config_updated_at,
            "sync_status": status.get("status"),
            "sync_started_at": status.get("startedAt"),
            "sync_completed_at": status.get("completedAt"),
            "sync_before_started_at": (before or {}).get("startedAt"),  # a sync is ours once its startedAt differs
        }
        if status.get("status") != SYNC_DONE:
            return StepResult(
                f"{self.where}: connector {s.connector_id} has the new api_token; its sync has not finished yet "
                "(the old token is revoked only once it has)",
                detail,
            )
        return StepResult(
            f"{self.where}: connector {s.connector_id} has the new api_token; a forced sync finished"
            + (f" at {status['completedAt']}" if status.get("completedAt") else ""),
            detail,
        )

    # -- the consumer gate: ConductorOne demonstrably reads Buildkite with the new token ------------------------
    gates = True

    def gate_plan(self) -> str:
        return "" if self.spec.self_hosted else f"a sync of connector {self.spec.connector_id} with the new api_token finished ({SYNC_DONE})"

    def gate(self, ctx: StepContext, detail: dict[str, Any]) -> GateCheck | None:
        """Passed once a sync that began after the update ended SYNC_STATUS_DONE, and the connector's newest sync has
        not failed since (a later sync that errs says the token does not work there after all)."""
        if self.spec.self_hosted or not detail:
            return None
        cid = self.spec.connector_id
        with self._http(ctx.config) as client:
            status = self._get(ctx.config, client).get("status") or {}
        if not isinstance(status, dict):
            status = {}
        state, started = status.get("status"), status.get("startedAt")
        ours_now = bool(started) and started != detail.get("sync_before_started_at")
        breaks = f"ConductorOne's connector {cid} would read Buildkite with a revoked token: its syncs fail"
        if state == SYNC_ERROR and ours_now:
            # the server's text may quote the token; it is scrubbed of the value this process holds, and left out when
            # it holds none (a resumed rotation), so a journaled or printed waiting line can never carry it
            text = _one_line(status.get("lastError") or "no details", value=ctx.value) if ctx.value is not None else "its last error is in ConductorOne"
            return GateCheck(self.id, self.title, False, waiting_for=f"connector {cid} sync failed with the new api_token ({text})",
                             progress="fix the connector and force a sync in ConductorOne; the gate is asked again", breaks=breaks)
        if detail.get("sync_status") == SYNC_DONE or (ours_now and state == SYNC_DONE):
            return GateCheck(self.id, self.title, True, progress=f"connector {cid} synced with the new api_token")
        if state == SYNC_DISABLED:
            return GateCheck(self.id, self.title, False, waiting_for=f"connector {cid} sync (syncs are disabled)",
                             progress="enable syncing of the connector in ConductorOne", breaks=breaks)
        phase = "running" if ours_now else "queued"
        return GateCheck(self.id, self.title, False, waiting_for=f"connector {cid} sync not finished ({phase})", breaks=breaks)

    def _wait_for_sync(
        self,
        config: Config,
        client: httpx.Client,
        before: dict[str, Any],
        value: SecretValue,
        progress: Callable[[str], None],
        *,
        give_up: bool = True,
    ) -> dict[str, Any]:
        """Poll the connector until a sync that began after the update ends; its status, or FollowUpError. A sync
        still queued or running at the deadline raises (``give_up``), or returns its status (the gate waits on)."""
        cid = self.spec.connector_id
        deadline = self.clock() + self.sync_timeout_s
        interval = self.poll_interval
        seen_start = False
        while True:
            status = self._get(config, client).get("status") or {}
            if not isinstance(status, dict):
                status = {}
            state = status.get("status")
            started = status.get("startedAt")
            ours = bool(started) and started != before.get("startedAt")
            if state == SYNC_DISABLED:
                raise FollowUpError(
                    f"{self.where}: syncs of connector {cid} are disabled; the new api_token is saved but not used yet",
                    hint="enable syncing of the connector in ConductorOne, then `keyturn resume`",
                )
            if ours:
                if not seen_start:
                    progress(f"{self.where}: connector {cid} is syncing with the new api_token")
                seen_start = True
                if state == SYNC_DONE:
                    return status
                if state == SYNC_ERROR:
                    text = _one_line(status.get("lastError") or "no details", value=value)
                    raise FollowUpError(
                        f"{self.where}: connector {cid} sync failed with the new api_token: {text}",
                        hint="check the token's scopes and organization, then `keyturn resume`",
                    )
            now = self.clock()
            if now >= deadline and not give_up:
                return {**status, "status": state if ours else None}
            if now >= deadline:
                phase = "still running" if seen_start else "not started (still queued)"
                raise FollowUpError(
                    f"{self.where}: connector {cid} sync {phase} after {self.sync_timeout_s:g} s; the new api_token is saved",
                    hint="watch the connector in ConductorOne, then `keyturn resume` (running it again is safe)",
                )
            self.sleep(min(interval, max(deadline - now, 0.0)))
            interval = min(interval * self.poll_growth, self.max_poll_interval)

    def _run_manual(self, ctx: StepContext) -> StepResult:
        text = self._manual_text()
        ids = {"tenant": self.spec.tenant, "connector_id": self.spec.connector_id, "self_hosted": True}
        if ctx.options.get("ticked", {}).get(self.id):
            return StepResult(f"done by hand: {text}", {**ids, "ticked": True})
        if ctx.options.get("skip_manual"):
            return StepResult(f"SKIPPED (--skip-manual), still to do: {text}", {**ids, "skipped": True})
        raise FollowUpError(
            f"manual step {self.title!r} is not ticked: {text}",
            hint="tick it in the wizard, or pass --skip-manual and do it yourself",
        )

    def recover_value(self, ctx: StepContext, fp: str) -> SecretValue | None:
        return None  # ConductorOne never gives the api_token back


    def undo(self, ctx: StepContext, detail: dict[str, Any]) -> str:
        if self.spec.self_hosted or not detail:
            return ""
        return (
            f"{self.where}: connector {self.spec.connector_id} still has the new api_token; "
            "ConductorOne cannot give the old one back: set it again by hand if you keep the old token"
        )
