"""conductorone-connector: the step against the ConductorOne emulator over loopback HTTPS."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from app.config import ConductorOneConnector
from app.errors import ConfigError, FollowUpError, SecretSourceError
from app.followups import FollowUpStep
from app.followups.conductorone import ENV_CONFIG_TYPE
from app.sandbox.conductorone import make_client_secret
from providers.base import Interaction

CANARY = "bkua_CANARY-c1-0123456789abcdef"
C1Harness = Any  # the `c1` fixture (tests/followups/conftest.py)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_protocol_attributes(c1: C1Harness) -> None:
    step, _ = c1.step()
    as_protocol: FollowUpStep = step
    assert as_protocol.kind == "conductorone-connector"
    assert (step.is_store, step.needs_value, step.manual) == (False, True, False)
    assert step.title == f"ConductorOne connector {c1.seeded.connector_id}"
    assert "updateMask config" in step.describe() and "force a sync" in step.describe()
    named, _ = c1.step(name="C1 Buildkite")
    assert named.title == "C1 Buildkite"


def test_update_force_sync_and_wait(c1: C1Harness) -> None:
    step, ctx = c1.step_for(c1.config(), value=CANARY)
    progress: list[str] = []
    ctx.interaction = Interaction(on_progress=progress.append)
    step.preflight(ctx.config)
    assert step.find_done(ctx) is None
    result = step.run(ctx)
    assert any("waiting for the forced sync" in p for p in progress)
    assert any("is syncing with the new api_token" in p for p in progress)
    (access_token,) = c1.world.tokens  # the cached bearer token is masked in the step's state
    assert access_token not in repr(step.__dict__)

    # the update body: the connector object, config = EnvConfig with both settings, updateMask config
    (update,) = c1.world.updates
    assert update["update_mask"] == "config"
    assert update["body"] == {
        "connector": {
            "id": c1.seeded.connector_id,
            "appId": c1.seeded.app_id,
            "config": {
                "@type": ENV_CONFIG_TYPE,
                "configuration": {"api_token": CANARY, "organization": "keyturn-sandbox"},
            },
        },
        "updateMask": "config",
    }
    rec = c1.world.connector()
    assert rec.api_token == CANARY
    # a forced sync ran after the update and finished
    assert c1.world.counters["connector.force_sync"] == 1
    assert c1.world.counters["sync.done"] == 1
    assert rec.syncs[-1]["error"] is None and rec.syncs[-1]["begin"] >= rec.config_updated_at
    assert result.detail["sync_status"] == "SYNC_STATUS_DONE"
    assert result.detail["connector_id"] == c1.seeded.connector_id
    assert CANARY not in repr(result)
    assert "new api_token" in result.summary and c1.seeded.tenant in result.summary
    # one sign-in for the whole run (token cached), then get (preflight) + update + force_sync + polls
    assert c1.world.counters["token.issued"] == 1
    assert c1.state.requests.count("conductorone", "POST", "/api/v1/apps/{app_id}/connectors/{id}") == 1


def test_organization_defaults_to_the_accounts(c1: C1Harness) -> None:
    step, ctx = c1.step(organization="other-org")
    step.run(ctx)
    assert c1.world.connector().settings["organization"] == "other-org"


def test_running_twice_is_harmless(c1: C1Harness) -> None:
    step, ctx = c1.step_for(c1.config(), value=CANARY)
    step.run(ctx)
    again, ctx2 = c1.step_for(c1.config(), value=CANARY)  # a resume: a new step object
    assert again.find_done(ctx2) is None
    again.run(ctx2)
    assert [u["settings"]["api_token"] for u in c1.world.updates] == [CANARY, CANARY]
    assert c1.world.counters["sync.done"] == 2
    assert c1.world.connector().api_token == CANARY


def test_waits_behind_a_running_sync(c1: C1Harness) -> None:
    """A sync already running when we update does not count: only one that starts after the update."""
    c1.world.sync_run_s = 0.3
    with c1.world.lock:
        rec = c1.world.connectors[(c1.seeded.app_id, c1.seeded.connector_id)]
        c1.world.enqueue_sync(rec)  # a scheduled sync, queued before ours
    step, ctx = c1.step()
    step.run(ctx)
    rec = c1.world.connector()
    assert len(rec.syncs) == 2 and rec.syncs[1]["begin"] >= rec.syncs[0]["end"]


def test_sync_error_is_one_line(c1: C1Harness) -> None:
    c1.world.fail_next_sync("buildkite: GET /v2/access-token: 401 Unauthorized\n(token revoked)")
    step, ctx = c1.step_for(c1.config(), value=CANARY)
    with pytest.raises(FollowUpError) as err:
        step.run(ctx)
    text = one_line(err.value)
    assert text.startswith(f"ConductorOne {c1.seeded.tenant}: connector {c1.seeded.connector_id} sync failed")
    assert "401 Unauthorized (token revoked)" in text
    assert CANARY not in text
    assert c1.world.connector().api_token == CANARY  # saved; `keyturn resume` runs it again


def test_a_sync_still_queued_is_a_gate_that_waits(c1: C1Harness) -> None:
    """Issue 13: the step does not fail when the sync outlasts its wait; the gate holds the revoke until it is done."""
    c1.world.sync_queue_s = 60
    step, ctx = c1.step()
    step.sync_timeout_s = 0.3
    result = step.run(ctx)
    assert "has not finished yet" in result.summary
    gate = step.gate(ctx, result.detail)
    assert gate is not None and not gate.passed
    assert gate.waiting_for == f"connector {c1.seeded.connector_id} sync not finished (queued)"
    c1.state.advance_clock(120)  # the queued sync starts and ends
    again = step.gate(ctx, result.detail)
    assert again is not None and again.passed, again


def test_a_sync_that_failed_after_the_update_keeps_the_gate_closed(c1: C1Harness) -> None:
    step, ctx = c1.step()
    result = step.run(ctx)
    gate = step.gate(ctx, result.detail)
    assert gate is not None and gate.passed
    c1.world.fail_next_sync("buildkite: 401 Unauthorized")
    with c1.world.lock:  # another sync, forced in ConductorOne's console, fails
        c1.world.enqueue_sync(c1.world.connectors[(c1.seeded.app_id, c1.seeded.connector_id)])
    c1.state.advance_clock(120)
    later = step.gate(ctx, result.detail)
    assert later is not None and not later.passed and "sync failed with the new api_token (buildkite: 401 Unauthorized)" in later.waiting_for


def test_sync_disabled(c1: C1Harness) -> None:
    with c1.world.lock:
        rec = c1.world.connectors[(c1.seeded.app_id, c1.seeded.connector_id)]
        rec.sync_status = "SYNC_STATUS_DISABLED"
    step, ctx = c1.step()
    with pytest.raises(FollowUpError, match=r"syncs of connector .* are disabled"):
        step.run(ctx)


def test_sign_in_with_a_wrong_key_is_refused(c1: C1Harness) -> None:
    other, _ = make_client_secret()
    (c1.dir / "other.secret").write_text(other)
    step, ctx = c1.step(client_secret="file:other.secret")
    with pytest.raises(FollowUpError) as err:
        step.preflight(ctx.config)
    text = one_line(err.value)
    assert f"sign-in as {c1.seeded.client_id} refused (401)" in text
    assert "signature does not verify" in text
    assert other not in text
    assert c1.world.counters["token.rejected"] == 1


def test_a_malformed_client_secret(c1: C1Harness) -> None:
    bad = "secret-token:conductorone.com:v2:" + "A" * 40
    (c1.dir / "bad.secret").write_text(bad)
    step, ctx = c1.step(client_secret="file:bad.secret")
    with pytest.raises(FollowUpError) as err:
        step.run(ctx)
    assert "not a ConductorOne client secret" in one_line(err.value) and bad not in str(err.value)
    assert c1.state.requests.count("conductorone") == 0


def test_missing_client_secret_file(c1: C1Harness) -> None:
    step, ctx = c1.step(client_secret="file:nope.secret")
    with pytest.raises(SecretSourceError):
        step.preflight(ctx.config)


def test_update_refused(c1: C1Harness) -> None:
    c1.world.forbid("update")
    step, ctx = c1.step_for(c1.config(), value=CANARY)
    step.preflight(ctx.config)  # reading is allowed
    with pytest.raises(FollowUpError) as err:
        step.run(ctx)
    text = one_line(err.value)
    assert text.startswith(
        f"ConductorOne {c1.seeded.tenant}: connector {c1.seeded.connector_id} update refused (403): permission denied"
    )
    assert CANARY not in text


def test_unknown_connector(c1: C1Harness) -> None:
    step, ctx = c1.step(connector_id="2Nope000000000000000000000")
    with pytest.raises(FollowUpError, match=r"refused \(404\).*check app_id and connector_id"):
        step.preflight(ctx.config)


def test_signs_in_again_when_the_access_token_is_dropped(c1: C1Harness) -> None:
    step, ctx = c1.step()
    step.preflight(ctx.config)
    with c1.world.lock:
        c1.world.tokens.clear()  # the server forgot it (expiry, restart)
    step.run(ctx)
    assert c1.world.counters["token.issued"] == 2


def test_unreachable(c1: C1Harness) -> None:
    step, ctx = c1.step(base_url="https://127.0.0.1:9")
    with pytest.raises(FollowUpError, match=r"cannot reach 127\.0\.0\.1:9"):
        step.preflight(ctx.config)


def test_plain_http_to_a_remote_host_is_refused(c1: C1Harness) -> None:
    step, ctx = c1.step(base_url="http://example.com")
    with pytest.raises(FollowUpError, match="plain HTTP"):
        step.preflight(ctx.config)


# -- self-hosted: a manual step ---------------------------------------------------------------------


def test_self_hosted_is_manual(c1: C1Harness) -> None:
    step, ctx = c1.step(self_hosted=True, deployment_secret="k8s secret baton-buildkite/api-token")
    assert step.manual is True and step.needs_value is True
    assert step.describe().startswith("manual: ") and "k8s secret baton-buildkite/api-token" in step.describe()
    step.preflight(ctx.config)
    assert step.find_done(ctx) is None
    with pytest.raises(FollowUpError) as err:
        step.run(ctx)
    text = one_line(err.value)
    assert "is not ticked" in text and "k8s secret baton-buildkite/api-token" in text and "--skip-manual" in text

    ctx.options["ticked"][step.id] = True
    done = step.run(ctx)
    assert done.summary.startswith("done by hand: ") and done.detail["ticked"] is True

    ctx.options["ticked"][step.id] = False
    ctx.options["skip_manual"] = True
    skipped = step.run(ctx)
    assert skipped.summary.startswith("SKIPPED (--skip-manual)") and skipped.detail["skipped"] is True
    assert c1.state.requests.count("conductorone") == 0  # never calls the API
    assert step.undo(ctx, done.detail) == ""


def test_self_hosted_without_a_named_secret(c1: C1Harness) -> None:
    step, ctx = c1.step(self_hosted=True)
    ctx.options["ticked"][step.id] = True
    assert "the connector deployment's secret" in step.run(ctx).summary


def test_undo_says_what_stays(c1: C1Harness) -> None:
    step, ctx = c1.step()
    result = step.run(ctx)
    text = step.undo(ctx, result.detail)
    assert "still has the new api_token" in text
    assert step.recover_value(ctx, "sha256:x") is None
    assert step.on_verified(ctx, result.detail) is None


# -- the value never leaks ----------------------------------------------------------------------------


def test_canary_never_in_logs_errors_or_detail(c1: C1Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # an earlier test in this worker may have run setup_logging, which stops "keyturn" records at its own file
    monkeypatch.setattr(logging.getLogger("keyturn"), "propagate", True)
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    for name in ("httpx", "httpcore", "keyturn", "keyturn.sandbox"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    texts: list[str] = []

    step, ctx = c1.step_for(c1.config(), value=CANARY)
    step.preflight(ctx.config)
    result = step.run(ctx)
    texts += [result.summary, repr(result.detail), repr(step.__dict__), repr(ctx.value)]

    c1.world.fail_next_sync(f"buildkite said: token {CANARY} is revoked")  # the server echoes it back
    c1.world.fail_next_sync(f"again {CANARY}")
    step2, ctx2 = c1.step_for(c1.config(), value=CANARY)
    with pytest.raises(FollowUpError) as err:
        step2.run(ctx2)
    texts.append(str(err.value))
    texts.append(repr(err.value.__cause__) + repr(err.value.__context__))

    c1.world.forbid("update")
    step3, ctx3 = c1.step_for(c1.config(), value=CANARY)
    with pytest.raises(FollowUpError) as err3:
        step3.run(ctx3)
    texts.append(str(err3.value))

    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert any("ConductorOne POST" in r.getMessage() for r in caplog.records)
    logged = "\n".join(r.getMessage() + repr(r.args) + str(r.exc_info) for r in caplog.records)
    for text in [*texts, logged]:
        assert CANARY not in text
        assert c1.seeded.client_secret not in text
    assert c1.world.connector().api_token == CANARY  # it did go where it belongs


def test_sync_error_text_with_the_value_is_scrubbed(c1: C1Harness) -> None:
    c1.world.fail_next_sync(f"token {CANARY} rejected")
    step, ctx = c1.step_for(c1.config(), value=CANARY)
    with pytest.raises(FollowUpError) as err:
        step.run(ctx)
    assert CANARY not in str(err.value) and "********" in str(err.value)


# -- the host comes from the client id (ConductorOne/conductorone-sdk-go ParseClientID / NormalizeTenant) ---------


def test_the_jwt_aud_is_the_client_ids_host_not_base_urls(c1: C1Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.followups.conductorone as mod

    auds: list[str] = []
    real = mod.client_assertion

    def spy(client_id: str, key: Any, aud: str, now: float | None = None) -> str:
        auds.append(aud)
        return real(client_id, key, aud, now)

    monkeypatch.setattr(mod, "client_assertion", spy)
    step, ctx = c1.step()
    assert "127.0.0.1" in c1.url  # base_url: the loopback emulator, where the requests go
    step.preflight(ctx.config)
    assert auds == [f"{c1.seeded.tenant}.conductor.one"]
    assert c1.world.counters["token.issued"] == 1


@pytest.mark.parametrize("tenant", ["keyturn-sandbox", "KEYTURN-SANDBOX", "keyturn-sandbox.conductor.one",
                                    "https://keyturn-sandbox.conductor.one"])
def test_tenant_spellings_the_sdk_normalises_alike_are_accepted(c1: C1Harness, tenant: str) -> None:
    step, ctx = c1.step(tenant=tenant)
    step.preflight(ctx.config)


@pytest.mark.parametrize(
    ("tenant", "base_url"), [("acme", None), ("acme", "loopback"), ("https://keyturn-sandbox.example.com", "loopback")]
)
def test_a_tenant_that_disagrees_with_the_client_id_is_a_one_line_config_error(
    c1: C1Harness, tenant: str, base_url: str | None
) -> None:
    with pytest.raises(ConfigError) as err:
        c1.config(tenant=tenant, base_url=c1.url if base_url else None)
    text = one_line(err.value)
    host = ConductorOneConnector.normalize_tenant(tenant)
    assert c1.seeded.client_id in text and f"is an API client of {c1.seeded.tenant}.conductor.one" in text
    assert f"tenant = {tenant!r}" in text and f"is {host}" in text
    assert f"set tenant to {c1.seeded.tenant!r}" in text and f"or use an API client of {host}" in text
    assert c1.world.counters.total() == 0  # nothing asked of the server


@pytest.mark.parametrize("client_id", ["keyturn-sandbox-12345", "name@keyturn-sandbox.conductor.one", "name@/pcc",
                                       "name@.conductor.one/pcc"])
def test_a_client_id_without_the_host_form_is_invalid_as_in_the_sdk(c1: C1Harness, client_id: str) -> None:
    with pytest.raises(ConfigError) as err:
        c1.config(client_id=client_id)
    text = one_line(err.value)
    assert f"client_id = {client_id!r} is not a ConductorOne client id (NAME@TENANT.conductor.one/pcc)" in text


def test_the_sdks_parse_client_id_examples() -> None:
    # extra_sdk_options_test.go (commit 2eb88f849f45): TestParseClientID and TestCustomTenantOptions
    assert ConductorOneConnector.client_id_host("foobar@insulator.conductor.one/pcc") == "insulator.conductor.one"
    assert ConductorOneConnector.client_id_host("foobar@c1dev.anthony.dev.ductone.com/pcc") == "c1dev.anthony.dev.ductone.com"
    for tenant in ("insulator.conductor.one", "insulator", "https://insulator.conductor.one"):
        assert ConductorOneConnector.normalize_tenant(tenant) == "insulator.conductor.one"
    assert ConductorOneConnector.normalize_tenant("https://insulator.a.different.com") == "insulator.a.different.com"
    assert ConductorOneConnector.normalize_tenant("https://c1dev.anthony.dev.ductone.com:2443") == "c1dev.anthony.dev.ductone.com:2443"


def test_an_unvalidated_mismatch_stops_before_any_request(c1: C1Harness) -> None:
    step, ctx = c1.step()
    step.spec = step.spec.model_copy(update={"tenant": "acme"})  # model_copy does not validate
    with pytest.raises(FollowUpError) as err:
        step.preflight(ctx.config)
    assert "does not name tenant 'acme'" in one_line(err.value)
    assert c1.world.counters.total() == 0
