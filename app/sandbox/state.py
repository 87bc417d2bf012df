"""The sandbox's shared in-memory state: users, Entra tokens, PATs, vault secrets, policies, faults.

Every emulator reads and writes one :class:`SandboxState`; every method takes the lock. Tests and
the benchmark use it to look behind the curtain:

- ``state.pats(org=None)`` / ``state.pat(authorization_id)`` / ``state.pats_named(name)``: PAT records
  (:class:`PatRecord`, copies) with ``value`` and ``uses`` (authenticated requests made with it).
- ``state.secret_versions(vault, name)``: :class:`SecretVersion` copies, oldest first.
- ``state.requests``: :class:`RequestCounters` (``count()``, ``by_route()``, ``snapshot()``, ``reset()``).
- ``state.policy(org=None)``: the live :class:`OrgPolicies` (set its attributes) or ``state.set_policy(**kw)``.
- ``state.expire_user_tokens()``, ``state.deny(vault, op)`` / ``state.allow(vault, op)``,
  ``state.inject_fault(op, kind)`` (``NET_FAULT_KINDS`` at any call: ``inject_fault("PUT /secrets/{name}",
  "reset-after", service="vault:*")``; ``"late"`` too, see ``LATE_FAULT``), ``state.pending_faults()``,
  ``state.approve_device_code(user_code)``.
- ``state.set_delay(seconds, service=..., call=...)`` / ``state.clear_delays()``: slow calls down (they still
  answer normally); ``state.delay_hits()``: how many requests each delay slowed (0: it named no call).
- ``state.wait_late_held(n)`` / ``state.wait_late_landed(n)`` (``late_held`` / ``late_landed``): requests a "late"
  fault holds, and late effects that have landed.
- ``state.pipeline(pipeline_id or name)`` / ``state.pipeline_runs(pipeline_id or name)``: Azure Pipelines records
  (:class:`PipelineRecord`, :class:`PipelineRun`, copies); ``state.set_pipeline(name, fail_with=..., needs=...,
  run_duration_s=...)`` changes how the emulated consumer behaves; ``state.queue_run(...)`` queues a run by hand.
- ``state.bot_email`` / ``state.bot_password`` / ``state.bot_credentials``, ``state.tenant_id``,
  ``state.sp_client_id`` / ``state.sp_client_secret``, ``state.org`` / ``state.org_id``.
- ``state.internal_errors``: emulator bugs (a handler raised, or produced a body that breaks the
  contract); tests assert it stays empty.
"""

from __future__ import annotations

import base64
import copy
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal

DEVOPS_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
VAULT_RESOURCE = "https://vault.azure.net"
GRAPH_RESOURCE = "00000003-0000-0000-c000-000000000000"

FAULT_KINDS: dict[str, frozenset[str]] = {
    "pats.create": frozenset({"500-after-create", "reset-after-create", "500-before-create", "503"}),
    "pats.list": frozenset({"503", "500"}),
    "pats.get": frozenset({"503", "500"}),
    "pats.revoke": frozenset({"503", "500"}),
    "pats.update": frozenset({"503", "500"}),
    "devops.connectionData": frozenset({"503", "500"}),
    "devops.pools": frozenset({"503", "500"}),
    "keyvault.get": frozenset({"503", "500"}),
    "keyvault.set": frozenset({"503", "500"}),
    "keyvault.list": frozenset({"503", "500"}),
    "keyvault.update": frozenset({"503", "500"}),
}

# The generic network faults every emulator applies at one call (see SandboxState.inject_fault):
# timeout (the handler runs, the answer is held past the client's read timeout), reset (the connection
# is reset before the handler runs: nothing happened), reset-after (the handler runs, then the connection
# is reset: it happened, the client cannot know), 500 / 503 (an error, nothing happened), 429 (rate limited
# with the vendor's reset headers, nothing happened), malformed (the handler runs, then HTTP 200 with a body
# that is not the JSON it should be).
NET_FAULT_KINDS = ("timeout", "reset", "reset-after", "500", "503", "429", "malformed")

# The mirror image of "timeout": the request is held *before* the handler runs (the hold: ``inject_fault(...,
# hold=s)``, default ``fault_hold``), so the client's own timeout fires while nothing has happened yet; then the
# handler runs for real and its effect lands after the client gave up (a Key Vault version, a token), and the
# answer goes nowhere (the connection is closed). ``state.late_landed`` counts the late handlers that ran.
# Kept out of NET_FAULT_KINDS: tests run every kind there through cases whose outcomes they pin.
# The hold must outlast the client's timeout: keyturn's httpx clients (Azure DevOps, Buildkite, Jenkins,
# ConductorOne) and its Key Vault SecretClient give up after app.net.http_timeout() (30 s, KEYTURN_HTTP_TIMEOUT);
# its Entra sign-ins (azure-identity credentials, no timeout set) wait azure-core's default 300 s.
LATE_FAULT = "late"
# Key Vault access-policy permissions and the operations that need them
VAULT_PERMISSIONS = frozenset({"get", "list", "set"})


def pat_value() -> str:
    """A new PAT value like the CreatePat example: 52 lowercase base32 characters."""
    return base64.b32encode(secrets.token_bytes(32)).decode("ascii").rstrip("=").lower()


@dataclass
class User:
    oid: str
    email: str
    password: str = field(repr=False)
    display_name: str


@dataclass
class ServicePrincipal:
    client_id: str
    secret: str = field(repr=False)
    oid: str
    display_name: str


@dataclass
class IssuedToken:
    """An Entra access token the emulator issued. ``kind`` is "user" (delegated) or "app" (client credentials)."""

    value: str = field(repr=False)
    kind: Literal["user", "app"]
    audience: str
    scopes: list[str]
    client_id: str
    tenant_id: str
    oid: str
    upn: str | None
    issued_at: float
    expires_at: float
    revoked: bool = False

    def active(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass
class RefreshToken:
    value: str = field(repr=False)
    oid: str
    client_id: str
    revoked: bool = False


@dataclass
class DeviceFlow:
    device_code: str = field(repr=False)
    user_code: str
    client_id: str
    scopes: list[str]
    created: float
    expires_at: float
    approve_at: float | None  # auto-approval time; None = only by hand
    approved_by: str | None = None  # the user's oid once approved
    redeemed: bool = False


@dataclass
class PatRecord:
    """A personal access token as the emulated Azure DevOps keeps it."""

    authorization_id: str
    display_name: str
    scope: str
    valid_from: datetime
    valid_to: datetime
    target_accounts: list[str] | None  # None = all organisations (global PAT)
    owner_oid: str
    org: str
    value: str = field(repr=False)
    revoked: bool = False
    uses: int = 0  # authenticated requests made with it (Basic auth on the devops server)
    failed_uses: int = 0  # requests that presented it while it was revoked or expired

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()

    def expired(self, now: datetime) -> bool:
        return self.valid_to <= now

    def active(self, now: datetime) -> bool:
        return not self.revoked and not self.expired(now)

    def status(self, now: datetime) -> Literal["active", "expired", "revoked"]:
        if self.revoked:
            return "revoked"
        return "expired" if self.expired(now) else "active"


@dataclass
class SecretVersion:
    """One version of a Key Vault secret."""

    name: str
    version: str
    value: str = field(repr=False)
    tags: dict[str, str] | None
    content_type: str | None
    enabled: bool
    not_before: int | None
    expires: int | None
    created: int
    updated: int
    order: int  # creation order within the vault (1, 2, ...)


@dataclass
class OrgPolicies:
    """Azure DevOps organisation policies about PATs."""

    max_lifespan_days: int | None = None  # "Enforce maximum personal access token lifespan"
    block_full_scope: bool = False  # "Restrict creation of full-scoped personal access tokens"
    block_global: bool = False  # "Restrict creation of global personal access tokens"
    disable_pat_creation: bool = False  # "Restrict personal access token (PAT) creation"


PIPELINE_RESULTS = ("succeeded", "failed", "canceled")


@dataclass
class PipelineRun:
    """One run of an emulated Azure Pipelines pipeline. The consumer's check ran when it was queued; the run stays
    ``inProgress`` for ``duration_s`` seconds of the emulators' clock, then it is ``completed`` with ``result``."""

    id: int
    pipeline_id: int
    name: str  # the build number, $(Date:yyyyMMdd).$(Rev:r)
    created: float  # the emulators' clock (unix seconds) when it was queued
    duration_s: float
    result: Literal["succeeded", "failed", "canceled"]
    reason: str  # what the consumer's check said, one line (never a value)
    ref_name: str
    version: str  # the commit the run checked out
    variables: dict[str, str] = field(default_factory=dict)  # queue-time variables: name -> value
    queued_by: str | None = None  # the PAT's authorization id, or the Entra user's oid
    checked_token: str | None = None  # authorization id of the PAT the consumer found in Key Vault (None: none)

    def finished_at(self) -> float:
        return self.created + self.duration_s

    def state_at(self, now: float) -> Literal["inProgress", "completed"]:
        return "completed" if now >= self.finished_at() else "inProgress"


@dataclass
class PipelineRecord:
    """An Azure Pipelines pipeline whose runs check a consumer: each run reads the latest version of Key Vault secret
    ``vault``/``secret`` and calls the agent pools API with it (``needs``: the scopes its checks need). A run fails
    when that token is not an active PAT of the organization with those scopes, or when ``fail_with`` is set (the
    consumer broken for another reason)."""

    id: int
    name: str
    project: str
    folder: str = "\\"
    revision: int = 1
    default_branch: str = "refs/heads/main"
    branches: tuple[str, ...] = ("refs/heads/main",)
    vault: str = "cftptl-intsvc"
    secret: str = "azure-devops-token"  # noqa: S105 (a secret's name)
    needs: tuple[str, ...] = ("vso.agentpools", "vso.build", "vso.pipelineresources_use", "vso.release")
    run_duration_s: float = 1.0
    fail_with: str | None = None
    queue_time_variables: tuple[str, ...] = ("KEYTURN_ROTATION",)  # "Let users override this value when running"
    runs: list[PipelineRun] = field(default_factory=list)


class RequestCounters:
    """How many requests arrived, per service and per (method, route template). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def add(self, service: str, method: str, route: str) -> None:
        with self._lock:
            self._counts[(service, method, route)] += 1

    def count(self, service: str | None = None, method: str | None = None, route: str | None = None) -> int:
        """Sum of the requests matching every given filter (None = any)."""
        with self._lock:
            return sum(
                n
                for (s, m, r), n in self._counts.items()
                if (service is None or s == service)
                and (method is None or m == method)
                and (route is None or r == route)
            )

    def by_route(self, service: str) -> dict[tuple[str, str], int]:
        """{(method, route template): count} for one service."""
        with self._lock:
            return {(m, r): n for (s, m, r), n in self._counts.items() if s == service}

    def snapshot(self) -> dict[str, dict[tuple[str, str], int]]:
        """{service: {(method, route template): count}}."""
        with self._lock:
            out: dict[str, dict[tuple[str, str], int]] = {}
            for (s, m, r), n in self._counts.items():
                out.setdefault(s, {})[(m, r)] = n
            return out

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class SandboxState:
    """Everything the emulated services know. See the module docstring for the test-facing API."""

    def __init__(
        self,
        *,
        org: str = "contoso-sandbox",
        page_size: int = 2,
        auto_approve_device_code: float = 0.0,
        token_lifetime: int = 3600,
    ) -> None:
        self._init_run()
        self.tenant_id = str(uuid.uuid4())
        self.org = org
        self.org_id = str(uuid.uuid4())
        self.page_size = page_size
        self.auto_approve_device_code = auto_approve_device_code
        self.token_lifetime = token_lifetime
        self.clock_offset = 0.0  # seconds added to the wall clock (see advance_clock)
        self.users: dict[str, User] = {}
        self.service_principals: dict[str, ServicePrincipal] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.device_flows: dict[str, DeviceFlow] = {}
        self.policies: dict[str, OrgPolicies] = {org: OrgPolicies()}
        self._pats: dict[str, list[PatRecord]] = {org: []}
        self._vaults: dict[str, dict[str, list[SecretVersion]]] = {}
        self._vault_order: dict[str, int] = {}
        self._init_pipelines()

        bot = self.add_user("keyturn-bot@sandbox.example", "keyturn bot")
        self.bot_email = bot.email
        self.bot_password = bot.password
        self.bot_oid = bot.oid
        sp = ServicePrincipal(str(uuid.uuid4()), secrets.token_urlsafe(30), str(uuid.uuid4()), "keyturn-sandbox-sp")
        self.service_principals[sp.client_id] = sp
        self.sp_client_id = sp.client_id
        self.sp_client_secret = sp.secret

    # Everything below belongs to one run (a test's switches, counters, the hook), not to the emulated world:
    # a saved world (app.sandbox.persist) leaves it out and a loaded one starts with it fresh.
    _RUN_FIELDS = (
        "lock", "requests", "internal_errors", "_faults", "_net_faults", "fault_hold", "fault_retry_after",
        "_delays", "_delay_hits", "_late", "late_held", "late_landed", "after_request", "_denied",
    )

    def _init_run(self) -> None:
        self.lock = threading.RLock()
        self.requests = RequestCounters()
        self.internal_errors: list[str] = []
        self._faults: dict[str, list[str]] = {}
        # (service glob, call name, kind, hold seconds or None for fault_hold), in injection order
        self._net_faults: list[tuple[str, str, str, float | None]] = []
        # network faults: how long a "timeout" holds its answer (and a "late" fault the request), and the reset
        # a "429" announces (seconds)
        self.fault_hold = 5.0
        self.fault_retry_after = 1
        self._delays: dict[tuple[str, str], float] = {}  # (service glob, call glob) -> seconds per request
        self._delay_hits: Counter[tuple[str, str]] = Counter()
        self._late = threading.Condition()
        self.late_held = 0  # requests a "late" fault holds right now (their handler has not run yet)
        self.late_landed = 0  # "late" handlers that have run (their effect is in the state)
        # called after every request's handler, before its answer is sent (the persisted sandbox saves there)
        self.after_request: Callable[[], object] | None = None
        self._denied: set[tuple[str, str]] = set()

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k not in self._RUN_FIELDS}

    def __setstate__(self, saved: dict[str, object]) -> None:
        self.__dict__.update(saved)
        if "pipelines" not in saved:  # a world saved before the emulators had Azure Pipelines: none there
            self._init_pipelines()
        self._init_run()

    def _init_pipelines(self) -> None:
        self.projects: dict[str, str] = {}  # Azure DevOps project name -> id
        self.pipelines: dict[int, PipelineRecord] = {}
        self.next_run_id = 1  # run ids (build ids) are unique in the organization and only grow

    # -- clock ---------------------------------------------------------------------------------

    def time(self) -> float:
        """The emulators' clock (unix seconds): the wall clock plus ``clock_offset``."""
        return time.time() + self.clock_offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def advance_clock(self, delta: timedelta | float) -> None:
        """Move the emulators' clock forward (PATs and Entra tokens expire; clients' caches don't know)."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        with self.lock:
            self.clock_offset += seconds

    # -- identities ----------------------------------------------------------------------------

    def add_user(self, email: str, display_name: str, password: str | None = None) -> User:
        user = User(str(uuid.uuid4()), email, password or secrets.token_urlsafe(18), display_name)
        with self.lock:
            self.users[email.lower()] = user
        return user

    def user(self, email: str) -> User | None:
        with self.lock:
            return self.users.get(email.lower())

    def user_by_oid(self, oid: str) -> User | None:
        with self.lock:
            return next((u for u in self.users.values() if u.oid == oid), None)

    @property
    def bot_credentials(self) -> tuple[str, str]:
        """(email, password) of the seeded bot account."""
        return self.bot_email, self.bot_password

    # -- Entra tokens --------------------------------------------------------------------------

    def add_token(self, token: IssuedToken) -> None:
        with self.lock:
            self.tokens[token.value] = token

    def lookup_token(self, value: str) -> IssuedToken | None:
        """The issued token (active or not), or None if the emulator never issued it."""
        with self.lock:
            return self.tokens.get(value)

    def add_refresh_token(self, oid: str, client_id: str) -> str:
        value = "rt." + secrets.token_urlsafe(48)
        with self.lock:
            self.refresh_tokens[value] = RefreshToken(value, oid, client_id)
        return value

    def expire_user_tokens(self, *, refresh_tokens: bool = False) -> int:
        """Invalidate every user access token (and refresh token if asked); returns how many.

        Clients' caches still hold them, so the next Azure DevOps call with one gets the sign-in page.
        """
        n = 0
        with self.lock:
            for tok in self.tokens.values():
                if tok.kind == "user" and not tok.revoked:
                    tok.revoked = True
                    n += 1
            if refresh_tokens:
                for rt in self.refresh_tokens.values():
                    rt.revoked = True
        return n

    def approve_device_code(self, user_code: str, email: str | None = None) -> bool:
        """Approve a pending device-code sign-in as ``email`` (default: the bot). False if no such code."""
        user = self.user(email or self.bot_email)
        with self.lock:
            for flow in self.device_flows.values():
                if flow.user_code.upper() == user_code.strip().upper() and not flow.redeemed and user:
                    flow.approved_by = user.oid
                    return True
        return False

    # -- PATs ----------------------------------------------------------------------------------

    def add_pat(
        self,
        display_name: str,
        scope: str,
        valid_to: datetime,
        *,
        org: str | None = None,
        valid_from: datetime | None = None,
        all_orgs: bool = False,
        owner_oid: str | None = None,
        revoked: bool = False,
        value: str | None = None,
    ) -> PatRecord:
        org = org or self.org
        rec = PatRecord(
            authorization_id=str(uuid.uuid4()),
            display_name=display_name,
            scope=scope,
            valid_from=valid_from or self.now(),
            valid_to=valid_to,
            target_accounts=None if all_orgs else [self.org_id],
            owner_oid=owner_oid or self.bot_oid,
            org=org,
            value=value or pat_value(),
            revoked=revoked,
        )
        with self.lock:
            self._pats.setdefault(org, []).append(rec)
        return copy.copy(rec)

    def pats(self, org: str | None = None) -> list[PatRecord]:
        """Copies of every PAT record in ``org`` (default: the sandbox org), in creation order."""
        with self.lock:
            return [copy.deepcopy(p) for p in self._pats.get(org or self.org, [])]

    def pats_named(self, display_name: str, org: str | None = None) -> list[PatRecord]:
        return [p for p in self.pats(org) if p.display_name == display_name]

    def pat(self, authorization_id: str) -> PatRecord | None:
        with self.lock:
            for records in self._pats.values():
                for p in records:
                    if p.authorization_id.lower() == authorization_id.lower():
                        return copy.deepcopy(p)
        return None

    def use_pat(
        self, value: str, org: str
    ) -> tuple[Literal["ok", "unknown", "revoked", "expired", "wrong-org"], PatRecord | None]:
        """Authenticate a request made with a PAT (Basic auth); counts ``uses`` / ``failed_uses``."""
        now = self.now()
        with self.lock:
            for records in self._pats.values():
                for p in records:
                    if secrets.compare_digest(p.value.encode(), value.encode()):
                        if p.revoked:
                            p.failed_uses += 1
                            return "revoked", copy.deepcopy(p)
                        if p.expired(now):
                            p.failed_uses += 1
                            return "expired", copy.deepcopy(p)
                        if p.org.lower() != org.lower() and p.target_accounts is not None:
                            p.failed_uses += 1
                            return "wrong-org", copy.deepcopy(p)
                        p.uses += 1
                        return "ok", copy.deepcopy(p)
        return "unknown", None

    def _pat_records(self, org: str) -> list[PatRecord]:
        """The live records (callers hold the lock)."""
        return self._pats.setdefault(org, [])

    def has_org(self, org: str) -> bool:
        with self.lock:
            return org.lower() in (o.lower() for o in self._pats)

    def canonical_org(self, org: str) -> str:
        with self.lock:
            return next((o for o in self._pats if o.lower() == org.lower()), org)

    def policy(self, org: str | None = None) -> OrgPolicies:
        """The live policy object of ``org``; set its attributes to change the policies."""
        with self.lock:
            return self.policies.setdefault(org or self.org, OrgPolicies())

    def set_policy(
        self,
        org: str | None = None,
        *,
        max_lifespan_days: int | Literal["keep"] | None = "keep",
        block_full_scope: bool | None = None,
        block_global: bool | None = None,
        disable_pat_creation: bool | None = None,
    ) -> OrgPolicies:
        pol = self.policy(org)
        with self.lock:
            if max_lifespan_days != "keep":
                pol.max_lifespan_days = max_lifespan_days
            if block_full_scope is not None:
                pol.block_full_scope = block_full_scope
            if block_global is not None:
                pol.block_global = block_global
            if disable_pat_creation is not None:
                pol.disable_pat_creation = disable_pat_creation
        return pol

    # -- Azure Pipelines -----------------------------------------------------------------------

    def add_project(self, name: str) -> str:
        """An Azure DevOps project of the sandbox organization; returns its id."""
        with self.lock:
            return self.projects.setdefault(name, str(uuid.uuid4()))

    def project_of(self, name_or_id: str) -> tuple[str, str] | None:
        """(name, id) of a project named or identified by ``name_or_id`` (case-insensitive), else None."""
        with self.lock:
            for name, pid in self.projects.items():
                if name_or_id.lower() in (name.lower(), pid.lower()):
                    return name, pid
        return None

    def add_pipeline(self, name: str, project: str, pipeline_id: int, **settings: object) -> PipelineRecord:
        """A pipeline (``settings``: PipelineRecord fields); returns a copy."""
        self.add_project(project)
        rec = PipelineRecord(pipeline_id, name, project, **settings)  # type: ignore[arg-type]
        with self.lock:
            if pipeline_id in self.pipelines:
                raise ValueError(f"pipeline {pipeline_id} exists")
            self.pipelines[pipeline_id] = rec
            return copy.deepcopy(rec)

    def _pipeline(self, which: int | str) -> PipelineRecord:
        """The live record (callers hold the lock) by id or name."""
        if isinstance(which, int):
            rec = self.pipelines.get(which)
        else:
            rec = next((p for p in self.pipelines.values() if p.name.lower() == which.lower()), None)
        if rec is None:
            raise KeyError(f"no pipeline {which!r}")
        return rec

    def pipeline(self, which: int | str) -> PipelineRecord | None:
        """A copy of the pipeline with this id or name, or None."""
        with self.lock:
            try:
                return copy.deepcopy(self._pipeline(which))
            except KeyError:
                return None

    def pipeline_runs(self, which: int | str) -> list[PipelineRun]:
        """Copies of the pipeline's runs, oldest first."""
        with self.lock:
            return [copy.deepcopy(r) for r in self._pipeline(which).runs]

    def set_pipeline(
        self,
        which: int | str,
        *,
        fail_with: str | Literal["keep"] | None = "keep",
        needs: Iterable[str] | None = None,
        run_duration_s: float | None = None,
    ) -> PipelineRecord:
        """Change how the pipeline's next runs behave (``fail_with=None`` mends it); returns a copy."""
        with self.lock:
            rec = self._pipeline(which)
            if fail_with != "keep":
                rec.fail_with = fail_with
            if needs is not None:
                rec.needs = tuple(needs)
            if run_duration_s is not None:
                if run_duration_s < 0:
                    raise ValueError("a run cannot take less than no time")
                rec.run_duration_s = float(run_duration_s)
            return copy.deepcopy(rec)

    def queue_run(
        self,
        which: int | str,
        check: Callable[[PipelineRecord], tuple[Literal["succeeded", "failed", "canceled"], str, str | None]],
        *,
        ref_name: str | None = None,
        variables: dict[str, str] | None = None,
        queued_by: str | None = None,
        created: float | None = None,
    ) -> PipelineRun:
        """Queue a run: ``check(pipeline)`` is the consumer's check, run now -> (result, reason, checked PAT id);
        returns a copy of the run."""
        now = self.time() if created is None else created
        with self.lock:
            rec = self._pipeline(which)
            day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
            rev = 1 + sum(1 for r in rec.runs if r.name.startswith(day + "."))
            result, reason, checked = check(rec)
            run = PipelineRun(
                id=self.next_run_id,
                pipeline_id=rec.id,
                name=f"{day}.{rev}",
                created=now,
                duration_s=rec.run_duration_s,
                result=result,
                reason=reason,
                ref_name=ref_name or rec.default_branch,
                version=secrets.token_hex(20),
                variables=dict(variables or {}),
                queued_by=queued_by,
                checked_token=checked,
            )
            self.next_run_id += 1
            rec.runs.append(run)
            return copy.deepcopy(run)

    # -- Key Vault -----------------------------------------------------------------------------

    def add_vault(self, name: str) -> None:
        with self.lock:
            self._vaults.setdefault(name, {})
            self._vault_order.setdefault(name, 0)

    @property
    def vault_names(self) -> list[str]:
        with self.lock:
            return list(self._vaults)

    def set_secret(
        self,
        vault: str,
        name: str,
        value: str,
        *,
        tags: dict[str, str] | None = None,
        content_type: str | None = None,
        enabled: bool = True,
        not_before: int | None = None,
        expires: int | None = None,
    ) -> SecretVersion:
        """Add a new version (like SetSecret) and return a copy of it."""
        now = int(self.time())
        with self.lock:
            secrets_of_vault = self._vaults[vault]
            versions = next((v for k, v in secrets_of_vault.items() if k.lower() == name.lower()), None)
            if versions is None:
                versions = secrets_of_vault.setdefault(name, [])
            self._vault_order[vault] += 1
            ver = SecretVersion(
                name=versions[0].name if versions else name,
                version=uuid.uuid4().hex,
                value=value,
                tags=dict(tags) if tags is not None else None,
                content_type=content_type,
                enabled=enabled,
                not_before=not_before,
                expires=expires,
                created=now,
                updated=now,
                order=self._vault_order[vault],
            )
            versions.append(ver)
            return copy.deepcopy(ver)

    def _versions(self, vault: str, name: str) -> list[SecretVersion] | None:
        """The live version list (callers hold the lock); names are case-insensitive like Key Vault's."""
        secrets_of_vault = self._vaults.get(vault, {})
        return next((v for k, v in secrets_of_vault.items() if k.lower() == name.lower()), None)

    def secret_versions(self, vault: str, name: str) -> list[SecretVersion]:
        """Copies of every version of a secret, oldest first (empty if there is no such secret)."""
        with self.lock:
            return [copy.deepcopy(v) for v in self._versions(vault, name) or []]

    def secret_names(self, vault: str) -> list[str]:
        with self.lock:
            return list(self._vaults.get(vault, {}))

    def latest_secret(self, vault: str, name: str) -> SecretVersion | None:
        versions = self.secret_versions(vault, name)
        return versions[-1] if versions else None

    def deny(self, vault: str, operation: str) -> None:
        """Make a Key Vault permission ("get", "list" or "set") answer 403 Forbidden for everyone.

        "get" covers GetSecret; "list" GetSecrets and GetSecretVersions; "set" SetSecret and UpdateSecret.
        """
        if operation not in VAULT_PERMISSIONS:
            raise ValueError(f"unknown Key Vault permission {operation!r}; use one of {sorted(VAULT_PERMISSIONS)}")
        with self.lock:
            if vault not in self._vaults:
                raise ValueError(f"no vault {vault!r}")
            self._denied.add((vault, operation))

    def allow(self, vault: str, operation: str | None = None) -> None:
        """Undo ``deny`` (one permission, or all of them when ``operation`` is None)."""
        with self.lock:
            self._denied = {(v, op) for v, op in self._denied if not (v == vault and operation in (None, op))}

    def denied(self, vault: str, operation: str) -> bool:
        with self.lock:
            return (vault, operation) in self._denied

    # -- faults --------------------------------------------------------------------------------

    def inject_fault(
        self, operation: str, kind: str, times: int = 1, *, service: str = "*", hold: float | None = None
    ) -> None:
        """Make the next ``times`` requests of ``operation`` fail with ``kind``.

        Emulator-specific faults (handled inside the handler, after authentication):
        ``pats.create``: "500-after-create" (created, then 500), "reset-after-create" (created, then the
        connection is reset with no response), "500-before-create" (nothing created, 500), "503".
        Other operations (pats.list/get/revoke/update, devops.connectionData/pools, keyvault.get/set/list/update):
        "503" or "500".

        Network faults (any of ``NET_FAULT_KINDS``, or ``LATE_FAULT``, applied by every emulator's ``Service``
        around the handler): ``operation`` names a call as its service sees it: ``"METHOD /route/{template}"``
        (the route template, e.g. ``"PUT /secrets/{name}"``), a Buildkite GraphQL operation name
        (``"ClusterAgentTokenCreate"``) or one of the names above (``"pats.list"``, ``"keyvault.set"``);
        ``service`` (a glob on the service name, e.g. ``"vssps"``, ``"vault:*"``, ``"buildkite-graphql"``) narrows
        it. Faults of one call queue up in order. ``hold`` (seconds, default ``fault_hold``): how long a
        "timeout" holds its answer after the handler ran, or a "late" fault the request before it runs; pick
        more than the client's read timeout (keyturn: ``app.net.http_timeout()``, 30 s or KEYTURN_HTTP_TIMEOUT).
        """
        if hold is not None and kind not in ("timeout", LATE_FAULT):
            raise ValueError(f"only a 'timeout' or {LATE_FAULT!r} fault holds; {kind!r} takes no hold")
        if operation in FAULT_KINDS and kind in FAULT_KINDS[operation]:
            with self.lock:
                self._faults.setdefault(operation, []).extend([kind] * times)
            return
        if kind in NET_FAULT_KINDS or kind == LATE_FAULT:
            if not operation.strip():
                raise ValueError("name the call: 'METHOD /route', a GraphQL operation name or an operation above")
            with self.lock:
                self._net_faults.extend([(service, operation, kind, hold)] * times)
            return
        kinds = [*NET_FAULT_KINDS, LATE_FAULT]
        if operation in FAULT_KINDS:
            raise ValueError(f"{operation} has no fault {kind!r}; use one of {sorted(FAULT_KINDS[operation])} or {kinds}")
        raise ValueError(f"unknown fault {kind!r} for {operation!r}; network faults are {kinds}")

    def take_fault(self, operation: str) -> str | None:
        """Consume the next injected emulator-specific fault of ``operation`` (None if there is none)."""
        with self.lock:
            queue = self._faults.get(operation)
            return queue.pop(0) if queue else None

    def take_net_fault(self, service: str, calls: Iterable[str]) -> str | None:
        """Consume the first queued network fault for ``service`` and any of the request's call names."""
        taken = self.take_net_fault_hold(service, calls)
        return taken[0] if taken else None

    def take_net_fault_hold(self, service: str, calls: Iterable[str]) -> tuple[str, float] | None:
        """Like ``take_net_fault``, with the fault's hold in seconds: (kind, hold)."""
        names = set(calls)
        with self.lock:
            for i, (pattern, operation, kind, hold) in enumerate(self._net_faults):
                if operation in names and fnmatchcase(service, pattern):
                    del self._net_faults[i]
                    return kind, self.fault_hold if hold is None else hold
        return None

    def pending_faults(self) -> list[tuple[str, str, str]]:
        """Injected faults no request has consumed yet: (service glob, operation, kind)."""
        with self.lock:
            legacy = [("*", op, kind) for op, kinds in self._faults.items() for kind in kinds]
            return legacy + [(pattern, operation, kind) for pattern, operation, kind, _ in self._net_faults]

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()
            self._net_faults.clear()

    # -- delays --------------------------------------------------------------------------------

    def set_delay(self, seconds: float, *, service: str = "*", call: str = "*") -> None:
        """Slow requests down by ``seconds`` each, before their handler runs; they still answer normally.

        ``service`` is a glob on the service name (``"vault:*"``, ``"vssps"``, ``"buildkite-graphql"``), ``call`` a
        glob on the names faults use (``"PUT /secrets/{name}"``, ``"POST /{org}/_apis/tokens/pats"``,
        ``"ClusterAgentTokenCreate"``; ``"*"``: every call). Setting the same pair again replaces it; 0 removes
        it. When several match a request, the longest applies. The delay holds no lock: other requests go on.
        """
        if seconds < 0:
            raise ValueError("a delay cannot be negative")
        with self.lock:
            if seconds:
                self._delays[(service, call)] = float(seconds)
            else:
                self._delays.pop((service, call), None)

    def clear_delays(self) -> None:
        with self.lock:
            self._delays.clear()
            self._delay_hits.clear()

    def delays(self) -> dict[tuple[str, str], float]:
        """The delays set: {(service glob, call glob): seconds}."""
        with self.lock:
            return dict(self._delays)

    def delay_for(self, service: str, calls: Iterable[str]) -> float:
        """The delay of a request of ``service`` known by ``calls`` (0.0 when none applies); counts the hit."""
        names = list(calls)
        with self.lock:
            matching = [
                (seconds, key)
                for key, seconds in self._delays.items()
                if fnmatchcase(service, key[0]) and any(n == key[1] or fnmatchcase(n, key[1]) for n in names)
            ]
            if not matching:
                return 0.0
            seconds, key = max(matching)
            self._delay_hits[key] += 1
            return seconds

    def delay_hits(self) -> dict[tuple[str, str], int]:
        """How many requests each delay slowed: {(service glob, call glob): n}; a delay never hit named no call."""
        with self.lock:
            return {key: self._delay_hits[key] for key in self._delays}

    # -- late effects --------------------------------------------------------------------------

    def note_late_held(self) -> None:
        with self._late:
            self.late_held += 1
            self._late.notify_all()

    def note_late_landed(self) -> None:
        with self._late:
            self.late_held -= 1
            self.late_landed += 1
            self._late.notify_all()

    def wait_late_held(self, count: int = 1, timeout: float = 30.0) -> bool:
        """Wait until ``count`` requests are held by "late" faults right now (False on timeout)."""
        with self._late:
            return self._late.wait_for(lambda: self.late_held >= count, timeout)

    def wait_late_landed(self, count: int = 1, timeout: float = 60.0) -> bool:
        """Wait until ``count`` "late" handlers in all have run (False on timeout)."""
        with self._late:
            return self._late.wait_for(lambda: self.late_landed >= count, timeout)

    # -- emulator health -----------------------------------------------------------------------

    def record_internal_error(self, message: str) -> None:
        with self.lock:
            self.internal_errors.append(message)


def seed(state: SandboxState, vaults: tuple[str, str] = ("rpe-prod", "cftptl-intsvc")) -> None:
    """The default world: the bot's PATs (one expiring within a week), its sign-in secrets, the daily-checks token."""
    now = state.now()
    day = timedelta(days=1)
    state.add_pat("keda-agent-pools", "vso.agentpools_manage", now + 5 * day, valid_from=now - 85 * day)
    daily = state.add_pat(
        "daily-checks",
        "vso.agentpools vso.build vso.pipelineresources_use vso.release",
        now + 40 * day,
        valid_from=now - 50 * day,
    )
    state.add_pat("laptop-git", "vso.code_write", now + 120 * day, valid_from=now - 60 * day)
    state.add_pat("old-release-bot", "vso.release_execute", now + 20 * day, valid_from=now - 70 * day, revoked=True)
    state.add_pat("ci-artifacts", "vso.packaging", now - 10 * day, valid_from=now - 100 * day)
    alice = state.add_user("alice@sandbox.example", "Alice (another user)")
    state.add_pat("alice-laptop", "app_token", now + 30 * day, valid_from=now - 5 * day, owner_oid=alice.oid)

    rpe, intsvc = vaults
    state.add_vault(rpe)
    state.add_vault(intsvc)
    state.set_secret(rpe, "rpe-azure-devops-email", state.bot_email, content_type="text/plain")
    state.set_secret(rpe, "rpe-azure-devops-password", state.bot_password, content_type="text/plain")
    state.set_secret(intsvc, "azure-devops-token", daily.value, tags={"created-by": "hand"})

    # The daily-checks pipeline (project platops, pipeline 12): each run reads the latest azure-devops-token from
    # cftptl-intsvc and calls the agent pools API with it. keyturn queues it with the PAT of the pipelines' runner
    # identity (Build: Read & execute), kept in rpe-prod; that user is not the bot, so the bot's PAT list is unchanged.
    runner = state.add_user("pipelines-runner@sandbox.example", "pipelines runner (queues the check pipelines)")
    runner_pat = state.add_pat(  # not named daily-checks-*: that prefix is the rotated token's
        "pipelines-runner", "vso.build_execute", now + 60 * day, valid_from=now - 30 * day, owner_oid=runner.oid
    )
    state.set_secret(rpe, "daily-checks-runner-pat", runner_pat.value, content_type="text/plain")
    state.add_pipeline("daily-checks", "platops", 12, vault=intsvc, secret="azure-devops-token")  # noqa: S106 (a name)
    state.next_run_id = 40  # two scheduled runs before this world began, both fine with the hand-made token
    for days_ago in (2, 1):
        state.queue_run(
            12,
            lambda p: ("succeeded", "agent pools read with the token in Key Vault (scheduled run)", daily.authorization_id),
            created=state.time() - days_ago * 86400,
        )
