"""The sandbox as a whole: start-up, files, the generated config, serve(), logging hygiene, the validator."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.config import load_config
from app.sandbox import DEVOPS_RESOURCE, Sandbox, serve
from app.sandbox.swagger import format_date_time, parse_date_time, secrets_spec, tokens_spec


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_start_writes_private_files_and_a_valid_config(tmp_path: Path) -> None:
    d = tmp_path / "deep" / "sb"
    with Sandbox(d) as sb:
        assert mode(d) == 0o700
        for name in ("ca.pem", "sandbox-sp.secret", "sandbox-c1.secret", "keyturn.toml", "age.key", "sandbox-jenkins.password"):
            assert mode(d / name) == 0o600, name
        assert sorted(p.name for p in d.iterdir()) == [
            "age.key", "ca.pem", "flux-config", "flux-config.git", "keyturn.toml", "sandbox-buildkite.token", "sandbox-c1.secret",
            "sandbox-jenkins.password", "sandbox-jenkins.token", "sandbox-sp.secret"]
        assert (d / "sandbox-sp.secret").read_text() == sb.state.sp_client_secret
        assert set(sb.urls) == {"entra", "vssps", "devops", "vault:rpe-prod", "vault:cftptl-intsvc", "conductorone", "buildkite-graphql", "buildkite-rest", "jenkins"}
        assert len({u for u in sb.urls.values()}) == 9

        cfg = load_config(sb.config_path)
        assert cfg.settings.sandbox is True
        assert cfg.resolve_path(cfg.settings.ca_bundle or "") == sb.ca_path.resolve()
        assert cfg.vaults["rpe-prod"].url == sb.urls["vault:rpe-prod"]
        assert cfg.vaults["cftptl-intsvc"].authority == sb.urls["entra"]
        acc = cfg.accounts["ado-bot"]
        assert (acc.organization, acc.tenant_id) == (sb.state.org, sb.state.tenant_id)
        assert (acc.base_url, acc.vssps_url) == (sb.urls["devops"], sb.urls["vssps"])
        assert cfg.targets["keda"].token_name == "keda-agent-pools"
        assert [f.kind for f in cfg.targets["keda"].follow_ups] == ["flux-sops-secret"]
        assert cfg.targets["daily-checks"].follow_ups[0].kind == "keyvault-secret-version"
        text = sb.config_path.read_text()
        assert sb.state.sp_client_secret not in text and sb.state.bot_password not in text

        with httpx.Client(verify=sb.client_ssl_context()) as http:
            assert (
                http.get(f"{sb.urls['entra']}/{sb.state.tenant_id}/v2.0/.well-known/openid-configuration").status_code
                == 200
            )
    with pytest.raises(httpx.ConnectError), httpx.Client(verify=False) as http:
        http.get(sb.urls["entra"], timeout=2)


def test_seeds(tmp_path: Path) -> None:
    sb = Sandbox(tmp_path / "sb")  # state exists before start
    now = sb.state.now()
    (keda,) = sb.state.pats_named("keda-agent-pools")
    assert keda.scope == "vso.agentpools_manage" and 4.9 < (keda.valid_to - now).total_seconds() / 86400 <= 5
    (daily,) = sb.state.pats_named("daily-checks")
    assert daily.scopes == ["vso.agentpools", "vso.build", "vso.pipelineresources_use", "vso.release"]
    assert sb.state.latest_secret("cftptl-intsvc", "azure-devops-token").value == daily.value  # type: ignore[union-attr]
    assert sb.state.latest_secret("rpe-prod", "rpe-azure-devops-password").value == sb.state.bot_password  # type: ignore[union-attr]
    assert sb.state.bot_password not in repr(sb.state.users) and daily.value not in repr(daily)


def test_import_is_cheap() -> None:
    code = (
        "import sys, app.sandbox; "
        "bad = [m for m in ('textual', 'rich', 'cryptography', 'azure', 'msal', 'httpx') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_serve_blocks_until_stopped(tmp_path: Path) -> None:
    stop = threading.Event()
    seen: list[Sandbox] = []
    thread = threading.Thread(
        target=serve, args=(tmp_path / "sb",), kwargs={"ready": seen.append, "stop": stop, "page_size": 3}
    )
    thread.start()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    (sb,) = seen
    assert sb.running and sb.state.page_size == 3
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive() and not sb.running


def test_logs_never_carry_secrets(
    sb: Sandbox, http: httpx.Client, user_token: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="keyturn.sandbox")
    token = user_token()
    url = f"{sb.urls['vssps']}/{sb.state.org}/_apis/tokens/pats"
    auth = {"Authorization": f"Bearer {token}"}
    created = http.post(
        url,
        params={"api-version": "7.2-preview.1"},
        headers=auth,
        json={"displayName": "t", "scope": "vso.build", "validTo": "2099-01-01T00:00:00Z"},
    )
    value = created.json()["patToken"]["token"]
    first = http.get(url, params={"api-version": "7.2-preview.1"}, headers=auth).json()
    http.get(
        url, params={"api-version": "7.2-preview.1", "continuationToken": first["continuationToken"]}, headers=auth
    )
    http.get(f"{sb.urls['devops']}/{sb.state.org}/_apis/connectionData", auth=("", value))
    # the sandbox's own records (client libraries such as httpx log their URLs; not the emulators' business)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("keyturn.sandbox"))
    assert "vssps POST /contoso-sandbox/_apis/tokens/pats?api-version=7.2-preview.1 -> 200" in logged
    assert "continuationToken=***" in logged
    for secret in (value, token, sb.state.bot_password, sb.state.sp_client_secret, first["continuationToken"]):
        assert secret not in logged
    assert "entra POST" in logged and DEVOPS_RESOURCE not in logged  # form bodies are never logged
    assert "password" not in logged.lower()


def test_emulator_bugs_fail_loudly(
    sb: Sandbox, http: httpx.Client, user_token: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.sandbox import azure_devops

    monkeypatch.setattr(azure_devops, "pat_json", lambda rec, token=None: {"displayName": 5})
    resp = http.get(
        f"{sb.urls['vssps']}/{sb.state.org}/_apis/tokens/pats",
        params={"api-version": "7.2-preview.1"},
        headers={"Authorization": f"Bearer {user_token()}"},
    )
    assert resp.status_code == 500
    assert len(sb.state.internal_errors) == 1 and "PagedPatTokens" in sb.state.internal_errors[0]
    sb.state.internal_errors.clear()  # the fixture asserts none are left


def test_swagger_validator() -> None:
    spec = tokens_spec()
    ok = {"displayName": "a", "scope": "vso.build", "validTo": "2026-01-01T00:00:00.1234567Z", "allOrgs": False}
    assert spec.validate("PatTokenCreateRequest", ok) == []
    bad = {"displayName": 1, "scope": "x", "validTo": "tomorrow", "extra": True}
    problems = spec.validate("PatTokenCreateRequest", bad)
    assert any("$.displayName: expected a string" in p for p in problems)
    assert any("$.validTo" in p for p in problems)
    assert any("$.extra: unknown property" in p for p in problems)
    assert spec.validate("PatTokenResult", {"patToken": None, "patTokenError": "nope"}, nullable=True) == [
        "$.patTokenError: 'nope' is not one of "
        + str(spec.schema("PatTokenResult")["properties"]["patTokenError"]["enum"])
    ]
    assert spec.validate("PatToken", {"authorizationId": "not-a-uuid"}, direction="response") == [
        "$.authorizationId: 'not-a-uuid' is not a uuid"
    ]
    kv = secrets_spec()
    assert kv.validate("SecretSetParameters", {}) == ["$: required property 'value' is missing"]
    assert kv.validate("SecretSetParameters", {"value": "v", "tags": {"a": 1}}) == [
        "$.tags.a: expected a string, got a number"
    ]
    assert kv.validate("SecretBundle", {"attributes": {"recoveryLevel": "Nope"}}, direction="response")[0].startswith(
        "$.attributes.recoveryLevel: 'Nope' is not one of"
    )
    when = parse_date_time("2026-03-01T10:00:00.1234567+01:00")
    assert format_date_time(when) == "2026-03-01T09:00:00.123456Z"
