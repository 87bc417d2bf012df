"""Fixtures for the follow-up tests. ConductorOne: the emulator alone on a loopback HTTPS server (``c1``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Config, parse_config
from app.followups import StepContext
from app.followups.conductorone import ConductorOneStep
from app.sandbox.conductorone import ConductorOneService, ConductorOneWorld, seed_conductorone
from app.sandbox.http import TLSServer
from app.sandbox.state import SandboxState
from app.sandbox.tls import SandboxTLS, write_private
from app.secret import SecretValue
from providers.base import Interaction, TokenInfo

C1_ORG = "keyturn-sandbox"


@dataclass
class C1Harness:
    """The ConductorOne emulator on 127.0.0.1 over HTTPS, and a keyturn config pointing at it."""

    state: SandboxState
    world: ConductorOneWorld
    url: str
    dir: Path
    tls: SandboxTLS

    @property
    def seeded(self) -> Any:
        assert self.world.seeded is not None
        return self.world.seeded

    def http(self) -> httpx.Client:
        return httpx.Client(verify=self.tls.client_context(), timeout=10)

    def config(self, **overrides: Any) -> Config:
        s = self.seeded
        spec: dict[str, Any] = {
            "kind": "conductorone-connector",
            "tenant": s.tenant,
            "app_id": s.app_id,
            "connector_id": s.connector_id,
            "client_id": s.client_id,
            "client_secret": "file:c1.secret",
            "base_url": self.url,
            "sync_timeout_s": 30,
        }
        spec.update(overrides)
        data = {
            "settings": {"ca_bundle": "ca.pem"},
            "accounts": {"bk": {"platform": "buildkite", "organization": C1_ORG}},
            "targets": {
                "bk-api": {"account": "bk", "token_name": "c1-buildkite", "scopes": ["read_user"], "follow_ups": [spec]}
            },
        }
        return parse_config(data, self.dir / "keyturn.toml")

    def step(self, **overrides: Any) -> tuple[ConductorOneStep, StepContext]:
        return self.step_for(self.config(**overrides))

    def step_for(
        self, config: Config, value: str | None = "bkua_new-value", options: dict[str, Any] | None = None
    ) -> tuple[ConductorOneStep, StepContext]:
        target = config.targets["bk-api"]
        step = ConductorOneStep("1-conductorone-connector", target.follow_ups[0])  # type: ignore[arg-type]
        step.poll_interval = 0.02
        step.max_poll_interval = 0.05
        token = TokenInfo("tok-new", "c1-buildkite", datetime.now(UTC) + timedelta(days=90))
        ctx = StepContext(
            config,
            "rot-c1",
            "bk-api",
            target,
            token,
            SecretValue(value) if value is not None else None,
            Interaction(),
            {"ticked": {}, **(options or {})},
        )
        return step, ctx


@pytest.fixture
def c1(tmp_path: Path) -> Iterator[C1Harness]:
    directory = tmp_path / "c1"
    directory.mkdir(mode=0o700)
    state = SandboxState()
    world = seed_conductorone(state, organization=C1_ORG, api_token="bkua_old-value")
    world.sync_queue_s = 0.05
    world.sync_run_s = 0.1
    tls = SandboxTLS()
    tls.write_ca(directory / "ca.pem")
    assert world.seeded is not None
    write_private(directory / "c1.secret", world.seeded.client_secret.encode())
    server = TLSServer(ConductorOneService(state, world), tls.server_context(directory))
    server.start()
    try:
        yield C1Harness(state, world, server.url, directory, tls)
    finally:
        server.stop()
    assert state.internal_errors == [], "the ConductorOne emulator itself failed"


@pytest.fixture
def c1_token(c1: C1Harness) -> Callable[[], str]:
    """An access token of the seeded API client, fetched over the wire with a real signed assertion."""
    from app.followups.conductorone import audience, client_assertion, parse_client_secret

    def make() -> str:
        key = parse_client_secret(SecretValue(c1.seeded.client_secret), "test")
        with c1.http() as http:
            resp = http.post(
                c1.url + "/auth/v1/token",
                data={
                    "client_id": c1.seeded.client_id,
                    "grant_type": "client_credentials",
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    # the aud is the host the client id names (<name>@<host>/pcc), not where the request goes
                    "client_assertion": client_assertion(c1.seeded.client_id, key, audience(f"{c1.seeded.tenant}.conductor.one")),
                },
            )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    return make
