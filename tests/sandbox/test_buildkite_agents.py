"""The Buildkite emulator's agents (issue 13, item 8): seeded connected agents, ``Organization.agents`` executed on the
vendored schema, agents that register again as new agents when cycled, and a saved world from before agents."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.sandbox import Sandbox
from app.sandbox.buildkite import BuildkiteStandalone, parse_node_id
from app.sandbox.persist import WORLD_FILE, dumps, loads

ORG = "contoso-sandbox"
AGENTS = """
query Agents($slug: ID!, $first: Int, $after: String, $cluster: ID, $clustered: Boolean, $search: String,
             $queues: [ID!], $running: Boolean) {
  organization(slug: $slug) {
    agents(first: $first, after: $after, cluster: $cluster, clustered: $clustered, search: $search,
           clusterQueue: $queues, isRunningJob: $running) {
      count
      pageInfo { hasNextPage endCursor }
      edges { cursor node {
        id uuid name hostname connectionState connectedAt disconnectedAt createdAt isRunningJob metaData
        operatingSystem { name } version userAgent
        clusterQueue { id uuid key cluster { id uuid name } }
      } }
    }
  }
}
"""


@pytest.fixture
def bk(tmp_path: Path) -> Iterator[BuildkiteStandalone]:
    with BuildkiteStandalone(tmp_path / "bk") as servers:
        yield servers
    assert servers.state.internal_errors == [], "the emulator itself failed"


@pytest.fixture
def http(bk: BuildkiteStandalone) -> Iterator[httpx.Client]:
    with httpx.Client(verify=bk.client_ssl_context(), timeout=10) as client:
        yield client


def gql(http: httpx.Client, bk: BuildkiteStandalone, query: str, **variables: Any) -> dict[str, Any]:
    seeded = bk.world.seeded
    assert seeded is not None
    resp = http.post(bk.graphql_url, json={"query": query, "variables": {"slug": ORG, **variables}},
                     headers={"Authorization": f"Bearer {seeded.keyturn_token}"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "errors" not in body, body
    return dict(body["data"])


def listed(http: httpx.Client, bk: BuildkiteStandalone, **variables: Any) -> list[dict[str, Any]]:
    conn = gql(http, bk, AGENTS, **variables)["organization"]["agents"]
    return [e["node"] for e in conn["edges"]]


def test_seeded_agents_connected_with_the_then_current_tokens(bk: BuildkiteStandalone) -> None:
    w = bk.world
    default = w.cluster("Default cluster")
    assert default is not None
    (token,) = [t for t in w.cluster_tokens("Default cluster") if t.description == "Default cluster agents"]
    (legacy,) = [t for t in w.agent_tokens() if t.description == "Legacy macOS agents"]
    agents = w.agents("Default cluster")
    assert [a.name for a in agents] == ["default-agent-2", "default-agent-1"]
    assert {a.token_uuid for a in agents} == {token.uuid} and all(a.connected_at > token.created_at for a in agents)
    (mac,) = w.agents(unclustered=True)
    assert mac.name == "legacy-mac-1" and mac.token_uuid == legacy.uuid and mac.cluster_uuid is None
    assert mac.operating_system == "macOS" and "queue=default" in mac.meta_data
    assert w.agents("linux-large") == []
    assert all(a.connected_at < bk.state.time() - 86400 for a in w.agents())  # days before any rotation


def test_organization_agents_on_the_schema(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    w = bk.world
    default = w.cluster("Default cluster")
    assert default is not None
    every = listed(http, bk)  # clustered defaults to true: every connected agent, clustered or not
    assert [a["name"] for a in every] == ["legacy-mac-1", "default-agent-2", "default-agent-1"]  # oldest first
    node = every[1]
    assert node["connectionState"] == "connected" and node["disconnectedAt"] is None and node["isRunningJob"] is False
    assert node["clusterQueue"]["key"] == "default" and node["clusterQueue"]["cluster"]["uuid"] == default.uuid
    assert parse_node_id(node["id"]) == ("Agent", node["uuid"]) and node["connectedAt"].endswith("Z")
    assert node["userAgent"].startswith("buildkite-agent/") and node["operatingSystem"] == {"name": "Linux"}
    assert every[0]["clusterQueue"] is None
    # cluster: its GraphQL id or its UUID; an id the organization does not know answers no agents
    assert [a["name"] for a in listed(http, bk, cluster=default.id)] == ["default-agent-2", "default-agent-1"]
    assert len(listed(http, bk, cluster=default.uuid)) == 2
    assert listed(http, bk, cluster="Q2x1c3Rlci0tLW5vcGU=") == []
    # clustered: false leaves out every agent of a cluster queue
    assert [a["name"] for a in listed(http, bk, clustered=False)] == ["legacy-mac-1"]
    assert [a["name"] for a in listed(http, bk, search="MAC")] == ["legacy-mac-1"]
    assert len(listed(http, bk, queues=[node["clusterQueue"]["id"]])) == 2
    assert listed(http, bk, running=True) == []
    assert bk.world.counters["graphql.organization.agents"] == 8


def test_agents_page_by_cursor(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    for n in range(5):
        assert bk.world.connect_agent(f"large-{n}", cluster="linux-large", age_days=1 - n / 10) is not None
    names, after = [], None
    for _ in range(5):
        conn = gql(http, bk, AGENTS, first=2, after=after, cluster=bk.world.cluster("linux-large").id)["organization"]["agents"]  # type: ignore[union-attr]
        names += [e["node"]["name"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert names == [f"large-{n}" for n in range(5)]


def test_an_agent_by_node_id_and_by_slug(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    (mac,) = bk.world.agents(unclustered=True)
    by_node = gql(http, bk, "query($id: ID!) { node(id: $id) { ... on Agent { name connectionState } } }", id=mac.id)
    assert by_node["node"] == {"name": "legacy-mac-1", "connectionState": "connected"}
    by_slug = gql(http, bk, "query($s: ID!) { agent(slug: $s) { uuid hostname } }", s=f"{ORG}/{mac.uuid}")
    assert by_slug["agent"] == {"uuid": mac.uuid, "hostname": "mac-mini-01.contoso.example"}


def test_cycled_agents_register_again_as_new_agents(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    w = bk.world
    before = w.agents("Default cluster")
    new = w.add_cluster_token(w.cluster("Default cluster").uuid, "rotated", created_by=None)  # type: ignore[union-attr]
    bk.state.advance_clock(60)
    assert w.reconnect_agents("Default cluster") == 2
    after = w.agents("Default cluster")
    assert {a.name for a in after} == {a.name for a in before}
    assert not {a.uuid for a in after} & {a.uuid for a in before}  # new agents, new ids
    assert {a.token_uuid for a in after} == {new.uuid}  # with the newest live token of the cluster
    assert all(a.connected_at >= bk.state.time() - 5 for a in after)
    gone = [a for a in w.agents("Default cluster", include_disconnected=True) if a.uuid in {b.uuid for b in before}]
    assert [a.connection_state for a in gone] == ["disconnected", "disconnected"] and all(a.disconnected_at for a in gone)
    assert {a["uuid"] for a in listed(http, bk, cluster=new.cluster_uuid)} == {a.uuid for a in after}  # only connected ones
    assert len(w.agents(unclustered=True)) == 1  # the others were left alone
    assert w.counters["agents.reconnected"] == 2


def test_an_agent_with_a_revoked_or_foreign_token_cannot_register(bk: BuildkiteStandalone) -> None:
    w = bk.world
    (old,) = w.cluster_tokens("linux-large")
    assert w.connect_agent("l-1", token=old.value) is not None
    with w.lock:
        w.cluster_token_records[old.uuid].revoked = True
    assert len(w.agents("linux-large")) == 1  # revoking disconnects no one
    assert w.reconnect_agents("linux-large") == 0  # a restart with no live token fails...
    assert w.agents("linux-large") == []  # ...and the agent is down
    assert w.connect_agent("l-2", token=old.value) is None
    assert w.connect_agent("l-3", token="not-a-token") is None
    default = w.cluster_tokens("Default cluster")[0]
    assert w.connect_agent("l-4", cluster="linux-large", token=default.value) is None  # another cluster's token
    assert w.connect_agent("l-5", cluster="linux-large", queue="no-such-queue") is None
    assert w.counters["agents.refused"] == 5
    (legacy,) = [t for t in w.agent_tokens() if t.description == "Legacy macOS agents"]
    mac = w.connect_agent("mac-2", token=legacy.value)
    assert mac is not None and mac.cluster_uuid is None and mac.queue_uuid is None  # an unclustered token


def test_disconnect_and_lose_agents(bk: BuildkiteStandalone) -> None:
    w = bk.world
    assert w.disconnect_agents(unclustered=True, lost=True) == 1
    (mac,) = w.agents(unclustered=True, include_disconnected=True)
    assert mac.connection_state == "lost" and mac.lost_at is not None
    assert w.disconnect_agents() == 2 and w.agents() == []


def test_cycling_while_agents_are_listed(bk: BuildkiteStandalone, http: httpx.Client) -> None:
    """The world's lock: agents cycled from another thread while GraphQL lists them; every answer is whole."""
    errors: list[BaseException] = []

    def cycle() -> None:
        try:
            for _ in range(30):
                bk.world.reconnect_agents("Default cluster")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=cycle)
    t.start()
    counts = [len(listed(http, bk, cluster=bk.world.cluster("Default cluster").id)) for _ in range(20)]  # type: ignore[union-attr]
    t.join()
    assert errors == [] and set(counts) == {2}
    assert len(bk.world.agents("Default cluster", include_disconnected=True)) == 62


def test_a_world_saved_before_agents_loads_with_none(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    with Sandbox(d, persist=True) as sb:
        assert len(sb.buildkite.agents()) == 3
    path = d / WORLD_FILE
    world = loads(path.read_bytes())
    for name in ("agent_records", "queues"):  # what emulators before agents did not keep
        del world["buildkite"].__dict__[name]
    path.write_bytes(dumps(world))
    path.chmod(0o600)
    with Sandbox(d, persist=True) as again:
        assert again.loaded
        bk = again.buildkite
        assert bk.agents(include_disconnected=True) == [] and bk.reconnect_agents() == 0
        agent = bk.connect_agent("after-upgrade", cluster="Default cluster")  # the default queue came back
        assert agent is not None and agent.queue_uuid in bk.queues
        assert {q.key for q in bk.queues.values()} == {"default"} and len(bk.queues) == len(bk.clusters)
        assert again.state.internal_errors == []
