"""The sandbox's consumers, played on request, so a newcomer sees every consumer gate pass for real.

Each waiting gate of a sandbox rotation has one thing a person does in real life to make it pass: a reviewer merges
the Flux pull request, the agents are cycled, a deploy job calls Jenkins. ``play`` does that thing against the
sandbox's own services (the real git remote, the emulators' state); it never touches the gate's answer itself,
which keyturn then reads back the way it reads the real services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.errors import KeyturnError

if TYPE_CHECKING:
    from app.sandbox.sandbox import Sandbox
    from providers.base import GateCheck


def what_plays(gate: GateCheck) -> str | None:
    """The action ``play`` takes for this gate, for a key's label (None: nothing to play, e.g. a pipeline run)."""
    if gate.gate.startswith("flux-sops-secret"):
        return "the reviewer merges the pull request"
    if gate.gate == "buildkite-agents":
        return "the agents reconnect with the new token"
    if gate.gate == "jenkins-token-use":
        return "the deploy job calls Jenkins with the new token"
    return None


def play(sandbox: Sandbox, gate: GateCheck, detail: dict[str, Any]) -> str:
    """Do what makes ``gate`` pass in the sandbox; ``detail`` is its follow-up's journaled detail. Says what it did."""
    if gate.gate.startswith("flux-sops-secret"):
        from app.sandbox.flux import merge_branch

        branch = str(detail.get("branch") or "")
        if sandbox.flux is None or not branch:
            raise KeyturnError("the sandbox has no pull request of this rotation to merge")
        merge_branch(sandbox.flux.bare, branch)
        return f"the sandbox's reviewer merged {branch} into main"
    if gate.gate == "buildkite-agents":
        _next_second()
        n = sandbox.buildkite.reconnect_agents()
        return f"{n} sandbox agent(s) reconnected with the token in their store"
    if gate.gate == "jenkins-token-use":
        if not deploy_job(sandbox):
            raise KeyturnError("the sandbox's deploy job was refused by Jenkins with the token in its store")
        return "the sandbox's deploy job called Jenkins with the token in its store"
    raise KeyturnError(f"nothing in the sandbox plays the consumer of {gate.title}")


def _next_second() -> None:
    """Buildkite's connectedAt has whole seconds, and an agent that connected in the second the new token was stored
    counts as connected before it (the gate cannot tell): a restarted agent comes back a moment later, as real ones do."""
    import time

    time.sleep(1.0 - time.time() % 1.0 + 0.01)


JENKINS_STORE = ("cftptl-intsvc", "jenkins-api-token")  # where the sandbox's deploy jobs read their token


def deploy_job(sandbox: Sandbox) -> bool:
    """The deploy jobs run: they read the Jenkins token from their Key Vault secret (the newest enabled version, as
    a pipeline's Key Vault task does) and call Jenkins with it. True when Jenkins accepted it."""
    versions = sandbox.state.secret_versions(*JENKINS_STORE)
    if not versions or not versions[-1].enabled:
        return False
    return sandbox.jenkins.consumer_call(versions[-1].value)


def every_consumer_follows(sandbox: Sandbox) -> list[str]:
    """Headless tests and matrices: every consumer of every target picks up what its store holds now (each open Flux
    pull request is merged, every agent is cycled, the deploy jobs run once). Says what happened."""
    from app.sandbox.flux import merge_branch, open_branches

    said = []
    if sandbox.flux is not None:
        for branch in open_branches(sandbox.flux.bare):
            merge_branch(sandbox.flux.bare, branch)
            said.append(f"merged {branch}")
    _next_second()
    said.append(f"{sandbox.buildkite.reconnect_agents()} agent(s) reconnected")
    said.append("the deploy jobs ran" if deploy_job(sandbox) else "the deploy jobs were refused")
    return said


def consumers_follow_promptly(sandbox: Sandbox) -> None:
    """A world whose consumers take up a new value as it lands, so a rotation's gates pass in the run itself (tests of
    everything but the waiting): the Flux remote auto-merges keyturn's branches, no agent stays connected with an old
    token (they were stopped), the daily-checks pipeline run finishes at once, and the deploy jobs run before every
    look at Jenkins' security page (a job that runs all the time). The gates still read the real state."""
    from app.sandbox.flux import auto_merge

    if sandbox.flux is not None:
        auto_merge(sandbox.flux.bare)
    sandbox.buildkite.disconnect_agents()
    sandbox.state.set_pipeline("daily-checks", run_duration_s=0)
    sandbox.jenkins.before_page = lambda: deploy_job(sandbox)
