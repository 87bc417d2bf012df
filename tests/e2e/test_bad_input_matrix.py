"""Issue 7, item 4: a matrix of bad input, each row one input and the one-line message it must get.

Four families: the configuration file, secret references, what the user types (CLI arguments and the
wizard's expiry field) and bad server answers (the sandbox's faults and policies). Every CLI row asserts
a non-zero exit (2: a user error), exactly one ``keyturn: error:`` line naming what is wrong, no
traceback, no secret echoed, and nothing half-done (no journal entry, nothing minted or stored).

Rows that fail while loading the config run the real click command in this process (CliRunner: the same
``_guard``/``_fail`` path, ~ms each); every other row runs ``python -m app.cli`` in a child process
against a sandbox over loopback.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.journal import RotationJournal
from app.sandbox import Sandbox

# not about the waiting: the consumers follow at once, so each rotation passes its gates in one run
pytestmark = pytest.mark.usefixtures("prompt_consumers")

ROOT = Path(__file__).resolve().parents[2]
DAILY = ("rotate", "daily-checks", "--no-input", "--dry-run")
BK = ("rotate", "buildkite-unclustered", "--no-input", "--dry-run")
PASTED = "bkua_4f9c2e7a1b3d5f6e8a0c2e4f6a8b0c2d4e6f8a0b"  # a token pasted where a reference belongs
FAST = {"KEYTURN_RETRY_SLEEP_SCALE": "0", "KEYTURN_HTTP_TIMEOUT": "10"}

Setup = Callable[[Sandbox, Path], None]


@dataclass(frozen=True)
class Case:
    id: str
    expect: str  # a fragment of the one error line
    family: str  # config | secret | user | server | wizard
    # in-process config rows: the whole file
    toml: str | None = None
    # child-process rows: edits of the sandbox's keyturn.toml, the command, env, and state changes
    edits: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = DAILY
    env: dict[str, str] = field(default_factory=dict)
    setup: Setup | None = None
    secret: str | None = None  # must not appear anywhere in the output
    fresh_sandbox: bool = False  # the row changes the sandbox's state: a sandbox of its own
    check: Callable[[Sandbox, dict], None] | None = None  # the row's own "nothing half-done" check
    wizard: Callable[[], object] | None = None


# -- (a) the configuration file, loaded in this process ----------------------------------------------

BASE = """\
[settings]
journal_dir = "journal"

[accounts.bot]
platform = "azure-devops"
organization = "o"

[targets.t]
account = "bot"
token_name = "tok"
preset = "keda"
"""


def swap(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


CONFIG_CASES = [
    Case("toml-unclosed-table", "not valid TOML", "config", toml="[targets\nx = 1\n"),
    Case("toml-duplicate-key", "not valid TOML", "config", toml=swap("[settings]\n", "[settings]\nwarn_days = 3\nwarn_days = 4\n")),
    Case("toml-duplicate-table", "not valid TOML", "config", toml=BASE + "\n[settings]\nwarn_days = 3\n"),
    Case("toml-not-utf8", "not valid TOML", "config", toml="\udcff"),  # written as a lone 0xff byte
    Case("settings-unknown-key", "settings.colour: unknown key", "config", toml=swap("[settings]\n", "[settings]\ncolour = 'red'\n")),
    Case("top-level-typo", "target: unknown key", "config", toml=BASE + "\n[target.x]\naccount = 'bot'\n"),
    Case("settings-not-a-table", "settings: Input should be a valid dictionary", "config", toml=swap('[settings]\njournal_dir = "journal"\n', 'settings = "x"\n')),
    Case("warn-days-wrong-type", "settings.warn_days: Input should be a valid integer", "config", toml=swap("[settings]\n", "[settings]\nwarn_days = 'soon'\n")),
    Case("warn-days-too-big", "settings.warn_days: Input should be less than or equal to 365", "config", toml=swap("[settings]\n", "[settings]\nwarn_days = 999\n")),
    Case("clipboard-negative", "settings.clipboard_clear_seconds: Input should be greater than or equal to 0", "config", toml=swap("[settings]\n", "[settings]\nclipboard_clear_seconds = -1\n")),
    Case("validity-days-zero", "targets.t.validity_days: Input should be greater than or equal to 1", "config", toml=BASE + "validity_days = 0\n"),
    Case("validity-days-fraction", "targets.t.validity_days: Input should be a valid integer", "config", toml=BASE + "validity_days = 2.5\n"),
    Case("validity-days-string", "targets.t.validity_days: Input should be a valid integer", "config", toml=BASE + "validity_days = 'ninety'\n"),
    Case("target-account-undefined", "targets.t.account: no account 'nobody'; define [accounts.nobody]", "config", toml=swap('account = "bot"', 'account = "nobody"')),
    Case("target-account-missing", "targets.t.account: missing; add it", "config", toml=swap('account = "bot"\n', "")),
    Case("platform-unknown", "accounts.bot.platform", "config", toml=swap('"azure-devops"', '"gitlab"')),
    Case("follow-up-unknown-kind", "targets.t.follow_ups.0: unknown follow-up kind", "config", toml=BASE + "\n[[targets.t.follow_ups]]\nkind = 'slack'\n"),
    Case("follow-up-without-kind", "targets.t.follow_ups.0: follow-up without kind", "config", toml=BASE + "\n[[targets.t.follow_ups]]\ntext = 'x'\n"),
    Case("scopes-and-preset", "targets.t: give scopes or preset, not both", "config", toml=BASE + "scopes = ['vso.build']\n"),
    Case("neither-scopes-nor-preset", "targets.t: give scopes = [...] or preset = 'NAME'", "config", toml=swap('preset = "keda"\n', "")),
    Case("revoke-after-not-a-duration", "targets.t.revoke_after: 'soon' is not a duration", "config", toml=BASE + "revoke_after = 'soon'\n"),
    Case("token-type-unknown", "targets.t.token_type", "config", toml=BASE + "token_type = 'ssh-key'\n"),
    Case("cluster-token-without-cluster", "needs cluster", "config", toml=swap('preset = "keda"\n', "token_type = 'cluster-agent-token'\n")),
    Case("vault-client-secret-without-ids", "vaults.v: auth = 'client-secret' needs tenant_id, client_id and client_secret", "config", toml=BASE + "\n[vaults.v]\nauth = 'client-secret'\n"),
    Case("keyvault-secret-name", "targets.t.follow_ups.0.secret: String should match pattern", "config", toml=BASE + "\n[[targets.t.follow_ups]]\nkind = 'keyvault-secret-version'\nvault = 'v'\nsecret = 'bad_name!'\n\n[vaults.v]\n"),
    Case("keyvault-follow-up-undefined-vault", "targets.t.follow_ups.0.vault: no vault 'nope'", "config", toml=BASE + "\n[[targets.t.follow_ups]]\nkind = 'keyvault-secret-version'\nvault = 'nope'\nsecret = 's'\n"),
    Case("password-sign-in-without-secrets", "accounts.bot: sign_in = 'password' needs email and password", "config", toml=swap('organization = "o"\n', 'organization = "o"\nsign_in = "password"\n')),
    # (b) secret references the config already refuses; the pasted value is never echoed
    Case("ref-raw-token-in-api-token", "accounts.bot.api_token: this value is not a secret reference", "secret", toml=swap('organization = "o"\n', f'organization = "o"\napi_token = "{PASTED}"\n'), secret=PASTED),
    Case("ref-raw-token-in-new-token", "targets.t.new_token: this value is not a secret reference", "secret", toml=BASE + f'new_token = "{PASTED}"\n', secret=PASTED),
    Case("ref-unknown-scheme", "accounts.bot.email: this value is not a secret reference", "secret", toml=swap('organization = "o"\n', 'organization = "o"\nemail = "s3:bucket/key"\n')),
    Case("ref-vault-without-secret", "accounts.bot.password: this value is not a secret reference", "secret", toml=swap('organization = "o"\n', 'organization = "o"\npassword = "vault:rpe-prod"\n')),
    Case("ref-vault-undefined-for-api-token", "accounts.bot.api_token: secret reference 'vault:nope/x' names no configured vault", "secret", toml=swap('organization = "o"\n', 'organization = "o"\napi_token = "vault:nope/x"\n')),
    Case("ref-vault-undefined-for-old-token", "targets.t.old_token: secret reference 'vault:nope/x' names no configured vault", "secret", toml=BASE + 'old_token = "vault:nope/x"\n'),
]


# -- rows that run the real CLI in a child process against the sandbox -------------------------------


def _write(rel: str, data: str) -> Setup:
    def setup(sb: Sandbox, cfg: Path) -> None:
        p = cfg.parent / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if data == "<dir>":
            p.mkdir(exist_ok=True)
        else:
            p.write_text(data)
            p.chmod(0o600)

    return setup


def _journal(*events: str, garbage: bool = False) -> Setup:
    """A journal (journal_dir = j-<row>, see run_child) with one real plan of daily-checks, then ``events``."""

    def setup(sb: Sandbox, cfg: Path) -> None:
        from app.config import load_config
        from app.engine import Engine

        journal = RotationJournal(cfg.parent / f"j-{cfg.stem}")
        engine = Engine(load_config(cfg), journal=journal)
        try:
            plan = engine.plan("daily-checks", sign_in=False)  # offline: what would happen, no sign-in
        finally:
            engine.close()
        journal.append(SEEDED_ROTATION, "planned", target="daily-checks", plan=plan.to_record().to_json())
        for event in events:
            journal.append(SEEDED_ROTATION, event, reason="test")
        if garbage:
            with (journal.directory / f"{SEEDED_ROTATION}.jsonl").open("ab") as fh:
                fh.write(b"{not json\n")

    return setup


SEEDED_ROTATION = "0d5e1c2a-7b6f-4c3e-9a8d-1f2e3d4c5b6a"
BK_TOKEN = 'api_token = "file:sandbox-buildkite.token"'


def _bk_ref(ref: str) -> tuple[tuple[str, str], ...]:
    return ((BK_TOKEN, f'api_token = "{ref}"'),)


CHILD_CASES = [
    # (a) configuration problems found when the config is used
    Case("journal-dir-is-a-file", "cannot use it as keyturn's private folder", "config", edits=(('journal_dir = "journal"', 'journal_dir = "plain-file/journal"'),), setup=_write("plain-file", "x")),
    Case("ca-bundle-missing", "settings.ca_bundle: cannot load", "config", edits=(('ca_bundle = "ca.pem"', 'ca_bundle = "no-such-ca.pem"'),), args=BK),
    Case("unknown-preset", "unknown preset 'daily'", "config", edits=(('preset = "daily-checks"', 'preset = "daily"'),)),
    Case("unknown-scope", "unknown Azure DevOps scope 'vso.agentpool'", "config", edits=(('preset = "daily-checks"', 'scopes = ["vso.agentpool"]'),)),
    # (b) secret references that fail when resolved
    Case("ref-env-unset", "environment variable KT_MATRIX_UNSET is not set", "secret", edits=_bk_ref("env:KT_MATRIX_UNSET"), args=BK),
    Case("ref-env-empty", "environment variable KT_MATRIX_EMPTY is not set", "secret", edits=_bk_ref("env:KT_MATRIX_EMPTY"), args=BK, env={"KT_MATRIX_EMPTY": ""}),
    Case("ref-file-missing", "no-such.token (No such file or directory)", "secret", edits=_bk_ref("file:no-such.token"), args=BK),
    Case("ref-file-is-a-directory", "a-folder (Is a directory)", "secret", edits=_bk_ref("file:a-folder"), args=BK, setup=_write("a-folder", "<dir>")),
    Case("ref-file-empty", "empty.token is empty", "secret", edits=_bk_ref("file:empty.token"), args=BK, setup=_write("empty.token", "  \n")),
    Case("ref-vault-secret-missing", "Key Vault rpe-prod / secret no-such-secret: not found", "secret", edits=_bk_ref("vault:rpe-prod/no-such-secret"), args=BK),
    Case("ref-keyring-missing-entry", "nothing in the OS keyring for kt-matrix / nobody", "secret", edits=_bk_ref("keyring:kt-matrix/nobody"), args=BK, env={"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}),
    Case("ref-keyring-unavailable", "the OS keyring is not available", "secret", edits=_bk_ref("keyring:kt-matrix/nobody"), args=BK, env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}),
    Case("ref-prompt-under-no-input", "input is off (--no-input)", "secret", edits=_bk_ref("prompt"), args=BK),
    Case("ref-wrong-token-in-file", "does not accept the API token of accounts.buildkite", "secret", edits=_bk_ref("file:sandbox-sp.secret"), args=BK),
    # (c) what the user types on the command line
    Case("cli-unknown-target", "no target 'nope'", "user", args=("rotate", "nope", "--no-input")),
    Case("cli-missing-target", "Missing argument 'TARGET'", "user", args=("rotate",)),
    Case("cli-unknown-option", "No such option '--bogus'", "user", args=("rotate", "daily-checks", "--bogus")),
    Case("cli-unknown-command", "No such command 'rotat'", "user", args=("rotat", "daily-checks")),
    # stdin is a pipe here: without --no-input nobody confirms the plan, so nothing may run headless
    Case("cli-rotate-piped-without-no-input", "stdin is not a terminal", "user", args=("rotate", "daily-checks")),
    Case("cli-rotate-piped-json-without-no-input", "pass --no-input", "user", args=("rotate", "daily-checks", "--json")),
    Case("cli-extra-argument", "unexpected extra argument (extra)", "user", args=("status", "extra")),
    Case("cli-reveal-with-dry-run", "--reveal and --dry-run conflict", "user", args=("rotate", "daily-checks", "--no-input", "--dry-run", "--reveal")),
    Case("cli-manual-step-headless", "only a person can tick", "user", args=("rotate", "buildkite-cluster", "--no-input"),
         edits=(('secret = "buildkite-agent-token"',
                 'secret = "buildkite-agent-token"\n\n[[targets.buildkite-cluster.follow_ups]]\nkind = "manual"\ntext = "Tell the on-call channel"'),)),
    Case("resume-unknown-id", "no rotation 'nope'", "user", args=("resume", "nope", "--no-input")),
    Case("resume-unknown-uuid", "no rotation '00000000-0000-0000-0000-000000000000'", "user", args=("resume", "00000000-0000-0000-0000-000000000000", "--no-input")),
    Case("resume-finished-rotation", "is already aborted", "user", args=("resume", "0d5e1c2a", "--no-input"), setup=_journal("aborted")),
    Case("resume-damaged-journal", "damaged journal line", "user", args=("resume", "--no-input"), setup=_journal(garbage=True)),
]


def _live_pats(sb: Sandbox, prefix: str = "daily-checks") -> list[str]:
    return sorted(p.authorization_id for p in sb.state.pats() if p.display_name.startswith(prefix) and not p.revoked)


def _set_fault(op: str, kind: str, times: int = 5) -> Setup:
    return lambda sb, cfg: sb.state.inject_fault(op, kind, times=times)


def _revoke_not_allowed(sb: Sandbox, cfg: Path) -> None:
    t = next(t for t in sb.buildkite.agent_tokens() if t.description == "Legacy macOS agents")
    sb.buildkite.set_revoke_allowed(t.uuid, False)


def _old_token_kept(sb: Sandbox, before: dict) -> None:
    # permissions.agentTokenRevoke.allowed is checked before minting: nothing new, the old token alive
    old = next(t for t in sb.buildkite.agent_tokens() if t.description == "Legacy macOS agents")
    assert not old.revoked
    assert not [t for t in sb.buildkite.agent_tokens() if t.description.startswith("Legacy macOS agents-")]
    assert sb.state.secret_versions("cftptl-intsvc", "buildkite-legacy-agent-token") == []  # nothing stored


def _revoke_failed(sb: Sandbox, before: dict) -> None:
    live = _live_pats(sb)
    assert len(live) == len(before["pats"]) + 1  # old alive, the new one stored and verified
    assert sb.state.secret_versions("cftptl-intsvc", "azure-devops-token")[-1].value == sb.state.pat(next(p for p in live if p not in before["pats"])).value  # type: ignore[union-attr]


SERVER_CASES = [
    Case("server-pat-creation-disabled", "creation", "server", args=DAILY[:3], setup=lambda sb, cfg: sb.state.set_policy(disable_pat_creation=True), fresh_sandbox=True),
    Case("server-full-scope-blocked", "full", "server", args=DAILY[:3], edits=(('preset = "daily-checks"', 'scopes = ["app_token"]'),), setup=lambda sb, cfg: sb.state.set_policy(block_full_scope=True), fresh_sandbox=True),
    Case("server-list-500", "could not list the PATs of contoso-sandbox", "server", args=DAILY[:3], setup=_set_fault("pats.list", "500"), fresh_sandbox=True),
    Case("server-create-503-twice", "minting failed twice with an unknown outcome", "server", args=DAILY[:3], setup=_set_fault("pats.create", "503"), fresh_sandbox=True),
    Case("server-keyvault-write-500", "write failed", "server", args=DAILY[:3], setup=_set_fault("keyvault.set", "500"), fresh_sandbox=True),
    Case("server-keyvault-read-500", "Key Vault cftptl-intsvc / secret jenkins-api-token: read failed", "server", args=("rotate", "jenkins", "--no-input"), setup=_set_fault("keyvault.get", "500"), fresh_sandbox=True),
    Case("server-keyvault-list-forbidden", "Key Vault cftptl-intsvc", "server", args=DAILY[:3], setup=lambda sb, cfg: sb.state.deny("cftptl-intsvc", "list"), fresh_sandbox=True),
    Case("server-verify-503", "could not verify the new token", "server", args=DAILY[:3], setup=_set_fault("devops.pools", "503"), fresh_sandbox=True),
    Case("server-revoke-500", "could not revoke PAT", "server", args=DAILY[:3], setup=_set_fault("pats.revoke", "500"), fresh_sandbox=True, check=_revoke_failed),
    Case("server-buildkite-no-graphql", "lacks GraphQL access", "server", args=("rotate", "buildkite-unclustered", "--no-input", "--skip-manual"), setup=lambda sb, cfg: sb.buildkite.set_graphql_access(sb.buildkite.seeded.keyturn_token, False), fresh_sandbox=True),  # type: ignore[union-attr]
    Case("server-buildkite-token-revoked", "it is unknown, revoked or expired (HTTP 401)", "server", args=("rotate", "buildkite-unclustered", "--no-input", "--skip-manual"), setup=lambda sb, cfg: sb.buildkite.revoke_api_token(sb.buildkite.seeded.keyturn_token), fresh_sandbox=True),  # type: ignore[union-attr]
    Case("server-buildkite-revoke-refused", "does not allow revoking agent token", "server", args=("rotate", "buildkite-unclustered", "--no-input", "--skip-manual"), setup=_revoke_not_allowed, fresh_sandbox=True, check=_old_token_kept),
    Case("server-jenkins-token-revoked", "accounts.jenkins.api_token is refused (401)", "server", args=("rotate", "jenkins", "--no-input"), setup=lambda sb, cfg: sb.jenkins.revoke(sb.jenkins.seeded.token_uuid), fresh_sandbox=True,
         edits=(('password = "file:sandbox-jenkins.password"\n', ""),)),  # a token-only account signs in with the token  # type: ignore[union-attr]
    Case("server-conductorone-bad-client-secret", "not a ConductorOne client secret", "server", args=("rotate", "buildkite-conductorone", "--no-input", "--dry-run"), edits=(('client_secret = "file:sandbox-c1.secret"', 'client_secret = "file:c1-wrong.secret"'),), setup=_write("c1-wrong.secret", "kt-matrix-c1-wrong-value"), secret="kt-matrix-c1-wrong-value"),
]


# -- (c) the wizard's expiry field: a plain function ------------------------------------------------


def _expiry(mode: str, days: str = "", when: str = "") -> Callable[[], object]:
    def call() -> object:
        from screens.token_options import EXPIRY_DATE, EXPIRY_DAYS, parse_expiry

        now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        return parse_expiry({"days": EXPIRY_DAYS, "date": EXPIRY_DATE}[mode], days, when, now)

    return call


WIZARD_CASES = [
    Case("wizard-expiry-days-not-a-number", "expiry: give a whole number of days", "wizard", wizard=_expiry("days", days="ninety")),
    Case("wizard-expiry-days-zero", "expiry: between 1 and 3650 days", "wizard", wizard=_expiry("days", days="0")),
    Case("wizard-expiry-days-too-many", "expiry: between 1 and 3650 days", "wizard", wizard=_expiry("days", days="5000")),
    Case("wizard-expiry-date-unparseable", "expiry: write the date as YYYY-MM-DD", "wizard", wizard=_expiry("date", when="2026-13-45")),
    Case("wizard-expiry-date-in-the-past", "is less than 10 minutes ahead", "wizard", wizard=_expiry("date", when="2026-03-01 12:05")),
]

CASES = CONFIG_CASES + CHILD_CASES + SERVER_CASES + WIZARD_CASES


# -- helpers ---------------------------------------------------------------------------------------


def one_error_line(stderr: str, stdout: str = "") -> str:
    assert "Traceback" not in stderr + stdout, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("keyturn: error:")]
    assert len(errors) == 1, stderr
    assert "keyturn: error:" not in stdout
    return errors[0]


@pytest.fixture
def quiet_logging() -> Iterator[None]:
    """The CLI in this process must not leave its log handler on the test process's loggers."""
    names = ("keyturn", "httpx", "azure")
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level, logging.getLogger(n).propagate) for n in names}
    yield
    for n, (handlers, level, propagate) in saved.items():
        log = logging.getLogger(n)
        for h in log.handlers:
            if h not in handlers:
                h.close()
        log.handlers[:] = handlers
        log.setLevel(level)
        log.propagate = propagate


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox for the rows that fail before changing anything (each row checks that it did not)."""
    with Sandbox(tmp_path_factory.mktemp("matrix") / "sb") as sb:
        yield sb


def _snapshot(sb: Sandbox) -> dict:
    return {
        "pats": _live_pats(sb),
        "all_pats": len(sb.state.pats()),
        "bk_agent": sorted(t.uuid for t in sb.buildkite.agent_tokens()),
        "bk_cluster": sorted(t.uuid for t in sb.buildkite.cluster_tokens(include_revoked=True)),
        "jenkins": sorted((t.uuid, t.revoked) for t in sb.jenkins.tokens()),
        "vault": {s: len(sb.state.secret_versions("cftptl-intsvc", s)) for s in sb.state.secret_names("cftptl-intsvc")},
    }


def prepare(sb: Sandbox, case: Case) -> Path:
    """The row's config file (beside the sandbox's, so its relative paths hold) and its state changes."""
    text = sb.config_path.read_text()
    for old, new in case.edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    # a journal folder of the row's own, so "nothing journaled" is the row's own fact
    text = text.replace('journal_dir = "journal"', f'journal_dir = "j-{case.id}"', 1)
    cfg = sb.config_path.parent / f"{case.id}.toml"
    cfg.write_text(text)
    cfg.chmod(0o600)
    if case.setup:
        case.setup(sb, cfg)
    return cfg


def run_child(case: Case, cfg: Path, home: Path) -> tuple[int, str, str, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYTURN_", "KT_MATRIX"))}
    env.update({"HOME": str(home), "PYTHONPATH": str(ROOT), **FAST, **case.env})
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "--config", str(cfg), *case.args],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout, proc.stderr, cfg.parent / f"j-{case.id}"


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c.id for c in CONFIG_CASES])
def test_bad_config_file(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet_logging: None) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = tmp_path / "keyturn.toml"
    assert case.toml is not None
    cfg.write_bytes(case.toml.encode("utf-8", "surrogateescape"))
    # `resume` on an empty journal is the one command that would succeed offline if the file loaded
    result = CliRunner().invoke(cli, ["--config", str(cfg), "resume", "--no-input"])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.stderr
    line = one_error_line(result.stderr, result.stdout)
    assert line.startswith(f"keyturn: error: {cfg}: "), line  # names the file
    assert case.expect in line, line
    if case.secret:
        assert case.secret not in result.stderr + result.stdout
    assert not (tmp_path / "journal").exists()  # nothing journaled
    assert not (tmp_path / "home").exists()  # nothing written anywhere else either


def test_missing_and_unreadable_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet_logging: None) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    missing = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.toml"), "resume", "--no-input"])
    assert missing.exit_code == 2
    assert "nope.toml: no such configuration file" in one_error_line(missing.stderr)
    (tmp_path / "folder.toml").mkdir()
    monkeypatch.setenv("KEYTURN_CONFIG", str(tmp_path / "folder.toml"))
    folder = CliRunner().invoke(cli, ["resume", "--no-input"])
    assert folder.exit_code == 2
    assert "folder.toml: cannot read (Is a directory)" in one_error_line(folder.stderr)


@pytest.mark.parametrize("case", CHILD_CASES, ids=[c.id for c in CHILD_CASES])
def test_bad_input_in_the_cli(case: Case, shared_sandbox: Sandbox, tmp_path: Path) -> None:
    cfg = prepare(shared_sandbox, case)
    before = _snapshot(shared_sandbox)
    code, out, err, journal = run_child(case, cfg, tmp_path / "home")
    _assert_refused(case, code, out, err)
    journaled = {p.stem for p in journal.glob("*.jsonl")} if journal.is_dir() else set()
    assert journaled <= {SEEDED_ROTATION}, journaled  # nothing journaled (but the rows' own seeded rotation)
    assert _snapshot(shared_sandbox) == before  # nothing minted, stored or revoked


@pytest.mark.parametrize("case", SERVER_CASES, ids=[c.id for c in SERVER_CASES])
def test_bad_server_answer(case: Case, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    sb: Sandbox = request.getfixturevalue("sandbox") if case.fresh_sandbox else request.getfixturevalue("shared_sandbox")
    cfg = prepare(sb, case)
    before = _snapshot(sb)
    code, out, err, journal = run_child(case, cfg, tmp_path / "home")
    _assert_refused(case, code, out, err)
    if case.check is not None:
        case.check(sb, before)
        return
    after = _snapshot(sb)
    assert after["pats"] == before["pats"]  # the old token alive, no new one left behind
    assert after["bk_agent"] == before["bk_agent"]
    assert after["jenkins"] == before["jenkins"]
    assert after["vault"] == before["vault"] or _rolled_back(sb, before)
    for path in journal.glob("*.jsonl") if journal.is_dir() else []:
        # a rotation that got as far as the journal ended aborted (its new token revoked), never half-way
        assert RotationJournal(journal).load(path.stem).state in ("aborted", "planned"), path


def _rolled_back(sb: Sandbox, before: dict) -> bool:
    """A store rolled back: Key Vault's latest version holds the old value again (a restore is a new version)."""
    latest = sb.state.latest_secret("cftptl-intsvc", "azure-devops-token")
    live = {p.value for p in sb.state.pats() if not p.revoked}
    return latest is not None and latest.value in live


def _assert_refused(case: Case, code: int, out: str, err: str) -> None:
    assert code == 2, (code, err)
    line = one_error_line(err, out)
    assert case.expect in line, line
    if case.secret:
        assert case.secret not in out + err


@pytest.mark.parametrize("case", WIZARD_CASES, ids=[c.id for c in WIZARD_CASES])
def test_wizard_expiry_field(case: Case) -> None:
    assert case.wizard is not None
    with pytest.raises(ValueError) as err:
        case.wizard()
    msg = str(err.value)
    assert "\n" not in msg
    assert case.expect in msg


def test_valid_expiry_is_accepted() -> None:
    """The validator is not a wall: a sane entry passes (so the rows above fail for their own reason)."""
    from screens.token_options import EXPIRY_DAYS, parse_expiry

    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_expiry(EXPIRY_DAYS, "30", "", now) == now + timedelta(days=30)


def test_the_matrix_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.family for c in CASES} == {"config", "secret", "user", "server", "wizard"}
