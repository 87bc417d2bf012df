"""What "one live new token, in every store, the old one revoked" means for each sandbox target.

Each checker reads the emulated platform and stores directly and returns (new value, old value). Shared by the
crash matrix and the leak matrix.
"""

from __future__ import annotations

import base64
import os
import subprocess

from app.sandbox import Sandbox
from app.sandbox.flux import sops_binary

KV = "cftptl-intsvc"
NEW_BK_ENV = "KT_CRASH_NEW_BK"


def git(repo: object, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def kv_versions_of(sandbox: Sandbox, secret: str, token_id: str) -> int:
    return len([v for v in sandbox.state.secret_versions(KV, secret) if (v.tags or {}).get("keyturn-token-id") == token_id])


def current_kv(sandbox: Sandbox, secret: str) -> str | None:
    """What a consumer reading the secret gets now: the newest version's value, if that version is enabled."""
    versions = sandbox.state.secret_versions(KV, secret)
    return versions[-1].value if versions and versions[-1].enabled else None


def check_kv(sandbox: Sandbox, secret: str, value: str, token_id: str) -> None:
    assert current_kv(sandbox, secret) == value, f"Key Vault {secret}: what consumers read now is not the new value"
    assert kv_versions_of(sandbox, secret, token_id) == 1, f"Key Vault {secret}: the new token not stored exactly once"


# -- per target: how to start it, and what "one live new token everywhere" means ---------------------------------


def daily_checks(sandbox: Sandbox) -> str:
    (new,) = [p for p in sandbox.state.pats() if p.display_name.startswith("daily-checks") and not p.revoked]
    assert new.display_name != "daily-checks"
    assert sandbox.state.pats_named("daily-checks")[0].revoked
    check_kv(sandbox, "azure-devops-token", new.value, new.authorization_id)
    return new.value, sandbox.state.pats_named("daily-checks")[0].value


def keda(sandbox: Sandbox) -> str:
    """The new PAT is the one live token; main (what Flux applies, once the pull request was merged) holds it in both
    files, encrypted; exactly one keyturn commit made it there; the clone is back on a clean main."""
    flux = sandbox.flux
    assert flux is not None
    (new,) = [p for p in sandbox.state.pats() if p.display_name.startswith("keda-agent-pools") and not p.revoked]
    assert sandbox.state.pats_named("keda-agent-pools")[0].revoked
    git(flux.clone, "fetch", "-q", "origin")
    commits = git(flux.bare, "log", "main", "--format=%H", "--grep=keyturn: rotate keda token").split()
    assert len(commits) == 1, "one keyturn commit reached main"
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(flux.age_key)}
    for rel in flux.files:
        blob = subprocess.run(["git", "show", f"origin/main:{rel}"], cwd=flux.clone, check=True, capture_output=True).stdout
        out = subprocess.run(
            [sops_binary(), "decrypt", "--input-type", "yaml", "--output-type", "yaml", "--extract",
             '["data"]["personalAccessToken"]', "/dev/stdin"], input=blob, env=env, check=True, capture_output=True,
        ).stdout
        assert base64.b64decode(out).decode() == new.value, f"{rel} does not hold the new token on main"
    assert git(flux.clone, "rev-parse", "--abbrev-ref", "HEAD") == "main", "the clone is back on its branch"
    assert git(flux.clone, "status", "--porcelain") == "", "the clone is clean"
    return new.value, sandbox.state.pats_named("keda-agent-pools")[0].value


def buildkite_cluster(sandbox: Sandbox) -> str:
    bk = sandbox.buildkite
    (new,) = [t for t in bk.cluster_tokens() if t.description.startswith("Default cluster agents")]
    assert new.description != "Default cluster agents"
    check_kv(sandbox, "buildkite-agent-token", new.value, new.id)  # keyturn's token id is the GraphQL id
    (old,) = [t for t in bk.cluster_tokens(include_revoked=True) if t.description == "Default cluster agents"]
    assert old.revoked
    return new.value, old.value


def buildkite_unclustered(sandbox: Sandbox) -> str:
    bk = sandbox.buildkite
    live = [t for t in bk.agent_tokens(include_revoked=False) if t.description.startswith("Legacy macOS agents")]
    (new,) = live
    assert new.description != "Legacy macOS agents"
    assert current_kv(sandbox, "buildkite-legacy-agent-token") == new.value
    (old,) = [t for t in bk.agent_tokens() if t.description == "Legacy macOS agents"]
    assert old.revoked
    return new.value, old.value


def buildkite_conductorone(sandbox: Sandbox) -> str:
    bk = sandbox.buildkite
    new_value = os.environ[NEW_BK_ENV]
    assert bk.api_token(bk.seeded.connector_token).revoked  # type: ignore[union-attr]
    assert not bk.api_token(new_value).revoked  # type: ignore[union-attr]
    connector = sandbox.conductorone.connector()
    assert connector is not None and connector.api_token == new_value
    assert current_kv(sandbox, "buildkite-conductorone-token") == new_value
    return new_value, bk.seeded.connector_token  # type: ignore[union-attr]


def jenkins(sandbox: Sandbox) -> str:
    jk = sandbox.jenkins
    seeded = jk.seeded
    assert seeded is not None
    (live,) = [t for t in jk.tokens(seeded.user) if jk.token_status(t.value) == "active"]
    assert jk.token_status(seeded.token_value) == "revoked"
    check_kv(sandbox, "jenkins-api-token", live.value, live.uuid)
    return live.value, seeded.token_value




def paste_new_api_token(sandbox: Sandbox) -> dict[str, str]:
    """No API makes a Buildkite API access token: the engineer made one; headless reads it from new_token."""
    bk = sandbox.buildkite
    new = bk.create_api_token(("read_teams", "read_organizations", "read_user"), graphql=True, description="ConductorOne Buildkite connector")
    text = sandbox.config_path.read_text().replace('old_token = "vault:', f'new_token = "env:{NEW_BK_ENV}"\nold_token = "vault:', 1)
    sandbox.config_path.write_text(text)
    os.environ[NEW_BK_ENV] = new.value  # for the checker (this process only)
    return {NEW_BK_ENV: new.value}


# -- consumer gates: the old token is revoked only once every consumer has the new one --------------------------


def resume_to_done(sandbox: Sandbox, keyturn, *args: str, env: dict[str, str] | None = None, runs: int = 3):
    """`keyturn resume` until every rotation is done; between runs every consumer picks up what its store holds (the
    Flux pull request is merged, the agents are cycled, the deploy jobs run), as people would. The last run."""
    from app.sandbox.consumers import every_consumer_follows

    for _ in range(runs):
        run = keyturn("resume", "--no-input", "--json", *args, env=env)
        if run.code != 0 or all(r["state"] == "done" for r in run.json()["resumed"]):
            return run
        every_consumer_follows(sandbox)
    return run


def drive_to(sandbox: Sandbox, keyturn, target: str, *args: str, env: dict[str, str] | None = None):
    """`keyturn rotate TARGET` (with ``env``, e.g. a kill point); when it ends waiting for its consumers, they follow
    and `keyturn resume` goes on with the same ``env``, so a point after the gates (the revoke) is reached too."""
    from app.sandbox.consumers import every_consumer_follows

    run = keyturn("rotate", target, "--no-input", *args, env=env)
    if run.code == 0:
        every_consumer_follows(sandbox)
        run = keyturn("resume", "--no-input", *args, env=env)
    return run

