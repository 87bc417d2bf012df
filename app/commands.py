"""keyturn's commands (click): options, help texts, and what each command does.

app.cli is the entry point: it starts the wizard itself for `keyturn [--config FILE]` and imports this module for
everything else, so the wizard's start pays for neither click nor this tree. Headless paths never import Textual.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from app.cli import _engine, _guard, _load, _run_wizard, _stderr, _wizard
from app.errors import KeyturnError


@click.group(invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help="The configuration file (else $KEYTURN_CONFIG, else the user config dir).")
@click.version_option(package_name="keyturn")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """keyturn: rotate CI/CD credentials and walk through every follow-up step."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    if ctx.invoked_subcommand is None:
        _guard(_wizard)(config_path)


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the sandbox's world and journal here (default: keyturn's state folder, kept between runs).")
@click.option("--fresh", is_flag=True, help="Start from a new sandbox world (the saved one and its journal are deleted).")
@_guard
def demo(directory: Path | None, fresh: bool) -> None:
    """The wizard on the built-in sandbox: nothing to configure, nothing real touched. The sandbox's world persists
    with its journal, so an unfinished demo rotation can be resumed honestly."""
    from app.sandbox.demo import run_demo

    run_demo(directory, fresh)


@cli.group()
def sandbox() -> None:
    """The sandbox: every remote party emulated on 127.0.0.1."""


@sandbox.command("up")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True, help="Where to write keyturn.toml, the CA and the journal.")
@click.option("--aws", is_flag=True, help="Also emulate AWS SSM (moto; needs the `sandbox-aws` extra).")
@click.option("--max-lifespan-days", type=click.IntRange(1, 365), help="Org policy: PATs are clamped to this lifespan.")
@click.option("--block-full-scope", is_flag=True, help="Org policy: full-access PATs are refused.")
@click.option("--block-global", is_flag=True, help="Org policy: all-organizations PATs are refused.")
@click.option("--jenkins-version", default="new", show_default=True, metavar="RELEASE",
              help="Emulated Jenkins release, e.g. 2.479.3, 2.504, 2.505, 2.539, 2.548 or 2.579: its security page markup "
              "(rows up to 2.504, cards from 2.505) and answers (token expiry from 2.548). 'old' = 2.479.3, 'new' = 2.548.")
@_guard
def sandbox_up(directory: Path, aws: bool, max_lifespan_days: int | None, block_full_scope: bool, block_global: bool, jenkins_version: str) -> None:
    """Start the sandbox services, write DIR/keyturn.toml, and run until stopped (Ctrl-C)."""
    from app.sandbox import Sandbox, serve

    def ready(sb: Sandbox) -> None:
        sb.state.set_policy(max_lifespan_days=max_lifespan_days, block_full_scope=block_full_scope, block_global=block_global)
        for name, url in sb.urls.items():
            click.echo(f"  {name:<22} {url}", err=True)
        click.echo(f"sandbox ready: keyturn --config {sb.config_path} status", err=True)

    from app.sandbox.jenkins import release

    serve(directory, ready=ready, aws=aws, jenkins_version=release(jenkins_version))


@sandbox.command("merge")
@click.argument("branch", required=False)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The sandbox's folder (default: the demo's, in keyturn's state folder).")
@click.option("--squash", "how", flag_value="squash", help="Squash-merge (one new commit on main).")
@click.option("--rebase", "how", flag_value="rebase", help="Rebase-merge (the branch's commits replayed on main).")
@_guard
def sandbox_merge(branch: str | None, directory: Path | None, how: str | None) -> None:
    """Be the reviewer: merge BRANCH (a pull request keyturn pushed to the sandbox's flux-config) into main, as a merge
    commit (default), a squash or a rebase, and delete the branch. Without BRANCH: the one open pull request."""
    from app.sandbox.demo import demo_directory
    from app.sandbox.flux import merge_branch, open_branches

    folder = directory if directory is not None else demo_directory()
    bare = folder / "flux-config.git"
    if not bare.is_dir():
        raise KeyturnError(f"{folder} holds no sandbox flux-config repository", hint="run `keyturn demo` first, or pass --dir of a sandbox")
    if branch is None:
        pending = open_branches(bare)
        if len(pending) != 1:
            raise KeyturnError(
                f"{len(pending)} open pull requests in the sandbox's flux-config" + (f" ({', '.join(pending)})" if pending else ""),
                hint="name the branch: keyturn sandbox merge BRANCH" if pending else "rotate a target with a Flux follow-up first",
            )
        branch = pending[0]
    sha = merge_branch(bare, branch, how or "merge")
    click.echo(f"merged {branch} into main of the sandbox's flux-config ({how or 'merge'} commit {sha[:10]}); `keyturn resume` now finds it merged")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.pass_context
@_guard
def status(ctx: click.Context, as_json: bool) -> None:
    """Expiry radar over every target. Exit 0 when all are fine; 1 when any is expiring, expired, missing, or
    could not be checked (a monitor must not read "could not look" as healthy)."""
    config = _load(ctx)
    engine = _engine(config, no_input=True)
    try:
        rows = engine.status()
    finally:
        engine.close()
    _, damaged = engine.journal.scan()
    unplaced = [d.message for d in damaged if d.target not in {r.target for r in rows}]
    bad = [r for r in rows if r.state in ("expiring", "expired", "missing", "unknown") or r.damaged]
    if as_json:
        click.echo(json.dumps({"targets": [r.to_json() for r in rows], "damaged_rotations": unplaced, "attention": len(bad) + len(unplaced)}, indent=2))
    else:
        click.echo(f"{'TARGET':<24} {'PLATFORM':<13} {'STATE':<9} {'DAYS':>5}  EXPIRES")
        for r in rows:
            days = "-" if r.days_left is None else f"{r.days_left}d"
            exp = r.expires_at.strftime("%Y-%m-%d") if r.expires_at else "-"
            extra = f"  unfinished: {', '.join(x[:8] for x in r.unfinished)}" if r.unfinished else ""
            extra += f"  revoke due: {', '.join(x[:8] for x in r.retire_due)}" if r.retire_due else ""
            extra += f"  revoke waits for: {'; '.join(r.waiting_for)}" if r.waiting_for else ""
            extra += f"  ({r.error})" if r.error else ""
            click.echo(f"{r.target:<24} {r.platform:<13} {r.state:<9} {days:>5}  {exp}{extra}")
            for d in r.damaged:
                click.echo(f"  damaged rotation: {d}")
        for d in unplaced:
            click.echo(f"damaged rotation (target unknown): {d}")
    sys.exit(1 if bad or unplaced else 0)


@cli.command()
@click.argument("target")
@click.option("--no-input", is_flag=True, help="Never prompt; fail where input would be needed.")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@click.option("--reveal", is_flag=True, help="Print the new value on stdout (and nothing else there).")
@click.option("--skip-manual", is_flag=True, help="Pass manual steps unticked (they are listed as still to do).")
@click.option("--revoke-now", is_flag=True, help="Revoke the old token now, without waiting for the consumer gates or the soak time (each skipped gate is said and journaled).")
@click.option("--revoke-all-other-tokens", "revoke_all_others", is_flag=True,
              help="Jenkins, when the old token's uuid is unknown: once the new token works, revoke EVERY other API token of the user.")
@click.pass_context
@_guard
def rotate(ctx: click.Context, target: str, no_input: bool, dry_run: bool, as_json: bool, reveal: bool, skip_manual: bool, revoke_now: bool, revoke_all_others: bool) -> None:
    """Rotate TARGET's token: mint, store, verify, propagate, retire the old one.

    In a terminal, without --no-input, this opens the wizard on TARGET; when stdin is not a terminal (a pipe, cron,
    CI) it refuses unless --no-input says a headless rotation without confirmation is meant."""
    if reveal and dry_run:
        raise KeyturnError("--reveal and --dry-run conflict: a dry run mints no value to reveal", hint="drop one of them")
    if not no_input and not dry_run and not sys.stdin.isatty():
        # nobody is there to see the plan and confirm it: a pipe or a cron job must say it means a headless rotation
        raise KeyturnError(
            f"rotate {target}: stdin is not a terminal, so keyturn cannot show the plan and ask before it mints and revokes",
            hint=f"run it in a terminal for the wizard, or pass --no-input to rotate without asking "
            f"(keyturn rotate {target} --dry-run shows the plan first)",
        )
    config = _load(ctx)
    if not no_input and not dry_run and not as_json and not reveal:
        _run_wizard(config, start_target=target)
        return
    engine = _engine(config, no_input=no_input)
    try:
        steps = engine.steps(target)
        if not dry_run and not reveal and not any(s.needs_value for s in steps):
            raise KeyturnError(
                f"target {target} has no follow-up that keeps the new value (no store, no consumer): it would be held by no one",
                hint="add a keyvault-secret-version, aws-ssm-parameter or keyring follow-up, or pass --reveal to print it",
            )
        manual = [s for s in steps if s.manual]
        if manual and not skip_manual and not dry_run:
            raise KeyturnError(
                f"target {target} has manual step {manual[0].title!r}, which only a person can tick",
                hint="rotate it in the wizard, or pass --skip-manual and do the step yourself",
            )
        plan = engine.plan(target, lock=not dry_run)
        if revoke_all_others:
            provider = engine.provider(plan.account_name, target)
            if not provider.CAN_REVOKE_ALL_EXCEPT:
                raise KeyturnError(f"--revoke-all-other-tokens: {plan.platform} cannot revoke every other token", hint="drop the option")
            plan.revoke_all_others = True
            user = provider.owner() or plan.account_name
            _stderr("warning", f"--revoke-all-other-tokens: once the new token works, EVERY other API token of {user} "
                               "dies with the old one (other jobs', scripts' and people's tokens too)")
        if dry_run:
            _emit_plan(plan, as_json)
            return
        for w in plan.warnings:  # the wizard's review screen shows them; headless runs say them before minting
            _stderr("warning", w)
        rotation = engine.begin(plan)
        rotation.options["skip_manual"] = skip_manual
        _stderr("progress", f"rotation {rotation.id} of {target}")
        outcome = rotation.run_to_end(revoke_now=revoke_now)
        _report(rotation, outcome, as_json=as_json, reveal=reveal)
    finally:
        engine.close()


def _emit_plan(plan: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"target": plan.target_name, "dry_run": True, "plan": plan.lines(), "warnings": plan.warnings}, indent=2))
        return
    click.echo(f"Plan for {plan.target_name} (dry run, nothing changed):")
    for line in plan.lines():
        click.echo(f"  {line}")
    for w in plan.warnings:
        click.echo(f"  warning: {w}")


def _retire_json(rotation: Any, outcome: str) -> dict[str, Any]:
    """What became of the old tokens: revoked, or what their revoke waits for (the gates, as last checked).

    The sentences (`outcome`, `waiting_for`) are for people; `status`, `revoked` and `waiting_for_gates` carry the
    same facts as ids for scripts."""
    revoked = [e for e in rotation.record.events if e["event"] == "revoked" and e.get("role") in ("old", "all-others")]
    waiting = rotation.waiting_for
    if revoked:
        status = "revoked"
    elif waiting:
        status = "waiting"
    elif rotation.state in ("old_retired", "done"):
        status = "nothing_to_revoke"
    else:
        status = "not_reached"  # the rotation stopped before its retire step
    return {
        "status": status,
        "outcome": outcome,
        "revoked": [str(e["token_id"]) for e in revoked],  # token ids; "*" is "every other token of the user"
        "waiting_for": waiting,
        "waiting_for_gates": [g.gate for g in rotation.gates if not g.passed],
        "gates": [g.to_json() for g in rotation.gates],
        "resume": f"keyturn resume {rotation.id[:8]}" if waiting else None,
    }


def _step_status(data: dict[str, Any] | None) -> str:
    if data is None:
        return "pending"
    if data.get("skipped"):
        return "skipped"  # --skip-manual: still to do by hand
    if data.get("reminder"):
        return "reminder"  # an optional manual item, said but not checked
    return "done"


def _steps_json(rotation: Any) -> list[dict[str, Any]]:
    """Every follow-up step of the rotation in order, by id and kind, with its status and the summary sentence."""
    done = rotation.record.steps_done
    return [
        {"id": s.id, "kind": s.kind, "title": s.title, "status": _step_status(done.get(s.id)),
         "summary": (done.get(s.id) or {}).get("summary")}
        for s in rotation.steps
    ]


def _report(rotation: Any, outcome: str, *, as_json: bool, reveal: bool) -> None:
    token = rotation.new_token
    result = {
        "rotation_id": rotation.id,
        "target": rotation.record.target,
        "state": rotation.state,
        "token": {"id": token.id, "display_id": token.shown_id, "name": token.name, "expires_at": token.expires_at.isoformat() if token.expires_at else None, "fingerprint": rotation.record.new_token.get("fingerprint")} if token else None,
        "old_tokens": [{"id": t.id, "display_id": t.shown_id, "name": t.name} for t in rotation.plan.old_tokens if not (token and t.id == token.id)],
        "stored_in": rotation.stored_in(),
        "steps": {k: v.get("summary") for k, v in rotation.record.steps_done.items()},  # id -> sentence (kept for scripts written against it)
        "step_results": _steps_json(rotation),
        "retire": _retire_json(rotation, outcome),
        "notes": rotation.notes,
    }
    out_json = json.dumps(result, indent=2)
    if reveal:
        if rotation.value is None:
            raise KeyturnError("--reveal: the new value is not in this process (resumed rotation)", hint="read it from the store")
        click.echo(rotation.value.reveal())
        if as_json:
            click.echo(out_json, err=True)
        return
    if as_json:
        click.echo(out_json)
    else:
        click.echo(f"rotation {rotation.id}: {rotation.state}; {outcome}")
        for s in result["stored_in"]:
            click.echo(f"  stored in {s}")


@cli.command()
@click.argument("rotation_id", required=False)
@click.option("--no-input", is_flag=True, help="Never prompt.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@click.option("--skip-manual", is_flag=True, help="Pass manual steps unticked.")
@click.option("--revoke-now", is_flag=True, help="Revoke a waiting old token now, without its consumer gates or soak time (each skipped gate is said and journaled).")
@click.option("--orphan-checked", is_flag=True,
              help="You looked for a token an interrupted mint may have left (and revoked it): mint again without looking.")
@click.pass_context
@_guard
def resume(ctx: click.Context, rotation_id: str | None, no_input: bool, as_json: bool, skip_manual: bool, revoke_now: bool, orphan_checked: bool) -> None:
    """Continue unfinished rotations from their last durable state (all of them, or ROTATION_ID); a rotation whose
    revoke waits for its consumers asks the gates again and revokes once they pass (safe to run from a schedule)."""
    config = _load(ctx)
    engine = _engine(config, no_input=no_input)
    try:
        records, damaged = engine.journal.scan()
        if rotation_id:
            ids = [rotation_id]
            damaged = []
        else:
            ids = [r.rotation_id for r in records if not r.finished]
            for d in damaged:
                _stderr("warning", f"skipping a rotation whose journal cannot be read: {d.message}")
        if not rotation_id:  # aborted rotations whose given-up store write landed afterwards
            for name in sorted({r.target for r in records if r.state == "aborted" and r.target in config.targets}):
                from app.locks import TargetBusyError

                try:
                    engine.lock(name)  # tried, not probed: a probe would itself block a starting rotation
                except TargetBusyError:
                    continue  # another process drives the target: it heals it before its own rotation
                engine.heal(name)
                engine.release(name)  # open() takes it again for a rotation of this target
        if not ids and damaged:
            raise KeyturnError(f"{len(damaged)} rotation(s) cannot be read: {damaged[0].message}")
        if not ids:
            if as_json:
                click.echo(json.dumps({"resumed": []}))
            else:
                click.echo("no unfinished rotation", err=True)
            return
        from app.locks import TargetBusyError

        results: list[dict[str, Any]] = []
        failed: list[str] = []
        for rid in ids:
            try:
                rotation = engine.open(rid)  # takes the target's lock
            except TargetBusyError as exc:
                if rotation_id:
                    raise
                _stderr("warning", f"skipping rotation {rid[:8]}: {exc.holder or 'another process'} is driving its target")
                continue
            except KeyturnError as exc:
                if rotation_id:
                    raise
                _stderr("warning", f"rotation {rid[:8]} was not resumed: {exc}")  # the others still are
                failed.append(str(exc))
                continue
            if rotation.record.finished:
                if rotation_id:
                    raise KeyturnError(f"rotation {rotation.id} is already {rotation.state}")
                continue  # finished by another process meanwhile
            _stderr("progress", f"resuming {rotation.id} of {rotation.record.target} from state {rotation.state}")
            rotation.options["skip_manual"] = skip_manual
            if orphan_checked:
                rotation.orphan_checked()
            try:
                outcome = rotation.run_to_end(revoke_now=revoke_now)
            except KeyturnError as exc:
                if rotation_id or len(ids) == 1:
                    raise
                _stderr("warning", f"rotation {rid[:8]} stopped: {exc}")
                failed.append(str(exc))
                continue
            results.append({"rotation_id": rotation.id, "target": rotation.record.target, "state": rotation.state, "retire": _retire_json(rotation, outcome)})
            if not as_json:
                click.echo(f"rotation {rotation.id}: {rotation.state}; {outcome}")
        if as_json:
            click.echo(json.dumps({"resumed": results, "damaged": [d.message for d in damaged], "failed": failed}, indent=2))
        if failed:
            raise KeyturnError(f"{len(failed)} rotation(s) could not be resumed; the first: {failed[0]}")
        if damaged:
            raise KeyturnError(f"{len(damaged)} rotation(s) could not be read and were skipped: {damaged[0].message}")
    finally:
        engine.close()


@cli.command()
@click.argument("rotation_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@click.pass_context
@_guard
def abort(ctx: click.Context, rotation_id: str, as_json: bool) -> None:
    """Undo an unfinished rotation: revoke its new token, put the stores back, keep the old token (also when its
    target was renamed or removed from the config)."""
    config = _load(ctx)
    engine = _engine(config, no_input=True)
    try:
        rotation, undone = engine.abort_rotation(rotation_id)
    finally:
        engine.close()
    if as_json:
        click.echo(json.dumps({"rotation_id": rotation.id, "target": rotation.record.target, "state": rotation.state, "undone": undone}, indent=2))
    else:
        did = "; ".join(undone) if undone else "nothing had been minted"
        click.echo(f"rotation {rotation.id[:8]} of {rotation.record.target} aborted: {did}; the old token is untouched")
