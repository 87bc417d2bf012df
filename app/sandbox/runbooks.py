"""The sandbox targets' runbooks: each platform's rotation procedure, in our own words (Markdown).

Written into the sandbox's keyturn.toml as TOML literal strings (no ``'''`` inside). Each says what is
minted, where it is stored, which consumers must pick it up, when the old token is revoked and what to do
when it goes wrong, as keyturn does it with the sandbox's configuration (app/sandbox/sandbox.py).
"""

from __future__ import annotations

_WHEN_IT_GOES_WRONG = """\
- Interrupted (a crash, Ctrl-C, a network fault): `keyturn resume` continues from the last step written to
  the journal; the targets screen lists the rotation under *Unfinished rotations*.
- A consumer you know has the new token cannot be proven: `o` on the retire step (headless `--revoke-now`)
  revokes the old token anyway, after saying what would break.
- Want to undo it: `keyturn abort ID` revokes the new token if one was minted; it is refused once the old
  one has been revoked.
"""

KEDA_RUNBOOK = (
    """\
# Rotate the KEDA agent-pool PAT

The KEDA `azure-pipelines` scaler reads agent pools and job requests with a PAT of the Azure DevOps bot.
When the PAT expires, agents stop scaling and pipelines queue forever.

**Minted:** a PAT named `keda-agent-pools-<date>-<rotation>` with *Agent Pools: Read & manage*, valid 90 days, made with the
PAT Lifecycle API as the bot (device-code sign-in; its email and password are in Key Vault `rpe-prod`).
keyturn checks the new PAT can read agent pools.

**Stored:** nowhere but the Flux repo: copy the value on the reveal step if you want a copy.

**Consumers:** `personalAccessToken` of the `pipeline-auth` Secret in `flux-config`, for CFT and SDS. keyturn
sets it with `sops` in both files, in one commit on a new `keyturn/rotate-keda-...` branch, and pushes it:
open the pull request and get it merged. Flux then applies it in both environments.

**Old PAT revoked:** only once the branch Flux reconciles holds the new PAT in both files (a merge of one
environment only keeps waiting). Before that, check KEDA scales agents again everywhere: it may keep the
old PAT until its operator restarts (`kubectl -n keda rollout restart deployment/keda-operator`).
In the demo, `m` on the retire step merges the pull request.

**When it goes wrong:**

"""
    + _WHEN_IT_GOES_WRONG
)

DAILY_CHECKS_RUNBOOK = (
    """\
# Rotate the daily-checks PAT

The daily-checks pipeline reads agent pools, builds, pipeline resources and releases with a PAT of the bot.

**Minted:** a PAT named `daily-checks-<date>-<rotation>` with Agent Pools (read), Build (read), Pipeline Resources (use) and
Release (read), valid 90 days, as the bot (its email and password are in Key Vault `rpe-prod`).

**Stored:** a new version of `azure-devops-token` in Key Vault `cftptl-intsvc`, tagged with the rotation,
written before the value is shown (with `--aws`, also the SSM parameter `/ci/azure-devops-token`).

**Consumers:** the pipeline reads the newest version at each run. keyturn proves it: it queues a run of
pipeline 12 (`platops`, branch `main`) and waits for it to succeed.

**Old PAT revoked:** once the new PAT is verified, every store reads back the new value and that run
succeeded. A failed run keeps the old PAT alive: fix the pipeline, then `keyturn resume`.

**When it goes wrong:**

"""
    + _WHEN_IT_GOES_WRONG
)

BUILDKITE_CLUSTER_RUNBOOK = (
    """\
# Rotate the Default cluster's agent token

The agents of the Buildkite *Default cluster* register with a cluster agent token that they read from Key
Vault when they boot.

**Minted:** a new agent token of the Default cluster (GraphQL `clusterAgentTokenCreate`), described
`Default cluster agents-<date>-<rotation>`. An expiry is optional and must be at least 10 minutes ahead; Buildkite cannot
change it later. keyturn checks the new token is listed on the cluster.

**Stored:** a new version of `buildkite-agent-token` in Key Vault `cftptl-intsvc`, before it is shown.

**Consumers:** every agent of the cluster, which picks the new token up when it restarts. Agents that are
running stay connected with the old one: restart or replace them (a rolling restart of the agent fleet).

**Old token revoked:** with `clusterAgentTokenRevoke` (the reason names the rotation) once no agent that
connected before the new token reached Key Vault is still connected. In the demo, `m` on the retire step
reconnects the agents.

**When it goes wrong:**

- An agent that cannot register after a restart reads an old version: check the vault secret's newest
  version is the one the rotation tagged.
"""
    + _WHEN_IT_GOES_WRONG
)

BUILDKITE_UNCLUSTERED_RUNBOOK = (
    """\
# Rotate the legacy macOS agents' token (unclustered)

The legacy macOS agents run outside any cluster, with an unclustered agent token: a deprecated Buildkite
feature, only in organizations made before 2024-02-26. Moving these agents into a cluster (and rotating a
cluster token instead) is the lasting fix.

**Minted:** a new unclustered agent token of the organization (GraphQL `agentTokenCreate`), described
`Legacy macOS agents-<date>-<rotation>`; it does not expire. keyturn checks it is listed and not revoked.

**Stored:** a new version of `buildkite-legacy-agent-token` in Key Vault `cftptl-intsvc`, before it is shown.

**Consumers:** the macOS agents, once restarted with the new token. Running agents stay connected with the
old one until then.

**Old token revoked:** with `agentTokenRevoke` (the reason names the rotation) once no agent outside a
cluster that connected before the new token was stored is still connected. In the demo, `m` on the retire
step reconnects the agents.

**When it goes wrong:**

"""
    + _WHEN_IT_GOES_WRONG
)

BUILDKITE_CONDUCTORONE_RUNBOOK = (
    """\
# Rotate the Buildkite API token of the ConductorOne connector

ConductorOne reads Buildkite's teams, organizations and users with an API access token of a Buildkite
member.

**Minted:** by you: no Buildkite API can create an API access token. keyturn opens Buildkite's token page,
pre-filled with the description `ConductorOne Buildkite connector-<date>-<rotation>` and exactly `read_teams read_organizations read_user` and GraphQL access ticked; create the token there
and paste it (masked). keyturn checks its prefix and that `GET /v2/access-token` shows exactly those scopes.

**Stored:** a new version of `buildkite-conductorone-token` in Key Vault `cftptl-intsvc`, where keyturn also
reads the old token from.

**Consumers:** the ConductorOne Buildkite connector. keyturn signs in to ConductorOne, sets the connector's
`api_token` and organization, forces a sync and waits for it to finish. A self-hosted connector becomes a
manual step: update its deployment's secret yourself.

**Old token revoked:** with `DELETE /v2/access-token`, called with the old token itself, once a sync that
began after the update finished and none failed since.

**When it goes wrong:**

- The pasted token has other scopes: keyturn refuses it; delete it on Buildkite and make another.
- The sync fails: the old token still works; fix the connector in ConductorOne, then `keyturn resume`.
"""
    + _WHEN_IT_GOES_WRONG
)

JENKINS_RUNBOOK = (
    """\
# Rotate the Jenkins API token of the deploy jobs

The deploy jobs call Jenkins with the API token of the `keyturn-bot` user.

**Minted:** a new API token `ci-deploy-<date>-<rotation>` of that user (`generateNewToken`), valid 90 days (Jenkins 2.548 and later; an
older Jenkins makes tokens that never expire, and keyturn says so). keyturn then checks it with
`GET /whoAmI/api/json` on a fresh connection.

**Stored:** a new version of `jenkins-api-token` in Key Vault `cftptl-intsvc`, which is also where keyturn
reads the user's current token: the next rotation signs in with this one. The new token's id is written
back to `token_uuid` in the configuration.

**Consumers:** the deploy jobs, which must call Jenkins with the new token. keyturn watches the user's security
page: it waits until a job used the new token and nobody used the old one since it was stored.
In the demo, `m` on the retire step runs the deploy job.

**Old token revoked:** by its id, then keyturn proves the old value gets 401 and its id left the page
(Jenkins answers 200 even for an id it does not know).

**When it goes wrong:**

- The old token's id is unknown: copy it from the user's security page, or use an administrator's script
  console; `--revoke-all-other-tokens` revokes every other token of the user.
"""
    + _WHEN_IT_GOES_WRONG
)

RUNBOOKS: dict[str, str] = {
    "keda": KEDA_RUNBOOK,
    "daily-checks": DAILY_CHECKS_RUNBOOK,
    "buildkite-cluster": BUILDKITE_CLUSTER_RUNBOOK,
    "buildkite-unclustered": BUILDKITE_UNCLUSTERED_RUNBOOK,
    "buildkite-conductorone": BUILDKITE_CONDUCTORONE_RUNBOOK,
    "jenkins": JENKINS_RUNBOOK,
}
