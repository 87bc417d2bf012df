"""The Buildkite agent-token consumer gate (issue 13, item 3): no agent that connected before the new token was stored
may still be connected when the old token is revoked.

Against the emulator over real sockets (graphql-core on the vendored schema) and, for answers a real server rarely
gives, behind httpx.MockTransport.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Account, Target
from app.sandbox.buildkite import BuildkiteStandalone
from app.secret import SecretValue
from providers.base import GateCheck, Interaction, RotationContext
from providers.buildkite.common import AGENTS_GATE, BuildkiteBase
from providers.buildkite.provider import make_buildkite_provider

CANARY = "bkua_CANARY0123456789abcdef0123456789abcdef"
GQL = "https://graphql.example.test/v1"
REST = "https://api.example.test"
CLUSTER = {"id": "Q2x1c3Rlci0tLWMx", "uuid": "c1", "name": "linux", "description": None}


def now() -> datetime:
    return datetime.now(UTC)


def one(checks: list[GateCheck]) -> GateCheck:
    (check,) = checks
    assert check.gate == AGENTS_GATE
    return check


# -- against the emulator ------------------------------------------------------------------------------


@pytest.fixture
def bk(tmp_path: Path) -> Iterator[BuildkiteStandalone]:
    with BuildkiteStandalone(tmp_path / "bk") as servers:
        yield servers
    assert servers.state.internal_errors == [], "the emulator itself failed"


def make(bk: BuildkiteStandalone, **target: object) -> BuildkiteBase:
    seeded = bk.world.seeded
    assert seeded is not None
    account = Account(
        platform="buildkite", organization=seeded.organization, api_token="env:BK",
        graphql_url=bk.graphql_url, rest_url=bk.rest_url,
    )
    return make_buildkite_provider(
        "bk", account, "t", Target(account="bk", token_name="agents", **target),  # type: ignore[arg-type]
        ca_bundle=bk.ca_path, resolve_secret=lambda ref: SecretValue(seeded.keyturn_token),
        interaction=Interaction(), sleep=lambda s: None,
    )


def test_the_manual_cycle_step_is_gone_and_the_gate_replaces_it(bk: BuildkiteStandalone) -> None:
    cluster = make(bk, token_type="cluster-agent-token", cluster="Default cluster")
    unclustered = make(bk, token_type="unclustered-agent-token")
    api = make(bk, token_type="api-access-token")
    assert cluster.manual_follow_ups() == [] and unclustered.manual_follow_ups() == []
    assert "cycle them" in cluster.retire_notice() and "cycle them" in unclustered.retire_notice()  # kept
    assert cluster.gate_plan() == ("no agent of cluster Default cluster that connected before the new token was stored "
                                   "is still connected (cycled agents register again)")
    assert unclustered.gate_plan().startswith("no unclustered agent of contoso-sandbox that connected before")
    assert api.gate_plan() == "" and api.consumer_gates(RotationContext(stored_at=now())) == []


def test_cluster_gate_waits_for_agents_connected_before_the_store(bk: BuildkiteStandalone, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p = make(bk, token_type="cluster-agent-token", cluster="Default cluster")
    stored = now()
    check = one(p.consumer_gates(RotationContext(stored_at=stored)))
    assert not check.passed and check.title == "Agents of cluster Default cluster"
    assert check.waiting_for == ("2 agents still connected since before the new token was stored (cluster Default cluster): "
                                 "default-agent-2, default-agent-1")  # oldest connection first
    assert check.progress == "2 left of 2 agents connected; 0 connected since the new token was stored"
    assert "does not disconnect these agents" in check.breaks and "can no longer register" in check.breaks
    assert check.url is None  # the sandbox serves no buildkite.com page
    # one agent cycled: one left
    bk.state.advance_clock(2)
    bk.world.reconnect_agents("Default cluster")
    bk.world.connect_agent("default-agent-9", cluster="Default cluster", running_job=True)  # new, with the newest token
    assert one(p.consumer_gates(RotationContext(stored_at=stored))).passed
    seeded = bk.world.seeded
    assert seeded is not None and seeded.keyturn_token not in caplog.text
    p.close()


def test_a_cluster_gate_counts_only_its_own_cluster(bk: BuildkiteStandalone) -> None:
    large = make(bk, token_type="cluster-agent-token", cluster="linux-large")
    before = bk.world.counters["graphql.organization.agents"]
    check = one(large.consumer_gates(RotationContext(stored_at=now())))
    assert check.passed and check.progress == "no agent connected"  # the Default cluster's and the unclustered are not its
    # an empty answer to the filtered listing is checked against the whole organization's list
    assert bk.world.counters["graphql.organization.agents"] - before == 2
    old = bk.world.connect_agent("large-1", cluster="linux-large", age_days=1)
    assert old is not None
    check = one(large.consumer_gates(RotationContext(stored_at=now())))
    assert not check.passed and check.waiting_for.endswith("(cluster linux-large): large-1")
    # ctx.cluster (the wizard's pick) wins over target.cluster
    picked = one(large.consumer_gates(RotationContext(cluster="Default cluster", stored_at=now())))
    assert picked.title == "Agents of cluster Default cluster" and picked.waiting_for.startswith("2 agents")


def test_an_agent_connected_after_the_store_passes(bk: BuildkiteStandalone) -> None:
    p = make(bk, token_type="cluster-agent-token", cluster="Default cluster")
    assert bk.world.disconnect_agents("Default cluster") == 2
    stored = now() - timedelta(seconds=5)
    bk.world.connect_agent("fresh-1", cluster="Default cluster")
    check = one(p.consumer_gates(RotationContext(stored_at=stored)))
    assert check.passed and check.progress == "1 agent connected, all since the new token was stored"
    # connectedAt has whole seconds: an agent of the very second of the store counts as before it
    same_second = one(p.consumer_gates(RotationContext(stored_at=now().replace(microsecond=999_000))))
    assert not same_second.passed and "fresh-1" in same_second.waiting_for


def test_without_the_store_time_the_gate_cannot_pass(bk: BuildkiteStandalone) -> None:
    p = make(bk, token_type="cluster-agent-token", cluster="linux-large")
    check = one(p.consumer_gates(RotationContext()))
    assert not check.passed
    assert check.waiting_for == "the new token has not reached its stores yet, so no agent can have it (cluster linux-large)"


def test_unclustered_gate_watches_the_unclustered_agents_only(bk: BuildkiteStandalone) -> None:
    p = make(bk, token_type="unclustered-agent-token")
    stored = now()
    check = one(p.consumer_gates(RotationContext(stored_at=stored)))
    assert not check.passed and check.title == "Unclustered agents of contoso-sandbox"
    assert check.waiting_for == ("1 agent still connected since before the new token was stored "
                                 "(unclustered, contoso-sandbox): legacy-mac-1")
    bk.state.advance_clock(2)
    assert bk.world.reconnect_agents(unclustered=True) == 1
    assert one(p.consumer_gates(RotationContext(stored_at=stored))).passed  # the Default cluster's agents still old


def test_a_failing_agent_listing_fails_the_gate(bk: BuildkiteStandalone) -> None:
    p = make(bk, token_type="cluster-agent-token", cluster="Default cluster")
    p.sign_in()
    bk.world.disconnect_agents()
    bk.state.inject_fault("ListAgents", "503", times=3, service="buildkite-graphql")
    check = one(p.consumer_gates(RotationContext(stored_at=now())))
    assert not check.passed
    assert check.waiting_for.startswith("the connected agents (cluster Default cluster) could not be listed: ")
    assert "HTTP 503 after 3 attempts" in check.waiting_for
    assert one(p.consumer_gates(RotationContext(stored_at=now()))).passed  # Buildkite answers again


def test_many_agents_are_read_page_by_page(bk: BuildkiteStandalone) -> None:
    for n in range(130):
        bk.world.connect_agent(f"fleet-{n:03}", cluster="linux-large", age_days=1)
    p = make(bk, token_type="cluster-agent-token", cluster="linux-large")
    check = one(p.consumer_gates(RotationContext(stored_at=now())))
    assert check.waiting_for.startswith("130 agents still connected") and check.waiting_for.endswith("fleet-004, …")


# -- answers a real server rarely gives --------------------------------------------------------------------

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class Fake:
    """GraphQL by operation name: ``ListClusters`` and ``GetOrganizationId`` answered, ``ListAgents`` by ``agents``."""

    def __init__(self, agents: Handler) -> None:
        self.agents = agents
        self.sent: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        op = body["operationName"]
        if op == "ListClusters":
            page = {"pageInfo": {"hasNextPage": False, "endCursor": None}, "edges": [{"node": CLUSTER}]}
            return httpx.Response(200, json={"data": {"organization": {"clusters": page}}})
        if op == "ListAgents":
            self.sent.append(body.get("variables") or {})
            return httpx.Response(200, json=self.agents(body.get("variables") or {}))
        raise AssertionError(f"unexpected {op}")


def agent(name: str, *, connected: datetime, cluster: str | None = "c1", state: str = "connected") -> dict[str, Any]:
    queue = {"id": "q", "key": "default", "cluster": {"id": "x", "uuid": cluster, "name": "n"}} if cluster else None
    return {"id": name, "uuid": name, "name": name, "hostname": name, "connectionState": state,
            "connectedAt": connected.strftime("%Y-%m-%dT%H:%M:%SZ"), "isRunningJob": False, "clusterQueue": queue}


def page(nodes: list[Any], *, more: bool = False, cursor: str | None = None) -> dict[str, Any]:
    edges = [{"cursor": "c", "node": n} for n in nodes]
    info = {"hasNextPage": more, "endCursor": cursor}
    return {"data": {"organization": {"agents": {"count": len(nodes), "pageInfo": info, "edges": edges}}}}


def fake_provider(fake: Fake, **target: Any) -> BuildkiteBase:
    account = Account(platform="buildkite", organization="org", api_token="env:BK", graphql_url=GQL, rest_url=REST)
    return make_buildkite_provider(
        "bk", account, "t", Target(account="bk", token_name="agents", **target), ca_bundle=None,
        resolve_secret=lambda ref: SecretValue(CANARY), interaction=Interaction(),
        transport=httpx.MockTransport(fake), sleep=lambda s: None,
    )


OLD = datetime(2026, 1, 1, tzinfo=UTC)
STORED = datetime(2026, 1, 2, tzinfo=UTC)
NEW = datetime(2026, 1, 3, tzinfo=UTC)


def test_the_filter_sent_is_the_clusters_graphql_id_and_no_null() -> None:
    fake = Fake(lambda v: page([agent("a", connected=NEW)]))
    check = one(fake_provider(fake, token_type="cluster-agent-token", cluster="linux").consumer_gates(RotationContext(stored_at=STORED)))
    assert check.passed
    assert fake.sent == [{"slug": "org", "first": 100, "cluster": CLUSTER["id"]}]  # after=None is left out
    assert check.url == f"https://buildkite.com/organizations/org/clusters/{CLUSTER['uuid']}"
    fake = Fake(lambda v: page([agent("m", connected=NEW, cluster=None)]))
    check = one(fake_provider(fake, token_type="unclustered-agent-token").consumer_gates(RotationContext(stored_at=STORED)))
    assert check.passed and fake.sent == [{"slug": "org", "first": 100, "clustered": False}]
    assert check.url == "https://buildkite.com/organizations/org/agents"


def test_a_filter_that_answers_nothing_is_checked_against_the_whole_list() -> None:
    # a server that takes the cluster filter for another id and answers no agents: the gate must not pass on that
    fake = Fake(lambda v: page([]) if "cluster" in v else page([agent("a", connected=OLD), agent("z", connected=OLD, cluster="c2")]))
    check = one(fake_provider(fake, token_type="cluster-agent-token", cluster="linux").consumer_gates(RotationContext(stored_at=STORED)))
    assert not check.passed and check.waiting_for.startswith("1 agent still connected") and check.waiting_for.endswith(": a")


def test_a_server_ignoring_the_filter_does_not_count_other_clusters() -> None:
    fake = Fake(lambda v: page([agent("mine", connected=NEW), agent("theirs", connected=OLD, cluster="c2"),
                                agent("loose", connected=OLD, cluster=None)]))
    check = one(fake_provider(fake, token_type="cluster-agent-token", cluster="linux").consumer_gates(RotationContext(stored_at=STORED)))
    assert check.passed and check.progress == "1 agent connected, all since the new token was stored"
    check = one(fake_provider(fake, token_type="unclustered-agent-token").consumer_gates(RotationContext(stored_at=STORED)))
    assert not check.passed and check.waiting_for.endswith(": loose")


def test_what_counts_as_still_connected() -> None:
    nodes = [
        agent("gone", connected=OLD, state="disconnected"),
        agent("lost", connected=OLD, state="lost"),
        agent("stopped", connected=OLD, state="stopped"),
        agent("stopping", connected=OLD, state="stopping"),  # still connected, finishing its job
        agent("odd", connected=OLD, state="some-new-state"),  # a state keyturn does not know: connected
        {**agent("when", connected=OLD), "connectedAt": None},  # no time: counted as before the store
        {**agent("where", connected=OLD), "clusterQueue": {"id": "q", "key": "k", "cluster": None}},  # cluster not said
        None,  # an agent Buildkite did not describe: it may be of this cluster
    ]
    fake = Fake(lambda v: page(nodes))
    check = one(fake_provider(fake, token_type="cluster-agent-token", cluster="linux").consumer_gates(RotationContext(stored_at=STORED)))
    assert not check.passed
    assert check.waiting_for == ("5 agents still connected since before the new token was stored (cluster linux): "
                                 "stopping, odd, when, where, an agent Buildkite did not describe")
    check = one(fake_provider(Fake(lambda v: page([None])), token_type="unclustered-agent-token").consumer_gates(RotationContext(stored_at=STORED)))
    assert not check.passed and "an agent Buildkite did not describe" in check.waiting_for


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ({"errors": [{"message": "Something broke " + CANARY}]}, "Something broke <redacted>"),
        ({"data": {"organization": {"agents": None}}}, "Buildkite answered without the list of agents"),
        ({"data": {"organization": None}}, "has no organization 'org'"),
        (page([], more=True, cursor=None), "said there are more agents but sent no cursor"),
    ],
    ids=["error-in-200", "null-agents", "no-organization", "more-without-cursor"],
)
def test_an_answer_that_cannot_prove_it_fails_the_gate(answer: dict[str, Any], said: str) -> None:
    p = fake_provider(Fake(lambda v: answer), token_type="unclustered-agent-token")
    check = one(p.consumer_gates(RotationContext(stored_at=STORED)))
    assert not check.passed and said in check.waiting_for
    assert check.waiting_for.startswith("the connected agents (unclustered, org) could not be listed: ")
    assert CANARY not in check.waiting_for + check.progress + check.title + check.breaks


def test_a_cursor_sent_twice_fails_the_gate() -> None:
    fake = Fake(lambda v: page([agent("a", connected=NEW, cluster=None)], more=True, cursor="same"))
    check = one(fake_provider(fake, token_type="unclustered-agent-token").consumer_gates(RotationContext(stored_at=STORED)))
    assert not check.passed and "repeated a cursor" in check.waiting_for
    assert [v.get("after") for v in fake.sent] == [None, "same"]
