"""Delays and "late" faults over real sockets: a slowed call still answers; a late one lands after the client left.

keyturn's own clients time out after ``app.net.http_timeout()`` (30 s, or KEYTURN_HTTP_TIMEOUT); here the
client is httpx with a short read timeout and the holds are a little longer than it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.sandbox import DEVOPS_RESOURCE, VAULT_RESOURCE, Sandbox
from app.sandbox.state import LATE_FAULT, NET_FAULT_KINDS

KV = {"api-version": "7.5"}
PAT_API = {"api-version": "7.2-preview.1"}
VAULT = "cftptl-intsvc"
SECRET = "azure-devops-token"
PUT_SECRET = "PUT /secrets/{name}"
POST_PAT = "POST /{org}/_apis/tokens/pats"


@pytest.fixture
def kv(sb: Sandbox, http: httpx.Client, app_token: Callable[[str], str]) -> Callable[..., httpx.Response]:
    """A Key Vault call on ``VAULT`` with an app token: kv(method, path, client=http, **kw)."""
    auth = {"Authorization": f"Bearer {app_token(VAULT_RESOURCE)}"}

    def call(method: str, path: str, client: httpx.Client | None = None, **kw: object) -> httpx.Response:
        return (client or http).request(method, f"{sb.urls['vault:' + VAULT]}{path}", params=KV, headers=auth, **kw)  # type: ignore[arg-type]

    return call


def impatient(sb: Sandbox, seconds: float = 0.4) -> httpx.Client:
    """A client that gives up reading after ``seconds``, like keyturn after its read timeout."""
    return httpx.Client(verify=sb.client_ssl_context(), timeout=httpx.Timeout(5.0, read=seconds))


def values(sb: Sandbox) -> list[str]:
    return [v.value for v in sb.state.secret_versions(VAULT, SECRET)]


# -- delays ------------------------------------------------------------------------------------------


def test_a_delay_slows_only_its_call_and_still_answers(sb: Sandbox, kv: Callable[..., httpx.Response]) -> None:
    sb.state.set_delay(0.5, service="vault:*", call=PUT_SECRET)
    assert sb.state.delays() == {("vault:*", PUT_SECRET): 0.5}
    start = time.monotonic()
    resp = kv("PUT", f"/secrets/{SECRET}", json={"value": "slow-one"})
    took = time.monotonic() - start
    assert resp.status_code == 200 and resp.json()["value"] == "slow-one"
    assert took >= 0.5
    start = time.monotonic()
    assert kv("GET", f"/secrets/{SECRET}/").status_code == 200  # another call of the same service: not slowed
    assert time.monotonic() - start < 0.4
    sb.state.clear_delays()
    start = time.monotonic()
    assert kv("PUT", f"/secrets/{SECRET}", json={"value": "fast-one"}).status_code == 200
    assert time.monotonic() - start < 0.4
    assert values(sb)[-2:] == ["slow-one", "fast-one"]
    assert sb.state.pending_faults() == []


def test_delay_hits_tell_a_delay_that_named_no_call(sb: Sandbox, kv: Callable[..., httpx.Response]) -> None:
    sb.state.set_delay(0.2, service="vault:*", call=PUT_SECRET)
    sb.state.set_delay(0.2, service="vault:*", call="PUT /secrets/{secret_name}")  # not the route's template
    assert kv("PUT", f"/secrets/{SECRET}", json={"value": "x"}).status_code == 200
    assert sb.state.delay_hits() == {("vault:*", PUT_SECRET): 1, ("vault:*", "PUT /secrets/{secret_name}"): 0}


def test_a_delay_comes_before_the_handler_and_holds_no_lock(sb: Sandbox, kv: Callable[..., httpx.Response]) -> None:
    sb.state.set_delay(1.0, service="vault:" + VAULT)  # every call of one vault
    before = len(values(sb))
    answers: list[httpx.Response] = []
    writers = [
        threading.Thread(target=lambda i=i: answers.append(kv("PUT", f"/secrets/{SECRET}", json={"value": f"w{i}"})))
        for i in range(2)
    ]
    start = time.monotonic()
    for t in writers:
        t.start()
    time.sleep(0.5)
    assert len(values(sb)) == before  # halfway through the delay nothing has been written yet
    for t in writers:
        t.join(timeout=10)
    took = time.monotonic() - start
    assert [r.status_code for r in answers] == [200, 200]
    assert sorted(values(sb)[before:]) == ["w0", "w1"]
    assert took < 1.9  # the two delays overlapped: a delay is a sleep outside every lock


def test_delay_globs_the_longest_wins_and_zero_removes(sb: Sandbox) -> None:
    st = sb.state
    st.set_delay(0.2, service="vault:*")
    st.set_delay(0.7, service="vault:*", call="PUT /secrets/*")
    st.set_delay(0.3, service="buildkite-graphql", call="ClusterAgentTokenCreate")
    assert st.delay_for("vault:rpe-prod", ["PUT /secrets/{name}", "keyvault.set"]) == 0.7
    assert st.delay_for("vault:rpe-prod", ["GET /secrets/{name}/versions"]) == 0.2
    assert st.delay_for("buildkite-graphql", ["POST /v1", "ClusterAgentTokenCreate"]) == 0.3
    assert st.delay_for("vssps", [POST_PAT, "pats.create"]) == 0.0
    st.set_delay(0, service="vault:*", call="PUT /secrets/*")
    assert st.delay_for("vault:rpe-prod", ["PUT /secrets/{name}"]) == 0.2
    with pytest.raises(ValueError, match="negative"):
        st.set_delay(-1)
    st.clear_delays()
    assert st.delays() == {}


# -- late faults -------------------------------------------------------------------------------------


def test_late_set_secret_lands_after_the_client_gave_up(
    sb: Sandbox, kv: Callable[..., httpx.Response], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="keyturn.sandbox")
    assert LATE_FAULT not in NET_FAULT_KINDS  # its own kind: the e2e matrix pins the outcomes of those
    before = values(sb)
    sb.state.inject_fault(PUT_SECRET, "late", service="vault:*", hold=1.2)
    with impatient(sb, 0.4) as client:
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            kv("PUT", f"/secrets/{SECRET}", client=client, json={"value": "landed-late"})
        assert time.monotonic() - start < 1.0  # the client's own timeout fired, not the server's answer
    # the client is gone and nothing has happened yet: the request is held before its handler
    assert sb.state.late_held == 1 and sb.state.late_landed == 0
    assert values(sb) == before
    assert sb.state.wait_late_landed(1, timeout=10)
    assert values(sb) == [*before, "landed-late"]  # the version appeared after keyturn's timeout
    assert sb.state.late_held == 0 and sb.state.pending_faults() == []
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "keyturn.sandbox")
    assert f"PUT /secrets/{SECRET}?api-version=7.5 -> 200, not sent (injected late)" in logged
    assert "landed-late" not in logged


def test_late_mint_creates_the_token_after_the_client_gave_up(sb: Sandbox, user_token: Callable[[], str]) -> None:
    url = f"{sb.urls['vssps']}/{sb.state.org}/_apis/tokens/pats"
    body = {
        "displayName": "late-pat",
        "scope": "vso.build",
        "validTo": (datetime.now(UTC) + timedelta(days=30)).isoformat().replace("+00:00", "Z"),
        "allOrgs": False,
    }
    token = user_token()
    sb.state.inject_fault(POST_PAT, "late", service="vssps", hold=1.0)
    with impatient(sb, 0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(url, params=PAT_API, json=body, headers={"Authorization": f"Bearer {token}"})
        assert sb.state.wait_late_held(1, timeout=5)
        assert sb.state.pats_named("late-pat") == []
        assert sb.state.wait_late_landed(1, timeout=10)
        (late,) = sb.state.pats_named("late-pat")
        assert late.active(sb.state.now())
        # the next request on a new connection is served as usual (the fault was consumed)
        listed = client.get(url, params=PAT_API, headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200
    assert sb.state.pending_faults() == []


def test_late_handler_runs_though_the_client_closed_its_socket(sb: Sandbox, kv: Callable[..., httpx.Response]) -> None:
    sb.state.inject_fault(PUT_SECRET, "late", service="vault:*", hold=0.8)
    outcome: list[object] = []

    def send(client: httpx.Client) -> None:
        try:
            outcome.append(kv("PUT", f"/secrets/{SECRET}", client=client, json={"value": "orphan"}))
        except Exception as exc:  # whatever the client makes of its own hang-up
            outcome.append(exc)

    with impatient(sb, 5.0) as client:
        sender = threading.Thread(target=send, args=(client,))
        sender.start()
        assert sb.state.wait_late_held(1, timeout=5)
        client.close()  # the client hangs up while the server holds the request
        sender.join(timeout=10)
    assert sb.state.wait_late_landed(1, timeout=10)
    assert values(sb)[-1] == "orphan"
    assert len(outcome) == 1 and not isinstance(outcome[0], httpx.Response)  # it never got an answer


def test_timeout_runs_the_handler_first_then_holds(sb: Sandbox, kv: Callable[..., httpx.Response]) -> None:
    sb.state.inject_fault(PUT_SECRET, "timeout", service="vault:*", hold=1.0)
    with impatient(sb, 0.3) as client, pytest.raises(httpx.ReadTimeout):
        kv("PUT", f"/secrets/{SECRET}", client=client, json={"value": "already-there"})
    assert values(sb)[-1] == "already-there"  # written before the hold began, unlike "late"
    assert sb.state.late_landed == 0


def test_hold_only_for_the_kinds_that_hold(sb: Sandbox) -> None:
    with pytest.raises(ValueError, match="takes no hold"):
        sb.state.inject_fault(PUT_SECRET, "reset", hold=2.0)
    with pytest.raises(ValueError, match="'late'"):
        sb.state.inject_fault(PUT_SECRET, "later")
    sb.state.inject_fault("pats.list", "late", hold=3.0)
    assert sb.state.pending_faults() == [("*", "pats.list", "late")]
    assert sb.state.take_net_fault_hold("vssps", ["pats.list"]) == ("late", 3.0)
    sb.state.inject_fault("pats.list", "timeout")
    assert sb.state.take_net_fault_hold("vssps", ["pats.list"]) == ("timeout", sb.state.fault_hold)
    assert DEVOPS_RESOURCE  # the fixture's sandbox speaks Azure DevOps too
