"""azure-pipelines-run: the step and the Azure Pipelines emulator over loopback HTTPS, against the vendored 7.1 swagger."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Config, parse_config
from app.errors import ConfigError, FollowUpError
from app.followups import FollowUpStep, StepContext, build_steps
from app.followups.pipeline_run import API_VERSION, AzurePipelinesRunStep, runs_of
from app.sandbox.azure_devops import PIPELINES_SPEC, DevOpsService, pipelines_spec
from app.sandbox.http import Request, Response, TLSServer
from app.sandbox.persist import dumps, loads
from app.sandbox.state import SandboxState, seed
from app.sandbox.tls import SandboxTLS, write_private
from app.secret import SecretValue
from providers.base import Interaction, TokenInfo

ROTATION = "0b7e6c1a-5f0e-4c55-9d0b-6d1c2a3b4c5d"
RUNS = "/{org}/{project}/_apis/pipelines/{pipelineId}/runs"


class RecordingDevOps(DevOpsService):
    """The emulator as the sandbox runs it, keeping the bodies of Runs - Run Pipeline (to check the client's)."""

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.run_bodies: list[Any] = []

    def run_pipeline(self, req: Request) -> Response:
        self.run_bodies.append(json.loads(req.body or b"null"))
        return super().run_pipeline(req)


@dataclass
class Harness:
    state: SandboxState
    service: RecordingDevOps
    url: str
    dir: Path
    tls: SandboxTLS

    @property
    def runner_pat(self) -> str:
        (pat,) = self.state.pats_named("pipelines-runner")
        return pat.value

    @property
    def daily_value(self) -> str:
        return self.state.latest_secret("cftptl-intsvc", "azure-devops-token").value  # type: ignore[union-attr]

    def http(self, pat: str | None = None) -> httpx.Client:
        raw = base64.b64encode(f":{pat or self.runner_pat}".encode()).decode()
        return httpx.Client(verify=self.tls.client_context(), timeout=10, headers={"Authorization": f"Basic {raw}"})

    def runs_url(self, project: str = "platops", pipeline: int = 12) -> str:
        return f"{self.url}/{self.state.org}/{project}/_apis/pipelines/{pipeline}/runs"

    def config(self, pat_file: str = "runner.pat", **overrides: Any) -> Config:
        spec: dict[str, Any] = {
            "kind": "azure-pipelines-run",
            "name": "daily-checks",
            "organization": self.state.org,
            "project": "platops",
            "pipeline_id": 12,
            "branch": "main",
            "token": f"file:{pat_file}",
            "base_url": self.url,
            "rotation_variable": "KEYTURN_ROTATION",
            "timeout_s": 30,
        }
        spec.update(overrides)
        spec = {k: v for k, v in spec.items() if v is not None}
        data = {
            "settings": {"ca_bundle": "ca.pem"},
            "accounts": {"ado": {"platform": "azure-devops", "organization": self.state.org}},
            "targets": {"daily-checks": {"account": "ado", "token_name": "daily-checks", "preset": "daily-checks", "follow_ups": [spec]}},
            "presets": {"daily-checks": {"scopes": ["vso.agentpools"]}},
        }
        return parse_config(data, self.dir / "keyturn.toml")

    def step(self, rotation_id: str = ROTATION, **overrides: Any) -> tuple[AzurePipelinesRunStep, StepContext]:
        config = self.config(**overrides)
        target = config.targets["daily-checks"]
        (built,) = build_steps(config, target)
        assert isinstance(built, AzurePipelinesRunStep)
        built.poll_interval = 0.05
        built.max_poll_interval = 0.1
        built.retry_wait = lambda s: None
        token = TokenInfo("tok-new", "daily-checks", datetime.now(UTC) + timedelta(days=90))
        ctx = StepContext(config, rotation_id, "daily-checks", target, token, SecretValue(self.daily_value), Interaction(), {"ticked": {}})
        return built, ctx

    def write_pat(self, value: str, name: str = "runner.pat") -> None:
        write_private(self.dir / name, value.encode())


@pytest.fixture
def ado(tmp_path: Path) -> Iterator[Harness]:
    directory = tmp_path / "ado"
    directory.mkdir(mode=0o700)
    state = SandboxState()
    seed(state)
    state.set_pipeline("daily-checks", run_duration_s=0.3)
    tls = SandboxTLS()
    tls.write_ca(directory / "ca.pem")
    service = RecordingDevOps(state)
    server = TLSServer(service, tls.server_context(directory))
    server.start()
    h = Harness(state, service, server.url, directory, tls)
    h.write_pat(h.runner_pat)
    try:
        yield h
    finally:
        server.stop()
    assert state.internal_errors == [], "the Azure DevOps emulator itself failed"


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def run_problems(run: dict[str, Any]) -> list[str]:
    """The swagger's Run check for a run as it travels (``_links`` is the links themselves, see SOURCE.md)."""
    links = run.get("_links", {})
    assert all(set(v) == {"href"} for v in links.values()), links
    return pipelines_spec().validate("Run", {k: v for k, v in run.items() if k != "_links"}, direction="response")


# -- the step's shape and its config -------------------------------------------------------------------------


def test_protocol_attributes_and_plan_lines(ado: Harness) -> None:
    step, _ = ado.step()
    as_protocol: FollowUpStep = step
    assert as_protocol.kind == "azure-pipelines-run"
    assert (step.is_store, step.needs_value, step.manual, step.gates, step.reads_back) == (False, False, False, True, False)
    assert step.id == f"azure-pipelines-run-{ado.state.org}-platops-12"
    assert step.title == "pipeline daily-checks"
    assert step.gate_plan() == "pipeline daily-checks run succeeds"
    assert "queue a run of pipeline daily-checks (id 12" in step.describe() and "refs/heads/main" in step.describe()
    unnamed, _ = ado.step(name=None)
    assert unnamed.title == "pipeline #12" and unnamed.gate_plan() == "pipeline #12 run succeeds"


def test_config_refuses_a_pasted_token_without_echoing_it(ado: Harness) -> None:
    with pytest.raises(ConfigError) as err:
        ado.config(pat_file="x", token=ado.runner_pat)
    assert ado.runner_pat not in str(err.value) and "not a secret reference" in str(err.value)
    with pytest.raises(ConfigError, match="pipeline_id"):
        ado.config(pipeline_id=0)
    with pytest.raises(ConfigError, match="rotation_variable"):
        ado.config(rotation_variable="has space")
    with pytest.raises(ConfigError, match="timeout_s"):
        ado.config(timeout_s=-1)


# -- the emulator follows the swagger ----------------------------------------------------------------------


def test_the_vendored_spec_is_the_7_1_pipelines_swagger() -> None:
    doc = json.loads(PIPELINES_SPEC.read_text(encoding="utf-8-sig"))
    assert doc["info"]["version"] == "7.1" and API_VERSION == "7.1"
    runs = doc["paths"]["/{organization}/{project}/_apis/pipelines/{pipelineId}/runs"]
    assert runs["post"]["operationId"] == "Runs_Run Pipeline"
    assert runs["post"]["security"] == [{"oauth2": ["vso.build_execute"]}]
    get = doc["paths"]["/{organization}/{project}/_apis/pipelines/{pipelineId}/runs/{runId}"]["get"]
    assert get["operationId"] == "Runs_Get" and get["security"] == [{"oauth2": ["vso.build"]}]
    run = doc["definitions"]["Run"]["properties"]
    assert run["state"]["enum"] == ["unknown", "inProgress", "canceling", "completed"]
    assert run["result"]["enum"] == ["unknown", "succeeded", "failed", "canceled"]


def test_emulator_runs_get_and_list_match_the_swagger(ado: Harness) -> None:
    with ado.http() as http:
        resp = http.post(ado.runs_url(), params={"api-version": "7.1"}, json={"resources": {"repositories": {"self": {"refName": "refs/heads/main"}}}, "variables": {"KEYTURN_ROTATION": {"value": "r1"}}})
        assert resp.status_code == 200, resp.text
        queued = resp.json()
        assert run_problems(queued) == []
        assert queued["state"] == "inProgress" and "result" not in queued and "finishedDate" not in queued
        assert queued["id"] == 42 and queued["pipeline"]["name"] == "daily-checks"
        assert queued["resources"]["repositories"]["self"]["refName"] == "refs/heads/main"
        assert queued["variables"] == {"KEYTURN_ROTATION": {"value": "r1"}}
        assert queued["_links"]["web"]["href"].endswith("/_build/results?buildId=42")
        time.sleep(0.35)
        done = http.get(f"{ado.runs_url()}/42", params={"api-version": "7.1"}).json()
        assert run_problems(done) == [] and (done["state"], done["result"]) == ("completed", "succeeded")
        listed = http.get(ado.runs_url(), params={"api-version": "7.1"}).json()
        assert set(listed) == {"count", "value"} and listed["count"] == 3  # the wire's VssJsonCollectionWrapper
        assert [r["id"] for r in listed["value"]] == [42, 41, 40]  # newest first
        assert all(run_problems(r) == [] for r in listed["value"])
        pipeline = http.get(f"{ado.url}/{ado.state.org}/platops/_apis/pipelines/12", params={"api-version": "7.1"}).json()
        assert pipelines_spec().validate("Pipeline", {k: v for k, v in pipeline.items() if k != "_links"}, direction="response") == []
    (run,) = [r for r in ado.state.pipeline_runs(12) if r.id == 42]
    assert run.result == "succeeded" and run.checked_token is not None  # it really read the Key Vault token


def test_emulator_refuses_what_the_swagger_or_the_pipeline_does_not_allow(ado: Harness) -> None:
    v = {"api-version": "7.1"}
    with ado.http() as http:
        bad = http.post(ado.runs_url(), params=v, json={"branch": "main"})
        assert bad.status_code == 400 and "RunPipelineParameters" in bad.json()["message"]
        assert http.post(ado.runs_url(), json={}).status_code == 400  # no api-version
        assert http.post(ado.runs_url(), params=v, json={"variables": {"OTHER": {"value": "x"}}}).status_code == 400
        assert http.post(ado.runs_url(), params=v, json={"templateParameters": {"x": "y"}}).status_code == 400
        nobranch = http.post(ado.runs_url(), params=v, json={"resources": {"repositories": {"self": {"refName": "refs/heads/nope"}}}})
        assert nobranch.status_code == 400 and "Unable to resolve the reference" in nobranch.json()["message"]
        assert http.get(ado.runs_url(project="nope"), params=v).status_code == 404
        assert http.get(ado.runs_url(pipeline=99), params=v).status_code == 404
        assert http.get(f"{ado.runs_url()}/999", params=v).status_code == 404
        preview = http.post(ado.runs_url(), params=v, json={"previewRun": True})
        assert preview.status_code == 200 and "finalYaml" in preview.json()
    reader = ado.state.add_pat("reader", "vso.build", datetime.now(UTC) + timedelta(days=5))
    with ado.http(reader.value) as http:
        assert http.get(ado.runs_url(), params=v).status_code == 200  # vso.build reads
        refused = http.post(ado.runs_url(), params=v, json={})
        assert refused.status_code == 403 and "vso.build_execute" in refused.json()["message"]
    with ado.http("not-a-pat") as http:
        assert http.get(ado.runs_url(), params=v).status_code == 401
    assert [r.id for r in ado.state.pipeline_runs(12)] == [40, 41]  # none of those queued a run


def test_the_emulated_consumer_reads_the_latest_key_vault_version(ado: Harness) -> None:
    """A run succeeds only when the latest azure-devops-token is an active PAT with the scopes the checks need."""
    state = ado.state
    v = {"api-version": "7.1"}

    def queue() -> str:
        with ado.http() as http:
            rid = http.post(ado.runs_url(), params=v, json={}).json()["id"]
        (run,) = [r for r in state.pipeline_runs(12) if r.id == rid]
        return f"{run.result}: {run.reason}"

    assert queue().startswith("succeeded")
    narrow = state.add_pat("narrow", "vso.agentpools", datetime.now(UTC) + timedelta(days=5))
    state.set_secret("cftptl-intsvc", "azure-devops-token", narrow.value)
    said = queue()
    assert said.startswith("failed: the checks need vso.build, vso.pipelineresources_use, vso.release")
    assert narrow.value not in said
    full = state.add_pat("full", "vso.agentpools_manage vso.build_execute vso.pipelineresources_manage vso.release_manage", datetime.now(UTC) + timedelta(days=5))
    state.set_secret("cftptl-intsvc", "azure-devops-token", full.value)
    assert queue().startswith("succeeded")  # broader levels include the narrower ones
    state.set_pipeline(12, fail_with="release gate check timed out")
    assert queue() == "failed: release gate check timed out"
    state.set_pipeline(12, fail_with=None)
    revoked = state.add_pat("gone", "app_token", datetime.now(UTC) + timedelta(days=5), revoked=True)
    state.set_secret("cftptl-intsvc", "azure-devops-token", revoked.value)
    assert queue().startswith("failed: GET _apis/distributedtask/pools: 401")


# -- the step ------------------------------------------------------------------------------------------


def test_preflight_run_and_gate_when_the_run_succeeds(ado: Harness) -> None:
    step, ctx = ado.step()
    progress: list[str] = []
    ctx.interaction = Interaction(on_progress=progress.append)
    step.preflight(ctx.config)
    assert step.find_done(ctx) is None
    result = step.run(ctx)
    (body,) = ado.service.run_bodies
    assert pipelines_spec().validate("RunPipelineParameters", body, direction="request") == []
    assert body == {"resources": {"repositories": {"self": {"refName": "refs/heads/main"}}}, "variables": {"KEYTURN_ROTATION": {"value": ROTATION}}}
    assert result.detail == {
        "organization": ado.state.org, "project": "platops", "pipeline_id": 12, "pipeline_name": "daily-checks",
        "run_id": 42, "run_name": result.detail["run_name"], "queued_at": result.detail["queued_at"],
    }
    assert result.summary.startswith("queued run 42 (") and result.summary.endswith("of pipeline daily-checks; it succeeded")
    assert any("run 42 queued; waiting for it" in p for p in progress)
    gate = step.gate(ctx, result.detail)
    assert gate is not None and gate.passed and gate.gate == step.id
    assert gate.progress == "pipeline daily-checks run 42 succeeded"
    assert gate.url is not None and gate.url.endswith("_build/results?buildId=42")
    assert ado.runner_pat not in repr(result) + repr(gate) and ado.daily_value not in repr(result) + repr(gate)


def test_a_run_still_going_is_a_gate_that_waits(ado: Harness) -> None:
    ado.state.set_pipeline(12, run_duration_s=1.5)
    step, ctx = ado.step(timeout_s=0)
    result = step.run(ctx)
    assert result.summary.endswith("the old token waits for it to succeed")
    gate = step.gate(ctx, result.detail)
    assert gate is not None and not gate.passed
    assert gate.waiting_for == "pipeline daily-checks run 42 still running"
    assert gate.breaks
    ado.state.advance_clock(2)
    again = step.gate(ctx, result.detail)
    assert again is not None and again.passed


def test_the_wait_ends_at_timeout_s(ado: Harness) -> None:
    ado.state.set_pipeline(12, run_duration_s=30)
    step, ctx = ado.step(timeout_s=1)
    started = time.monotonic()
    result = step.run(ctx)
    assert time.monotonic() - started < 5
    assert result.summary.endswith("still running after 1 s: the old token waits for it")


def test_a_failed_run_keeps_the_gate_shut_until_a_later_run_succeeds(ado: Harness) -> None:
    ado.state.set_pipeline(12, fail_with="the consumer's release check got 401")
    step, ctx = ado.step()
    result = step.run(ctx)
    assert result.summary.endswith("it failed: the old token waits for a run that succeeds")
    gate = step.gate(ctx, result.detail)
    assert gate is not None and not gate.passed
    assert gate.waiting_for.startswith("pipeline daily-checks run 42 failed: the consumer did not work with the new token")
    assert "a run queued after run 42 counts" in gate.waiting_for
    assert "does not queue another run" in gate.progress
    assert [r.id for r in ado.state.pipeline_runs(12)] == [40, 41, 42]  # the gate queued nothing
    again = step.gate(ctx, result.detail)
    assert again is not None and not again.passed
    assert [r.id for r in ado.state.pipeline_runs(12)] == [40, 41, 42]

    # the engineer mends the consumer and re-runs the pipeline by hand: that run decides
    ado.state.set_pipeline(12, fail_with=None)
    with ado.http() as http:
        assert http.post(ado.runs_url(), params={"api-version": "7.1"}, json={}).status_code == 200
    running = step.gate(ctx, result.detail)
    assert running is not None and not running.passed
    assert running.waiting_for == "pipeline daily-checks run 43 (queued after run 42, which failed) still running"
    time.sleep(0.35)
    mended = step.gate(ctx, result.detail)
    assert mended is not None and mended.passed
    assert mended.progress == "pipeline daily-checks run 43 (queued after run 42, which failed) succeeded"


def test_find_done_adopts_the_run_this_rotation_queued(ado: Harness) -> None:
    """A crash after the POST, before the journal write: the resume finds the run by its variable, queues no other."""
    step, ctx = ado.step()
    first = step.run(ctx)
    resumed, ctx2 = ado.step()  # a new process: a new step object
    found = resumed.find_done(ctx2)
    assert found is not None and found.detail["run_id"] == first.detail["run_id"] == 42
    assert found.summary.startswith("found the run this rotation queued earlier run 42")
    other, ctx3 = ado.step(rotation_id="another-rotation")
    assert other.find_done(ctx3) is None
    plain, ctx4 = ado.step(rotation_variable=None)
    before = ado.state.requests.count()
    assert plain.find_done(ctx4) is None  # nothing marks the run: nothing to look for
    assert ado.state.requests.count() == before
    assert [r.id for r in ado.state.pipeline_runs(12)] == [40, 41, 42]


def test_a_queue_call_with_an_unknown_outcome_is_looked_up_before_it_is_sent_again(ado: Harness) -> None:
    ado.state.inject_fault("devops.runs.run", "reset-after")  # queued, then the connection drops
    step, ctx = ado.step()
    result = step.run(ctx)
    assert result.detail["run_id"] == 42
    assert [r.id for r in ado.state.pipeline_runs(12)] == [40, 41, 42]  # found by its variable: not queued twice


def test_without_a_rotation_variable_an_unknown_outcome_queues_again(ado: Harness) -> None:
    """Documented: nothing tells our run apart, so it is sent again (a second check run is harmless)."""
    ado.state.inject_fault("devops.runs.run", "reset-after")
    step, ctx = ado.step(rotation_variable=None)
    result = step.run(ctx)
    assert result.detail["run_id"] == 43
    assert [r.id for r in ado.state.pipeline_runs(12)] == [40, 41, 42, 43]
    assert ado.service.run_bodies[-1] == {"resources": {"repositories": {"self": {"refName": "refs/heads/main"}}}}


def test_rate_limits_and_server_errors_follow_the_retry_policy(ado: Harness) -> None:
    ado.state.inject_fault("devops.runs.run", "429")  # nothing happened: waited out, sent again
    ado.state.inject_fault("devops.runs.get", "503", times=2)  # a read: tried again
    step, ctx = ado.step()
    result = step.run(ctx)
    assert result.detail["run_id"] == 42 and len(ado.service.run_bodies) == 1
    ado.state.inject_fault("devops.runs.get", "503", times=3)
    with pytest.raises(FollowUpError) as err:
        step.gate(ctx, result.detail)
    one_line(err.value)
    assert err.value.message.endswith("reading run 42 of pipeline daily-checks failed: HTTP 503 3 times; try again later")


def test_an_unreadable_answer_is_one_line(ado: Harness) -> None:
    ado.state.inject_fault("devops.pipelines.get", "malformed", times=3)
    step, ctx = ado.step()
    with pytest.raises(FollowUpError) as err:
        step.preflight(ctx.config)
    assert "reading pipeline 12 failed: an unreadable answer (HTTP 200) 3 times" in one_line(err.value)


def test_refusals_are_one_line_and_name_the_scope(ado: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reader = ado.state.add_pat("reader", "vso.build", datetime.now(UTC) + timedelta(days=5))
    ado.write_pat(reader.value, "reader.pat")
    step, ctx = ado.step(pat_file="reader.pat")
    step.preflight(ctx.config)  # reading is allowed
    with pytest.raises(FollowUpError) as err:
        step.run(ctx)
    text = one_line(err.value)
    assert "queueing a run of pipeline 12 refused (HTTP 403)" in text
    assert "Build: Read & execute (vso.build_execute)" in (err.value.hint or "")

    code = ado.state.add_pat("code", "vso.code", datetime.now(UTC) + timedelta(days=5))
    ado.write_pat(code.value, "code.pat")
    step, ctx = ado.step(pat_file="code.pat")
    with pytest.raises(FollowUpError) as err:
        step.preflight(ctx.config)
    assert "refused (HTTP 403)" in one_line(err.value) and "Build: Read (vso.build)" in (err.value.hint or "")

    ado.write_pat("unknownpat0123456789", "bad.pat")
    step, ctx = ado.step(pat_file="bad.pat")
    with pytest.raises(FollowUpError) as err:
        step.preflight(ctx.config)
    text = one_line(err.value)
    assert "refused (HTTP 401): the token file:bad.pat is not valid in organization" in text
    assert "vso.build_execute" in (err.value.hint or "")

    step, ctx = ado.step(pipeline_id=99)
    with pytest.raises(FollowUpError) as err:
        step.preflight(ctx.config)
    assert "refused (HTTP 404)" in one_line(err.value) and "definitionId" in (err.value.hint or "")

    step, ctx = ado.step(rotation_variable="NOT_SETTABLE")
    with pytest.raises(FollowUpError) as err:
        step.run(ctx)
    assert "refused (HTTP 400)" in one_line(err.value) and "at queue time" in (err.value.hint or "")

    logged = "\n".join(r.getMessage() for r in caplog.records)
    for value in (reader.value, code.value, ado.runner_pat, ado.daily_value, "unknownpat0123456789"):
        assert value not in logged
        assert value not in str(err.value) + (err.value.hint or "")


def test_the_token_is_resolved_once_and_never_kept_in_plain_sight(ado: Harness) -> None:
    step, ctx = ado.step()
    step.preflight(ctx.config)
    (ado.dir / "runner.pat").unlink()  # resolved already: the rest of the rotation does not read it again
    step.run(ctx)
    assert ado.runner_pat not in repr(step.__dict__)


def test_runs_of_reads_the_swaggers_array_and_the_wires_wrapper() -> None:
    run = {"id": 3, "name": "x"}
    assert runs_of([run]) == runs_of({"count": 1, "value": [run]}) == [run]
    with pytest.raises(ValueError):
        runs_of({"message": "no"})


# -- a persisted world from before the emulators had pipelines ---------------------------------------------


def test_an_older_saved_world_loads_without_pipelines(ado: Harness) -> None:
    old = SandboxState()
    for name in ("projects", "pipelines", "next_run_id"):
        del old.__dict__[name]  # what an older emulator pickled
    loaded = loads(dumps({"format": 1, "state": old}))["state"]
    assert loaded.pipelines == {} and loaded.projects == {} and loaded.next_run_id == 1
    assert loaded.pipeline("daily-checks") is None

    kept = loads(dumps({"format": 1, "state": ado.state}))["state"]  # and a new one keeps its runs
    assert [r.id for r in kept.pipeline_runs(12)] == [40, 41] and kept.next_run_id == 42
    assert replace(kept.pipeline(12), runs=[]) == replace(ado.state.pipeline(12), runs=[])  # type: ignore[type-var]
