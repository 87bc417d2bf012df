"""Invariant 9 (issue 11): bodies, pages and token lists from a server are bounded; past a bound keyturn stops with
one line and changes nothing. httpx.MockTransport plays the hostile server: an endless body, a 50 MiB one, a
Content-Length lie, a gzip bomb, a continuation token that never ends, 100,000 rows on a Jenkins security page.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from app import net
from app.errors import AmbiguousResultError
from app.net import http_client
from app.secret import SecretValue
from providers.base import MintRequest
from providers.jenkins import security_page as jenkins_page
from providers.jenkins.client import JenkinsClient
from providers.jenkins.security_page import parse_token_list
from tests.providers.test_buildkite_client import CLUSTER, Fake, cluster_fake, gql_ok, provider

# app.net's names are looked up in each test (net.X), so that each test, not the module, fails on a keyturn
# without the bounds; the endless bodies end after 64 MiB for the same reason (a run without them must finish).
MIB = 2**20
MAX_BODY_BYTES = 8 * MIB  # app.net.MAX_BODY_BYTES
URL_HINT = (
    "(no answer keyturn needs is that large: check that the configured URL points at the service itself, "
    "not at a proxy, a file server or another site)"
)
PAGING_HINT = "(try again later; if it persists, the server or a proxy in front of it is misbehaving)"
ADO_LIST = "could not list the PATs of contoso"
PATS = "GET /contoso/_apis/tokens/pats"


class Endless(httpx.SyncByteStream):
    """A body that does not end before 64 MiB, far past any bound (1 KiB of 'x' per chunk, or ``chunk``); counts what
    was read of it."""

    def __init__(self, chunk: bytes = b"x" * 1024) -> None:
        self.chunk = chunk
        self.read = 0

    def __iter__(self) -> Iterator[bytes]:
        while self.read < 64 * MIB:
            self.read += len(self.chunk)
            yield self.chunk


def fast(fn: Callable[[], Any], seconds: float = 5.0) -> Any:
    """Run ``fn`` (it must raise); the exception, after checking it came quickly."""
    start = time.monotonic()
    with pytest.raises(Exception) as info:
        fn()
    assert time.monotonic() - start < seconds, "a bound should stop the read at once"
    return info.value


# -- the shared body limit (app.net.http_client) ------------------------------------------------------------------


def get(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Response:
    with http_client(None, transport=httpx.MockTransport(handler)) as client:
        return client.get("https://svc.example.test/api")  # type: ignore[no-any-return]


def test_an_endless_body_stops_at_the_limit() -> None:
    body = Endless()
    err = fast(lambda: get(lambda r: httpx.Response(200, stream=body)))
    assert isinstance(err, net.LimitExceededError)
    assert (
        str(err)
        == f"svc.example.test answered GET /api and sent more than keyturn's 8 MiB limit; keyturn stopped reading it {URL_HINT}"
    )
    assert MAX_BODY_BYTES < body.read <= MAX_BODY_BYTES + 64 * 1024  # not buffered whole: it stopped just past


def test_a_content_length_over_the_limit_is_refused_unread() -> None:
    body = Endless()
    err = fast(lambda: get(lambda r: httpx.Response(200, headers={"Content-Length": str(50 * MIB)}, stream=body)))
    assert str(err) == (
        "svc.example.test answered GET /api and announced a body of 50 MiB, over keyturn's 8 MiB limit; "
        f"keyturn did not read it {URL_HINT}"
    )
    assert body.read == 0


def test_a_content_length_that_lies_low_is_not_believed() -> None:
    body = Endless()
    err = fast(lambda: get(lambda r: httpx.Response(200, headers={"Content-Length": "20"}, stream=body)))
    assert isinstance(err, net.LimitExceededError) and "sent more than keyturn's 8 MiB limit" in str(err)


def test_a_gzip_bomb_is_measured_unpacked() -> None:
    bomb = gzip.compress(b"\0" * (64 * MIB))  # ~64 KiB on the wire
    assert len(bomb) < MIB
    headers = {"Content-Encoding": "gzip"}
    err = fast(lambda: get(lambda r: httpx.Response(200, headers=headers, stream=httpx.ByteStream(bomb))))
    assert isinstance(err, net.LimitExceededError) and "sent more than keyturn's 8 MiB limit" in str(err)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_a_small_compressed_answer_still_reads(encoding: str) -> None:
    import zlib

    data = json.dumps({"ok": True, "pad": "y" * 5000}).encode()
    if encoding == "gzip":
        packed = gzip.compress(data)
    elif encoding == "deflate":
        packed = zlib.compress(data)
    else:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = packer.compress(data) + packer.flush()
    name = "gzip" if encoding == "gzip" else "deflate"
    resp = get(lambda r: httpx.Response(200, headers={"Content-Encoding": name}, stream=httpx.ByteStream(packed)))
    assert resp.json() == {"ok": True, "pad": "y" * 5000}


def test_two_layers_of_compression_are_refused() -> None:
    twice = gzip.compress(gzip.compress(b"{}"))
    headers = {"Content-Encoding": "gzip, gzip"}
    err = fast(lambda: get(lambda r: httpx.Response(200, headers=headers, stream=httpx.ByteStream(twice))))
    assert str(err) == (
        "svc.example.test answered GET /api compressed 2 times (gzip, gzip); keyturn decodes one layer "
        "(check that the configured URL points at the service itself, not at a proxy or another site)"
    )


def test_a_body_already_in_memory_is_measured() -> None:
    def unannounced(req: httpx.Request) -> httpx.Response:
        resp = httpx.Response(200, content=b"x" * (50 * MIB))
        del resp.headers["Content-Length"]
        return resp

    err = fast(lambda: get(unannounced))
    assert isinstance(err, net.LimitExceededError) and "sent more than keyturn's 8 MiB limit" in str(err)


def test_an_answer_under_the_limit_is_untouched() -> None:
    body = b"z" * (MAX_BODY_BYTES - 10)
    assert get(lambda r: httpx.Response(200, stream=httpx.ByteStream(body))).content == body


# -- Azure DevOps: bodies, pages, tokens ----------------------------------------------------------------------


def test_ado_50_mib_listing_is_one_line_and_not_retried(make_client: Any) -> None:
    calls: list[httpx.Request] = []

    def huge(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        return httpx.Response(200, content=b" " * (50 * MIB), headers={"Content-Type": "application/json"})

    err = fast(lambda: make_client(huge).list_tokens())
    assert isinstance(err, net.LimitExceededError)
    assert str(err) == (
        f"{ADO_LIST}: vssps.example.test answered {PATS} and announced a body of 50 MiB, over keyturn's 8 MiB "
        f"limit; keyturn did not read it {URL_HINT}"
    )
    assert len(calls) == 1  # a bound is not a transient failure: no second attempt


def test_ado_create_with_an_oversized_answer_is_ambiguous(make_client: Any) -> None:
    from datetime import UTC, datetime, timedelta

    def answer(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": str(9 * MIB)}, stream=Endless())

    client = make_client(answer)
    err = fast(lambda: client.create(MintRequest("keda", ("vso.build",), datetime.now(UTC) + timedelta(days=9))))
    assert isinstance(err, AmbiguousResultError)  # the PAT may exist: the engine reconciles before minting again
    assert str(err) == (
        "could not create PAT 'keda' in contoso: vssps.example.test answered POST /contoso/_apis/tokens/pats and "
        "announced a body of 9 MiB, over keyturn's 8 MiB limit; keyturn did not read it; the token may or may not "
        "have been created (list the tokens by name before minting again)"
    )


def test_ado_endless_distinct_continuation_tokens_stop_at_the_page_limit(make_client: Any) -> None:
    pages: list[str] = []

    def endless(req: httpx.Request) -> httpx.Response:
        pages.append(req.url.params.get("continuationToken", ""))
        return httpx.Response(200, json={"patTokens": [], "continuationToken": f"c{len(pages)}"})

    err = fast(lambda: make_client(endless).list_tokens(), seconds=20)
    assert str(err) == (
        f"{ADO_LIST}: vssps.example.test had more than 1,000 pages of PATs; keyturn stopped reading {PAGING_HINT}"
    )
    assert len(pages) == 1000


def test_ado_a_repeated_continuation_token_is_caught_at_once(make_client: Any) -> None:
    calls: list[str] = []

    def cycle(req: httpx.Request) -> httpx.Response:  # A -> B -> A -> ...
        calls.append(req.url.params.get("continuationToken", ""))
        return httpx.Response(200, json={"patTokens": [], "continuationToken": "B" if calls[-1] == "A" else "A"})

    err = fast(lambda: make_client(cycle).list_tokens())
    assert str(err) == (
        f"{ADO_LIST}: vssps.example.test repeated a continuation token it had already sent (after 3 pages); "
        f"the listing would never end {PAGING_HINT}"
    )
    assert calls == ["", "A", "B"]


def test_ado_more_than_10000_tokens(make_client: Any) -> None:
    from tests.providers.conftest import pat_json

    page = [pat_json(f"t{i}") for i in range(500)]

    def many(req: httpx.Request) -> httpx.Response:
        n = int(req.url.params.get("continuationToken") or 0)
        return httpx.Response(200, json={"patTokens": page, "continuationToken": str(n + 1)})

    err = fast(lambda: make_client(many).list_tokens(), seconds=20)
    assert str(err) == (
        f"{ADO_LIST}: vssps.example.test listed more than 10,000 PATs; keyturn stopped reading "
        "(remove PATs nobody uses, or check that the configured URL points at the service)"
    )


# -- Buildkite: GraphQL connections, REST -----------------------------------------------------------------------


def clusters_page(cursor: str | None, *nodes: dict[str, Any]) -> httpx.Response:
    return gql_ok(
        {
            "organization": {
                "clusters": {
                    "pageInfo": {"hasNextPage": cursor is not None, "endCursor": cursor},
                    "edges": [{"node": n} for n in nodes],
                }
            }
        }
    )


def test_buildkite_repeated_cursor_stops_before_any_mint() -> None:
    f = cluster_fake()
    f.ops["ListClusters"] = lambda r: clusters_page("same", {**CLUSTER, "name": "other", "uuid": "o"})
    p, _ = provider(f, token_type="cluster-agent-token", cluster="linux", validity_days=None)
    err = fast(lambda: p.mint(MintRequest("new", (), None)))
    assert str(err) == (
        "could not list the clusters of org: graphql.example.test repeated a cursor it had already sent "
        f"(after 2 pages); the listing would never end {PAGING_HINT}"
    )
    assert len(f.sent("ListClusters")) == 2
    assert f.sent("ClusterAgentTokenCreate") == []  # nothing minted


def test_buildkite_cluster_paging_past_the_limit_is_an_error_not_a_short_list() -> None:
    f = cluster_fake()
    n = {"i": 0}

    def next_page(r: httpx.Request) -> httpx.Response:
        n["i"] += 1
        return clusters_page(f"c{n['i']}", {**CLUSTER, "name": f"x{n['i']}", "uuid": f"x{n['i']}"})

    f.ops["ListClusters"] = next_page
    p, _ = provider(f, token_type="cluster-agent-token", cluster="linux")
    err = fast(lambda: p.clusters(), seconds=20)
    assert str(err) == (
        "could not list the clusters of org: graphql.example.test had more than 100 pages of clusters; "
        f"keyturn stopped reading {PAGING_HINT}"
    )


def test_buildkite_more_than_10000_agent_tokens_in_one_answer() -> None:
    f = cluster_fake()
    edges = [{"node": {"id": f"i{i}", "uuid": f"u{i}", "description": "d", "expiresAt": None}} for i in range(10_001)]
    f.ops["ListClusterAgentTokens"] = lambda r: gql_ok(
        {
            "organization": {
                "cluster": {**CLUSTER, "agentTokens": {"count": 1, "pageInfo": {"hasNextPage": False}, "edges": edges}}
            }
        }
    )
    p, _ = provider(f, token_type="cluster-agent-token", cluster="linux")
    err = fast(lambda: p.list_tokens())
    assert str(err) == (
        "could not list the agent tokens of cluster linux: graphql.example.test listed more than 10,000 agent tokens; "
        "keyturn stopped reading (remove agent tokens nobody uses, or check that the configured URL points at the service)"
    )


def test_buildkite_50_mib_graphql_answer_is_not_retried() -> None:
    f = cluster_fake()
    f.ops["ListClusters"] = lambda r: httpx.Response(200, content=b" " * (50 * MIB))
    p, sleeps = provider(f, token_type="cluster-agent-token", cluster="linux")
    err = fast(lambda: p.clusters())
    assert str(err) == (
        "could not list the clusters of org: graphql.example.test answered POST /v1 and announced a body of 50 MiB, "
        f"over keyturn's 8 MiB limit; keyturn did not read it {URL_HINT}"
    )
    assert len(f.sent("ListClusters")) == 1 and sleeps == []


def test_buildkite_oversized_mutation_answer_is_ambiguous() -> None:
    f = cluster_fake()
    f.ops["ClusterAgentTokenCreate"] = lambda r: httpx.Response(200, stream=Endless())
    p, _ = provider(f, token_type="cluster-agent-token", cluster="linux", validity_days=None)
    err = fast(lambda: p.mint(MintRequest("new", (), None)))
    assert isinstance(err, AmbiguousResultError)
    assert str(err).startswith(
        "could not create agent token 'new' in cluster linux: ClusterAgentTokenCreate: graphql.example.test answered "
        "POST /v1 and sent more than keyturn's 8 MiB limit; keyturn stopped reading it; it may or may not have happened"
    )
    assert len(f.sent("ClusterAgentTokenCreate")) == 1


def test_buildkite_rest_access_token_endless_body() -> None:
    f = Fake()
    f.rest["GET /v2/access-token"] = lambda r: httpx.Response(200, stream=Endless())
    p, _ = provider(f, token_type="api-access-token")
    err = fast(lambda: p._client.access_token(SecretValue("bkua_x")))
    assert str(err) == (
        "could not read the API token: api.example.test answered GET /v2/access-token and sent more than keyturn's "
        f"8 MiB limit; keyturn stopped reading it {URL_HINT}"
    )


# -- Jenkins: the security page ---------------------------------------------------------------------------------

JENKINS = "https://jenkins.example.test"


def row(i: int) -> str:
    return (
        '<div class="token-list-item token-list-existing-item force-dirty-panel ">'
        f'<input type="hidden" class="token-uuid-input" name="tokenUuid" value="uuid-{i}" />'
        f'<input name="tokenName" type="text" class="jenkins-input validated token-name" value="token {i}" />'
        '<span class="token-creation age-ok">Created 1 day(s) ago</span></div>'
    )


def security_page(rows: int) -> str:
    return '<html><body><div class="token-list">' + "".join(row(i) for i in range(rows)) + "</div></body></html>"


def jenkins(handler: Callable[[httpx.Request], httpx.Response]) -> JenkinsClient:
    return JenkinsClient(
        JENKINS, "bot", ca_bundle=None, token=SecretValue("11jenkins-token"), transport=httpx.MockTransport(handler)
    )


def test_jenkins_security_page_with_100k_rows_is_refused_by_size() -> None:
    page = security_page(100_000)
    assert len(page) > 2 * MAX_BODY_BYTES
    client = jenkins(lambda r: httpx.Response(200, text=page, headers={"Content-Type": "text/html;charset=utf-8"}))
    err = fast(lambda: client.security_page("bot", what="could not read the security page of Jenkins user bot"))
    assert str(err).startswith(
        "could not read the security page of Jenkins user bot: jenkins.example.test answered GET /user/bot/security/ "
        "and announced a body of "
    )
    assert str(err).endswith(f"over keyturn's 8 MiB limit; keyturn did not read it {URL_HINT}")


def test_jenkins_security_page_with_too_many_tokens_names_the_controller() -> None:
    page = security_page(10_001)
    assert len(page) < MAX_BODY_BYTES
    client = jenkins(lambda r: httpx.Response(200, text=page, headers={"Content-Type": "text/html"}))
    html = client.security_page("bot", what="x")
    assert isinstance(html, jenkins_page.SecurityPage)
    err = fast(lambda: parse_token_list(html))
    assert str(err) == (
        f"the security page of Jenkins user bot ({JENKINS}/user/bot/security/) lists more than 10,000 API tokens; "
        "keyturn stopped reading it (revoke the tokens nobody uses on that page, or check that accounts.*.base_url "
        "points at the Jenkins controller itself)"
    )


def test_jenkins_security_page_limits_hold_for_a_page_handed_in() -> None:
    err = fast(lambda: parse_token_list(security_page(100_000)))
    assert str(err) == (
        "a Jenkins security page is larger than 8 MiB; keyturn stopped reading it "
        "(check that accounts.*.base_url points at the Jenkins controller itself)"
    )
    assert len(parse_token_list(security_page(10_000)) or []) == 10_000  # at the bound: every token


def test_jenkins_generate_with_an_oversized_answer_is_ambiguous() -> None:
    client = jenkins(lambda r: httpx.Response(200, stream=Endless()))
    err = fast(lambda: client.post("/user/bot/x/generateNewToken", {}, what="could not generate", ambiguous=True))
    assert isinstance(err, AmbiguousResultError)
    assert str(err) == (
        "could not generate: jenkins.example.test answered POST /user/bot/x/generateNewToken and sent more than "
        "keyturn's 8 MiB limit; keyturn stopped reading it; it may or may not have happened"
    )


def test_no_token_value_in_a_limit_message() -> None:
    secret = "11jenkins-token"
    client = jenkins(lambda r: httpx.Response(200, stream=Endless(chunk=secret.encode() * 100)))
    err = fast(lambda: client.security_page("bot", what="w"))
    assert secret not in str(err)
