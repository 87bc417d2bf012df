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
        n = sandbox.buildkite.reconnect_agents()
        return f"{n} sandbox agent(s) reconnected with the token in their store"
    if gate.gate == "jenkins-token-use":
        if not sandbox.jenkins_consumer_call():
            raise KeyturnError("the sandbox's deploy job was refused by Jenkins with the token in its store")
        return "the sandbox's deploy job called Jenkins with the token in its store"
    raise KeyturnError(f"nothing in the sandbox plays the consumer of {gate.title}")
