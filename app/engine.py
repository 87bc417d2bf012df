"""The rotation protocol.

    planned -> minted -> stored -> verified -> propagated -> old_retired -> done
                  \\-> aborted (compensation: the orphan is revoked)

Every transition is journaled before the next side effect, and every step reads state first,
so running it twice does no harm (AWS Secrets Manager's create/set/test/finish discipline).
The engine never branches on a platform's name; providers and follow-ups are looked up.
No Textual here: the CLI's headless paths and the wizard both drive this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from app.config import Config, Target
from app.errors import AmbiguousResultError, ConfigError, KeyturnError
from app.followups import FollowUpStep, StepContext, build_steps
from app.journal import STATES, RotationJournal, RotationRecord, utcnow
from app.locks import TargetLock
from app.plan import PlanRecord, StepRecord, TokenRecord
from app.secret import SecretValue
from app.secret_sources import PromptFn, SecretResolver
from providers.base import GateCheck, Interaction, MintedToken, MintRequest, Provider, RotationContext, TokenInfo


def journal_dir(config: Config) -> Path:
    if config.settings.journal_dir is not None:
        return config.resolve_path(config.settings.journal_dir)
    from platformdirs import user_state_path

    return user_state_path("keyturn") / "journal"


def display_name(token_name: str, rotation_id: str, when: datetime) -> str:
    """The new token's name: the target's token name, the date and the rotation, so reconciling can find it."""
    return f"{token_name}-{when:%Y%m%d}-{rotation_id[:8]}"


def is_target_token(token_name: str, name: str) -> bool:
    """A token this target owns: named exactly like the target's token, or minted by keyturn for it."""
    return name == token_name or re.fullmatch(re.escape(token_name) + r"-\d{8}-[0-9a-f]{8}", name) is not None


def nothing_minted(record: RotationRecord) -> bool:
    """True when the rotation provably made no token that may still live: it is in `planned` (never minted, or its
    lost token was revoked) and every mint attempt since was refused outright (`mint_failed`)."""
    if record.state != "planned" or record.new_token:
        return False
    resets = [i for i, e in enumerate(record.events) if e["event"] in ("planned", "compensated", "orphan_checked")]
    tail = [e["event"] for e in record.events[(resets[-1] if resets else 0):] if e["event"] in ("mint_attempt", "mint_failed")]
    return all(ev == "mint_failed" or (i + 1 < len(tail) and tail[i + 1] == "mint_failed") for i, ev in enumerate(tail))


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _token_dict(info: TokenInfo, fingerprint: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"id": info.id, "name": info.name, "expires_at": _iso(info.expires_at), "scopes": list(info.scopes)}
    if info.display_id:
        d["display_id"] = info.display_id  # what the screens show after a resume (older journals lack it)
    if fingerprint:
        d["fingerprint"] = fingerprint
    return d


def _token_info(d: dict[str, Any]) -> TokenInfo:
    exp = datetime.fromisoformat(d["expires_at"]) if d.get("expires_at") else None
    return TokenInfo(id=d["id"], name=d["name"], expires_at=exp, scopes=tuple(d.get("scopes", ())), display_id=d.get("display_id"))


@dataclass(frozen=True)
class MintOptions:
    """What the engineer may change in the wizard before minting (defaults come from the target)."""

    scopes: tuple[str, ...] | None = None
    token_name: str | None = None
    expires_at: datetime | None = None
    all_orgs: bool | None = None
    no_expiry: bool = False  # the engineer chose "never" (else a missing expires_at means the target's validity_days)
    cluster: str | None = None  # Buildkite cluster agent token: the cluster picked in the wizard (else target.cluster)


@dataclass
class RotationPlan:
    target_name: str
    account_name: str
    platform: str
    organization: str
    token_name: str
    display_name: str
    scopes: tuple[str, ...]
    scope_labels: tuple[str, ...]
    expires_at: datetime | None
    all_orgs: bool
    old_tokens: list[TokenInfo]
    steps: list[FollowUpStep]
    revoke_after: timedelta
    rotation_id: str = ""
    warnings: list[str] = field(default_factory=list)
    revoke_all_others: bool = False  # Jenkins, old uuid unknown: revokeAllExcept the new token (confirmed by the engineer)
    cluster: str | None = None  # Buildkite: the cluster picked in the wizard
    gates: list[str] = field(default_factory=list)  # what proves the consumers have the new token (the revoke waits for it)

    def lines(self) -> list[str]:
        """The plan, step by step: the dry run prints exactly this and the review screen shows it."""
        scope_text = ", ".join(label if label == sid else f"{label} ({sid})" for label, sid in zip(self.scope_labels, self.scopes, strict=True))
        where = "controller" if self.platform == "jenkins" else "organization"  # Jenkins' `organization` labels it
        org = "all accessible organizations" if self.all_orgs else f"{where} {self.organization}"
        if self.cluster:
            org += f", cluster {self.cluster}"
        expires = f"expires {self.expires_at:%Y-%m-%d}" if self.expires_at else "no expiry"
        scoped = f", scopes: {scope_text}" if self.scopes else ""
        out = [f"1. mint {self.platform} token {self.display_name!r} for {org}, {expires}{scoped}"]
        n = 2
        for s in self.steps:
            if s.is_store:
                out.append(f"{n}. store: {s.describe()}")
                n += 1
        out.append(f"{n}. verify: check the new token with the platform (a call it is allowed, or that it is listed)")
        n += 1
        for s in self.steps:
            if not s.is_store:
                what = "check" if s.manual else "note" if s.kind == "manual" else "follow-up"  # a manual step that is a reminder
                out.append(f"{n}. {what}: {s.describe()}")
                n += 1
        if self.revoke_all_others:
            out.append(f"{n}. retire: revoke EVERY other API token of the user (revokeAllExcept the new one), then prove the old one is dead")
        elif self.old_tokens:
            olds = ", ".join(f"{t.name!r} ({t.shown_id}, expires {t.expires_at:%Y-%m-%d})" if t.expires_at else f"{t.name!r} ({t.shown_id})" for t in self.old_tokens)
            when = "after the new token is verified and propagated" if not self.gates else f"once {'; '.join(self.gates)}"
            if self.revoke_after:
                when += f", and no sooner than {self.revoke_after} after propagation"
            out.append(f"{n}. retire: revoke {olds} {when}")
        else:
            out.append(f"{n}. retire: no earlier token of this target found; nothing to revoke")
        return out

    def to_record(self, target_config: dict[str, Any] | None = None) -> PlanRecord:
        """The plan as the journal keeps it (read back with ``PlanRecord.from_json``)."""
        return PlanRecord(
            account=self.account_name,
            platform=self.platform,
            display_name=self.display_name,
            token_name=self.token_name,
            scopes=tuple(self.scopes),
            expires_at=self.expires_at,
            all_orgs=self.all_orgs,
            old_tokens=tuple(TokenRecord.of(t) for t in self.old_tokens),
            steps=tuple(StepRecord(s.id, s.kind, s.title) for s in self.steps),
            revoke_after_s=int(self.revoke_after.total_seconds()),
            revoke_all_others=self.revoke_all_others,
            warnings=tuple(self.warnings),
            cluster=self.cluster,
            lines=tuple(self.lines()),
            target_config=target_config,
        )


@dataclass
class TargetStatus:
    target: str
    platform: str
    token_name: str
    token_id: str | None
    expires_at: datetime | None
    days_left: int | None
    state: str  # ok | expiring | expired | missing | unknown
    last_rotation: str | None
    unfinished: list[str]
    retire_due: list[str]
    error: str | None = None
    damaged: list[str] = field(default_factory=list)  # one line each: a rotation of this target whose journal cannot be read
    waiting_for: list[str] = field(default_factory=list)  # what the revoke of an unfinished rotation waits for (its gates)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "platform": self.platform,
            "token_name": self.token_name,
            "token_id": self.token_id,
            "expires_at": _iso(self.expires_at),
            "days_left": self.days_left,
            "state": self.state,
            "last_rotation": self.last_rotation,
            "unfinished_rotations": self.unfinished,
            "revoke_due": self.retire_due,
            "error": self.error,
            "damaged_rotations": self.damaged,
            "revoke_waits_for": self.waiting_for,
        }


EventFn = Callable[[str, str], None]


class Engine:
    """Owns every transition. The CLI and the wizard call it; they never write the journal."""

    def __init__(
        self,
        config: Config,
        *,
        interaction: Interaction | None = None,
        prompt: PromptFn | None = None,
        journal: RotationJournal | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_event: EventFn | None = None,
    ) -> None:
        self.config = config
        self.interaction = interaction or Interaction()
        self.resolver = SecretResolver(config, prompt=prompt)
        self.journal = journal or RotationJournal(journal_dir(config))
        self.clock = clock
        self.on_event = on_event
        self._providers: dict[str, Provider] = {}
        self._locks: dict[str, TargetLock] = {}

    # -- one writer per target ---------------------------------------------------------------------
    def lock(self, target_name: str, rotation_id: str | None = None) -> None:
        """Hold the target's OS lock (until the rotation ends or this engine closes); refuse if a live process has it."""
        lock = self._locks.get(target_name) or TargetLock(self.journal.directory, target_name)
        lock.acquire(rotation_id)
        self._locks[target_name] = lock

    def release(self, target_name: str) -> None:
        if lock := self._locks.pop(target_name, None):
            lock.release()

    def release_all(self) -> None:
        """The wizard went back to its start (no flow runs): every target is free for another process again; the
        journal, not this process, holds what an unfinished rotation needs."""
        for name in list(self._locks):
            self.release(name)

    def holder(self, target_name: str) -> str | None:
        """Who (another process) drives the target now, or None."""
        if target_name in self._locks:
            return None
        held = TargetLock(self.journal.directory, target_name).holder()
        return held.describe() if held else None

    def refuse_unfinished(self, target_name: str, *, close_empty: bool = False) -> None:
        """A new rotation of a target whose last one is unfinished would plan around tokens it may have half-made.
        One that provably made nothing (every mint attempt refused) does not block; ``close_empty`` ends it."""
        records, damaged = self.journal.scan()
        for d in damaged:
            if d.target == target_name:
                raise KeyturnError(f"target {target_name}: rotation {d.rotation_id[:8]} cannot be read ({d.reason})", hint=d.fix)
        for r in (r for r in records if not r.finished):
            if r.target == target_name and nothing_minted(r):
                if close_empty:
                    self.journal.append(r.rotation_id, "aborted", reason="nothing was minted; a new rotation of the target began", undone=[])
                continue
            if r.target == target_name:
                short = r.rotation_id[:8]
                raise KeyturnError(
                    f"target {target_name} has an unfinished rotation {short} (state {r.state}, started {r.started_at[:16].replace('T', ' ')} UTC)",
                    hint=f"`keyturn resume {short}` finishes it, or `keyturn abort {short}` undoes it",
                )

    # -- lookups -------------------------------------------------------------------------------
    def target(self, name: str) -> Target:
        if name not in self.config.targets:
            known = ", ".join(self.config.targets) or "none"
            raise ConfigError(f"no target {name!r} in {self.config.path}", hint=f"known targets: {known}")
        return self.config.targets[name]

    def provider(self, account_name: str, target_name: str | None = None, target: Target | None = None) -> Provider:
        """The provider serving a target (or an account, for platforms whose tokens are per account).

        Azure DevOps: one per account, so one sign-in serves every target. Buildkite: one per target
        (a cluster's tokens, the organization's agent tokens, or one API access token)."""
        from providers.registry import make_provider, provider_key

        if account_name not in self.config.accounts:
            raise ConfigError(f"account {account_name!r} is no longer in {self.config.path}", hint=f"define [accounts.{account_name}] again")
        account = self.config.accounts[account_name]
        if target is None and target_name:
            target = self.target(target_name)
        key = provider_key(account_name, account, target_name)
        if key not in self._providers:
            ca = self.config.resolve_path(self.config.settings.ca_bundle) if self.config.settings.ca_bundle else None
            self._providers[key] = make_provider(
                account_name,
                account,
                target_name=target_name,
                target=target,
                ca_bundle=ca,
                resolve_secret=self.resolver,
                interaction=self.interaction,
            )
        return self._providers[key]

    def steps(self, target_name: str, target: Target | None = None) -> list[FollowUpStep]:
        """The target's follow-ups, then the manual steps its provider adds (Buildkite: cycle the agents
        that cache the old token before it is revoked). Built the same way on resume, so ids are stable."""
        from app.followups import unique_step_id
        from app.followups.manual import ManualStep

        target = target or self.target(target_name)
        steps = build_steps(self.config, target)
        provider = self.provider(target.account, target_name, target)
        taken = {s.id for s in steps}
        for spec in provider.manual_follow_ups():
            steps.append(ManualStep(unique_step_id("manual", f"{provider.platform} {spec.name or spec.text}", taken), spec))
        from providers.registry import preset_reminders

        for spec in preset_reminders(self.config, target):  # e.g. keda: KEDA may keep the old credential until restarted
            steps.append(ManualStep(unique_step_id("manual", f"preset {target.preset} {spec.name}", taken), spec))
        return steps

    def emit(self, kind: str, text: str) -> None:
        if self.on_event:
            self.on_event(kind, text)

    def close(self) -> None:
        for p in self._providers.values():
            p.close()
        self._providers.clear()
        for name in list(self._locks):
            self.release(name)

    def forget_secrets(self, account_name: str) -> None:
        """A rotation may have written the value a secret reference reads (a Jenkins user's or the Buildkite API
        token kept in Key Vault): read every reference again, and rebuild the account's per-target providers."""
        self.resolver.forget()
        for key in [k for k in self._providers if k.startswith(f"{account_name}/")]:
            self._providers.pop(key).close()

    # -- planning --------------------------------------------------------------------------------
    def plan(self, target_name: str, options: MintOptions | None = None, *, sign_in: bool = True, lock: bool = True) -> RotationPlan:
        """Everything that will happen, checked before anything changes (refuses steps not built yet).

        A real plan (``lock``) holds the target's lock from here on, so no other process can rotate the target
        between what this plan read (the old tokens) and the rotation it begins."""
        from providers.registry import resolve_scopes, scope_label

        options = options or MintOptions()
        target = self.target(target_name)
        if lock:
            self.lock(target_name)
        self.refuse_unfinished(target_name)
        if lock and sign_in:
            self.heal(target_name)
        account = self.config.accounts[target.account]
        steps = self.steps(target_name)
        scopes = options.scopes or resolve_scopes(self.config, target_name, target)
        token_name = options.token_name or target.token_name
        now = self.clock()
        expires_at = options.expires_at or (
            now + timedelta(days=target.validity_days) if target.validity_days and not options.no_expiry else None
        )
        if expires_at is not None and expires_at <= now:
            raise KeyturnError(f"the expiry {expires_at:%Y-%m-%d} is in the past", hint="choose a future date")
        old: list[TokenInfo] = []
        planning = RotationContext(cluster=options.cluster)  # the wizard's pick, else the provider uses target.cluster
        if sign_in:
            provider = self.provider(target.account, target_name)
            self.emit("progress", f"signing in to {account.platform} as {target.account}")
            provider.sign_in()
            self.emit("progress", "listing the account's tokens")
            old = [t for t in provider.list_tokens(planning) if t.active and is_target_token(target.token_name, t.name)]
            # platforms that cannot list tokens (Jenkins) rely on the journal: what earlier rotations of this
            # target revoked is gone (whatever a stale config says), and what the last one minted is current
            history = [r for r in self.journal.all() if r.target == target_name]
            revoked_before = {tid for r in history for tid in r.revoked}
            old = [t for t in old if t.id not in revoked_before]
            last = self.journal.last_done(target_name)
            if last and last.new_token and last.new_token["id"] not in {t.id for t in old}:
                known = provider.get_token(last.new_token["id"], planning)
                if known is not None and known.active:
                    old.append(known)
            old.sort(key=lambda t: t.expires_at or datetime.max.replace(tzinfo=now.tzinfo))
        no_expiry = ""
        if sign_in:
            no_expiry = self.provider(target.account, target_name).no_expiry_notice()  # Jenkins before 2.548: no promise
            if no_expiry and expires_at is not None:
                expires_at = None
        if sign_in and old:
            if refused := self.provider(target.account, target_name).retire_blockers(old, planning):
                raise KeyturnError(
                    refused[0] + "; nothing was minted",
                    hint="ask an organization administrator to revoke it or to run the rotation, or move the agents to a cluster",
                )
        if sign_in:
            for step in steps:
                self.emit("progress", f"checking {step.title}")
                step.preflight(self.config)
        rotation_id = self.journal.new_rotation_id()
        plan = RotationPlan(
            target_name=target_name,
            account_name=target.account,
            platform=account.platform,
            organization=f"{account.organization}, user {account.user}" if account.user else account.organization,
            token_name=token_name,
            display_name=display_name(token_name, rotation_id, now),
            scopes=scopes,
            scope_labels=tuple(scope_label(account.platform, s) for s in scopes),
            expires_at=expires_at,
            all_orgs=target.all_orgs if options.all_orgs is None else options.all_orgs,
            old_tokens=old,
            steps=steps,
            revoke_after=target.revoke_delay,
            rotation_id=rotation_id,
            cluster=options.cluster,
        )
        if sign_in:
            provider_gate = self.provider(target.account, target_name).gate_plan()
            plan.gates = [g for g in [*(s.gate_plan() for s in steps if s.gates), provider_gate] if g]
        if no_expiry:
            plan.warnings.append(no_expiry)
        if sign_in and (text := self.provider(target.account, target_name).deprecation_notice()):
            plan.warnings.append(text)
        if plan.all_orgs:
            plan.warnings.append("all-organizations (global) PATs stop working on 2026-12-01; prefer one organization")
        if not any(s.is_store for s in steps):
            plan.warnings.append("no store follow-up: the new value lives only in this process until you store it")
        return plan

    def begin(self, plan: RotationPlan) -> Rotation:
        self.lock(plan.target_name, plan.rotation_id)
        self.refuse_unfinished(plan.target_name, close_empty=True)
        saved = self.target(plan.target_name).model_dump(mode="json", exclude_none=True)
        self.journal.append(plan.rotation_id, "planned", target=plan.target_name, plan=plan.to_record(saved).to_json())
        return Rotation(self, self.journal.load(plan.rotation_id), steps=plan.steps)

    def open(self, rotation_id: str) -> Rotation:
        record = self.journal.load(rotation_id)
        if not record.finished:
            self.lock(record.target, record.rotation_id)
            record = self.journal.load(record.rotation_id)  # what the last holder wrote before it let go
        if record.target not in self.config.targets:
            raise ConfigError(
                f"rotation {record.rotation_id[:8]}: target {record.target!r} is no longer in {self.config.path}",
                hint=f"`keyturn abort {record.rotation_id[:8]}` undoes it (revokes its new token, restores the stores)",
            )
        rotation = Rotation(self, record, steps=self.steps(record.target))
        rotation.check_steps_match()
        return rotation

    def heal(self, target_name: str) -> list[str]:
        """Aborted rotations of the target since its last `done`: put back a store a late write gave their revoked
        token to. The caller holds the target's lock."""
        records = [r for r in self.journal.all() if r.target == target_name]
        last_done = max((i for i, r in enumerate(records) if r.state == "done"), default=-1)
        said: list[str] = []
        for r in records[last_done + 1 :]:
            if r.state == "aborted" and r.new_token is not None and any(e["event"] in ("step_started", "step_done") for e in r.events):
                saved = PlanRecord.from_json(r.plan).target_config
                target = Target.model_validate(saved) if saved is not None else self.config.targets.get(r.target)
                if target is None:
                    continue
                try:
                    said += Rotation(self, r, steps=self.steps(r.target, target), target=target).heal_late_writes()
                except KeyturnError as exc:  # a store out of reach now: said, and looked at again next time
                    self.emit("warning", f"could not check the stores of aborted rotation {r.rotation_id[:8]} for a late write: {exc}")
        return said

    def abort_rotation(self, rotation_id: str) -> tuple[Rotation, list[str]]:
        """`keyturn abort`: revoke the rotation's new token, undo its stores, journal `aborted`. Works when the target
        was renamed or removed since (the plan journaled the target's settings)."""
        record = self.journal.load(rotation_id)
        if record.finished:
            raise KeyturnError(f"rotation {record.rotation_id[:8]} is already {record.state}; nothing to abort")
        self.lock(record.target, record.rotation_id)
        record = self.journal.load(record.rotation_id)
        short = record.rotation_id[:8]
        if record.finished:  # another process finished it while this one waited for nothing (the check above raced)
            raise KeyturnError(f"rotation {short} is already {record.state}; nothing to abort")
        if record.state == "old_retired" or any(e["event"] == "revoked" and e.get("role") in ("old", "all-others") for e in record.events):
            raise KeyturnError(
                f"rotation {short} already revoked the old token; aborting now would leave no live token",
                hint=f"`keyturn resume {short}` finishes it",
            )
        target = self.config.targets.get(record.target)
        planned = PlanRecord.from_json(record.plan)
        saved = planned.target_config
        if saved is not None:
            target = Target.model_validate(saved)  # the steps this rotation began with, whatever the config says now
        elif target is None or target.account != planned.account:
            raise ConfigError(
                f"rotation {short}: target {record.target!r} is no longer in {self.config.path} and its journal predates saved settings",
                hint=f"put [targets.{record.target}] back as it was, then `keyturn abort {short}`",
            )
        rotation = Rotation(self, record, steps=self.steps(record.target, target), target=target)
        rotation.check_steps_match(purpose="abort")
        return rotation, rotation.abort("aborted by `keyturn abort`")

    # -- the expiry radar ---------------------------------------------------------------------------
    def status(self) -> list[TargetStatus]:
        now = self.clock()
        listed: dict[str, list[TokenInfo] | KeyturnError] = {}
        records, damaged = self.journal.scan()
        out: list[TargetStatus] = []
        for name, target in self.config.targets.items():
            account = self.config.accounts[target.account]
            platform = account.platform
            from providers.registry import provider_key

            key = provider_key(target.account, account, name)
            if key not in listed:
                try:
                    provider = self.provider(target.account, name)
                    provider.sign_in()
                    listed[key] = provider.list_tokens()
                except KeyturnError as exc:
                    listed[key] = exc
            tokens = listed[key]
            mine = [r for r in records if r.target == name]
            done = [r for r in mine if r.state == "done"]
            unfinished = [r.rotation_id for r in mine if not r.finished]
            due = [
                r.rotation_id
                for r in mine
                if r.state == "propagated" and r.retire_at and datetime.fromisoformat(r.retire_at) <= now
            ]
            last = done[-1].updated_at if done else None
            if isinstance(tokens, KeyturnError):
                out.append(TargetStatus(name, platform, target.token_name, None, None, None, "unknown", last, unfinished, due, str(tokens)))
                continue
            current = [t for t in tokens if t.active and is_target_token(target.token_name, t.name)]
            if not current:
                # an expired token is not listed as active, but it is not missing either: say so, with its date
                expired = self._expired_tokens(target.account, name, target.token_name, {tid for r in mine for tid in r.revoked}, now)
                if expired:
                    latest = max(expired, key=lambda t: t.expires_at or now)
                    days = (latest.expires_at - now).days if latest.expires_at else None
                    out.append(TargetStatus(name, platform, target.token_name, latest.id, latest.expires_at, days, "expired", last, unfinished, due))
                else:
                    out.append(TargetStatus(name, platform, target.token_name, None, None, None, "missing", last, unfinished, due))
                continue
            # a platform that does not list expiry dates (Jenkins' security page) still told us when we minted it
            minted = {r.new_token["id"]: str(r.new_token["expires_at"]) for r in done if r.new_token and r.new_token.get("expires_at")}
            current = [
                replace(t, expires_at=datetime.fromisoformat(minted[t.id])) if t.expires_at is None and t.id in minted else t
                for t in current
            ]
            never = datetime.max.replace(tzinfo=now.tzinfo)
            best = max(current, key=lambda t: t.expires_at or never)
            days = None if best.expires_at is None else (best.expires_at - now).days
            state = "ok"
            if best.expires_at is not None and best.expires_at <= now:
                state = "expired"
            elif days is not None and days < self.config.settings.warn_days:
                state = "expiring"
            out.append(TargetStatus(name, platform, target.token_name, best.id, best.expires_at, days, state, last, unfinished, due))
        for row in out:
            row.damaged = [d.message for d in damaged if d.target == row.target]
            row.waiting_for = [w for r in records if r.target == row.target and not r.finished for w in waiting_for(r)]
        return out


    def _expired_tokens(self, account: str, target_name: str, token_name: str, revoked: set[str], now: datetime) -> list[TokenInfo]:
        try:
            listed = self.provider(account, target_name).list_tokens(include_inactive=True)
        except KeyturnError:
            return []
        return [
            t for t in listed
            if is_target_token(token_name, t.name) and t.expires_at is not None and t.expires_at <= now
            and t.id not in revoked and t.extra.get("status", "expired") == "expired"
        ]


def waiting_for(record: RotationRecord) -> list[str]:
    """What the revoke of a propagated rotation waited for when it was last checked (its journaled gates)."""
    if record.state != "propagated":
        return []
    said = [e for e in record.events if e["event"] in ("retire_waiting", "gate_overridden")]
    last = next((e for e in reversed(said) if e["event"] == "retire_waiting"), None)
    return [str(w) for w in last.get("waiting_for", [])] if last else []


class MovedOnError(KeyturnError):
    """Another process wrote this rotation's journal since this object read it: nothing more is done here."""


class Rotation:
    """One rotation, driven step by step (wizard) or to the end (headless). State lives in the journal."""

    def __init__(self, engine: Engine, record: RotationRecord, *, steps: list[FollowUpStep], target: Target | None = None) -> None:
        self.engine = engine
        self.record = record
        self.steps = steps
        self._target = target
        self._plan: PlanRecord | None = None
        self._plan_of: RotationRecord | None = None
        self._renamed: dict[str, str] = {}  # journaled positional step id -> stable id (an older keyturn's journal)
        self.value: SecretValue | None = None
        self.options: dict[str, Any] = {"ticked": {}}
        self.notes: list[str] = []
        self.outcome = ""  # what retiring the old tokens did (or when it will)
        self.gates: list[GateCheck] = []  # the consumer gates as last checked (the retire screen shows them)

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.record.rotation_id

    @property
    def state(self) -> str:
        return self.record.state

    @property
    def target(self) -> Target:
        return self._target or self.engine.target(self.record.target)

    @property
    def plan(self) -> PlanRecord:
        """The journaled plan, typed (read again whenever the record is)."""
        if self._plan is None or self._plan_of is not self.record:
            self._plan, self._plan_of = PlanRecord.from_json(self.record.plan), self.record
        return self._plan

    @property
    def provider(self) -> Provider:
        return self.engine.provider(self.plan.account, self.record.target, self._target)

    def context(self) -> RotationContext:
        """What the provider needs to know of this rotation, from the journal (providers keep no rotation state)."""
        token = self.new_token
        paste = self.engine.interaction.paste
        return RotationContext(
            rotation_id=self.id,
            display_name=self.plan.display_name,
            cluster=self.plan.cluster,
            minted=token,
            minted_fingerprint=self.record.new_token.get("fingerprint") if self.record.new_token else None,
            value=self.value,
            previous_values=self.previous_values,
            paste=(lambda url: paste(self.record.target, url)) if paste else None,
            stored_at=self._event_time("stored"),
            gate_baseline=dict(self._last_event("verified").get("gate_baseline") or {}),
            soak_s=self.plan.revoke_after_s,
        )

    def _last_event(self, name: str) -> dict[str, Any]:
        return next((e for e in reversed(self.record.events) if e["event"] == name), {})

    def _event_time(self, name: str) -> datetime | None:
        ts = self._last_event(name).get("ts")
        return datetime.fromisoformat(ts) if ts else None

    def check_steps_match(self, purpose: str = "resume") -> None:
        """Resume (or abort) only with the follow-ups the rotation began with (ids are stable across reordering)."""
        journaled = [s.id for s in self.plan.steps]
        if self.plan.positional_ids:  # an older keyturn's ids: positions; match by position, kind and title instead
            if [(s.kind, s.title) for s in self.plan.steps] == [(s.kind, s.title) for s in self.steps]:
                self._renamed = {old: new.id for old, new in zip(journaled, self.steps, strict=True)}
                self.record = self._reload()
                return
            journaled = ["?"]  # cannot be matched
        current = [s.id for s in self.steps]
        if sorted(journaled) != sorted(current):
            gone = [s.title for s in self.plan.steps if s.id not in current]
            new = [s.title for s in self.steps if s.id not in journaled]
            what = "; ".join(filter(None, [f"gone: {', '.join(gone)}" if gone else "", f"new: {', '.join(new)}" if new else ""]))
            hint = (
                f"put them back as they were to resume, or `keyturn abort {self.id[:8]}`" if purpose == "resume"
                else "put them back as they were, then abort again"
            )
            raise KeyturnError(
                f"rotation {self.id[:8]}: the follow-ups of {self.record.target} changed since it began ({what or 'reordered in an older format'})",
                hint=hint,
            )

    def _reload(self) -> RotationRecord:
        record = self.engine.journal.load(self.id)
        if self._renamed:
            record.steps_done = {self._renamed.get(k, k): v for k, v in record.steps_done.items()}
        return record

    @property
    def new_token(self) -> TokenInfo | None:
        return _token_info(self.record.new_token) if self.record.new_token else None

    def _write(self, event: str, **fields: Any) -> None:
        # one writer per target: a Rotation whose engine let go of the target takes it again, and stops if another
        # process drove the rotation on meanwhile
        self.engine.lock(self.record.target, self.id)
        on_disk = self.engine.journal.load(self.id)
        if len(on_disk.events) != len(self.record.events):
            self.record = self._reload()
            raise MovedOnError(
                f"rotation {self.id[:8]} moved on in another process (now {on_disk.state}); nothing more was done here",
                hint="`keyturn status` shows where it stands",
            )
        self.engine.journal.append(self.id, event, **fields)
        self.record = self._reload()
        if self.record.finished:
            # the stores now hold another value than the references read at sign-in: read them again next time
            self.engine.forget_secrets(self.plan.account)
            self.engine.release(self.record.target)

    def _at_least(self, state: str) -> bool:
        return self.record.state in STATES and STATES.index(self.record.state) >= STATES.index(state)

    def _ctx(self) -> StepContext:
        token = self.new_token
        assert token is not None
        opts = dict(
            self.options,
            fingerprint=self.record.new_token["fingerprint"] if self.record.new_token else None,
            date=self.record.started_at[:10].replace("-", ""),
        )
        return StepContext(self.engine.config, self.id, self.record.target, self.target, token, self.value, self.engine.interaction, opts)

    def ensure_held(self) -> None:
        """Invariant: every place that can say what it holds holds the live new token *now*. Checked before the old
        token is revoked and before `done`: a write that landed after keyturn gave up on it (a Key Vault version a
        timed-out call or a killed process still made, a store a resume wrote before compensating) is written over."""
        fp = self.record.new_token["fingerprint"] if self.record.new_token else None
        assert fp is not None
        for s in self.steps:
            if not s.reads_back or s.id not in self.record.steps_done:
                continue
            current = s.current_fingerprint(self._ctx(), self.record.steps_done[s.id])
            if current == fp:
                continue
            what = "no readable value" if current is None else "another value"
            if not s.is_store:  # a consumer changed behind keyturn's back (a Flux branch someone pushed to): a person decides
                raise KeyturnError(
                    f"{s.title} holds {what} now, not the new token; the old token stays alive",
                    hint=f"look at what changed there, put the new token back, then `keyturn resume {self.id[:8]}`",
                )
            self.engine.emit("warning", f"{s.title} holds {what} now, not the new token (a late or outside write); writing the new token again")
            if not self._ensure_value():
                raise KeyturnError(
                    f"{s.title} holds {what}, not the new token, and the new value is not available to write it again",
                    hint=f"put the new token there by hand, then `keyturn resume {self.id[:8]}`",
                )
            result = s.run(self._ctx())
            if self._at_least("verified"):
                s.on_verified(self._ctx(), result.detail)
            self._write("step_done", step=s.id, token_id=self.record.new_token["id"] if self.record.new_token else None,
                        detail={**result.detail, "summary": result.summary}, repaired=True)
            if s.current_fingerprint(self._ctx(), self.record.steps_done[s.id]) != fp:
                raise KeyturnError(f"{s.title} still does not hold the new token after writing it again", hint=f"look at it, then `keyturn resume {self.id[:8]}`")
            self.engine.emit("step", f"{s.title}: {result.summary} (written again)")

    def step_state(self, step: FollowUpStep) -> str:
        return "done" if step.id in self.record.steps_done else "pending"

    def stored_in(self) -> list[str]:
        return [self.record.steps_done[s.id].get("summary", s.title) for s in self.steps if s.is_store and s.id in self.record.steps_done]

    # -- the protocol ------------------------------------------------------------------------------
    def _mint_request(self) -> MintRequest:
        p = self.plan
        return MintRequest(display_name=p.display_name, scopes=p.scopes, expires_at=p.expires_at, all_orgs=p.all_orgs)

    def _reconcile(self) -> int:
        """Revoke any live token carrying this rotation's name that the journal does not know (value lost)."""
        name = self.plan.display_name
        self.engine.emit("progress", f"reconciling: looking for tokens named {name!r}")
        listed = self.provider.list_tokens(self.context())
        if not self.provider.lists_tokens():  # Jenkins without a readable security page
            raise KeyturnError(
                f"an interrupted attempt may have created token {name!r}, and keyturn cannot list "
                f"{self.plan.platform} tokens here to find it",
                hint=f"look for a token named {name!r} on the user's security page and revoke it if it is there, "
                f"then `keyturn resume {self.id[:8]} --orphan-checked`",
            )
        orphans = [t for t in listed if t.active and t.name == name]
        for t in orphans:
            self.provider.revoke(t.id, self.context())
            self._prove_revoked(t.id)
            self._write("revoked", token_id=t.id, role="orphan", reason="created by an interrupted attempt; its value was never seen")
            self.engine.emit("warning", f"revoked orphan token {t.shown_id} left by an interrupted attempt")
        return len(orphans)

    def mint(self) -> TokenInfo:
        if self.record.state == "aborted":
            raise KeyturnError(f"rotation {self.id} was aborted; start a new one")
        if self._at_least("minted") and self.new_token:
            return self.new_token
        self.provider.sign_in()
        attempts = [e for e in self.record.events if e["event"] == "mint_attempt"]
        last_reset = max((i for i, e in enumerate(self.record.events) if e["event"] in ("planned", "compensated", "orphan_checked")), default=0)
        if any(self.record.events.index(e) > last_reset for e in attempts):
            self._reconcile()  # an earlier attempt may have created a token we never saw
        tries = 0
        while True:
            tries += 1
            attempt = len([e for e in self.record.events if e["event"] == "mint_attempt"]) + 1
            self._write("mint_attempt", attempt=attempt)
            self.engine.emit("progress", f"minting {self.plan.display_name!r}")
            try:
                minted = self.provider.mint(self._mint_request(), self.context())
                break
            except AmbiguousResultError as exc:
                self._write("error", message=str(exc))
                self.engine.emit("warning", f"{exc}; reconciling before any retry")
                self._reconcile()
                if tries >= 2:
                    raise KeyturnError(f"minting failed twice with an unknown outcome: {exc}", hint="run `keyturn resume` later") from None
            except KeyturnError as exc:
                self._write("mint_failed", message=str(exc))  # refused outright: nothing was made
                raise
        self.value = minted.value
        self.notes.extend(minted.notes)
        self._write("minted", token=_token_dict(minted.info, minted.value.fingerprint), notes=list(minted.notes))
        said = set(self.plan.warnings)  # the plan already warned of these
        for n in minted.notes:
            if n not in said:
                self.engine.emit("warning", n)
        return minted.info

    @property
    def revoke_all_others(self) -> bool:
        """Every other token of the user dies at retire (Jenkins revokeAllExcept): asked for in the plan
        (--revoke-all-other-tokens) or confirmed later in the wizard."""
        return self.plan.revoke_all_others or any(
            e["event"] == "revoke_all_others_confirmed" for e in self.record.events
        )

    def confirm_revoke_all_others(self) -> None:
        """The engineer confirmed (after being told what else dies) that retire revokes every other token."""
        if not self.revoke_all_others:
            self._write("revoke_all_others_confirmed")

    def orphan_checked(self) -> None:
        """The engineer looked for (and revoked) a token an interrupted mint may have left: mint without reconciling."""
        if not self._at_least("minted"):
            self._write("orphan_checked")

    def previous_values(self) -> list[SecretValue]:
        """What the stores held before this rotation wrote to them (the old token, e.g. Key Vault's previous
        version): a provider that authenticates a revoke with the old value reads it here on resume."""
        if self.new_token is None:
            return []
        ctx = self._ctx()
        out: list[SecretValue] = []
        for s in self.steps:
            if s.is_store and s.id in self.record.steps_done:
                value = s.previous_value(ctx, self.record.steps_done[s.id])
                if value is not None:
                    out.append(value)
        return out

    def _ensure_value(self) -> bool:
        """Have the new value in memory, reading it back from a store if needed. False when it is lost."""
        if self.value is not None:
            return True
        fp = self.record.new_token["fingerprint"] if self.record.new_token else None
        if fp:
            ctx = self._ctx()
            for s in sorted(self.steps, key=lambda s: not s.is_store):  # stores first, then e.g. a Flux commit
                v = s.recover_value(ctx, fp)
                if v is not None:
                    self.value = v
                    self.engine.emit("progress", f"read the new value back from {s.title}")
                    return True
            # a value made by hand (the Buildkite API token) is still where the provider read it from
            assert self.new_token is not None
            if (v := self.provider.recover_value(self.new_token, fp, self.context())) is not None:
                self.value = v
                self.engine.emit("progress", "read the new value again from targets.*.new_token")
                return True
        return False

    def _compensate(self) -> None:
        """The new value is lost before it reached every place that needs it: revoke that token and mint again."""
        token = self.new_token
        assert token is not None
        self.engine.emit("warning", f"the value of new token {token.shown_id} was lost before it was stored; revoking it and minting again")
        self.provider.revoke(token.id, self.context())
        self._prove_revoked(token.id)
        self._write("revoked", token_id=token.id, role="lost", reason="value lost before it was stored")
        self._write("compensated", token_id=token.id)

    def started_steps(self) -> set[str]:
        """Store steps this token's write was sent to but not confirmed (it may have landed, now or later)."""
        token = self.record.new_token
        if token is None:
            return set()
        return {e["step"] for e in self.record.events if e["event"] == "step_started" and e.get("token_id") == token["id"]} - set(self.record.steps_done)

    def _undo_if_landed(self, step: FollowUpStep) -> str | None:
        """A store write that was given up on: if it landed (the store now holds this rotation's token), undo it."""
        ctx = self._ctx()
        if step.current_fingerprint(ctx, {}) != (self.record.new_token or {}).get("fingerprint"):
            return None
        return step.undo(ctx, {})

    def heal_late_writes(self) -> list[str]:
        """An aborted rotation whose store write was given up on may see it land afterwards, leaving the revoked
        token as what consumers read. Looked at again (under the target's lock) before the target's next rotation,
        by `resume`, until a later rotation of the target is done. Says what it put back."""
        said: list[str] = []
        if self.state != "aborted" or self.record.new_token is None:
            return said
        fp = self.record.new_token.get("fingerprint")
        ctx = self._ctx()
        for s in self.steps:
            touched = s.id in self.record.steps_done or s.id in {e["step"] for e in self.record.events if e["event"] == "step_started"}
            if not (s.is_store and s.reads_back and touched):
                continue
            if s.current_fingerprint(ctx, self.record.steps_done.get(s.id, {})) == fp:
                text = s.undo(ctx, self.record.steps_done.get(s.id, {}))
                self.engine.journal.append(self.id, "healed", step=s.id, said=text)
                self.engine.emit("warning", f"{s.title} held the revoked token of aborted rotation {self.id[:8]} (a write that landed late); {text}")
                said.append(text)
        return said

    def _prove_revoked(self, token_id: str) -> None:
        """A revocation may answer 200 without effect: a token given up on must really be dead before another is minted."""
        if not self.provider.lists_tokens():
            return
        if alive := next((t for t in self.provider.list_tokens(self.context()) if t.id == token_id and t.active), None):
            raise KeyturnError(
                f"token {alive.shown_id} is still active after revocation",
                hint=f"revoke it in the portal, then `keyturn resume {self.id[:8]}`",
            )

    def _needs_value(self) -> bool:
        if self.state in ("minted", "stored"):
            return True
        if self.state == "verified":
            return any(s.needs_value and s.id not in self.record.steps_done for s in self.steps if not s.is_store)
        return False

    def _run_step(self, step: FollowUpStep) -> None:
        if step.id in self.record.steps_done:
            return
        ctx = self._ctx()
        result = step.find_done(ctx)
        if result is None:
            if step.needs_value and self.value is None:
                raise KeyturnError(f"{step.title}: the new value is not available", hint="run `keyturn resume`")
            self.engine.emit("progress", f"{step.title}: running")
            if step.reads_back:  # a write that fails may still land later: abort and heal look at this place again
                self._write("step_started", step=step.id, token_id=ctx.token.id)
            result = step.run(ctx)
        else:
            self.engine.emit("progress", f"{step.title}: already done earlier")
        self._write("step_done", step=step.id, token_id=ctx.token.id, detail={**result.detail, "summary": result.summary})
        self.engine.emit("step", f"{step.title}: {result.summary}")

    def store(self) -> list[str]:
        if self._at_least("stored"):
            return self.stored_in()
        for s in self.steps:
            if s.is_store:
                self._run_step(s)
        self._write("stored")
        return self.stored_in()

    def verify(self) -> str:
        if self._at_least("verified"):
            return str(self.record.events[[e["event"] for e in self.record.events].index("verified")].get("detail", ""))
        token = self.new_token
        assert token is not None and self.value is not None
        self.engine.emit("progress", "verifying the new token")
        detail = self.provider.verify(MintedToken(token, self.value), self.context())
        ctx = self._ctx()
        for s in self.steps:
            if s.is_store and s.id in self.record.steps_done:
                s.on_verified(ctx, self.record.steps_done[s.id])
        baseline = self.provider.gate_baseline(self.context())  # what the consumer gates compare with later
        self._write("verified", detail=detail, gate_baseline=baseline)
        self.engine.emit("step", f"verified: {detail}")
        return detail

    def verified_detail(self) -> str:
        """What the verification called (from the journal), or "" before it."""
        done = [e for e in self.record.events if e["event"] == "verified"]
        return str(done[-1].get("detail", "")) if done else ""

    def run_step(self, step_id: str) -> None:
        """Run (or retry) one propagation step; the wizard's checklist calls this."""
        step = next(s for s in self.steps if s.id == step_id)
        self._run_step(step)

    def tick(self, step_id: str, ticked: bool = True) -> None:
        self.options["ticked"][step_id] = ticked

    def propagate(self) -> None:
        if self._at_least("propagated"):
            return
        for s in self.steps:
            if not s.is_store:
                self._run_step(s)
        self._write("propagated")

    # -- consumer gates: the old token dies only when every consumer demonstrably has the new one ----------------
    def overridden_gates(self) -> dict[str, dict[str, Any]]:
        """Gates the engineer overrode (the wizard's question, headless --revoke-now), from the journal."""
        return {str(e["gate"]): e for e in self.record.events if e["event"] == "gate_overridden"}

    def check_gates(self) -> list[GateCheck]:
        """Every consumer gate of this rotation, asked now: the follow-ups' (done ones) and the provider's. A gate that
        cannot be asked (a service out of reach) has not passed; one the engineer overrode counts as passed."""
        checks: list[GateCheck] = []
        if self.new_token is None:
            return checks
        ctx = self._ctx()
        for s in self.steps:
            if not (s.gates and s.id in self.record.steps_done):
                continue
            try:
                found = s.gate(ctx, self.record.steps_done[s.id])
            except KeyturnError as exc:
                found = GateCheck(s.id, s.title, False, waiting_for=f"{s.title}: could not be checked ({exc.message})")
            if found is not None:
                checks.append(found)
        try:
            checks += self.provider.consumer_gates(self.context())
        except KeyturnError as exc:
            checks.append(GateCheck(f"{self.plan.platform}-consumers", f"{self.plan.platform} consumers", False,
                                    waiting_for=f"{self.plan.platform} consumers: could not be checked ({exc.message})"))
        over = self.overridden_gates()
        return [
            replace(c, passed=True, progress=f"overridden ({over[c.gate].get('by', 'by hand')}) while waiting for: {c.waiting_for}")
            if not c.passed and c.gate in over else c
            for c in checks
        ]

    def _journal_waiting(self, texts: list[str]) -> None:
        if texts != self.waiting_for:
            self._write("retire_waiting", waiting_for=texts)

    def note_gates(self, checks: list[GateCheck]) -> None:
        """The wizard asked the gates: journal what the revoke waits for (status and the targets screen say it)."""
        if self.state == "propagated" and (texts := [c.waiting_for for c in checks if not c.passed]):
            self._journal_waiting(texts)

    def override_gate(self, gate: GateCheck, by: str) -> None:
        """The engineer chose to revoke without this gate (after being told what breaks): journaled, never silent."""
        if gate.gate not in self.overridden_gates():
            self._write("gate_overridden", gate=gate.gate, title=gate.title, waiting_for=gate.waiting_for, by=by)

    @property
    def waiting_for(self) -> list[str]:
        """What the revoke waited for when last checked (journaled), or []."""
        return waiting_for(self.record)

    def _olds(self) -> list[TokenInfo]:
        new = self.new_token
        return [t.info() for t in self.plan.old_tokens if not (new and t.id == new.id)]

    @property
    def revokes_something(self) -> bool:
        """The retire step kills a token (an old one, or every other token of the user): the gates matter."""
        return bool(self._olds()) or self.revoke_all_others

    def schedule_or_retire(self, *, now: bool = False, skip_soak: bool = False) -> str:
        """Revoke the old tokens once every consumer gate passes and the target's soak time (`revoke_after`) is over;
        else journal what the revoke waits for (the rotation stays `propagated`; `keyturn resume` checks again).
        ``now`` (headless --revoke-now): revoke at once, journaling and saying every gate it skipped. ``skip_soak``
        (the wizard's "revoke now"): no soak time, but every gate still has to pass (overrides are asked one by one)."""
        if self._at_least("old_retired"):
            return "old tokens already retired"
        if not self.revokes_something:
            return self.retire()  # nothing dies: no consumer can break
        if self.new_token is not None:
            self.ensure_held()  # a store or branch changed behind keyturn's back stops here, not as "still waiting"
        self.gates = self.check_gates()
        if passed := self._last_event("gates_passed"):
            # a provider's gate that passed before an interruption (journaled) stays passed: it may read counts another
            # run cannot reproduce (a Jenkins page read with the new token counts keyturn's own reads there); a
            # follow-up's gate (Flux, a pipeline run, a sync) is asked again, so a consumer gone back is never missed
            steps = {s.id for s in self.steps}
            proven = {str(g.get("gate")): g for g in passed.get("gates", []) if str(g.get("gate")) not in steps}
            self.gates = [replace(c, passed=True, progress=f"{proven[c.gate].get('progress') or 'passed'} (journaled)")
                          if not c.passed and c.gate in proven else c for c in self.gates]
        waiting = [c for c in self.gates if not c.passed]
        if now:
            for c in waiting:
                self.override_gate(c, by="--revoke-now")
                self.engine.emit("warning", f"--revoke-now: revoking although the revoke waited for: {c.waiting_for}")
            self._gates_passed([c for c in self.gates if c not in waiting])
            return self.retire(held=True)
        texts = [c.waiting_for for c in waiting]
        delay = timedelta(seconds=self.plan.revoke_after_s)
        if delay and not skip_soak:
            if self.record.retire_at is None:
                self._write("retire_scheduled", at=(self.engine.clock() + delay).isoformat())
            assert self.record.retire_at is not None
            due = datetime.fromisoformat(self.record.retire_at)
            if self.engine.clock() < due:
                if not texts:  # only the soak time: the journaled schedule says it all
                    self._journal_waiting([])  # what an earlier check waited for has passed
                    msg = f"revoking the old token is scheduled for {due:%Y-%m-%d %H:%M} UTC; `keyturn resume {self.id[:8]}` does it then"
                    self.engine.emit("step", msg)
                    return msg
                texts.append(f"the soak time (revoke_after) until {due:%Y-%m-%d %H:%M} UTC")
        if texts:
            self._journal_waiting(texts)
            msg = f"revoke waits for: {'; '.join(texts)}; `keyturn resume {self.id[:8]}` checks again and revokes once they pass"
            self.engine.emit("waiting", msg)
            return msg
        self._gates_passed(self.gates)
        return self.retire(held=True)

    def _gates_passed(self, gates: list[GateCheck]) -> None:
        """Journal the proof the revoke rests on (the audit trail, the summary, a resume after an interruption)."""
        if gates:
            self._write("gates_passed", gates=[{"gate": g.gate, "title": g.title, "progress": g.progress} for g in gates])
            for g in gates:
                self.engine.emit("step", f"{g.title}: {g.progress or 'passed'}")

    def retire(self, *, held: bool = False) -> str:
        """Revoke the old tokens (``held``: every store was just read back and holds the new token)."""
        olds = self._olds()
        new = self.new_token
        if new is not None and not held:
            self.ensure_held()  # never zero live tokens: the old one dies only when every store holds the new one
        ctx = self.context()  # Buildkite records ctx.revoke_reason with each revocation
        if olds and (notice := self.provider.retire_notice()):
            self.engine.emit("notice", notice)  # the CLI prints it; the wizard's retire screen already shows it
        for t in olds:
            if t.id not in self.record.revoked:
                self.engine.emit("progress", f"revoking old token {t.name!r} ({t.shown_id})")
                self.provider.revoke(t.id, ctx)
                self._write("revoked", token_id=t.id, role="old")
        if self.revoke_all_others and new is not None:
            if not self.provider.CAN_REVOKE_ALL_EXCEPT:
                raise KeyturnError(f"{self.plan.platform} has no 'revoke every other token'", hint="drop --revoke-all-other-tokens")
            if "all-others" not in {e.get("role") for e in self.record.events if e["event"] == "revoked"}:
                self.engine.emit("progress", f"revoking every API token of the user except {new.shown_id}")
                self.provider.revoke_all_except(new.id, ctx)
                self._write("revoked", token_id="*", role="all-others", kept=new.id)  # noqa: S106 (not a secret)
        if olds:  # proof: revoke calls may answer 200 without effect
            still = {t.id for t in self.provider.list_tokens(ctx)} & {t.id for t in olds}
            if still:
                shown = next(t.shown_id for t in olds if t.id == sorted(still)[0])
                raise KeyturnError(f"old token {shown} is still active after revocation", hint="check it in the portal, then `keyturn resume`")
        tidied = []
        if self.new_token:
            step_ctx = self._ctx()
            for s in self.steps:
                if s.is_store and s.id in self.record.steps_done:
                    said = s.on_retired(step_ctx, self.record.steps_done[s.id])
                    if said:
                        tidied.append(said)
                        self.engine.emit("step", said)
        self._write("old_retired", count=len(olds), tidied=tidied)
        msg = f"revoked {len(olds)} old token(s)" if olds else "no old token to revoke"
        self.engine.emit("step", msg)
        return msg

    def finish(self) -> None:
        if self.state != "done":
            if self.new_token is not None:
                self.ensure_held()
            self._record_in_config()
            self._write("done")

    def _record_in_config(self) -> None:
        """Settings the config file should now hold (Jenkins: the current token's uuid)."""
        path = self.engine.config.path
        if self.new_token is None or path is None:
            return
        updates = self.provider.config_updates(self.new_token)
        if not updates:
            return
        from app.config_edit import set_target_values

        try:
            changed = set_target_values(path, self.record.target, updates)
        except KeyturnError as exc:
            self.engine.emit("warning", f"{exc}; set it by hand")
            return
        for key, value in changed.items():
            self.engine.emit("step", f"{path.name}: targets.{self.record.target}.{key} = {value!r}")

    def abort(self, reason: str) -> list[str]:
        """Give up: undo the stores, revoke the new token (it would be an orphan), keep the old one. Says what it did."""
        if self.record.finished:
            raise KeyturnError(f"rotation {self.id[:8]} is already {self.state}; nothing to abort")
        undone: list[str] = []
        token = self.new_token
        if token:
            ctx = self._ctx()
            for s in self.steps:
                if s.is_store and s.id in self.record.steps_done:
                    undone.append(s.undo(ctx, self.record.steps_done[s.id]))
                elif s.is_store and s.id in self.started_steps():
                    undone.append(self._undo_if_landed(s) or f"{s.title}: a write keyturn gave up on may still land; `keyturn resume` looks again")
                elif not s.is_store and s.id in self.record.steps_done and s.needs_value:
                    undone.append(f"{s.title} was given the new token, which is now revoked: put the old one back by hand")
            if token.id not in self.record.revoked:
                self.provider.revoke(token.id, self.context())
                self._write("revoked", token_id=token.id, role="aborted")
            undone.insert(0, f"revoked the new token {token.shown_id}")
        elif any(e["event"] == "mint_attempt" for e in self.record.events):
            # an interrupted mint may have made a token nobody saw: find it by the rotation's name
            try:
                self.provider.sign_in()
                found = self._reconcile()
                undone.append(f"revoked {found} token(s) an interrupted mint had made" if found else "no token of this rotation was found on the platform")
            except KeyturnError as exc:
                undone.append(f"could not look for a token an interrupted mint may have made ({exc.message})")
        undone = [u for u in undone if u]
        self._write("aborted", reason=reason, undone=undone)
        return undone

    def abort_after_failure(self, exc: KeyturnError, during: str) -> NoReturn:
        """A failure before the new token is usable everywhere: roll back so nothing is half-done."""
        self._write("error", message=str(exc))
        try:
            undone = self.abort(f"{during} failed")
        except KeyturnError as undo_exc:
            raise KeyturnError(f"{exc}; rolling back also failed: {undo_exc}", hint=f"`keyturn resume {self.id[:8]}` retries") from None
        said = "; ".join(u if not u.startswith("revoked the new token") else "the new token was revoked" for u in undone)
        raise KeyturnError(f"{exc}; {said or 'nothing was changed'}; the old token is untouched") from None

    @property
    def needs_value(self) -> bool:
        """True when a remaining step needs the new value and this process does not hold it."""
        return self.value is None and (self.state == "planned" or self._needs_value())

    def recover(self) -> None:
        """Resume: mint if nothing was minted, else read the value back from a store (or our Flux
        commit), else revoke the token whose value is lost and mint again."""
        for _ in range(6):  # bounded: each compensation costs a mint
            if self.state == "planned":
                self.mint()
            if self._needs_value() and not self._ensure_value():
                self._compensate()
                continue
            return
        raise KeyturnError("the new value was lost repeatedly; giving up", hint="check the store follow-ups")

    # -- the one sequence ---------------------------------------------------------------------------
    # The protocol's order lives here and nowhere else: the CLI runs it to the end, the wizard's screens run it up to
    # the point each one renders (mint screen: verified; checklist: propagated; retire screen: done) and post what the
    # person chose (ticks, revoke now or later, revoke every other token) as arguments or journaled decisions.
    NEXT_STEP: ClassVar[dict[str, str]] = {
        "planned": "mint", "minted": "store", "stored": "verify", "verified": "propagate", "propagated": "retire", "old_retired": "finish",
    }

    def next_step(self) -> str | None:
        return None if self.record.finished else self.NEXT_STEP.get(self.state)

    def _advance(self, step: str, *, revoke_now: bool, rollback: bool, skip_soak: bool = False) -> None:
        """Run one step of the protocol. ``rollback``: a failed store or verification undoes the rotation (headless);
        the wizard keeps it and lets the person retry or abort."""
        self.recover()  # mint, or read a resumed rotation's value back (or replace a lost one) before what needs it
        if step == "mint" or self.next_step() != step:
            return  # recover() did this step (or replaced the token: the sequence starts over from its state)
        try:
            if step == "store":
                self.store()
            elif step == "verify":
                self.verify()
        except MovedOnError:
            raise  # never undo what another process did
        except KeyturnError as exc:
            if rollback:
                self.abort_after_failure(exc, "storing" if step == "store" else "verification")
            raise
        if step == "propagate":
            try:
                self.propagate()
            except KeyturnError as exc:
                if not rollback:
                    raise
                self._write("error", message=str(exc))
                held = "stored and verified" if self.stored_in() else "verified"
                raise KeyturnError(f"{exc}; the new token is {held}, the old one is untouched", hint=f"fix it, then `keyturn resume {self.id[:8]}`") from None
        elif step == "retire":
            self.outcome = self.schedule_or_retire(now=revoke_now, skip_soak=skip_soak)
        elif step == "finish":
            self.finish()

    def run_until(
        self,
        state: str,
        *,
        revoke_now: bool = False,
        skip_soak: bool = False,
        rollback: bool = False,
        before: Callable[[str], None] | None = None,
        after: Callable[[str], None] | None = None,
    ) -> str:
        """Run the sequence from where the journal stands until ``state`` (or a retirement scheduled for later).
        ``before``/``after`` see each step's name (the wizard shows progress and may stop between steps)."""
        if self.needs_value and self.state != "planned" and not self.record.finished:
            self.recover()  # a resumed rotation reads its value back (or replaces a lost one) before anything else
        while (step := self.next_step()) is not None and not self._at_least(state):
            if before:
                before(step)
            self._advance(step, revoke_now=revoke_now, rollback=rollback, skip_soak=skip_soak)
            if after:
                after(step)
            if step == "retire" and self.state == "propagated":
                break  # revoking waits for its time: `keyturn resume` picks it up
        if self.state == "done" and not self.outcome:
            self.outcome = "old tokens already retired"
        return self.outcome

    def run_to_end(self, *, revoke_now: bool = False) -> str:
        """Headless: from whatever state the journal says, to `done` (or a scheduled retirement)."""
        return self.run_until("done", revoke_now=revoke_now, rollback=True)
