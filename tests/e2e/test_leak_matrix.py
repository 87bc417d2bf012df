"""Issue 7's leak matrix: for every provider and follow-up, a real headless rotation in a child process, then a
search for the new and the old token value in every place a value could end up.

Places searched: the child's stdout and stderr (where every error is printed), the journal, every file under the
child's HOME (the log file, platformdirs state) and its TMPDIR (temporary files left behind), the config file
(keyturn edits it for Jenkins), the Flux clone's files and every git object (raw and base64) in the clone and the
bare remote, the argv and environment of every `git` and `sops` the child runs (recorded by shims first on PATH),
and the sandbox's own log records. Each value is searched whole, base64-encoded, and as its last 16 characters
(a truncated value is still a leak). Stores are the only places allowed to hold it: Key Vault, SSM and the
keyring backend's file (skipped by name), and the sops-encrypted Flux files (searched anyway: they hold
ciphertext only).

The clipboard is the wizard's (tests/wizard/test_clipboard.py: cleared after its timeout only while it still holds
our value); screenshots and toasts: tests/wizard/test_flow_sandbox.py and test_buildkite_wizard.py.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.sandbox import Sandbox
from app.sandbox.flux import sops_binary
from tests.e2e.support.targets import (
    NEW_BK_ENV,
    buildkite_cluster,
    buildkite_conductorone,
    buildkite_unclustered,
    daily_checks,
    jenkins,
    keda,
    paste_new_api_token,
)

ROOT = Path(__file__).resolve().parents[2]
KEYRING_BLOCK = '[[targets.daily-checks.follow_ups]]\nkind = "keyring"\nservice = "keyturn-leak"\nusername = "daily-checks"\n'
SSM_PARAM = "/ci/azure-devops-token"


def with_keyring(sandbox: Sandbox, home: Path) -> dict[str, str]:
    sandbox.config_path.write_text(sandbox.config_path.read_text() + "\n" + KEYRING_BLOCK)
    return {
        "PYTHON_KEYRING_BACKEND": "tests.e2e.support.file_keyring.FileKeyring",
        "KEYTURN_TEST_KEYRING_FILE": str(home.parent / "keyring-store.json"),  # a store: outside HOME, not searched
    }


@dataclass
class Case:
    name: str
    target: str
    check: Callable[[Sandbox], tuple[str, str]]
    args: tuple[str, ...] = ()
    setup: Callable[[Sandbox, Path], dict[str, str]] = field(default=lambda sb, home: {})
    aws: bool = False


CASES = [
    Case("azure-devops+keyvault", "daily-checks", daily_checks),
    Case("azure-devops+flux-sops", "keda", keda),
    Case("azure-devops+keyvault+keyring", "daily-checks", daily_checks, setup=with_keyring),
    Case("azure-devops+keyvault+ssm", "daily-checks", daily_checks, aws=True),
    Case("buildkite-cluster+keyvault+manual", "buildkite-cluster", buildkite_cluster, args=("--skip-manual",)),
    Case("buildkite-unclustered+keyvault", "buildkite-unclustered", buildkite_unclustered, args=("--skip-manual",)),
    Case("buildkite-api-token+keyvault+conductorone", "buildkite-conductorone", buildkite_conductorone,
         setup=lambda sb, home: paste_new_api_token(sb)),
    Case("jenkins+keyvault+config-edit", "jenkins", jenkins),
]


def shims(directory: Path, seen: Path) -> None:
    """`git` and `sops` first on PATH: record argv and environment (NUL-separated, as /proc shows them), then exec."""
    directory.mkdir()
    seen.mkdir()
    for name, real in (("git", shutil.which("git")), ("sops", sops_binary())):
        assert real
        shim = directory / name
        shim.write_text(
            "#!/bin/sh\n"
            f'cat /proc/$$/cmdline > "{seen}/{name}.argv.$$"; cat /proc/$$/environ > "{seen}/{name}.env.$$"\n'
            f'exec "{real}" "$@"\n'
        )
        shim.chmod(0o755)


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file())


def git_objects(repo: Path) -> bytes:
    return subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=repo, capture_output=True, check=True).stdout


def needles(value: str) -> dict[str, bytes]:
    return {"whole": value.encode(), "base64": base64.b64encode(value.encode()), "last 16": value[-16:].encode()}


@pytest.fixture
def leak_sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sandbox]:
    case: Case = request.param
    if case.aws:
        pytest.importorskip("moto.server")
    with Sandbox(tmp_path / "sb", aws=case.aws) as sb:
        from app.sandbox.consumers import consumers_follow_promptly

        consumers_follow_promptly(sb)  # every value goes everywhere it goes in one run, the revoke included
        yield sb


@pytest.mark.parametrize(("leak_sandbox", "case"), [(c, c) for c in CASES], ids=[c.name for c in CASES], indirect=["leak_sandbox"])
def test_no_value_outside_its_stores(
    leak_sandbox: Sandbox, case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = leak_sandbox
    caplog.set_level(logging.DEBUG, logger="keyturn.sandbox")
    monkeypatch.delenv(NEW_BK_ENV, raising=False)
    home, tmp, shim_dir, seen = tmp_path / "home", tmp_path / "childtmp", tmp_path / "shims", tmp_path / "seen"
    home.mkdir()
    tmp.mkdir()
    shims(shim_dir, seen)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYTURN_", "AWS_"))}
    env.update({"HOME": str(home), "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT), "PATH": f"{shim_dir}:{env.get('PATH', '')}"})
    env.update(case.setup(sb, home))
    run = subprocess.run(
        [sys.executable, "-m", "app.cli", "--config", str(sb.config_path), "rotate", case.target, "--no-input", "--json", *case.args],
        capture_output=True, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode()
    new, old = case.check(sb)  # the rotation really happened: the stores hold the new value
    if case.aws:
        import boto3

        ssm = boto3.client("ssm", region_name="eu-west-2", endpoint_url=sb.urls["aws"],
                           aws_access_key_id="sandbox", aws_secret_access_key="sandbox")
        assert ssm.get_parameter(Name=SSM_PARAM, WithDecryption=True)["Parameter"]["Value"] == new
    if "PYTHON_KEYRING_BACKEND" in env:
        assert new in Path(env["KEYTURN_TEST_KEYRING_FILE"]).read_text()

    places: dict[str, bytes] = {"stdout": run.stdout, "stderr": run.stderr}
    log_file = sb.directory / "journal" / "keyturn.log"  # in the journal folder (the sandbox config sets journal_dir)
    for path in files_under(sb.directory / "journal", log_file, sb.config_path, home, tmp, seen):
        places[str(path.relative_to(tmp_path))] = path.read_bytes()
    flux = sb.flux
    assert flux is not None
    for path in files_under(flux.clone):
        if ".git" not in path.parts:  # the object store is searched below, decompressed
            places[f"flux clone {path.relative_to(flux.clone)}"] = path.read_bytes()
    places["git objects (clone)"] = git_objects(flux.clone)
    places["git objects (bare)"] = git_objects(flux.bare)
    places["sandbox log records"] = "\n".join(r.getMessage() for r in caplog.records).encode()
    assert any(k.startswith("seen/") for k in places) == (case.target == "keda")  # the shims saw git and sops
    assert any("journal" in k for k in places) and b"rotation" in places["sb/journal/keyturn.log"]  # the log file was written

    hits = [f"{who} value ({form}) in {where}" for who, value in (("new", new), ("old", old))
            for form, needle in needles(value).items() for where, text in places.items() if needle in text]
    assert hits == []
