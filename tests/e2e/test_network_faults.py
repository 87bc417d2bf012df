"""Issue 7.3, network faults: the sandbox breaks one call of a headless rotation, the real CLI copes.

Each case injects a fault (``SandboxState.inject_fault`` with a ``NET_FAULT_KINDS`` kind: timeout, reset,
reset-after, 500, 503, 429 with the vendor's reset headers, malformed) at calls of a rotation of
``daily-checks`` (Azure DevOps + Key Vault), ``buildkite-cluster`` or ``buildkite-conductorone``, runs the real
CLI over loopback and asserts one of two outcomes (``jenkins`` too):

- ``done``: the rotation completes (idempotent calls retried within bounds, creations reconciled);
- ``stops``: exactly one ``keyturn: error:`` line naming the call, no traceback; then, with the fault gone,
  ``keyturn resume --no-input`` (or, when the rotation had not started or was rolled back, a new ``rotate``)
  completes it.

Either way the end state is checked in the sandbox: exactly one live new token (no orphan), stored in Key
Vault, the old one revoked, every rotation's journal ends ``done`` (or ``aborted`` for a rolled-back one), and
every injected fault was consumed (so the case really exercised the call). The client's read timeout and the
retry waits are shortened through the environment (KEYTURN_HTTP_TIMEOUT, KEYTURN_RETRY_SLEEP_SCALE).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from app.sandbox import Sandbox
from app.sandbox.state import NET_FAULT_KINDS

# not about the waiting: the consumers follow at once, so each rotation passes its gates in one run
pytestmark = pytest.mark.usefixtures("prompt_consumers")

FAST = {"KEYTURN_HTTP_TIMEOUT": "1", "KEYTURN_RETRY_SLEEP_SCALE": "0.01"}
HOLD = 1.6  # a "timeout" holds its answer this long: past the client's 1 s read timeout

PATS = "/{org}/_apis/tokens/pats"
C1_CONNECTOR = "/api/v1/apps/{app_id}/connectors/{id}"
C1_FORCE_SYNC = "/api/v1/apps/{app_id}/connectors/{connector_id}/force_sync"
JK_TOKENS = "/user/{user}/descriptorByName/jenkins.security.ApiTokenProperty"

# (service glob, call) of every call of each rotation that may be repeated
IDEMPOTENT = {
    "daily-checks": [
        ("vssps", f"GET {PATS}"),  # list (planning, reconciliation, the proof after revoking)
        ("vssps", f"DELETE {PATS}"),  # revoke the old PAT (revoking twice is not an error)
        ("devops", "GET /{org}/_apis/distributedtask/pools"),  # verify the new PAT
        ("vault:*", "GET /secrets/{name}/versions"),  # Key Vault preflight, find_done
        ("vault:*", "PATCH /secrets/{name}/{version?}"),  # tag the version active (same tags again)
    ],
    "buildkite-cluster": [
        ("buildkite-graphql", "GetOrganizationId"),
        ("buildkite-graphql", "ListClusters"),
        ("buildkite-graphql", "ListClusterAgentTokens"),
        ("vault:*", "GET /secrets/{name}/versions"),
        ("vault:*", "PATCH /secrets/{name}/{version?}"),
    ],
    "buildkite-conductorone": [
        ("buildkite-rest", "GET /v2/access-token"),
        ("buildkite-graphql", "GetOrganizationId"),
        ("vault:*", "GET /secrets/{name}/{version?}"),  # the old token, read from Key Vault
        ("vault:*", "GET /secrets/{name}/versions"),
        ("vault:*", "PATCH /secrets/{name}/{version?}"),
        ("conductorone", "POST /auth/v1/token"),  # another access token is harmless
        ("conductorone", f"GET {C1_CONNECTOR}"),  # preflight and the sync polls
        ("conductorone", f"POST {C1_FORCE_SYNC}"),  # another forced sync is harmless
    ],
    "jenkins": [
        ("jenkins", "GET /whoAmI/api/json"),  # sign-in, verify on a fresh client, the 401 proof
        ("jenkins", "GET /user/{user}/security/"),  # the only list of a user's tokens
        ("jenkins", f"POST {JK_TOKENS}/revoke"),  # revoking twice does no harm
        ("vault:*", "GET /secrets/{name}/{version?}"),  # the current token, read from Key Vault
        ("vault:*", "PATCH /secrets/{name}/{version?}"),
    ],
}

# two faults per call and run: attempt 1 and 2 fail, attempt 3 of 3 succeeds
PAIRS = [("timeout", "reset"), ("reset-after", "500"), ("503", "429"), ("malformed", "reset")]
assert {k for pair in PAIRS for k in pair} == set(NET_FAULT_KINDS)

ROTATE = {
    "daily-checks": ("rotate", "daily-checks", "--no-input", "--json"),
    "buildkite-cluster": ("rotate", "buildkite-cluster", "--no-input", "--json", "--skip-manual"),
    "buildkite-conductorone": ("rotate", "buildkite-conductorone", "--no-input", "--json"),
    "jenkins": ("rotate", "jenkins", "--no-input", "--json"),
}


@dataclass
class World:
    sandbox: Sandbox
    target: str
    env: dict[str, str]
    old: str  # the old token's id (value for the API access token)
    new_value: str | None = None  # the API access token made by hand (conductorone)


@pytest.fixture
def world(sandbox: Sandbox, request: pytest.FixtureRequest) -> World:
    sandbox.state.fault_hold = HOLD
    target = request.param
    env = dict(FAST)
    if target == "daily-checks":
        (old,) = [p for p in sandbox.state.pats() if p.display_name == "daily-checks" and not p.revoked]
        return World(sandbox, target, env, old.authorization_id)
    if target == "jenkins":
        return World(sandbox, target, env, sandbox.jenkins.seeded.token_uuid)  # type: ignore[union-attr]
    bk = sandbox.buildkite
    if target == "buildkite-cluster":
        old_token = next(t for t in bk.cluster_tokens() if t.description == "Default cluster agents")
        return World(sandbox, target, env, old_token.uuid)
    new = bk.create_api_token(("read_teams", "read_organizations", "read_user"), graphql=True, description="ConductorOne Buildkite connector")
    text = sandbox.config_path.read_text()
    sandbox.config_path.write_text(text.replace('old_token = "vault:', 'new_token = "env:KT_NEW_BK_TOKEN"\nold_token = "vault:', 1))
    env["KT_NEW_BK_TOKEN"] = new.value
    return World(sandbox, target, env, bk.seeded.connector_token, new.value)  # type: ignore[union-attr]


def error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("keyturn: error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    return errors[0]


def journal_states(sandbox: Sandbox) -> list[str]:
    states = []
    for path in sorted((sandbox.config_path.parent / "journal").glob("*.jsonl")):
        events = [json.loads(line)["event"] for line in path.read_text().splitlines() if line.strip()]
        states.append(events[-1])
    return states


def assert_rotated(w: World, *, aborted_before: int = 0) -> None:
    """Exactly one live new token, stored as the latest Key Vault version, the old one revoked, journal done."""
    sb, state = w.sandbox, w.sandbox.state
    assert state.pending_faults() == []  # every injected fault was met by a request
    assert state.internal_errors == []
    if w.target == "daily-checks":
        live = [p for p in state.pats() if p.display_name.startswith("daily-checks") and not p.revoked]
        assert len(live) == 1 and live[0].display_name != "daily-checks", [p.display_name for p in live]
        assert state.pat(w.old).revoked  # type: ignore[union-attr]
        value, secret = live[0].value, "azure-devops-token"
    elif w.target == "buildkite-cluster":
        tokens = sb.buildkite.cluster_tokens(include_revoked=True)
        live = [t for t in tokens if t.description.startswith("Default cluster agents") and not t.revoked]
        assert len(live) == 1 and live[0].uuid != w.old, [t.description for t in live]
        assert next(t for t in tokens if t.uuid == w.old).revoked
        value, secret = live[0].value, "buildkite-agent-token"
    elif w.target == "jenkins":
        jk = sb.jenkins
        live = [t for t in jk.tokens() if jk.token_status(t.value) == "active" and t.user == jk.seeded.user]  # type: ignore[union-attr]
        assert len(live) == 1 and live[0].uuid != w.old, [t.name for t in live]
        assert jk.token_status(jk.seeded.token_value) == "revoked"  # type: ignore[union-attr]
        value, secret = live[0].value, "jenkins-api-token"
    else:
        assert sb.buildkite.api_token(w.old).revoked  # type: ignore[union-attr]
        assert not sb.buildkite.api_token(w.new_value).revoked  # type: ignore[union-attr, arg-type]
        connector = sb.conductorone.connector()
        assert connector is not None and connector.api_token == w.new_value
        value, secret = w.new_value, "buildkite-conductorone-token"
    versions = state.secret_versions("cftptl-intsvc", secret)
    assert versions[-1].value == value
    # one version holds the new value (no duplicate from a repeated write), tagged active
    ours = [v for v in versions if v.value == value]
    assert len(ours) == 1 and (ours[0].tags or {}).get("keyturn-state") == "active", [v.tags for v in ours]
    states = journal_states(sb)
    assert states.count("done") == 1 and states.count("aborted") == aborted_before, states


def run_stops(w: World, keyturn, args: tuple[str, ...], expect: tuple[str, ...]) -> str:
    run = keyturn(*args, env=w.env)
    assert run.code != 0, run.stdout
    line = error_line(run.stderr)
    for word in expect:
        assert word in line, line
    return line


def assert_no_secret_leaked(w: World, *outputs: str) -> None:
    text = "".join(outputs)
    if w.target == "daily-checks":
        values = [p.value for p in w.sandbox.state.pats()]
    elif w.target == "buildkite-cluster":
        values = [t.value for t in w.sandbox.buildkite.cluster_tokens(include_revoked=True)]
    elif w.target == "jenkins":
        values = [t.value for t in w.sandbox.jenkins.tokens()]
    else:
        values = [w.new_value or ""]
    assert not [v for v in values if v and v in text]


# -- 1. every call that may be repeated: two faults each, the third attempt succeeds -----------------


@pytest.mark.parametrize("world", list(IDEMPOTENT), indirect=True)
@pytest.mark.parametrize("pair", PAIRS, ids=["+".join(p) for p in PAIRS])
def test_idempotent_calls_retry_within_bounds(world: World, keyturn, pair: tuple[str, str]) -> None:
    for service, call in IDEMPOTENT[world.target]:
        for kind in pair:
            world.sandbox.state.inject_fault(call, kind, service=service)
    run = keyturn(*ROTATE[world.target], env=world.env)
    assert run.code == 0, run.stderr
    assert run.json()["state"] == "done"
    assert_rotated(world)
    assert_no_secret_leaked(world, run.stdout, run.stderr)


# -- 2. a call that keeps failing: one line naming it, then the rotation completes ------------------

EXHAUSTED = [
    # target, (service, call), kind, words the error line holds, how it is completed
    ("daily-checks", ("vssps", f"DELETE {PATS}"), "503", ("could not revoke PAT", "503 after 3 attempts"), "resume"),
    ("daily-checks", ("vault:*", "GET /secrets/{name}/versions"), "reset", ("Key Vault cftptl-intsvc", "list versions of", "reset", "3"), "rotate"),
    ("buildkite-cluster", ("buildkite-graphql", "GetOrganizationId"), "malformed", ("GetOrganizationId", "unreadable", "3 attempts"), "rotate"),
    ("buildkite-conductorone", ("buildkite-rest", "GET /v2/access-token"), "429", ("GET /v2/access-token", "429"), "rotate"),
    ("jenkins", ("jenkins", "GET /user/{user}/security/"), "503", ("security page", "HTTP 503 3 times"), "rotate"),
]


@pytest.mark.parametrize(
    ("world", "call", "kind", "expect", "then"),
    EXHAUSTED,
    ids=[f"{t}-{c[1].split()[-1].rsplit('/', 1)[-1]}-{k}" for t, c, k, _e, _t in EXHAUSTED],
    indirect=["world"],
)
def test_persistent_fault_stops_with_one_line_then_completes(
    world: World, keyturn, call: tuple[str, str], kind: str, expect: tuple[str, ...], then: str
) -> None:
    service, name = call
    world.sandbox.state.inject_fault(name, kind, times=3, service=service)
    line = run_stops(world, keyturn, ROTATE[world.target], expect)
    assert world.sandbox.state.pending_faults() == []
    if then == "resume":
        resumed = keyturn("resume", "--no-input", "--json", "--skip-manual", env=world.env)
        assert resumed.code == 0, resumed.stderr
        assert [r["state"] for r in resumed.json()["resumed"]] == ["done"]
    else:  # it stopped before minting: nothing to resume, a new rotation does it
        resumed = keyturn("resume", "--no-input", "--json", "--skip-manual", env=world.env)
        assert resumed.code == 0 and resumed.json() == {"resumed": []}, resumed.stderr
        again = keyturn(*ROTATE[world.target], env=world.env)
        assert again.code == 0, again.stderr
    assert_rotated(world)
    assert_no_secret_leaked(world, line, resumed.stdout, resumed.stderr)


ENTRA_TOKEN = "POST /{tenant}/oauth2/v2.0/token"


@pytest.mark.parametrize("world", ["daily-checks"], indirect=True)
@pytest.mark.parametrize("kind", ["timeout", "reset", "503"])
def test_entra_sign_in_is_retried_by_azure_identity(world: World, keyturn, kind: str) -> None:
    world.sandbox.state.inject_fault(ENTRA_TOKEN, kind, service="entra")
    run = keyturn(*ROTATE[world.target], env=world.env)
    assert run.code == 0, run.stderr
    assert_rotated(world)


@pytest.mark.parametrize("world", ["daily-checks"], indirect=True)
def test_entra_unreadable_answer_stops_before_minting_without_quoting_it(world: World, keyturn) -> None:
    """MSAL quotes an unreadable token answer in its error (which may hold tokens): keyturn never repeats it."""
    world.sandbox.state.inject_fault(ENTRA_TOKEN, "malformed", service="entra")
    line = run_stops(world, keyturn, ROTATE[world.target], ("Entra", "unreadable answer", "nothing was changed"))
    assert "{" not in line and "Content" not in line
    assert journal_states(world.sandbox) == []  # nothing was planned
    again = keyturn(*ROTATE[world.target], env=world.env)
    assert again.code == 0, again.stderr
    assert_rotated(world)


# -- 3. calls that must not be repeated blindly: every fault kind ------------------------------------

# what each fault on a creation leads to: "done" (reconciled: the orphan, if any, revoked; minted again)
# or "stops" (the rotation stops with one line; `keyturn resume` completes it)
MINT_OUTCOME = {k: "done" for k in NET_FAULT_KINDS} | {"429": "stops"}  # 429: never retried, "try again in N s"

NON_IDEMPOTENT = [
    # (500 behaves as 503 here: both answer before anything happened; the retry tests above cover 500)
    ("daily-checks", ("vssps", f"POST {PATS}"), MINT_OUTCOME, ("could not create PAT", "rate limiting", "429")),
    ("buildkite-cluster", ("buildkite-graphql", "ClusterAgentTokenCreate"), MINT_OUTCOME, ("ClusterAgentTokenCreate", "rate limiting", "429")),
    # revoking the old agent token: a mutation, sent once; an unknown outcome stops, `resume` revokes (twice is harmless)
    ("buildkite-cluster", ("buildkite-graphql", "ClusterAgentTokenRevoke"), {"reset-after": "stops", "503": "stops"}, ("ClusterAgentTokenRevoke",)),
    # generateNewToken: an unknown outcome is reconciled from the user's security page (Jenkins has no list API)
    ("jenkins", ("jenkins", f"POST {JK_TOKENS}/generateNewToken"), MINT_OUTCOME, ("could not create API token", "429")),
    # SetSecret: after a fault that may have written it, the versions are read back; written again only if absent
    ("daily-checks", ("vault:*", "PUT /secrets/{name}"), {k: "done" for k in NET_FAULT_KINDS}, ()),
    # the connector update: retried only after a 429 (refused); otherwise one line and `keyturn resume` sets it again
    ("buildkite-conductorone", ("conductorone", f"POST {C1_CONNECTOR}"), {k: "stops" for k in NET_FAULT_KINDS} | {"429": "done"}, ("connector", "update")),
]
KINDS = {
    f"POST {PATS}": [k for k in NET_FAULT_KINDS if k != "500"],
    "ClusterAgentTokenCreate": [k for k in NET_FAULT_KINDS if k != "500"],
    f"POST {JK_TOKENS}/generateNewToken": [k for k in NET_FAULT_KINDS if k != "500"],
    "ClusterAgentTokenRevoke": ["reset-after", "503"],
    "PUT /secrets/{name}": ["reset", "reset-after", "malformed", "429"],  # absent -> written again; written -> found
    f"POST {C1_CONNECTOR}": ["429", "reset-after"],
}
CASES = [
    pytest.param(t, c, k, outcomes[k], words)
    for t, c, outcomes, words in NON_IDEMPOTENT
    for k in KINDS[c[1]]
]


@pytest.mark.parametrize(
    ("world", "call", "kind", "outcome", "expect"),
    CASES,
    ids=[f"{p.values[1][1].split()[-1].rsplit('/', 1)[-1].strip('{}')}-{p.values[2]}" for p in CASES],
    indirect=["world"],
)
def test_non_idempotent_call_reconciles_or_stops(
    world: World, keyturn, call: tuple[str, str], kind: str, outcome: str, expect: tuple[str, ...]
) -> None:
    service, name = call
    world.sandbox.state.inject_fault(name, kind, service=service)
    outputs: list[str] = []
    if outcome == "done":
        run = keyturn(*ROTATE[world.target], env=world.env)
        assert run.code == 0, run.stderr
        assert run.json()["state"] == "done"
        outputs += [run.stdout, run.stderr]
        if name in (f"POST {PATS}", "ClusterAgentTokenCreate", f"POST {JK_TOKENS}/generateNewToken"):
            assert "reconcil" in run.stderr  # the engine looked for a token the lost answer created
    else:
        words = tuple(w for w in expect if w not in ("rate limiting", "429")) if kind != "429" else expect
        outputs.append(run_stops(world, keyturn, ROTATE[world.target], words))
        assert world.sandbox.state.pending_faults() == []
        resumed = keyturn("resume", "--no-input", "--json", "--skip-manual", env=world.env)
        assert resumed.code == 0, resumed.stderr
        assert [r["state"] for r in resumed.json()["resumed"]] == ["done"]
        outputs += [resumed.stdout, resumed.stderr]
    assert_rotated(world)
    assert_no_secret_leaked(world, *outputs)

