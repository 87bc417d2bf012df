"""The conductorone-connector follow-up through the engine and the CLI, on the sandbox's emulator."""

from __future__ import annotations

from app.sandbox import Sandbox


def add_c1(sandbox: Sandbox) -> None:
    """The connector on daily-checks (an Azure DevOps PAT): the emulator must not check it against Buildkite."""
    sandbox.conductorone.token_check = None
    block = sandbox.conductorone.follow_up_toml("daily-checks", base_url=sandbox.urls["conductorone"], sync_timeout_s=30)
    sandbox.config_path.write_text(sandbox.config_path.read_text() + "\n" + block)


def test_connector_gets_the_new_token_and_syncs(sandbox: Sandbox, keyturn) -> None:
    add_c1(sandbox)
    run = keyturn("rotate", "daily-checks", "--no-input", "--json")
    assert run.code == 0, run.stderr
    new = sandbox.state.pat(run.json()["token"]["id"])
    assert new is not None
    update = sandbox.conductorone.updates[-1]
    assert update["body"]["updateMask"] == "config"
    assert update["body"]["connector"]["config"]["configuration"]["api_token"] == new.value
    connector = sandbox.conductorone.connector()
    assert connector is not None and connector.api_token == new.value
    assert connector.syncs and not connector.syncs[-1]["error"]  # a sync ran with it and finished
    assert new.value not in run.stdout + run.stderr


def test_sync_error_stops_there_old_token_alive_then_resume(sandbox: Sandbox, keyturn) -> None:
    add_c1(sandbox)
    sandbox.conductorone.fail_next_sync("buildkite: 401 Unauthorized")
    old = next(p for p in sandbox.state.pats() if p.display_name == "daily-checks")
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert run.code == 2
    line = next(x for x in run.stderr.splitlines() if x.startswith("keyturn: error:"))
    assert "401 Unauthorized" in line and "old one is untouched" in line and "keyturn resume" in line
    assert not sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]
    resumed = keyturn("resume", "--no-input", "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["resumed"][0]["state"] == "done"
    assert sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]
    versions = [v for v in sandbox.state.secret_versions("cftptl-intsvc", "azure-devops-token") if (v.tags or {}).get("keyturn-rotation-id")]
    assert len(versions) == 1  # the resumed run did not write a second Key Vault version


def test_a_tenant_the_client_id_does_not_name_is_a_one_line_config_error(sandbox: Sandbox, keyturn) -> None:
    """The client id names the token host (and the JWT's aud), as ConductorOne's SDK reads it; a tenant that says
    otherwise stops keyturn at config load: nothing signed in, minted, written or journaled."""
    add_c1(sandbox)
    seeded = sandbox.conductorone.seeded
    assert seeded is not None
    text = sandbox.config_path.read_text()
    assert f'tenant = "{seeded.tenant}"' in text
    sandbox.config_path.write_text(text.replace(f'tenant = "{seeded.tenant}"', 'tenant = "acme"', 1))
    pats_before = len(sandbox.state.pats())
    run = keyturn("rotate", "daily-checks", "--no-input")
    assert run.code == 2, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("keyturn: error:")]
    assert f"keyturn: error: {sandbox.config_path}: " in line
    assert seeded.client_id in line and f"{seeded.tenant}.conductor.one" in line  # the client id and its host
    assert "'acme'" in line and "acme.conductor.one" in line  # the tenant as written and as the SDK reads it
    assert f"set tenant to '{seeded.tenant}'" in line  # what to do
    assert len(sandbox.state.pats()) == pats_before  # no new PAT
    counters = sandbox.conductorone.counters
    assert counters["token.issued"] == counters["token.rejected"] == counters["connector.update"] == 0
    assert sandbox.conductorone.updates == []
