"""Issue 7, item 5: what keyturn writes is private, plain HTTP leaves only for loopback, TLS is never bypassed.

Real headless rotations (``python -m app.cli``) against the sandbox over loopback.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import KeyturnError
from app.net import check_url
from app.sandbox import Sandbox
from app.sandbox.tls import SandboxTLS

# not about the waiting: the consumers follow at once, so each rotation passes its gates in one run
pytestmark = pytest.mark.usefixtures("prompt_consumers")

ROOT = Path(__file__).resolve().parents[2]
FAST = {"KEYTURN_RETRY_SLEEP_SCALE": "0", "KEYTURN_HTTP_TIMEOUT": "10"}


def cli(config: Path, *args: str, home: Path, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update({"HOME": str(home), "PYTHONPATH": str(ROOT), **FAST})
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("keyturn: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def variant(sb: Sandbox, name: str, *edits: tuple[str, str]) -> Path:
    text = sb.config_path.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = sb.config_path.parent / f"{name}.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


# -- (a) every file keyturn writes: 0600 in a 0700 folder, whatever the umask ----------------------


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_rotation_files_are_private(sandbox: Sandbox, tmp_path: Path, umask: int) -> None:
    # journal and log in their default places (platformdirs under HOME), which keyturn creates
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    config = variant(sandbox, "default-dirs", ('journal_dir = "journal"\n', ""))
    proc = cli(config, "rotate", "daily-checks", "--no-input", "--json", home=home, umask=umask)
    assert proc.returncode == 0, proc.stderr
    created = sorted(home.rglob("*"))
    files = [p for p in created if p.is_file()]
    names = {p.name for p in files}
    assert "keyturn.log" in names and any(p.suffix == ".jsonl" for p in files), created  # both were written here
    for p in created:
        if p.is_dir():
            assert mode(p) == 0o700, f"{p}: {oct(mode(p))}"
        else:
            assert p.is_file() and not p.is_symlink(), p
            assert mode(p) == 0o600, f"{p}: {oct(mode(p))}"
            assert mode(p.parent) == 0o700, p.parent


def test_configured_journal_dir_is_private(sandbox: Sandbox, tmp_path: Path) -> None:
    """journal_dir in the config (the sandbox's): the journal folder, its files and the log beside it."""
    proc = cli(sandbox.config_path, "rotate", "daily-checks", "--no-input", home=tmp_path / "home", umask=0)
    assert proc.returncode == 0, proc.stderr
    journal = sandbox.config_path.parent / "journal"
    log = journal / "keyturn.log"
    assert mode(journal) == 0o700
    entries = list(journal.iterdir())
    assert entries and all(mode(p) == 0o600 and p.is_file() for p in entries)
    assert mode(log) == 0o600 and mode(log.parent) == 0o700


def test_config_write_back_keeps_the_files_mode(sandbox: Sandbox, tmp_path: Path) -> None:
    """Jenkins: keyturn records the new token's uuid in the config; the file stays 0600, no temp file left."""
    sandbox.config_path.chmod(0o600)
    before = sandbox.config_path.read_text()
    proc = cli(sandbox.config_path, "rotate", "jenkins", "--no-input", home=tmp_path / "home", umask=0)
    assert proc.returncode == 0, proc.stderr
    assert sandbox.config_path.read_text() != before  # it was written back
    assert mode(sandbox.config_path) == 0o600
    assert not list(sandbox.config_path.parent.glob(".keyturn-*"))


# -- (b) plain HTTP only to loopback -----------------------------------------------------------------

# (key named in the message, target, which URL, replacement host): each URL keyturn sends credentials to
HTTP_FIELDS = [
    ("accounts.ado-bot.base_url", "daily-checks", "devops", "dev.example.com"),
    ("accounts.ado-bot.vssps_url", "daily-checks", "vssps", "vssps.example.com"),
    ("accounts.ado-bot.authority", "daily-checks", "entra-account", "login.example.com"),
    ("accounts.buildkite.graphql_url", "buildkite-unclustered", "buildkite-graphql", "graphql.example.com"),
    ("accounts.buildkite.rest_url", "buildkite-unclustered", "buildkite-rest", "api.example.com"),
    ("vaults.cftptl-intsvc.url", "jenkins", "vault:cftptl-intsvc", "vault.example.com"),
    ("base_url", "buildkite-conductorone", "conductorone", "c1.example.com"),
    ("base_url", "jenkins", "jenkins", "jenkins.example.com"),
]


def http_edit(sb: Sandbox, which: str, host: str) -> tuple[str, str]:
    if which == "entra-account":  # the account's authority, not the vaults'
        old = f'authority = "{sb.urls["entra"]}"\nbase_url'
        return old, f'authority = "http://{host}"\nbase_url'
    url = sb.urls[which] + ("/v1" if which == "buildkite-graphql" else "")
    return f'"{url}"', f'"http://{host}"'


@pytest.mark.parametrize(("key", "target", "which", "host"), HTTP_FIELDS, ids=[f"{f[2]}" for f in HTTP_FIELDS])
def test_plain_http_to_a_remote_host_is_refused(sandbox: Sandbox, tmp_path: Path, key: str, target: str, which: str, host: str) -> None:
    before = len(sandbox.state.pats())
    config = variant(sandbox, "http", http_edit(sandbox, which, host))
    proc = cli(config, "rotate", target, "--no-input", "--dry-run", home=tmp_path / "home")
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert f"plain HTTP to {host} is refused" in line and "https://" in line, line
    assert key in line, line
    assert len(sandbox.state.pats()) == before


def test_plain_http_jenkins_names_the_account(sandbox: Sandbox, tmp_path: Path) -> None:
    config = variant(sandbox, "http", http_edit(sandbox, "jenkins", "jenkins.example.com"))
    proc = cli(config, "rotate", "jenkins", "--no-input", "--dry-run", home=tmp_path / "home")
    assert "accounts.jenkins.base_url" in error_line(proc)


def test_plain_http_vault_authority_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    old = f'authority = "{sandbox.urls["entra"]}"\n\n[vaults.cftptl-intsvc]'
    assert old in sandbox.config_path.read_text()
    # the cftptl-intsvc vault's authority (the second vault block follows rpe-prod's authority)
    text = sandbox.config_path.read_text()
    start = text.index("[vaults.cftptl-intsvc]")
    head, tail = text[:start], text[start:]
    tail = tail.replace(f'authority = "{sandbox.urls["entra"]}"', 'authority = "http://login.example.com"', 1)
    config = sandbox.config_path.parent / "http-authority.toml"
    config.write_text(head + tail)
    proc = cli(config, "rotate", "jenkins", "--no-input", "--dry-run", home=tmp_path / "home")
    assert proc.returncode == 2
    assert "vaults.cftptl-intsvc.authority: plain HTTP to login.example.com is refused" in error_line(proc)


def test_plain_http_to_loopback_is_allowed(sandbox: Sandbox, tmp_path: Path) -> None:
    """Not refused: the request is made (and fails, nothing listens on port 9)."""
    config = variant(sandbox, "http-loopback", (f'"{sandbox.urls["buildkite-graphql"]}/v1"', '"http://[::1]:9/v1"'))
    proc = cli(config, "rotate", "buildkite-unclustered", "--no-input", "--dry-run", home=tmp_path / "home")
    line = error_line(proc)
    assert "plain HTTP" not in line and "could not connect" in line and "[::1]:9" in line, line


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://127.0.0.2/", "http://[::1]:9/v1", "http://localhost:3000", "http://LOCALHOST/", "https://example.com/"])
def test_check_url_allows(url: str) -> None:
    assert check_url(url, "k") == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://example.com/", "plain HTTP to example.com is refused"),
        ("http://localhost.example.com/", "plain HTTP to localhost.example.com is refused"),
        ("http://127.0.0.1.nip.io/", "plain HTTP to 127.0.0.1.nip.io is refused"),
        ("http://0.0.0.0:80/", "plain HTTP to 0.0.0.0 is refused"),
        ("http://10.0.0.1/", "plain HTTP to 10.0.0.1 is refused"),
        ("http://[::ffff:8.8.8.8]/", "plain HTTP to ::ffff:8.8.8.8 is refused"),
        ("ftp://example.com/", "is not an http(s) URL"),
        ("example.com", "is not an http(s) URL"),
    ],
)
def test_check_url_refuses(url: str, fragment: str) -> None:
    with pytest.raises(KeyturnError) as err:
        check_url(url, "accounts.x.base_url")
    assert fragment in str(err.value) and str(err.value).startswith("accounts.x.base_url: ")


# -- (c) certificate errors: refused, one line, the host named; never bypassed ----------------------

# (target, the host:port the first TLS connection goes to); every target fails at its first contact
TLS_PATHS = [
    ("daily-checks", "entra"),  # Entra sign-in (azure-identity / msal)
    ("buildkite-unclustered", "buildkite-graphql"),  # httpx through gql
    ("buildkite-conductorone", "vault:cftptl-intsvc"),  # Key Vault (azure SDK), the old token is read first
    ("jenkins-file-token", "jenkins"),  # httpx; the token from a file so Jenkins is the first host
]


def tls_config(sb: Sandbox, ca: str, target: str) -> tuple[Path, str]:
    edits: list[tuple[str, str]] = [('ca_bundle = "ca.pem"\n', "" if ca == "no-ca-bundle" else 'ca_bundle = "other-ca.pem"\n')]
    if target == "jenkins-file-token":
        edits.append(('api_token = "vault:cftptl-intsvc/jenkins-api-token"', 'api_token = "file:sandbox-jenkins.token"'))
        target = "jenkins"
    if ca == "other-ca":
        SandboxTLS().write_ca(sb.config_path.parent / "other-ca.pem")  # a CA that did not sign the sandbox
    return variant(sb, f"tls-{ca}", *edits), target


def _host(sb: Sandbox, which: str) -> str:
    return sb.urls[which].removeprefix("https://")


@pytest.mark.parametrize("ca", ["other-ca", "no-ca-bundle"])
@pytest.mark.parametrize(("target", "which"), TLS_PATHS, ids=[t[0] for t in TLS_PATHS])
def test_untrusted_certificate_is_refused(sandbox: Sandbox, tmp_path: Path, ca: str, target: str, which: str) -> None:
    config, name = tls_config(sandbox, ca, target)
    before = (len(sandbox.state.pats()), len(sandbox.buildkite.agent_tokens()), len(sandbox.jenkins.tokens()))
    requests = sandbox.state.requests.count(which)
    proc = cli(config, "rotate", name, "--no-input", "--dry-run", home=tmp_path / "home")
    assert proc.returncode == 2, proc.stderr
    error_line(proc)
    assert (len(sandbox.state.pats()), len(sandbox.buildkite.agent_tokens()), len(sandbox.jenkins.tokens())) == before
    assert sandbox.state.requests.count(which) == requests  # no request got through: TLS was not bypassed




@pytest.mark.parametrize(
    ("target", "which"),
    TLS_PATHS,
    ids=[t[0] for t in TLS_PATHS],
)
def test_untrusted_certificate_names_the_host(sandbox: Sandbox, tmp_path: Path, target: str, which: str) -> None:
    config, name = tls_config(sandbox, "other-ca", target)
    line = error_line(cli(config, "rotate", name, "--no-input", "--dry-run", home=tmp_path / "home"))
    assert _host(sandbox, which) in line, line


@pytest.mark.parametrize(("target", "which"), TLS_PATHS, ids=[t[0] for t in TLS_PATHS])
def test_untrusted_certificate_suggests_ca_bundle(sandbox: Sandbox, tmp_path: Path, target: str, which: str) -> None:
    config, name = tls_config(sandbox, "other-ca", target)
    line = error_line(cli(config, "rotate", name, "--no-input", "--dry-run", home=tmp_path / "home"))
    assert "certificate" in line.lower() and "ca_bundle" in line, line


BYPASS = re.compile(r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False|connection_verify\s*=\s*False|_create_unverified_context")


def test_no_tls_bypass_in_the_source() -> None:
    hits = []
    for folder in ("app", "providers", "screens"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.is_relative_to(ROOT / "app" / "sandbox"):
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if BYPASS.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert hits == []
    assert BYPASS.search("httpx.Client(verify=False)") and BYPASS.search("ctx.check_hostname = False")  # the pattern bites
