"""app.net's one retry policy (tenacity underneath), and the clients that use it: one classification of failures.

- not sent (a failed connection): tried again for any call, a creation too;
- rate limited (429): tried again for idempotent calls, after the wait the server announced;
- sent, outcome unknown (read timeout, reset, 5xx, unreadable answer): tried again for idempotent calls only; a
  creation goes to the caller's own check (AmbiguousResultError, Key Vault's read-back).
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from app import net
from app.errors import AmbiguousResultError, KeyturnError, ProviderError
from app.net import MAX_ATTEMPTS, Outcome, Transient, answer_failure, transport_failure, with_retries
from app.secret import SecretValue

CANARY = "CANARY-0123456789abcdef"


class Gave(Exception):
    def __init__(self, failure: Transient, problems: list[str]) -> None:
        super().__init__(failure.problem)
        self.failure, self.problems = failure, problems


def run(answers: list[Any], *, idempotent: bool, **kw: Any) -> tuple[Any, list[int], list[float]]:
    """with_retries over ``answers`` (a Transient or exception is raised, anything else returned), one per attempt."""
    calls: list[int] = []
    sleeps: list[float] = []

    def attempt() -> Any:
        calls.append(len(calls) + 1)
        a = answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a

    try:
        result: Any = with_retries(attempt, idempotent=idempotent, gave_up=Gave, sleep=sleeps.append, **kw)
    except Exception as exc:
        result = exc
    return result, calls, sleeps


def not_sent() -> Transient:
    return Transient("could not connect", Outcome.NOT_SENT)


def unknown() -> Transient:
    return Transient("timed out", Outcome.UNKNOWN)


def limited(wait: float | None = 7.0) -> Transient:
    return Transient("HTTP 429", Outcome.RATE_LIMITED, wait=wait, status=429)


# -- the policy ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("idempotent", [True, False])
def test_not_sent_is_tried_again_for_any_call(idempotent: bool) -> None:
    result, calls, sleeps = run([not_sent(), not_sent(), "ok"], idempotent=idempotent)
    assert result == "ok" and calls == [1, 2, 3] and sleeps == [1.0, 2.0]


def test_three_attempts_then_the_one_line_error_with_every_problem() -> None:
    result, calls, sleeps = run([unknown(), Transient("HTTP 503", Outcome.UNKNOWN, status=503), unknown(), "never"], idempotent=True)
    assert isinstance(result, Gave) and len(calls) == MAX_ATTEMPTS == 3
    assert result.problems == ["timed out", "HTTP 503", "timed out"]
    assert sleeps == [1.0, 2.0]  # no wait after the last attempt


def test_unknown_outcome_of_a_creation_goes_to_the_callers_check_once() -> None:
    seen: list[list[str]] = []

    def check(failure: Transient, problems: list[str]) -> Any:
        seen.append(problems)
        raise AmbiguousResultError(f"create: {failure.problem}; it may or may not have happened")

    result, calls, sleeps = run([unknown(), "never"], idempotent=False, unknown=check)
    assert isinstance(result, AmbiguousResultError) and calls == [1] and sleeps == [] and seen == [["timed out"]]


def test_unknown_outcome_without_a_check_is_the_one_line_error() -> None:
    result, calls, _ = run([unknown(), "never"], idempotent=False)
    assert isinstance(result, Gave) and calls == [1]


def test_a_check_may_find_the_write_done_or_have_it_sent_again() -> None:
    found, calls, _ = run([unknown(), "never"], idempotent=False, unknown=lambda f, p: "written")
    assert found == "written" and calls == [1]

    def absent(failure: Transient, problems: list[str]) -> Any:
        raise failure.not_done()

    again, calls, sleeps = run([unknown(), "ok"], idempotent=False, unknown=absent)
    assert again == "ok" and calls == [1, 2] and sleeps == [1.0]


def test_rate_limited_waits_what_was_announced_for_idempotent_calls() -> None:
    result, _calls, sleeps = run([limited(7.0), limited(None), "ok"], idempotent=True)
    assert result == "ok" and sleeps == [7.0, 2.0]  # no announced wait: the backoff


def test_rate_limited_creation_stops_unless_the_write_waits_it_out() -> None:
    result, calls, sleeps = run([limited(), "never"], idempotent=False)
    assert isinstance(result, Gave) and result.failure.outcome is Outcome.RATE_LIMITED and calls == [1] and sleeps == []
    result, calls, sleeps = run([limited(), "ok"], idempotent=False, wait_out_rate_limit=True)
    assert result == "ok" and sleeps == [7.0]


def test_other_errors_are_never_tried_again() -> None:
    for exc in (ProviderError("HTTP 403"), net.LimitExceededError("too large"), ValueError("bug")):
        result, calls, _ = run([exc, "never"], idempotent=True)
        assert result is exc and calls == [1]


def test_the_default_wait_is_scaled_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(net.time, "sleep", slept.append)
    monkeypatch.setenv(net.SLEEP_SCALE_ENV, "0.01")
    answers: list[Any] = [not_sent(), not_sent(), "ok"]

    def attempt() -> Any:
        a = answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a

    assert with_retries(attempt, idempotent=True, gave_up=Gave) == "ok"
    assert slept == pytest.approx([0.01, 0.02])


# -- one classification ----------------------------------------------------------------------------------

REQ = httpx.Request("POST", "https://h.example.test/x")


@pytest.mark.parametrize(
    ("exc", "problem", "outcome"),
    [
        (httpx.ConnectError("refused", request=REQ), "could not connect", Outcome.NOT_SENT),
        (httpx.ConnectTimeout("slow", request=REQ), "could not connect (timed out)", Outcome.NOT_SENT),
        (httpx.ReadTimeout("slow", request=REQ), "timed out", Outcome.UNKNOWN),
        (httpx.WriteTimeout("slow", request=REQ), "timed out", Outcome.UNKNOWN),
        (httpx.RemoteProtocolError("closed", request=REQ), "the connection was reset", Outcome.UNKNOWN),
        (httpx.ReadError("reset", request=REQ), "the connection was reset", Outcome.UNKNOWN),
        (httpx.WriteError("reset", request=REQ), "the connection was reset", Outcome.UNKNOWN),
        (httpx.ProxyError("proxy", request=REQ), "the connection failed", Outcome.UNKNOWN),
    ],
)
def test_transport_failures(exc: Exception, problem: str, outcome: Outcome) -> None:
    failure = transport_failure(exc, "https://h.example.test/x")
    assert (failure.problem, failure.outcome, failure.status) == (problem, outcome, None)


def test_a_wrapped_transport_failure_is_classified_by_its_cause() -> None:
    class Wrapper(Exception):  # as gql's TransportConnectionFailed wraps httpx's error
        pass

    try:
        try:
            raise httpx.ConnectError("refused", request=REQ)
        except httpx.ConnectError as inner:
            raise Wrapper("failed") from inner
    except Wrapper as exc:
        assert transport_failure(exc, "https://h.example.test/x").outcome is Outcome.NOT_SENT


def test_an_untrusted_certificate_is_its_one_line_error_never_a_retry() -> None:
    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    cert.verify_message = "self-signed certificate in certificate chain"
    try:
        raise httpx.ConnectError("tls", request=REQ) from cert
    except httpx.ConnectError as exc:
        with pytest.raises(KeyturnError, match=r"the certificate of h.example.test is not trusted \(self-signed"):
            transport_failure(exc, "https://h.example.test/x")


def test_answers() -> None:
    failure = answer_failure(429, {"Retry-After": "12"})
    assert failure is not None and (failure.outcome, failure.wait, failure.problem) == (Outcome.RATE_LIMITED, 12.0, "HTTP 429")
    failure = answer_failure(429, {"Retry-After": "3600"})
    assert failure is not None and failure.wait == net.RETRY_WAIT_CAP
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    failure = answer_failure(503, {"Retry-After": later})
    assert failure is not None and failure.outcome is Outcome.UNKNOWN and 5.0 <= (failure.wait or 0) <= 10.0
    failure = answer_failure(429, {"RateLimit-Reset": "500"}, rate_limit_headers=("RateLimit-Reset", "Retry-After"), cap=60)
    assert failure is not None and failure.wait == 60.0
    for status in (500, 502, 504, 599):
        failure = answer_failure(status, {})
        assert failure is not None and failure.outcome is Outcome.UNKNOWN and failure.wait is None
    for status in (200, 204, 302, 400, 401, 403, 404, 409):
        assert answer_failure(status, {}) is None


# -- the clients: a connect failure on a creation is "not sent" everywhere; a read timeout is ambiguous ------


def flaky(first: list[Exception], then: httpx.Response) -> tuple[Any, list[httpx.Request]]:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if first:
            raise first.pop(0)
        return then

    return handler, calls


def ado_client(handler: Any, sleeps: list[float]) -> Any:
    from providers.azure_devops.client import PatClient

    return PatClient(
        "ado-bot",
        "contoso",
        bearer=lambda: CANARY,
        vssps_url="https://vssps.example.test",
        base_url="https://dev.example.test",
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
    )


def ado_request() -> Any:
    from providers.base import MintRequest

    return MintRequest("keda-agents", ("vso.agentpools",), datetime.now(UTC) + timedelta(days=30))


def ado_created() -> httpx.Response:
    pat = {
        "authorizationId": "a-new",
        "displayName": "keda-agents",
        "scope": "vso.agentpools",
        "validTo": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        "targetAccounts": ["org"],
        "token": "the-new-pat-value",
    }
    return httpx.Response(200, json={"patToken": pat, "patTokenError": "none"})


@pytest.mark.parametrize("connect", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")], ids=["refused", "timeout"])
def test_azure_devops_create_after_a_connect_failure_is_sent_again(connect: Exception) -> None:
    sleeps: list[float] = []
    handler, calls = flaky([connect], ado_created())
    client = ado_client(handler, sleeps)
    minted = client.create(ado_request())
    assert minted.info.id == "a-new" and len(calls) == 2 and sleeps == [1.0]


def test_azure_devops_create_that_never_connects_is_not_sent_not_ambiguous() -> None:
    sleeps: list[float] = []
    handler, calls = flaky([httpx.ConnectError("refused")] * 3, ado_created())
    with pytest.raises(ProviderError) as err:
        ado_client(handler, sleeps).create(ado_request())
    assert not isinstance(err.value, AmbiguousResultError)
    assert str(err.value).startswith("could not create PAT 'keda-agents' in contoso: could not connect (vssps.example.test)")
    assert "after 3 attempts" in str(err.value) and len(calls) == 3
    assert CANARY not in str(err.value)


@pytest.mark.parametrize("sent", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("closed")], ids=["read-timeout", "reset"])
def test_azure_devops_create_after_a_read_timeout_is_ambiguous(sent: Exception) -> None:
    sleeps: list[float] = []
    handler, calls = flaky([sent], ado_created())
    with pytest.raises(AmbiguousResultError, match="may or may not have been created"):
        ado_client(handler, sleeps).create(ado_request())
    assert len(calls) == 1 and sleeps == []


def buildkite_client(handler: Any, sleeps: list[float]) -> Any:
    from providers.buildkite.client import BuildkiteClient

    return BuildkiteClient(
        "bk",
        "org",
        token=lambda: SecretValue(CANARY),
        graphql_url="https://graphql.example.test/v1",
        rest_url="https://api.example.test",
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
    )


BK_CREATED = httpx.Response(200, json={"data": {"clusterAgentTokenCreate": {"tokenValue": "bkct_x", "clusterAgentToken": {}}}})


def test_buildkite_mutation_after_a_connect_failure_is_sent_again() -> None:
    sleeps: list[float] = []
    handler, calls = flaky([httpx.ConnectError("refused")], BK_CREATED)
    data = buildkite_client(handler, sleeps).graphql("ClusterAgentTokenCreate", {"organizationId": "o"}, what="could not create")
    assert "clusterAgentTokenCreate" in data and len(calls) == 2 and sleeps == [1.0]


def test_buildkite_mutation_after_a_read_timeout_is_ambiguous() -> None:
    sleeps: list[float] = []
    handler, calls = flaky([httpx.ReadTimeout("slow")], BK_CREATED)
    with pytest.raises(AmbiguousResultError, match=r"ClusterAgentTokenCreate: timed out .* may or may not have happened"):
        buildkite_client(handler, sleeps).graphql("ClusterAgentTokenCreate", {"organizationId": "o"}, what="could not create")
    assert len(calls) == 1 and sleeps == []


def jenkins_post(handler: Any) -> httpx.Response:
    from providers.jenkins.client import DESCRIPTOR, JenkinsClient

    client = JenkinsClient(
        "https://jenkins.example.test", "bot", ca_bundle=None, token=SecretValue(CANARY), transport=httpx.MockTransport(handler)
    )
    try:
        return client.post(f"/user/bot/{DESCRIPTOR}/generateNewToken", {"newTokenName": "n"}, what="could not create API token",
                           ambiguous=True, json_expected=True)
    finally:
        client.close()


JK_CREATED = httpx.Response(200, json={"status": "ok", "data": {"tokenUuid": "u", "tokenValue": "v"}})


def test_jenkins_generate_after_a_connect_failure_is_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(net.SLEEP_SCALE_ENV, "0")
    handler, calls = flaky([httpx.ConnectError("refused")], JK_CREATED)
    assert jenkins_post(handler).status_code == 200 and len(calls) == 2


def test_jenkins_generate_after_a_read_timeout_is_ambiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(net.SLEEP_SCALE_ENV, "0")
    handler, calls = flaky([httpx.ReadTimeout("slow")], JK_CREATED)
    with pytest.raises(AmbiguousResultError, match="timed out after the request was sent"):
        jenkins_post(handler)
    assert len(calls) == 1


def test_jenkins_generate_rate_limited_stops_with_try_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(net.SLEEP_SCALE_ENV, "0")
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429, headers={"Retry-After": "9"})

    with pytest.raises(ProviderError, match="refusing requests for now") as err:
        jenkins_post(handler)
    assert not isinstance(err.value, AmbiguousResultError) and "try again in 9 s" in str(err.value) and len(calls) == 1


# Key Vault's SetSecret: a lost answer is read back before anything is written again ------------------------


class _Props:
    def __init__(self, version: str, tags: dict[str, str] | None) -> None:
        self.version, self.tags, self.created_on = version, tags, None


class _Pages:
    continuation_token = None

    def __init__(self, items: list[Any]) -> None:
        self._items = items

    def __iter__(self) -> Any:
        return iter([self._items])


class FakeVaultSdk:
    """set_secret fails with ``failures`` first (each may or may not write), then writes; versions are listed."""

    def __init__(self, failures: list[tuple[Exception, bool]]) -> None:
        self.failures = failures
        self.sets = 0
        self.versions: dict[str, tuple[str, dict[str, str] | None]] = {}

    def set_secret(self, secret: str, value: str, **kwargs: Any) -> Any:
        self.sets += 1
        if self.failures:
            exc, writes = self.failures.pop(0)
            if writes:
                self.versions[f"v{len(self.versions) + 1}"] = (value, kwargs.get("tags"))
            raise exc
        version = f"v{len(self.versions) + 1}"
        self.versions[version] = (value, kwargs.get("tags"))
        return type("Bundle", (), {"value": value, "version": version})()

    def list_properties_of_secret_versions(self, secret: str) -> Any:
        items = [_Props(v, tags) for v, (_value, tags) in self.versions.items()]
        return type("Listed", (), {"by_page": lambda _self: _Pages(items)})()

    def get_secret(self, secret: str, version: str | None) -> Any:
        return type("Bundle", (), {"value": self.versions[version or ""][0], "version": version})()


def vault(sdk: FakeVaultSdk) -> tuple[Any, list[float]]:
    from app.keyvault import VaultClient

    sleeps: list[float] = []
    client = VaultClient.__new__(VaultClient)
    client.name, client.url, client._client, client.sleep = "kv", "https://kv.vault.azure.net", sdk, sleeps.append  # type: ignore[assignment]
    return client, sleeps


def test_keyvault_set_after_a_connect_failure_is_sent_again_unchecked() -> None:
    from azure.core.exceptions import ServiceRequestError

    sdk = FakeVaultSdk([(ServiceRequestError("refused"), False)])
    client, sleeps = vault(sdk)
    assert client.set("s", "value", tags={"k": "v"}).version == "v1"
    assert sdk.sets == 2 and sleeps == [1.0] and list(sdk.versions) == ["v1"]


@pytest.mark.parametrize("wrote", [True, False], ids=["written", "not-written"])
def test_keyvault_set_after_a_lost_answer_reads_back_first(wrote: bool) -> None:
    from azure.core.exceptions import ServiceResponseError

    sdk = FakeVaultSdk([(ServiceResponseError("Read timed out"), wrote)])
    client, sleeps = vault(sdk)
    client.set("s", "value", tags={"k": "v"})
    assert list(sdk.versions) == ["v1"]  # never a second version
    assert sdk.sets == (1 if wrote else 2) and sleeps == ([] if wrote else [1.0])


def test_keyvault_set_rate_limited_waits_it_out() -> None:
    from azure.core.exceptions import HttpResponseError

    class Answer:
        status_code = 429
        headers = {"Retry-After": "4"}
        reason = "Too Many Requests"

        def text(self) -> str:
            return ""

    exc = HttpResponseError(message="throttled", response=Answer())  # type: ignore[arg-type]
    exc.status_code = 429
    sdk = FakeVaultSdk([(exc, False)])
    client, sleeps = vault(sdk)
    client.set("s", "value", tags={"k": "v"})
    assert sdk.sets == 2 and sleeps == [4.0]


# ConductorOne: the connector update (not idempotent) ----------------------------------------------------


def conductorone_step() -> Any:
    from app.followups.conductorone import ConductorOneStep

    step = ConductorOneStep.__new__(ConductorOneStep)
    step.spec = type("Spec", (), {"tenant": "acme"})()  # type: ignore[assignment]
    step.retry_wait = lambda s: None
    return step


def test_conductorone_update_after_a_connect_failure_is_sent_again() -> None:
    step = conductorone_step()
    answers: list[Any] = [Transient("cannot reach acme.conductor.one", Outcome.NOT_SENT), {"ok": True}]

    def call() -> Any:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    assert step._with_retries(call, "connector c update", idempotent=False) == {"ok": True}


def test_conductorone_update_after_a_read_timeout_may_have_happened() -> None:
    from app.errors import FollowUpError

    step = conductorone_step()
    calls: list[int] = []

    def call() -> Any:
        calls.append(1)
        raise Transient("timed out (acme.conductor.one)", Outcome.UNKNOWN)

    with pytest.raises(FollowUpError, match=r"connector c update: timed out .* may or may not have happened"):
        step._with_retries(call, "connector c update", idempotent=False)
    assert calls == [1]


def test_no_secret_in_a_given_up_message_or_its_traceback() -> None:
    import traceback

    sleeps: list[float] = []
    handler, _calls = flaky([httpx.ReadTimeout(f"slow {CANARY}")] * 3, ado_created())
    client = ado_client(handler, sleeps)
    with pytest.raises(ProviderError) as err:
        list(client.iter_pats("all"))
    assert CANARY not in "".join(traceback.format_exception(err.value))
