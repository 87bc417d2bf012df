"""Invariant 9 (issue 11) in the follow-ups: ConductorOne's answers and Key Vault's (the Azure SDK over requests)
are held to the same body limit as the providers', and a Key Vault version listing to bounded pages.

The hostile servers here are an httpx.MockTransport (ConductorOne), a tiny loopback HTTP server sending an endless
body (requests), and the sandbox's Key Vault with a lowered limit: edge cases the sandbox itself cannot produce.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app import keyvault as keyvault_module
from app import net
from app.config import load_config
from app.errors import FollowUpError, KeyturnError
from app.keyvault import VaultClient
from app.net import http_client
from app.sandbox import Sandbox

# app.net's names are looked up in each test (net.X), so that each test, not the module, fails on a keyturn
# without the bounds; the endless bodies and listings end after a while for the same reason.
C1Harness = Any  # the `c1` fixture (tests/followups/conftest.py)
MIB = 2**20
MAX_BODY_BYTES = 8 * MIB  # app.net.MAX_BODY_BYTES
URL_HINT = (
    "(no answer keyturn needs is that large: check that the configured URL points at the service itself, "
    "not at a proxy, a file server or another site)"
)


class Endless(httpx.SyncByteStream):
    def __init__(self) -> None:
        self.read = 0

    def __iter__(self) -> Iterator[bytes]:
        while self.read < 64 * MIB:  # far past any bound
            self.read += 1024
            yield b"x" * 1024


def raises_fast(exc_type: type[BaseException], fn: Callable[[], Any]) -> BaseException:
    start = time.monotonic()
    with pytest.raises(exc_type) as info:
        fn()
    assert time.monotonic() - start < 10, "a bound should stop the read at once"
    assert "\n" not in str(info.value)
    return info.value


# -- ConductorOne -----------------------------------------------------------------------------------------------


def c1_behind(c1: C1Harness, connector: Callable[[httpx.Request], httpx.Response]) -> tuple[Any, Any]:
    """The step, its ConductorOne answered by ``connector`` for every API call (sign-in answered normally)."""

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/auth/v1/token":
            return httpx.Response(200, json={"access_token": "c1-access", "token_type": "Bearer", "expires_in": 300})
        return connector(req)

    step, ctx = c1.step()
    step._http = lambda config: http_client(None, transport=httpx.MockTransport(handler))
    return step, ctx


def test_c1_an_endless_connector_answer_stops(c1: C1Harness) -> None:
    body = Endless()
    step, ctx = c1_behind(c1, lambda req: httpx.Response(200, stream=body))
    err = raises_fast(FollowUpError, lambda: step.preflight(ctx.config))
    s = c1.seeded
    host = urlsplit(c1.url).netloc
    assert str(err) == (
        f"ConductorOne {s.tenant}: reading connector {s.connector_id}: {host} answered GET "
        f"/api/v1/apps/{s.app_id}/connectors/{s.connector_id} and sent more than keyturn's 8 MiB limit; "
        f"keyturn stopped reading it {URL_HINT}"
    )
    assert body.read <= MAX_BODY_BYTES + 64 * 1024


def test_c1_an_oversized_update_answer_may_have_happened(c1: C1Harness) -> None:
    step, ctx = c1_behind(
        c1, lambda req: httpx.Response(200, headers={"Content-Length": str(50 * MIB)}, stream=Endless())
    )
    err = raises_fast(FollowUpError, lambda: step.run(ctx))
    s = c1.seeded
    assert str(err).startswith(
        f"ConductorOne {s.tenant}: connector {s.connector_id} update: {urlsplit(c1.url).netloc} answered POST "
        f"/api/v1/apps/{s.app_id}/connectors/{s.connector_id} and announced a body of 50 MiB, over keyturn's 8 MiB "
        "limit; keyturn did not read it; it may or may not have happened"
    )
    assert str(err).endswith("then `keyturn resume` repeats it (setting the connector again is safe))")
    assert "bkua_new-value" not in str(err)


# -- requests (the Azure SDK's transport) -----------------------------------------------------------------------


@pytest.fixture
def endless_server() -> Iterator[str]:
    """http://127.0.0.1:PORT/ answering every request with a chunked body that never ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    sent = {"bytes": 0}

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)  # a client that stops reading must not hold this thread
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"x" * 65536
                try:
                    while not stop.is_set() and sent["bytes"] < 64 * MIB:
                        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        sent["bytes"] += len(chunk)
                    conn.sendall(b"0\r\n\r\n")
                except OSError:
                    pass  # the client hung up: what a bound must do

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=3)
        listener.close()
    assert sent["bytes"] < 64 * MIB  # the client stopped reading long before


def test_requests_session_stops_an_endless_body(endless_server: str) -> None:
    with net.bounded_requests_session() as session:
        err = raises_fast(net.LimitExceededError, lambda: session.get(endless_server + "/secrets/x", timeout=5))
    host = urlsplit(endless_server).netloc
    assert (
        str(err)
        == f"{host} answered GET /secrets/x and sent more than keyturn's 8 MiB limit; keyturn stopped reading it {URL_HINT}"
    )


def test_requests_session_refuses_an_announced_huge_body() -> None:
    import requests

    session = net.bounded_requests_session()
    hook = session.hooks["response"][-1]
    resp = requests.Response()
    resp.status_code = 200
    resp.headers["Content-Length"] = str(50 * MIB)
    resp.request = requests.Request("GET", "https://vault.example.test/secrets/s").prepare()
    with pytest.raises(net.LimitExceededError, match="announced a body of 50 MiB, over keyturn's 8 MiB limit"):
        hook(resp)


# -- Key Vault --------------------------------------------------------------------------------------------------


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sb") as sandbox:
        yield sandbox
    assert sandbox.state.internal_errors == [], "the emulator itself failed"


def test_keyvault_answers_are_held_to_the_body_limit(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vault's session and its sign-in's both carry the limit: lowered to 100 bytes, the first answer over it
    (the Entra token) stops the read with one line, through the real SDK."""
    monkeypatch.setattr(
        keyvault_module, "bounded_requests_session", lambda: net.bounded_requests_session(100), raising=False
    )
    client = VaultClient(load_config(sb.config_path), "cftptl-intsvc")
    client.sleep = lambda s: None
    try:
        err = raises_fast(KeyturnError, lambda: client.get("jenkins-api-token"))
    finally:
        client.close()
    tenant = sb.state.tenant_id
    expected = (
        "Key Vault cftptl-intsvc / secret jenkins-api-token: sign-in for the vault failed: "
        f"{urlsplit(sb.urls['entra']).netloc} answered GET /{tenant}/v2.0/.well-known/openid-configuration and "
        "announced a body of N bytes, over keyturn's 100 bytes limit; keyturn did not read it "
        f"{URL_HINT}"
    )
    assert re.sub(r"a body of [\d,]+ bytes", "a body of N bytes", str(err)) == expected


def test_keyvault_vault_answer_over_the_limit(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the vault's own session lowered: the secret's answer (a bundle of a few hundred bytes) is refused."""
    sessions: list[int] = []

    def lowered() -> Any:
        sessions.append(1)
        return net.bounded_requests_session(200 if len(sessions) == 1 else MAX_BODY_BYTES)  # vault, then sign-in

    monkeypatch.setattr(keyvault_module, "bounded_requests_session", lowered, raising=False)
    client = VaultClient(load_config(sb.config_path), "cftptl-intsvc")
    client.sleep = lambda s: None
    try:
        err = raises_fast(KeyturnError, lambda: client.get("jenkins-api-token"))
    finally:
        client.close()
    host = urlsplit(sb.urls["vault:cftptl-intsvc"]).netloc
    assert str(err).startswith(f"{host} answered GET /secrets/jenkins-api-token/ and announced a body of ")
    assert str(err).endswith(f"bytes, over keyturn's 200 bytes limit; keyturn did not read it {URL_HINT}")
    assert sb.state.secret_versions("cftptl-intsvc", "jenkins-api-token")[-1].value not in str(err)


class _Props:
    def __init__(self, version: str) -> None:
        self.version = version
        self.tags = None
        self.created_on = None


def vault_with_pages(next_link: Callable[[int], str | None], per_page: int = 1) -> tuple[VaultClient, list[int]]:
    """A VaultClient whose SDK client lists versions from ``next_link(page number)`` (azure-core's real pager)."""
    from azure.core.paging import ItemPaged

    calls: list[int] = []

    class FakeSdk:
        def list_properties_of_secret_versions(self, secret: str) -> ItemPaged[Any]:
            def get_next(token: str | None) -> int:
                calls.append(len(calls) + 1)
                return len(calls)

            def extract(n: int) -> tuple[str | None, list[Any]]:
                return next_link(n), [_Props(f"v{n}-{i}") for i in range(per_page)]

            return ItemPaged(get_next, extract)

    client = VaultClient.__new__(VaultClient)
    client.name, client.url, client._client, client.sleep = (
        "kv",
        "https://kv.vault.azure.net",
        FakeSdk(),
        lambda s: None,
    )
    return client, calls


def test_keyvault_a_repeated_next_link_is_caught() -> None:
    same = "https://kv.vault.azure.net/secrets/s/versions?$skiptoken=same"
    client, calls = vault_with_pages(lambda n: same if n < 3000 else None)  # ends at last, for a keyturn without bounds
    err = raises_fast(KeyturnError, lambda: client.versions("s"))
    assert str(err) == (
        "Key Vault kv / secret s: listing its versions: kv.vault.azure.net repeated a nextLink it had already sent "
        "(after 2 pages); the listing would never end (try again later; if it persists, the server or a proxy in "
        "front of it is misbehaving)"
    )
    assert len(calls) == 2


def test_keyvault_versions_are_bounded() -> None:
    client, calls = vault_with_pages(
        lambda n: f"https://kv.vault.azure.net/next/{n}" if n < 3000 else None, per_page=25
    )
    err = raises_fast(KeyturnError, lambda: client.versions("s"))
    assert str(err).startswith(
        "Key Vault kv / secret s: listing its versions: kv.vault.azure.net had more than 1,000 pages of versions"
    )
    assert len(calls) == 1000
    client, calls = vault_with_pages(
        lambda n: f"https://kv.vault.azure.net/next/{n}" if n < 3000 else None, per_page=100
    )
    err = raises_fast(KeyturnError, lambda: client.versions("s"))
    assert str(err) == (
        "Key Vault kv / secret s: listing its versions: kv.vault.azure.net listed more than 25,000 versions; keyturn "
        "stopped reading (remove versions nobody uses, or check that the configured URL points at the service)"
    )
    assert len(calls) == 251
    done, _ = vault_with_pages(lambda n: f"https://kv.vault.azure.net/next/{n}" if n < 3 else None, per_page=25)
    assert len(done.versions("s")) == 75


def test_keyvault_versions_over_several_real_pages_are_all_listed(sb: Sandbox) -> None:
    """The bounded paging still follows every nextLink of the SDK's pager (the sandbox pages by 25)."""
    for i in range(30):
        sb.state.set_secret("cftptl-intsvc", "jenkins-api-token", f"v{i}")
    client = VaultClient(load_config(sb.config_path), "cftptl-intsvc")
    try:
        listed = client.versions("jenkins-api-token")
    finally:
        client.close()
    assert len(listed) == 31
    assert sb.state.requests.by_route("vault:cftptl-intsvc")[("GET", "/secrets/{name}/versions")] >= 2
