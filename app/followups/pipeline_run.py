"""``azure-pipelines-run``: a consumer check. Run a pipeline that uses the new token; revoke the old one only once it worked.

For a token whose consumers read it from a store (Key Vault, SSM) keyturn cannot see them pick it up. The engineer
names a pipeline that exercises the consumer (the daily-checks pipeline: it reads ``azure-devops-token`` from Key
Vault and calls Azure DevOps with it). Once the stores hold the new token, this step queues a run of it; its gate
holds the old token's revocation until a run queued by this rotation (or after it) has *succeeded*.

The Azure DevOps Pipelines REST API, 7.1 (``app/sandbox/contracts/azure-devops/pipelines-7.1/pipelines.json``):

- ``GET  {base}/{organization}/{project}/_apis/pipelines/{pipelineId}?api-version=7.1`` (Pipelines - Get,
  ``vso.build``): the preflight; the pipeline exists and the token may read it.
- ``POST .../pipelines/{pipelineId}/runs?api-version=7.1`` (Runs - Run Pipeline, ``vso.build_execute``) with a
  ``RunPipelineParameters`` body: ``resources.repositories.self.refName`` when ``branch`` is set, and
  ``variables: {NAME: {"value": ROTATION_ID}}`` when ``rotation_variable`` is set; the answer is a ``Run``.
- ``GET  .../runs/{runId}`` (Runs - Get, ``vso.build``): ``state`` ``inProgress`` | ``canceling`` | ``completed``
  and, once completed, ``result`` ``succeeded`` | ``failed`` | ``canceled`` | ``unknown``.
- ``GET  .../runs`` (Runs - List, ``vso.build``; the newest 10,000): runs queued after ours, and our run after a crash.

``run`` queues the run, journals its id (the step's detail: ids only) and waits up to ``timeout_s`` for it to end,
so a quick pipeline lets one ``keyturn rotate`` revoke the old token; a run still going then is left to the gate
(the rotation stays ``propagated``; ``keyturn resume`` looks again). A failed run does not fail the step either:
the gate says it failed and the old token stays alive.

The gate (read-only, on every resume): the journaled run ``completed`` + ``succeeded`` passes. Still running:
waits. Failed or canceled: keyturn does **not** queue another run by itself (a resume would otherwise re-run a
broken consumer on every attempt and a failure would scroll away); the engineer fixes the consumer and re-runs
the pipeline in Azure DevOps (the gate's ``url``), and the newest run queued after ours decides instead: any run
queued after ours started after the new token was stored, so it tests the new token too.

Idempotence: a crash after the POST and before the journal write would make the resume queue a second run (a
second check run is harmless). With ``rotation_variable`` (a variable the pipeline lets users set at queue time)
each run carries the rotation id; ``find_done`` looks for it among the newest runs (Runs - List, then Runs - Get,
which carries the variables) and adopts that run instead. A POST whose outcome is unknown (a timeout, a reset, a
5xx) is looked up the same way before it is sent again.

The credential: ``token``, a secret reference to a PAT with Build: Read & execute (``vso.build_execute``) whose
user may queue the pipeline. Not the rotated token: it may have no build scope (daily-checks' has Build: Read
only), it may not be an Azure DevOps token at all (a Buildkite token in Key Vault), and the check must prove the
consumer works, not that keyturn can call Azure DevOps. Not the engineer's Entra sign-in either: headless
rotations (CI) have no one to sign in, and a PAT limited to queueing builds is the least that works.

Neither PAT's value ever reaches a log line, an exception, the journal or argv: the queueing PAT is only in the
Authorization header, and text the server sends back is scrubbed of it before it reaches a message.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from app.config import AzurePipelinesRun, Config
from app.errors import FollowUpError, KeyturnError, one_line
from app.followups import StepContext, StepDefaults, StepResult
from app.journal import crash_point
from app.net import (
    LimitExceededError,
    Listing,
    Outcome,
    Transient,
    answer_failure,
    check_url,
    http_client,
    retry_sleep,
    said_of,
    transport_failure,
    with_retries,
)
from app.secret import SecretValue
from providers.base import GateCheck

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("keyturn.followups.pipeline_run")
T = TypeVar("T")

API_VERSION = "7.1"  # pipelines-7.1/pipelines.json: "This should be set to '7.1' to use this version of the api."
DEFAULT_BASE_URL = "https://dev.azure.com"
QUEUE_SCOPE = "Build: Read & execute (vso.build_execute)"
READ_SCOPE = "Build: Read (vso.build)"
FIND_CANDIDATES = 20  # after a crash: the newest runs looked at for this rotation's variable
FINAL_STATES = frozenset({"completed"})


def ref_name(branch: str) -> str:
    """``main`` -> ``refs/heads/main``; a full ref stays as it is."""
    return branch if branch.startswith("refs/") else f"refs/heads/{branch}"


def runs_of(answer: Any) -> list[dict[str, Any]]:
    """Runs - List's answer: the swagger says an array of Run; the wire carries ``{"count", "value"}``. Both read."""
    items = answer.get("value") if isinstance(answer, dict) else answer
    if not isinstance(items, list):
        raise ValueError("not a list of runs")
    return [r for r in items if isinstance(r, dict) and isinstance(r.get("id"), int)]


class AzurePipelinesRunStep(StepDefaults):
    kind = "azure-pipelines-run"
    is_store = False
    needs_value = False  # the pipeline reads the new token from its store itself
    manual = False
    gates = True

    # polling of the queued run: first wait, growth, cap (tests make them small)
    poll_interval = 0.5
    poll_growth = 1.5
    max_poll_interval = 10.0

    def __init__(self, step_id: str, spec: AzurePipelinesRun) -> None:
        self.id = step_id
        self.spec = spec
        self.title = f"pipeline {self.label()}"
        self.timeout_s: float = float(spec.timeout_s)
        self.sleep: Callable[[float], None] = time.sleep  # between polls of the run
        self.retry_wait: Callable[[float], None] = retry_sleep  # before another attempt of a failed call
        self.clock: Callable[[], float] = time.monotonic
        self._pat: SecretValue | None = None  # the queueing PAT, once resolved

    # -- description ---------------------------------------------------------------------------

    def label(self, detail: dict[str, Any] | None = None) -> str:
        """The pipeline's name for messages: the config's, else the one Azure DevOps gave, else its id."""
        return str(self.spec.name or (detail or {}).get("pipeline_name") or f"#{self.spec.pipeline_id}")

    @property
    def where(self) -> str:
        return f"Azure DevOps {self.spec.organization}/{self.spec.project}"

    def describe(self) -> str:
        s = self.spec
        branch = f" on {ref_name(s.branch)}" if s.branch else ""
        wait = f"wait up to {s.timeout_s} s for it" if s.timeout_s else "do not wait for it"
        return (
            f"queue a run of pipeline {self.label()} (id {s.pipeline_id}, {s.organization}/{s.project}){branch}, "
            f"{wait}; the old token is revoked only once a run queued after the new token is stored succeeds"
        )

    def gate_plan(self) -> str:
        return f"pipeline {self.label()} run succeeds"

    # -- plumbing ------------------------------------------------------------------------------

    def _base_url(self) -> str:
        try:
            return check_url(self.spec.base_url or DEFAULT_BASE_URL, f"{self.title}: base_url")
        except KeyturnError as exc:
            raise FollowUpError(exc.message, hint=exc.hint) from None

    def _pipeline_path(self) -> str:
        s = self.spec
        return f"/{quote(s.organization, safe='')}/{quote(s.project, safe='')}/_apis/pipelines/{s.pipeline_id}"

    def _http(self, config: Config) -> httpx.Client:
        ca = config.resolve_path(config.settings.ca_bundle) if config.settings.ca_bundle else None
        client: httpx.Client = http_client(ca)
        return client

    def _token(self, config: Config) -> SecretValue:
        if self._pat is None:
            from app.secret_sources import resolve_plain

            self._pat = resolve_plain(config, self.spec.token, what=f"{self.title}: token")
        return self._pat

    def _auth_header(self, config: Config) -> dict[str, str]:
        raw = base64.b64encode(b":" + self._token(config).reveal().encode("utf-8")).decode("ascii")
        return {"Authorization": f"Basic {raw}"}  # built for each request; never logged, never kept

    def _send(self, client: httpx.Client, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """One request; a transport failure becomes app.net's Transient (the retry policy decides what follows)."""
        import httpx

        try:
            resp = client.request(method, url, **kwargs)
        except LimitExceededError as exc:  # too large an answer: not tried again
            if method == "GET":
                raise FollowUpError(f"{self.where}: {what}: {exc.message}", hint=exc.hint) from None
            raise FollowUpError(
                f"{self.where}: {what}: {exc.message}; the run may or may not have been queued",
                hint=f"{exc.hint}; then `keyturn resume` (a second check run is harmless)",
            ) from None
        except httpx.HTTPError as exc:
            failure = transport_failure(exc, url)
            log.warning("Azure DevOps %s %s -> %s", method, urlsplit(url).path, failure.problem)
            host = urlsplit(url).netloc
            said = f"cannot reach {host}" if failure.outcome is Outcome.NOT_SENT else f"{failure.problem} ({host})"
            raise failure.reworded(said) from None
        log.info("Azure DevOps %s %s -> %s", method, urlsplit(url).path, resp.status_code)
        return resp

    def _refused(self, resp: httpx.Response, what: str, scope: str, extra: tuple[SecretValue | None, ...]) -> FollowUpError:
        text = ""
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            text = body["message"]
        text = one_line(text or resp.reason_phrase or "no details", limit=200,
                        redact=tuple(v.reveal() for v in (self._pat, *extra) if v is not None))
        s = self.spec
        status = resp.status_code
        if status in (401, 203):  # 203: the sign-in page, what Azure DevOps answers a token it does not take
            return FollowUpError(
                f"{self.where}: {what} refused (HTTP {status}): the token {s.token} is not valid in organization "
                f"{s.organization} (expired, revoked, or another organization's)",
                hint=f"make a PAT with {QUEUE_SCOPE} in {s.organization} and store it where {s.token} points",
            )
        if status == 403:
            return FollowUpError(
                f"{self.where}: {what} refused (HTTP 403): {text}",
                hint=f"the token needs {scope}, and its user the 'Queue builds' permission on pipeline {s.pipeline_id}",
            )
        if status == 404:
            return FollowUpError(
                f"{self.where}: {what} refused (HTTP 404): {text}",
                hint="check organization, project and pipeline_id (the pipeline's page shows definitionId=N)",
            )
        hint = None
        if status == 400 and self.spec.rotation_variable and self.spec.rotation_variable in text:
            hint = f"let users set {self.spec.rotation_variable} at queue time in the pipeline, or drop rotation_variable"
        return FollowUpError(f"{self.where}: {what} refused (HTTP {status}): {text}", hint=hint)

    def _call(
        self,
        config: Config,
        client: httpx.Client,
        method: str,
        path: str,
        what: str,
        *,
        scope: str = READ_SCOPE,
        body: Any = None,
        unknown: Callable[[Transient, list[str]], Any] | None = None,
        extra: tuple[SecretValue | None, ...] = (),
    ) -> Any:
        """One API call under app.net.with_retries: a read is tried again after a timeout, reset, 429, 5xx or an
        unreadable answer; the POST (``unknown`` given) only after a 429 or a failed connection, else ``unknown``
        decides. The JSON answer, or FollowUpError in one line."""
        url = f"{self._base_url()}{path}?api-version={API_VERSION}"
        kwargs: dict[str, Any] = {} if body is None else {"json": body}

        def once() -> Any:
            resp = self._send(client, method, url, what, headers=self._auth_header(config), **kwargs)
            failure = answer_failure(resp.status_code, resp.headers)
            if failure is not None:
                raise failure
            if resp.status_code != 200:
                raise self._refused(resp, what, scope, extra)
            try:
                return resp.json()
            except ValueError:
                raise Transient("an unreadable answer (HTTP 200)", Outcome.UNKNOWN, status=200) from None

        def gave_up(_failure: Transient, problems: list[str]) -> FollowUpError:
            return FollowUpError(
                f"{self.where}: {what} failed: {said_of(problems)}; try again later",
                hint="check base_url, organization and the network, then `keyturn resume`",
            )

        return with_retries(
            once,
            idempotent=unknown is None,
            unknown=unknown,
            wait_out_rate_limit=True,  # a 429 did nothing: waiting it out is safe for the POST too
            gave_up=gave_up,
            sleep=self.retry_wait,
            log=log,
            call=f"Azure DevOps {what}",
        )

    def _get_run(self, config: Config, client: httpx.Client, run_id: int, what: str | None = None) -> dict[str, Any]:
        answer = self._call(config, client, "GET", f"{self._pipeline_path()}/runs/{run_id}", what or f"reading run {run_id}")
        if not isinstance(answer, dict) or answer.get("id") != run_id:
            raise FollowUpError(f"{self.where}: reading run {run_id}: the answer is not that run")
        return answer

    def _list_runs(self, config: Config, client: httpx.Client) -> list[dict[str, Any]]:
        what = f"listing the runs of pipeline {self.spec.pipeline_id}"
        answer = self._call(config, client, "GET", f"{self._pipeline_path()}/runs", what)
        try:
            runs = runs_of(answer)
        except ValueError:
            raise FollowUpError(f"{self.where}: {what}: the answer is not a list of runs") from None
        Listing(f"{self.where}: {what}", urlsplit(self._base_url()).netloc, items="runs").page(len(runs))
        return sorted(runs, key=lambda r: int(r["id"]), reverse=True)

    def _ours(self, config: Config, client: httpx.Client, rotation_id: str) -> dict[str, Any] | None:
        """The run this rotation queued, found by its ``rotation_variable`` among the newest runs, or None."""
        name = self.spec.rotation_variable
        if not name:
            return None
        for item in self._list_runs(config, client)[:FIND_CANDIDATES]:
            run = item if isinstance(item.get("variables"), dict) else self._get_run(config, client, int(item["id"]))
            variables = run.get("variables")
            var = variables.get(name) if isinstance(variables, dict) else None
            if isinstance(var, dict) and var.get("value") == rotation_id:
                return run
        return None

    # -- the protocol --------------------------------------------------------------------------

    def preflight(self, config: Config) -> None:
        """Read the pipeline with the token (nothing is queued): it exists, the token works and may read it."""
        with self._http(config) as client:
            answer = self._call(config, client, "GET", self._pipeline_path(), f"reading pipeline {self.spec.pipeline_id}")
        if not isinstance(answer, dict) or answer.get("id") != self.spec.pipeline_id:
            raise FollowUpError(f"{self.where}: reading pipeline {self.spec.pipeline_id}: the answer is not that pipeline")
        return None

    def find_done(self, ctx: StepContext) -> StepResult | None:
        """With ``rotation_variable``: the run this rotation queued before a crash, if there is one (else None)."""
        if not self.spec.rotation_variable:
            return None  # nothing marks our run: after a crash before the journal write, a second run is queued
        with self._http(ctx.config) as client:
            run = self._ours(ctx.config, client, ctx.rotation_id)
            if run is None:
                return None
            ctx.interaction.progress(f"{self.title}: run {run['id']} was queued earlier by this rotation")
            final = self._wait(ctx, client, run)
        return self._result(run, final, "found the run this rotation queued earlier")

    def run(self, ctx: StepContext) -> StepResult:
        s = self.spec
        body: dict[str, Any] = {}
        if s.branch:
            body["resources"] = {"repositories": {"self": {"refName": ref_name(s.branch)}}}
        if s.rotation_variable:
            body["variables"] = {s.rotation_variable: {"value": ctx.rotation_id}}
        what = f"queueing a run of pipeline {s.pipeline_id}"
        with self._http(ctx.config) as client:

            def unknown(failure: Transient, problems: list[str]) -> Any:
                found = self._ours(ctx.config, client, ctx.rotation_id)  # it may have been queued after all
                if found is not None:
                    return found
                raise failure.not_done()  # no run of ours (or none can be told apart): queue one (again)

            run = self._call(
                ctx.config, client, "POST", f"{self._pipeline_path()}/runs", what,
                scope=QUEUE_SCOPE, body=body, unknown=unknown, extra=(ctx.value,),
            )
            if not isinstance(run, dict) or not isinstance(run.get("id"), int):
                raise FollowUpError(f"{self.where}: {what}: the answer has no run id; `keyturn resume` queues one again")
            crash_point("pipeline:queued")  # crash tests: queued, not journaled
            ctx.interaction.progress(
                f"{self.title}: run {run['id']} queued"
                + (f"; waiting for it (up to {self.timeout_s:g} s)" if self.timeout_s else "")
            )
            final = self._wait(ctx, client, run)
        return self._result(run, final, "queued")

    def _wait(self, ctx: StepContext, client: httpx.Client, run: dict[str, Any]) -> dict[str, Any]:
        """Poll the run until it is completed or ``timeout_s`` is over; what was seen last. A failed poll ends the wait
        (the run is queued: its id must be journaled; the gate reads it again)."""
        run_id = int(run["id"])
        deadline = self.clock() + self.timeout_s
        interval = self.poll_interval
        current = run
        while current.get("state") not in FINAL_STATES:
            now = self.clock()
            if now >= deadline:
                break
            self.sleep(min(interval, max(deadline - now, 0.0)))
            interval = min(interval * self.poll_growth, self.max_poll_interval)
            try:
                current = self._get_run(ctx.config, client, run_id)
            except KeyturnError as exc:
                log.warning("pipeline %s run %s: %s", self.spec.pipeline_id, run_id, exc.message)
                ctx.interaction.progress(f"{self.title}: run {run_id} could not be read ({exc.message}); the gate looks again")
                break
        return current

    def _result(self, run: dict[str, Any], final: dict[str, Any], how: str) -> StepResult:
        s = self.spec
        pipeline: dict[str, Any] = run["pipeline"] if isinstance(run.get("pipeline"), dict) else {}
        detail = {
            "organization": s.organization,
            "project": s.project,
            "pipeline_id": s.pipeline_id,
            "pipeline_name": str(pipeline.get("name") or "") or None,
            "run_id": int(run["id"]),
            "run_name": run.get("name"),
            "queued_at": run.get("createdDate"),
        }
        label = self.label(detail)
        state, result = final.get("state"), final.get("result")
        if state == "completed" and result == "succeeded":
            outcome = "it succeeded"
        elif state == "completed":
            outcome = f"it {'was ' if result == 'canceled' else ''}{result or 'ended'}: the old token waits for a run that succeeds"
        elif self.timeout_s:
            outcome = f"still running after {self.timeout_s:g} s: the old token waits for it"
        else:
            outcome = "the old token waits for it to succeed"
        name = f" ({run['name']})" if run.get("name") else ""
        return StepResult(f"{how} run {run['id']}{name} of pipeline {label}; {outcome}", detail)

    def gate(self, ctx: StepContext, detail: dict[str, Any]) -> GateCheck | None:
        label = self.label(detail)
        title = f"pipeline {label} run"
        run_id = detail.get("run_id")
        if not isinstance(run_id, int):
            return GateCheck(self.id, title, False, waiting_for=f"pipeline {label}: no run of this rotation is journaled")
        with self._http(ctx.config) as client:
            ours = self._get_run(ctx.config, client, run_id, f"reading run {run_id} of pipeline {label}")
            decisive = ours
            if ours.get("state") == "completed" and ours.get("result") != "succeeded":
                later = [r for r in self._list_runs(ctx.config, client) if int(r["id"]) > run_id]
                if later:
                    decisive = later[0]  # the newest run queued after ours: a re-run once the consumer is fixed
        rid = int(decisive["id"])
        links = decisive.get("_links")
        web = links.get("web") if isinstance(links, dict) else None
        url = str(web["href"]) if isinstance(web, dict) and isinstance(web.get("href"), str) else None
        after = f" (queued after run {run_id}, which {ours.get('result')})" if rid != run_id else ""
        state, result = decisive.get("state"), decisive.get("result")
        breaks = f"pipeline {label} has not shown that its consumer works with the new token"
        if state == "completed" and result == "succeeded":
            return GateCheck(self.id, title, True, progress=f"pipeline {label} run {rid}{after} succeeded", url=url)
        if state != "completed":
            waiting = f"pipeline {label} run {rid}{after} still running"
            if state not in ("inProgress", "canceling"):
                waiting = f"pipeline {label} run {rid}{after} is in state {one_line(state, limit=40)}"
            return GateCheck(self.id, title, False, waiting_for=waiting, url=url, breaks=breaks)
        if result == "failed":
            said = "failed: the consumer did not work with the new token (fix it, then re-run the pipeline"
        elif result == "canceled":
            said = "was canceled before it showed the consumer works with the new token (re-run the pipeline"
        else:
            said = f"ended {one_line(result, limit=40)}, not succeeded (re-run the pipeline"
        return GateCheck(
            self.id,
            title,
            False,
            waiting_for=f"pipeline {label} run {rid}{after} {said}: a run queued after run {rid} counts)",
            progress=f"run {rid} did not succeed; keyturn does not queue another run by itself",
            url=url,
            breaks=breaks,
        )
