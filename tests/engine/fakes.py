"""In-memory fakes for the engine: a platform, a provider over it, stores and consumers, and crash injection.

The world (``FakeWorld``: the platform's tokens, the stores' versions, the consumers' values) outlives keyturn: a
``SimulatedCrash`` raised at a crash point ends one "process" (its Engine is dropped, its target locks closed as the
kernel would close them), and a new Engine over the same journal folder is the next process. Nothing here imports
pytest, so a child interpreter can use it too (the headless-imports test runs a whole rotation on it).

How the fakes get in, without a production change:

* providers: ``providers.registry.make_provider`` (the one factory ``Engine.provider`` calls) returns a
  ``FakeProvider`` over the world's ``FakePlatform``, so a provider the engine rebuilds (``forget_secrets``) is fake too;
* follow-ups: ``app.followups.build_steps`` (what ``Engine.steps`` calls) returns the world's fake steps for the
  world's targets (matched by token name, so a target rebuilt from the journal's saved settings gets them too);
* crash points: ``app.journal.CRASH_HOOK`` is the world's ``Hooks``.

Each name is replaced in every loaded keyturn module that bound the original (``from x import name``), and put back by
the undo function ``install`` returns.
"""

from __future__ import annotations

import itertools
import os
import secrets
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.config import Config, Target, load_config
from app.engine import Engine, Rotation, is_target_token
from app.errors import AmbiguousResultError, FollowUpError, ProviderError
from app.followups import FollowUpStep, StepContext, StepDefaults, StepResult, unique_step_id
from app.journal import RotationJournal, crash_point
from app.secret import SecretValue, fingerprint
from providers.base import NO_ROTATION, MintedToken, MintRequest, Provider, RotationContext, TokenInfo


class SimulatedCrash(BaseException):
    """The process died at this crash point. A BaseException, so no ``except Exception`` of keyturn's catches it."""


# -- the platform ---------------------------------------------------------------------------------------------------


@dataclass
class FakeToken:
    id: str
    name: str
    value: str
    active: bool = True
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()

    def info(self) -> TokenInfo:
        return TokenInfo(self.id, self.name, self.expires_at, self.scopes, active=self.active)


class FakePlatform:
    """The platform's side of every token: what was minted, what is live. Faults are consumed one per call.

    ``mint_faults``: "refuse" (refused outright, nothing made), "ambiguous-created" (made, then the answer was lost),
    "ambiguous-lost" (nothing made, the outcome unknown to the client), "slow" (``slow_s`` then success).
    ``revoke_faults``: "noop" (answers without effect), "refuse" (ProviderError, nothing changed);
    ``ignore_revoke``: token id -> how many of its revocations answer without effect.
    ``during_mint``: called inside every mint before the token exists (another process acts meanwhile).
    ``on_revoke``: called after every revocation with the token (the world's "never zero live tokens" monitor)."""

    def __init__(self) -> None:
        self.tokens: dict[str, FakeToken] = {}
        self.mint_faults: list[str] = []
        self.revoke_faults: list[str] = []
        self.ignore_revoke: Counter[str] = Counter()
        self.slow_s = 0.01
        self.during_mint: Callable[[], object] | None = None
        self.on_revoke: Callable[[FakeToken], None] | None = None
        self.calls: Counter[str] = Counter()
        self._ids = itertools.count(1)

    def create(self, name: str, *, expires_at: datetime | None = None, scopes: tuple[str, ...] = ()) -> FakeToken:
        token = FakeToken(f"fake-{next(self._ids):04d}", name, "fk_" + secrets.token_urlsafe(24), True, expires_at, scopes)
        self.tokens[token.id] = token
        return token

    def live(self, token_name: str) -> list[FakeToken]:
        return [t for t in self.tokens.values() if t.active and is_target_token(token_name, t.name)]

    def values(self) -> list[str]:
        return [t.value for t in self.tokens.values()]


class FakeProvider(Provider):
    """One process's client of the platform: it keeps nothing of a rotation between calls (the contract)."""

    platform = "fake"
    token_kind = "pat"

    def __init__(self, world: FakePlatform) -> None:
        self.world = world
        self.signed_in = False
        self.closed = False

    def sign_in(self) -> None:
        self.world.calls["sign_in"] += 1
        self.signed_in = True

    def list_tokens(self, ctx: RotationContext = NO_ROTATION, *, include_inactive: bool = False) -> list[TokenInfo]:
        self.world.calls["list_tokens"] += 1
        return [t.info() for t in self.world.tokens.values() if t.active or include_inactive]

    def get_token(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> TokenInfo | None:
        token = self.world.tokens.get(token_id)
        return token.info() if token else None

    def mint(self, request: MintRequest, ctx: RotationContext = NO_ROTATION) -> MintedToken:
        assert self.signed_in, "minted before signing in"
        self.world.calls["mint"] += 1
        fault = self.world.mint_faults.pop(0) if self.world.mint_faults else None
        if self.world.during_mint is not None:
            self.world.during_mint()
        if fault == "slow":
            import time

            time.sleep(self.world.slow_s)
        if fault == "refuse":
            raise ProviderError("the fake platform refused to create the token: 503", hint="try again later")
        if fault == "ambiguous-lost":
            raise AmbiguousResultError("creating the token timed out; it may or may not exist")
        token = self.world.create(request.display_name, expires_at=request.expires_at, scopes=request.scopes)
        if fault == "ambiguous-created":
            raise AmbiguousResultError("the connection reset after the create request; it may or may not exist")
        return MintedToken(token.info(), SecretValue(token.value))

    def verify(self, token: MintedToken, ctx: RotationContext = NO_ROTATION) -> str:
        self.world.calls["verify"] += 1
        live = self.world.tokens.get(token.info.id)
        if live is None or not live.active or live.value != token.value.reveal():
            raise ProviderError(f"the new token {token.info.id} was refused (401)")
        return f"GET /fake/whoami -> 200 ({live.name})"

    def revoke(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> None:
        self.world.calls["revoke"] += 1
        fault = self.world.revoke_faults.pop(0) if self.world.revoke_faults else None
        if self.world.ignore_revoke[token_id] > 0:
            self.world.ignore_revoke[token_id] -= 1
            fault = "noop"
        if fault == "refuse":
            raise ProviderError(f"the fake platform refused to revoke {token_id}: 503")
        token = self.world.tokens.get(token_id)
        if token is None or fault == "noop":
            return
        token.active = False
        if self.world.on_revoke is not None:
            self.world.on_revoke(token)

    def close(self) -> None:
        self.closed = True


# -- stores and consumers ------------------------------------------------------------------------------------------


@dataclass
class Version:
    value: str
    rotation: str | None = None  # the rotation and token that wrote it (a vault's tags)
    token_id: str | None = None
    enabled: bool = True
    state: str = "pending"  # pending | active | aborted | restored | outside


class FakeStore:
    """A place that keeps the value, like a vault: versions; consumers read the newest one, if it is enabled.

    ``fail_writes``: that many writes are refused (nothing written). ``late_writes``: that many writes time out on the
    client and are held (``held``); they land when ``land_late`` is called, after keyturn gave up on them.
    ``unreachable``: preflight fails (nothing may be minted)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.versions: list[Version] = []
        self.fail_writes = 0
        self.late_writes = 0
        self.unreachable = False
        self.held: list[Version] = []
        self.writes = 0

    @property
    def current(self) -> str | None:
        return self.versions[-1].value if self.versions and self.versions[-1].enabled else None

    def history(self) -> list[str]:
        return [v.value for v in self.versions]

    def put(self, version: Version) -> int:
        self.versions.append(version)
        return len(self.versions) - 1

    def set_outside(self, value: str) -> None:
        """Someone (or a write keyturn does not know of) puts a value here."""
        self.put(Version(value, state="outside"))

    def land_late(self) -> int:
        """The held writes land now (the client gave up on them long ago)."""
        landed = len(self.held)
        for v in self.held:
            self.put(v)
        self.held.clear()
        return landed


class FakeStoreStep(StepDefaults):
    """A store follow-up over a FakeStore: tagged versions, read back, undone by restoring the previous value."""

    kind = "fake-store"
    is_store = True
    needs_value = True
    manual = False
    reads_back = True

    def __init__(self, step_id: str, store: FakeStore) -> None:
        self.id = step_id
        self.store = store
        self.title = f"fake store {store.name}"

    def describe(self) -> str:
        return f"add a version to fake store {self.store.name}"

    def preflight(self, config: Config) -> None:
        if self.store.unreachable:
            raise FollowUpError(f"{self.title}: cannot be reached", hint="nothing was minted")

    def _ours(self, ctx: StepContext) -> int | None:
        for i in range(len(self.store.versions) - 1, -1, -1):
            v = self.store.versions[i]
            if v.rotation == ctx.rotation_id and v.token_id == ctx.token.id:
                return i
        return None

    def _result(self, i: int) -> StepResult:
        return StepResult(f"fake store {self.store.name}: version {i}", {"store": self.store.name, "version": i})

    def find_done(self, ctx: StepContext) -> StepResult | None:
        i = self._ours(ctx)
        return self._result(i) if i is not None and self.store.versions[i].enabled else None

    def run(self, ctx: StepContext) -> StepResult:
        assert ctx.value is not None
        self.store.writes += 1
        version = Version(ctx.value.reveal(), ctx.rotation_id, ctx.token.id)
        if self.store.fail_writes:
            self.store.fail_writes -= 1
            raise FollowUpError(f"{self.title}: the write was refused (503)")
        if self.store.late_writes:
            self.store.late_writes -= 1
            self.store.held.append(version)
            crash_point(f"fake-store:{self.store.name}:held")  # the write is in flight, the client waits
            raise FollowUpError(f"{self.title}: the write timed out (it may still land)")
        i = self.store.put(version)
        crash_point(f"fake-store:{self.store.name}:written")  # written, not yet journaled
        return self._result(i)

    def recover_value(self, ctx: StepContext, fp: str) -> SecretValue | None:
        for v in reversed(self.store.versions):
            if v.rotation == ctx.rotation_id and v.token_id == ctx.token.id and v.enabled and fingerprint(v.value) == fp:
                return SecretValue(v.value)
        return None

    def previous_value(self, ctx: StepContext, detail: dict[str, Any]) -> SecretValue | None:
        ours = detail.get("version")
        if not isinstance(ours, int):
            return None
        earlier = [v for v in self.store.versions[:ours] if v.enabled and v.state != "pending"]
        return SecretValue(earlier[-1].value) if earlier else None

    def current_fingerprint(self, ctx: StepContext, detail: dict[str, Any]) -> str | None:
        current = self.store.current
        return fingerprint(current) if current is not None else None

    def on_verified(self, ctx: StepContext, detail: dict[str, Any]) -> None:
        i = detail.get("version")
        if isinstance(i, int) and i < len(self.store.versions):
            self.store.versions[i].state = "active"

    def undo(self, ctx: StepContext, detail: dict[str, Any]) -> str:
        """Consumers read the newest version: disable this rotation's, and make the previous value the newest again."""
        mine = [v for v in self.store.versions if v.rotation == ctx.rotation_id and v.token_id == ctx.token.id]
        for v in mine:
            v.enabled, v.state = False, "aborted"
        earlier = [v for v in self.store.versions if v.enabled and v.state != "pending"]
        if not earlier:
            return f"{self.title}: disabled {len(mine)} version(s) (there was no earlier value to restore)"
        self.store.put(Version(earlier[-1].value, state="restored"))
        return f"{self.title}: restored the previous value"


class FakeConsumer:
    """A consumer that is given the value (a CI variable, a deployment): what it reads now."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.value: str | None = None
        self.history: list[str] = []
        self.fail_writes = 0

    def set(self, value: str) -> None:
        self.value = value
        self.history.append(value)


class FakeConsumerStep(StepDefaults):
    """A propagation follow-up: gives the new value to a FakeConsumer, after verification; it reads back."""

    kind = "fake-consumer"
    is_store = False
    needs_value = True
    manual = False
    reads_back = True

    def __init__(self, step_id: str, consumer: FakeConsumer) -> None:
        self.id = step_id
        self.consumer = consumer
        self.title = f"fake consumer {consumer.name}"

    def describe(self) -> str:
        return f"give the new value to fake consumer {self.consumer.name}"

    def _fp(self, ctx: StepContext) -> str | None:
        return ctx.value.fingerprint if ctx.value is not None else ctx.options.get("fingerprint")

    def find_done(self, ctx: StepContext) -> StepResult | None:
        if self.consumer.value is not None and fingerprint(self.consumer.value) == self._fp(ctx):
            return StepResult(f"fake consumer {self.consumer.name}: updated", {"consumer": self.consumer.name})
        return None

    def run(self, ctx: StepContext) -> StepResult:
        assert ctx.value is not None
        if self.consumer.fail_writes:
            self.consumer.fail_writes -= 1
            raise FollowUpError(f"{self.title}: refused the update (503)")
        self.consumer.set(ctx.value.reveal())
        crash_point(f"fake-consumer:{self.consumer.name}:written")
        return StepResult(f"fake consumer {self.consumer.name}: updated", {"consumer": self.consumer.name})

    def current_fingerprint(self, ctx: StepContext, detail: dict[str, Any]) -> str | None:
        return fingerprint(self.consumer.value) if self.consumer.value is not None else None


# -- crash points --------------------------------------------------------------------------------------------------


@dataclass
class _Rule:
    point: str  # a crash point, or "*" for every one
    occurrence: int | None  # the n-th time this process reaches it; None: every time
    action: Callable[[str], object] | None  # None: crash there


class Hooks:
    """``app.journal.CRASH_HOOK``: records every crash point reached (``trace``), and does what a test asked there.

    Counts are per process (``new_process`` starts again); an action runs with the hook switched off, so what it does
    (another engine acting meanwhile) is neither traced nor hooked."""

    def __init__(self) -> None:
        self.trace: list[str] = []
        self.rules: list[_Rule] = []
        self.counts: Counter[str] = Counter()
        self.crashed: list[str] = []
        self._busy = False

    def new_process(self) -> None:
        self.rules.clear()
        self.counts.clear()

    @property
    def is_off(self) -> bool:
        return self._busy

    @contextmanager
    def off(self) -> Iterator[None]:
        """What runs here (another engine, called from inside the first one) is neither traced nor hooked."""
        busy, self._busy = self._busy, True
        try:
            yield
        finally:
            self._busy = busy

    def crash_at(self, point: str, occurrence: int = 1) -> None:
        self.rules.append(_Rule(point, occurrence, None))

    def at(self, point: str, action: Callable[[str], object], occurrence: int | None = 1) -> None:
        self.rules.append(_Rule(point, occurrence, action))

    def __call__(self, where: str) -> None:
        if self._busy:
            return
        self.trace.append(where)
        self.counts[where] += 1
        n = self.counts[where]
        for rule in list(self.rules):
            if rule.point not in (where, "*") or (rule.occurrence is not None and rule.occurrence != n):
                continue
            if rule.action is None:
                self.crashed.append(f"{where}#{n}")
                raise SimulatedCrash(f"{where}#{n}")
            self._busy = True
            try:
                rule.action(where)
            finally:
                self._busy = False


def journal_points(trace: list[str]) -> list[tuple[str, int]]:
    """(point, occurrence) for each crash point in a trace, in order."""
    seen: Counter[str] = Counter()
    out = []
    for p in trace:
        seen[p] += 1
        out.append((p, seen[p]))
    return out


# -- the world -----------------------------------------------------------------------------------------------------


@dataclass
class FakeTarget:
    name: str
    stores: list[FakeStore]
    consumers: list[FakeConsumer]
    old: list[FakeToken] = field(default_factory=list)  # its live tokens when the world was made


class FakeWorld:
    """Everything outside keyturn (platform, stores, consumers), a config file and a journal folder.

    ``engine()`` is a new keyturn process; ``kill(engine)`` is its death (SIGKILL: its files close, nothing else runs).
    ``violations`` collects what the platform saw that must never happen (checked by ``check_done`` and by the
    fixture's teardown)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.platform = FakePlatform()
        self.platform.on_revoke = self._revoked
        self.targets: dict[str, FakeTarget] = {}
        self.hooks = Hooks()
        self.violations: list[str] = []
        self.events: list[tuple[str, str]] = []
        self.providers: list[FakeProvider] = []
        self.revoke_after: dict[str, str] = {}

    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    @property
    def config_path(self) -> Path:
        return self.root / "keyturn.toml"

    @property
    def journal(self) -> RotationJournal:
        return RotationJournal(self.journal_dir)

    def add_target(self, name: str, *, stores: tuple[str, ...] = ("vault",), consumers: tuple[str, ...] = (), old_tokens: int = 1, revoke_after: str = "0") -> FakeTarget:
        """A target whose token is named ``name``, with ``old_tokens`` live tokens that its stores and consumers hold."""
        now = datetime.now(UTC)
        old = [self.platform.create(name, expires_at=now + timedelta(days=60 + i), scopes=("vso.build",)) for i in range(old_tokens)]
        target = FakeTarget(name, [FakeStore(f"{name}/{s}") for s in stores], [FakeConsumer(f"{name}/{c}") for c in consumers], old)
        if old:
            for store in target.stores:
                store.put(Version(old[0].value, state="active"))
            for consumer in target.consumers:
                consumer.set(old[0].value)
        self.targets[name] = target
        self.revoke_after[name] = revoke_after
        self.write_config()
        return target

    def write_config(self, *, without: tuple[str, ...] = ()) -> None:
        lines = [
            "[settings]",
            f"journal_dir = {str(self.journal_dir)!r}",
            "",
            "[accounts.fake]",
            'platform = "azure-devops"',
            'organization = "fake-org"',
        ]
        for name in self.targets:
            if name in without:
                continue
            lines += ["", f"[targets.{name}]", 'account = "fake"', f"token_name = {name!r}", 'scopes = ["vso.build"]', f"revoke_after = {self.revoke_after[name]!r}"]
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(lines) + "\n")

    def config(self) -> Config:
        return load_config(self.config_path)

    # -- processes -------------------------------------------------------------------------------
    def engine(self) -> Engine:
        """A new keyturn process over the same config, journal folder and world."""
        self.hooks.new_process()
        return Engine(self.config(), on_event=lambda kind, text: self.events.append((kind, text)))

    @staticmethod
    def kill(engine: Engine) -> None:
        """The process died: the kernel closes its files, so its target locks go; nothing of keyturn's runs."""
        for lock in engine._locks.values():
            fd = lock._fd
            if fd is not None:
                os.close(fd)
                lock._fd = None
        engine._locks.clear()

    def steps_for(self, target: Target) -> list[FollowUpStep] | None:
        fake = self.targets.get(target.token_name)
        if fake is None:
            return None
        taken: set[str] = set()
        steps: list[FollowUpStep] = [FakeStoreStep(unique_step_id("fake-store", s.name, taken), s) for s in fake.stores]
        steps += [FakeConsumerStep(unique_step_id("fake-consumer", c.name, taken), c) for c in fake.consumers]
        return steps

    # -- invariants ------------------------------------------------------------------------------
    def _revoked(self, token: FakeToken) -> None:
        """Never zero live tokens, never a store left on a revoked one: checked at every revocation."""
        for target in self.targets.values():
            if not is_target_token(target.name, token.name):
                continue
            if target.old and not self.platform.live(target.name):
                self.violations.append(f"revoking {token.id} left {target.name} with no live token")
            for store in target.stores:
                if store.current == token.value:
                    self.violations.append(f"{token.id} was revoked while {store.name} still served it")

    def live(self, name: str) -> list[FakeToken]:
        return self.platform.live(name)

    def journal_text(self) -> str:
        if not self.journal_dir.is_dir():
            return ""
        return "".join(p.read_text(errors="replace") for p in sorted(self.journal_dir.iterdir()) if p.is_file())

    def check_no_value_in_journal(self) -> None:
        text = self.journal_text()
        for value in self.platform.values():
            assert value not in text, "a token's value reached the journal folder"

    def check_done(self, name: str, *, done: int | None = 1) -> FakeToken:
        """Invariants after a rotation of ``name`` ended: exactly one live token, held *now* by every store and
        consumer, the old tokens revoked, the journal ``done`` (its last line) and consistent, no value in it."""
        assert not self.violations, self.violations
        target = self.targets[name]
        live = self.live(name)
        assert len(live) == 1, f"{len(live)} live tokens of {name}: {[t.id for t in live]}"
        (token,) = live
        for store in target.stores:
            assert store.current == token.value, f"{store.name} does not serve the live token"
        for consumer in target.consumers:
            assert consumer.value == token.value, f"{consumer.name} does not have the live token"
        for old in target.old:
            assert not old.active, f"old token {old.id} is still live"
        records, damaged = self.journal.scan()
        assert [d.message for d in damaged if d.target in (name, None)] == []
        mine = [r for r in records if r.target == name]
        assert [r.rotation_id for r in mine if not r.finished] == [], "an unfinished rotation is left"
        finished = [r for r in mine if r.state == "done"]
        if done is not None:
            assert len(finished) == done, f"{len(finished)} done rotations of {name}"
        last = finished[-1]
        assert last.events[-1]["event"] == "done"
        assert last.new_token is not None and last.new_token["id"] == token.id, "the journal's token is not the live one"
        assert last.new_token["fingerprint"] == fingerprint(token.value)
        self.check_no_value_in_journal()
        return token

    def check_untouched(self, name: str) -> None:
        """Nothing changed for consumers: the old tokens live and served, nothing else of the target live."""
        assert not self.violations, self.violations
        target = self.targets[name]
        assert {t.id for t in self.live(name)} == {t.id for t in target.old}
        for store in target.stores:
            assert store.current == (target.old[0].value if target.old else None), f"{store.name} changed"
        self.check_no_value_in_journal()


# -- driving keyturn as its commands do -----------------------------------------------------------------------------


def rotate(engine: Engine, target: str, *, revoke_now: bool = False) -> Rotation:
    """`keyturn rotate TARGET --no-input`, headless: plan, begin, run to the end."""
    rotation = engine.begin(engine.plan(target))
    rotation.run_to_end(revoke_now=revoke_now)
    return rotation


def resume(engine: Engine) -> list[Rotation]:
    """`keyturn resume`: every unfinished rotation, each opened and run to the end (Engine.open(id).run_to_end())."""
    out = []
    for record in engine.journal.unfinished():
        rotation = engine.open(record.rotation_id)
        rotation.run_to_end()
        out.append(rotation)
    return out


def install(world: FakeWorld) -> Callable[[], None]:
    """Put the world's fakes in (see the module's docstring); returns what puts the originals back."""
    import app.followups
    import app.journal
    import providers.registry

    original_build = app.followups.build_steps
    original_make = providers.registry.make_provider

    def build_steps(config: Config, target: Target) -> list[FollowUpStep]:
        steps = world.steps_for(target)
        return steps if steps is not None else original_build(config, target)

    def make_provider(account_name: str, account: Any, **kwargs: Any) -> Provider:
        provider = FakeProvider(world.platform)
        world.providers.append(provider)
        return provider

    undo: list[tuple[Any, str, Any]] = []
    for module in list(sys.modules.values()):
        if module is None or not module.__name__.startswith(("app", "providers", "screens")):
            continue
        names = vars(module)
        for name, original, fake in (("build_steps", original_build, build_steps), ("make_provider", original_make, make_provider)):
            if names.get(name) is original:
                setattr(module, name, fake)
                undo.append((module, name, original))
    undo.append((app.journal, "CRASH_HOOK", app.journal.CRASH_HOOK))
    app.journal.CRASH_HOOK = world.hooks

    def restore() -> None:
        for module, name, original in reversed(undo):
            setattr(module, name, original)

    return restore


@contextmanager
def installed_world(root: Path) -> Iterator[FakeWorld]:
    """A fresh world in ``root`` with its fakes installed for the block."""
    world = FakeWorld(root)
    restore = install(world)
    try:
        yield world
    finally:
        restore()
