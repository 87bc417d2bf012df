"""The Buildkite providers over real sockets against the Buildkite emulator (graphql-core on Buildkite's schema)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.config import Account, Target
from app.errors import KeyturnError, ProviderError
from app.sandbox.buildkite import CONNECTOR_SCOPES, BuildkiteStandalone
from app.secret import SecretValue
from providers.base import Interaction, MintRequest, RotationContext
from providers.buildkite.agent_tokens import UnclusteredAgentTokenProvider
from providers.buildkite.common import BuildkiteBase
from providers.buildkite.provider import make_buildkite_provider


@pytest.fixture
def bk(tmp_path: Path) -> Iterator[BuildkiteStandalone]:
    with BuildkiteStandalone(tmp_path / "bk") as servers:
        yield servers
    assert servers.state.internal_errors == [], "the emulator itself failed"


def make(bk: BuildkiteStandalone, secrets: dict[str, str] | None = None, **target: object) -> BuildkiteBase:
    seeded = bk.world.seeded
    assert seeded is not None
    values = {"env:BK": seeded.keyturn_token, **(secrets or {})}
    account = Account(
        platform="buildkite",
        organization=seeded.organization,
        api_token="env:BK",
        graphql_url=bk.graphql_url,
        rest_url=bk.rest_url,
    )
    t = Target(account="bk", token_name="agents", **target)  # type: ignore[arg-type]
    return make_buildkite_provider(
        "bk", account, "t", t, ca_bundle=bk.ca_path, resolve_secret=lambda ref: SecretValue(values[ref]),
        interaction=Interaction(), sleep=lambda s: None,
    )


def test_cluster_token_rotation_cycle(bk: BuildkiteStandalone, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p = make(bk, token_type="cluster-agent-token", cluster="linux-large", allowed_ips=["10.0.0.0/8"], validity_days=None)
    p.sign_in()
    before = p.list_tokens()
    assert [t.name for t in before] == ["linux-large agents"]
    old = before[0]
    expires = datetime.now(UTC) + timedelta(days=30)
    minted = p.mint(MintRequest(display_name="keyturn 2026", scopes=(), expires_at=expires))
    assert minted.value.reveal().startswith("bkct_")
    assert minted.info.expires_at is not None and abs((minted.info.expires_at - expires).total_seconds()) < 2
    rec = bk.world.cluster_token(minted.info.extra["uuid"])
    assert rec is not None and rec.allowed_ip_addresses == "10.0.0.0/8"
    assert "is listed" in p.verify(minted)
    assert "cycle them" in p.retire_notice()
    p.revoke(old.id)
    assert bk.world.token_status(bk.world.cluster_tokens("linux-large", include_revoked=True)[0].value) == "revoked"
    p.revoke(old.id)  # twice: no harm
    assert [t.id for t in p.list_tokens()] == [minted.info.id]
    assert minted.value.reveal() not in caplog.text
    p.close()


def test_cluster_token_without_expiry_sends_no_null(bk: BuildkiteStandalone) -> None:
    p = make(bk, token_type="cluster-agent-token", cluster="Default cluster", validity_days=None)
    minted = p.mint(MintRequest(display_name="no expiry", scopes=(), expires_at=None))
    assert minted.info.expires_at is None  # the emulator refuses an explicit null
    p.close()


def test_unknown_cluster_is_one_line(bk: BuildkiteStandalone) -> None:
    p = make(bk, token_type="cluster-agent-token", cluster="nope")
    with pytest.raises(ProviderError, match="has no cluster 'nope'") as err:
        p.list_tokens()
    assert "\n" not in str(err.value) and "linux-large" in str(err.value)


def test_unclustered_cycle_with_reason_and_permission(bk: BuildkiteStandalone) -> None:
    seeded = bk.world.seeded
    assert seeded is not None
    p = make(bk, token_type="unclustered-agent-token")
    assert isinstance(p, UnclusteredAgentTokenProvider)
    assert "deprecated" in p.deprecation_notice()
    names = {t.name for t in p.list_tokens()}
    assert {"Legacy macOS agents", "Default agent token"} <= names
    minted = p.mint(MintRequest(display_name="keyturn unclustered", scopes=(), expires_at=None))
    assert "is listed" in p.verify(minted)
    legacy = seeded.agent_tokens["Legacy macOS agents"]
    rotation = RotationContext(rotation_id="1234")
    assert p.revoke_allowed(legacy) == (True, "")
    p.revoke(legacy, rotation)
    rec = bk.world.agent_token(legacy)
    assert rec is not None and rec.revoked and rec.revoked_reason == "rotated by keyturn (rotation 1234)"
    p.revoke(legacy, rotation)  # already revoked: fine
    locked = seeded.agent_tokens["Default agent token"]
    assert p.revoke_allowed(locked)[0] is False
    with pytest.raises(ProviderError, match="does not allow revoking"):
        p.revoke(locked)
    p.close()


def test_missing_graphql_access_is_named(bk: BuildkiteStandalone) -> None:
    seeded = bk.world.seeded
    assert seeded is not None
    bk.world.set_graphql_access(seeded.keyturn_token, False)
    p = make(bk, token_type="unclustered-agent-token")
    with pytest.raises(ProviderError, match="lacks GraphQL access") as err:
        p.list_tokens()
    assert "Authentication required" not in str(err.value)


def test_rate_limit_waits_and_retries_queries(bk: BuildkiteStandalone) -> None:
    waits: list[float] = []
    p = make(bk, token_type="unclustered-agent-token")
    p._sleep = waits.append
    p.list_tokens()
    bk.world.rate_limit(True, limit=1, window=1, api="graphql")
    import time

    p._client._sleep = lambda s: (waits.append(s), time.sleep(s))  # type: ignore[assignment,func-returns-value]
    p.list_tokens()  # one point already spent? either way it must succeed after waiting
    p.list_tokens()
    assert waits and all(w <= 60 for w in waits)


def test_api_access_token_rotation(bk: BuildkiteStandalone) -> None:
    seeded = bk.world.seeded
    assert seeded is not None
    new = bk.world.create_api_token([*CONNECTOR_SCOPES, "graphql"], description="ConductorOne 2026")
    secrets = {"env:OLD": seeded.connector_token, "env:NEW": new.value}
    p = make(bk, secrets, token_type="api-access-token", preset="conductorone", old_token="env:OLD", new_token="env:NEW")
    url = p.creation_url()
    assert "scopes%5B%5D=read_teams" in url or "scopes[]=read_teams" in url
    old = p.list_tokens()
    assert len(old) == 1 and set(old[0].scopes) == {*CONNECTOR_SCOPES, "graphql"}
    minted = p.mint(MintRequest(display_name="ConductorOne 2026", scopes=CONNECTOR_SCOPES, expires_at=None))
    assert minted.info.id == new.uuid
    assert "GraphQL organization" in p.verify(minted)
    with pytest.raises(ProviderError, match="refusing") as refused:
        p.revoke("0b7f9c1e-0000-4000-8000-000000000000")  # neither old_token's id nor a token this rotation took
    assert "/user/api-access-tokens" in str(refused.value)  # where to revoke it by hand
    p.revoke(old[0].id)
    assert bk.world.token_status(seeded.connector_token) == "revoked"
    assert bk.world.token_status(new.value) == "active"
    p.revoke(old[0].id)  # already revoked: fine
    assert p.list_tokens() == []


def test_api_access_token_wrong_scopes_and_pasted_agent_token(bk: BuildkiteStandalone) -> None:
    seeded = bk.world.seeded
    assert seeded is not None
    wrong = bk.world.create_api_token(["read_teams", "read_builds"], graphql=False, description="wrong")
    p = make(bk, token_type="api-access-token", preset="conductorone")
    with pytest.raises(ProviderError) as err:
        p.mint(MintRequest(display_name="c1", scopes=CONNECTOR_SCOPES, expires_at=None),
               RotationContext(paste=lambda url: SecretValue(wrong.value)))
    msg = str(err.value)
    assert "missing read_organizations, read_user, GraphQL access" in msg and "extra read_builds" in msg
    assert wrong.value not in msg
    agent = bk.world.cluster_tokens("linux-large")[0].value
    with pytest.raises(KeyturnError, match="cluster agent token") as err2:
        p.mint(MintRequest(display_name="c1", scopes=CONNECTOR_SCOPES, expires_at=None),
               RotationContext(paste=lambda url: SecretValue(agent)))
    assert agent not in str(err2.value)


def test_api_access_token_taken_then_given_up_revokes_itself(bk: BuildkiteStandalone) -> None:
    """Compensation (the rotation is aborted after the token was taken): the new token is revoked with its own
    value, and the old one stays alive."""
    seeded = bk.world.seeded
    assert seeded is not None
    new = bk.world.create_api_token([*CONNECTOR_SCOPES, "graphql"], description="ConductorOne 2026")
    p = make(bk, {"env:OLD": seeded.connector_token, "env:NEW": new.value}, token_type="api-access-token",
             preset="conductorone", old_token="env:OLD", new_token="env:NEW")
    minted = p.mint(MintRequest(display_name="ConductorOne 2026", scopes=CONNECTOR_SCOPES, expires_at=None))
    # the engine tells which token this rotation took, and its value (from the journal and memory)
    p.revoke(minted.info.id, RotationContext(minted=minted.info, minted_fingerprint=minted.value.fingerprint, value=minted.value))
    assert bk.world.token_status(new.value) == "revoked"
    assert bk.world.token_status(seeded.connector_token) == "active"


def test_clusters_are_listed_across_pages_and_one_can_be_picked(bk: BuildkiteStandalone) -> None:
    owner = next(u.uuid for u in bk.world.users.values() if u.admin)
    for i in range(60):  # ListClusters asks for 50 per page: three pages' worth with the seeded two
        bk.world.add_cluster(f"pool-{i:02d}", created_by=owner)
    p = make(bk, token_type="cluster-agent-token", cluster="Default cluster")
    names = p.clusters()
    assert len(names) == 62 and "pool-59" in names and "Default cluster" in names
    picked = RotationContext(cluster="pool-59")  # the wizard's pick
    p.mint(MintRequest(display_name="agents-20261122-abcdef12", scopes=(), expires_at=None), picked)
    pool = next(c for c in bk.world.clusters.values() if c.name == "pool-59")
    assert [t.description for t in bk.world.cluster_tokens(pool.uuid)] == ["agents-20261122-abcdef12"]


def test_a_picked_cluster_does_not_stick_to_the_next_rotation(bk: BuildkiteStandalone) -> None:
    p = make(bk, token_type="cluster-agent-token", cluster="Default cluster")
    assert {t.name for t in p.list_tokens(RotationContext(cluster="linux-large"))} == {"linux-large agents"}
    # the next plan without a pick: the target's own cluster again
    assert "Default cluster agents" in {t.name for t in p.list_tokens(RotationContext())}
