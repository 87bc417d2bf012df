"""Shared helpers for provider unit tests: an in-memory Azure DevOps behind ``httpx.MockTransport``.

Unit tests use it for the edge cases a real server rarely shows; the end-to-end path runs against
the sandbox over real sockets (test_azure_devops_sandbox.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from providers.azure_devops.client import PatClient

ORG = "contoso"
VSSPS = "https://vssps.example.test"
BASE = "https://dev.example.test"
ENTRA_TOKEN = "entra-access-token"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"  # 7 fraction digits, as Azure DevOps writes


def pat_json(
    name: str,
    *,
    days: float = 30,
    scope: str = "vso.agentpools",
    token: str | None = None,
    targets: list[str] | None = None,
    auth_id: str | None = None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "displayName": name,
        "validTo": iso(now + timedelta(days=days)),
        "scope": scope,
        "targetAccounts": targets if targets is not None else ["38aaa865-2c70-4bf7-a308-0c6539c38c1a"],
        "validFrom": iso(now - timedelta(days=1)),
        "authorizationId": auth_id or str(uuid.uuid4()),
        "token": token,
    }


@dataclass
class FakeAdo:
    """A tiny PAT Lifecycle API: tokens in memory, revocation, paging by ``page_size``."""

    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    page_size: int = 2
    requests: list[httpx.Request] = field(default_factory=list)
    new_value: str = "new-pat-value-1234"
    clamp_days: float | None = None  # the org's maximum lifespan policy
    pools: int = 3
    override: Callable[[httpx.Request], httpx.Response | None] | None = None

    def add(self, name: str, **kw: Any) -> dict[str, Any]:
        pat = pat_json(name, **kw)
        self.tokens[pat["authorizationId"]] = pat
        return pat

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.override is not None and (resp := self.override(request)) is not None:
            return resp
        path = request.url.path
        q = request.url.params
        if path == f"/{ORG}/_apis/tokens/pats":
            assert request.headers["Authorization"] == f"Bearer {ENTRA_TOKEN}"
            assert q["api-version"] == "7.2-preview.1"
            if request.method == "GET" and "authorizationId" in q:
                pat = self.tokens.get(q["authorizationId"])
                if pat is None:
                    return httpx.Response(200, json={"patToken": None, "patTokenError": "tokenNotFound"})
                return httpx.Response(200, json={"patToken": pat, "patTokenError": "none"})
            if request.method == "GET":
                return self._list(q.get("displayFilterOption", "active"), q.get("continuationToken"))
            if request.method == "POST":
                return self._create(json.loads(request.content))
            if request.method == "DELETE":
                self.revoked.add(q["authorizationId"])
                return httpx.Response(204)
        if path == f"/{ORG}/_apis/distributedtask/pools":
            return httpx.Response(200, json={"count": self.pools, "value": [{"id": i} for i in range(self.pools)]})
        if path == f"/{ORG}/_apis/connectionData":
            return httpx.Response(
                200,
                json={
                    "authenticatedUser": {
                        "providerDisplayName": "RPE Bot",
                        "descriptor": "Microsoft.IdentityModel.Claims.ClaimsIdentity;x",
                    }
                },
            )
        return httpx.Response(404, json={"message": f"no route {path}"})

    def _status(self, pat: dict[str, Any]) -> str:
        if pat["authorizationId"] in self.revoked:
            return "revoked"
        return "expired" if datetime.fromisoformat(pat["validTo"]) <= datetime.now(UTC) else "active"

    def _list(self, flt: str, cont: str | None) -> httpx.Response:
        items = [p for p in self.tokens.values() if flt == "all" or self._status(p) == flt]
        start = int(cont or 0)
        page = items[start : start + self.page_size]
        nxt = str(start + self.page_size) if start + self.page_size < len(items) else ""
        return httpx.Response(200, json={"patTokens": page, "continuationToken": nxt})

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        valid_to = datetime.fromisoformat(body["validTo"])
        if self.clamp_days is not None:
            valid_to = min(valid_to, datetime.now(UTC) + timedelta(days=self.clamp_days))
        pat = pat_json(body["displayName"], scope=body["scope"], token=self.new_value)
        pat["validTo"] = iso(valid_to)
        pat["targetAccounts"] = None if body["allOrgs"] else ["38aaa865-2c70-4bf7-a308-0c6539c38c1a"]
        self.tokens[pat["authorizationId"]] = {**pat, "token": None}
        return httpx.Response(200, json={"patToken": pat, "patTokenError": "none"})


@pytest.fixture
def fake_ado() -> FakeAdo:
    return FakeAdo()


@pytest.fixture
def sleeps() -> list[float]:
    return []


MakeClient = Callable[..., PatClient]


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[MakeClient]:
    """``make_client(handler, bearer=...)``: a PatClient on a MockTransport; retry waits go to ``sleeps``."""
    made: list[PatClient] = []

    def make(handler: Callable[[httpx.Request], httpx.Response], *, bearer: str = ENTRA_TOKEN) -> PatClient:
        c = PatClient(
            "ado-bot",
            ORG,
            bearer=lambda: bearer,
            vssps_url=VSSPS,
            base_url=BASE,
            transport=httpx.MockTransport(handler),
            sleep=sleeps.append,
        )
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(fake_ado: FakeAdo, make_client: MakeClient) -> PatClient:
    return make_client(fake_ado.handler)
