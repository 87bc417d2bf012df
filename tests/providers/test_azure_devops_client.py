"""PatClient edge cases on httpx.MockTransport: errors inside 200, sign-in pages, paging, retries, ambiguity."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from app.errors import AmbiguousResultError, AuthExpiredError, KeyturnError, ProviderError
from app.secret import SecretValue
from providers.azure_devops.client import PAT_TOKEN_ERRORS, PatClient, format_time, parse_time, token_info
from providers.base import MintedToken, MintRequest, TokenInfo

ORG = "contoso"
PATS_PATH = f"/{ORG}/_apis/tokens/pats"


def request(days: float = 90, scopes: tuple[str, ...] = ("vso.agentpools_manage",), **kw: object) -> MintRequest:
    return MintRequest("keda-agents", scopes, datetime.now(UTC) + timedelta(days=days), **kw)  # type: ignore[arg-type]


def minted(scopes: tuple[str, ...], value: str = "the-new-pat") -> MintedToken:
    return MintedToken(TokenInfo("id-1", "keda", None, scopes), SecretValue(value))


# -- the create request ---------------------------------------------------------------------------


def test_create_sends_exactly_the_documented_body(client, fake_ado):
    expires = datetime(2031, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    out = client.create(MintRequest("keda-agents", ("vso.agentpools", "vso.build", "vso.agentpools"), expires))
    (req,) = fake_ado.requests
    assert req.method == "POST"
    assert req.url.host == "vssps.example.test"
    assert req.url.path == PATS_PATH
    assert req.url.params["api-version"] == "7.2-preview.1"
    assert req.headers["content-type"] == "application/json"
    body = json.loads(req.content)
    assert body == {
        "displayName": "keda-agents",
        "scope": "vso.agentpools vso.build",  # space-separated, de-duplicated, order kept
        "validTo": "2031-03-01T12:30:15.123Z",
        "allOrgs": False,
    }
    assert isinstance(out.value, SecretValue) and out.value.reveal() == fake_ado.new_value
    assert out.info.name == "keda-agents"
    assert out.info.scopes == ("vso.agentpools", "vso.build")
    assert out.info.extra["targetAccounts"] == "1 org"
    assert out.notes == ()


def test_create_all_orgs_only_when_asked(client, fake_ado):
    out = client.create(request(all_orgs=True))
    assert json.loads(fake_ado.requests[0].content)["allOrgs"] is True
    assert out.info.extra["targetAccounts"] == "all"


def test_valid_to_is_utc_with_z():
    cet = datetime(2030, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=1)))
    assert format_time(cet) == "2030-01-01T13:00:00.000Z"
    assert format_time(datetime(2030, 1, 1, 13, 0)) == "2030-01-01T13:00:00.000Z"  # naive means UTC


def test_create_without_expiry_or_scopes_sends_nothing(client, fake_ado):
    with pytest.raises(ProviderError, match="always expire"):
        client.create(MintRequest("x", ("vso.build",), None))
    with pytest.raises(ProviderError, match="no scopes"):
        client.create(request(scopes=()))
    assert fake_ado.requests == []


def test_lifespan_policy_clamp_adds_a_note(client, fake_ado):
    fake_ado.clamp_days = 30
    out = client.create(request(days=180))
    assert out.info.expires_at is not None
    assert out.info.expires_at < datetime.now(UTC) + timedelta(days=31)
    (note,) = out.notes
    assert "maximum PAT lifespan clamped the expiry to" in note
    assert out.info.expires_at.strftime("%Y-%m-%d") in note


def test_no_note_when_the_server_rounds_valid_to(client, fake_ado):
    def rounded(req: httpx.Request):
        if req.method != "POST":
            return None
        body = json.loads(req.content)
        back = datetime.fromisoformat(body["validTo"]) - timedelta(seconds=20)  # rounding, not a clamp
        return httpx.Response(
            200,
            json={
                "patTokenError": "none",
                "patToken": {
                    "authorizationId": "a1",
                    "displayName": body["displayName"],
                    "scope": body["scope"],
                    "validTo": back.isoformat(),
                    "targetAccounts": ["o"],
                    "token": "v",
                },
            },
        )

    fake_ado.override = rounded
    assert client.create(request()).notes == ()


def test_create_answer_without_value_is_ambiguous(make_client):
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "patTokenError": "none",
                "patToken": {
                    "authorizationId": "a1",
                    "displayName": "keda-agents",
                    "validTo": "2030-01-01T00:00:00Z",
                    "token": None,
                },
            },
        )

    with pytest.raises(AmbiguousResultError, match="created token a1 but sent no value"):
        make_client(handler).create(request())


# -- errors inside HTTP 200 -------------------------------------------------------------------------


POLICY_CASES = {
    "patLifespanPolicyViolation": "maximum PAT lifespan",
    "fullScopePatPolicyViolation": "full-access PATs are blocked",
    "globalPatPolicyViolation": "2026-12-01",
    "globalPATCreationBlocked": "all_orgs = false",
    "disablePatCreationPolicyViolation": "PAT creation is disabled",
    "invalidScope": "scopes are unknown",
    "invalidValidTo": "expiry date is not accepted",
    "displayNameRequired": "display name is required",
    "accessDenied": "access denied",
    "invalidUserType": "service principals",
}


@pytest.mark.parametrize(("error", "expected"), sorted(POLICY_CASES.items()))
def test_pat_token_error_in_200_is_explained(make_client, error, expected):
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"patToken": None, "patTokenError": error})

    with pytest.raises(ProviderError) as info:
        make_client(handler).create(request())
    assert not isinstance(info.value, AmbiguousResultError)
    text = str(info.value)
    assert expected in text
    assert error in text
    assert "keda-agents" in text and ORG in text
    assert "\n" not in text
    assert len(seen) == 1  # a definite refusal is not retried


def test_every_documented_pat_token_error_has_an_explanation():
    spec = json.loads(open("app/sandbox/contracts/azure-devops/tokens-7.2/tokens.json", encoding="utf-8-sig").read())
    documented = set(spec["definitions"]["PatTokenResult"]["properties"]["patTokenError"]["enum"]) - {"none"}
    assert documented <= set(PAT_TOKEN_ERRORS)


def test_pat_token_error_message_is_included_on_one_line(make_client):
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "patToken": None,
                "patTokenError": "patLifespanPolicyViolation",
                "patTokenErrorMessage": "The maximum lifespan\r\nis 30 days.\n",
            },
        )

    with pytest.raises(ProviderError) as info:
        make_client(handler).create(request())
    assert str(info.value).endswith("The maximum lifespan is 30 days.")


def test_unknown_pat_token_error_still_names_the_code(make_client):
    handler = lambda req: httpx.Response(200, json={"patTokenError": "somethingNew"})  # noqa: E731
    with pytest.raises(ProviderError, match="somethingNew"):
        make_client(handler).create(request())


def test_pat_token_error_in_a_400(make_client):
    handler = lambda req: httpx.Response(400, json={"patTokenError": "invalidScope", "patToken": None})  # noqa: E731
    with pytest.raises(ProviderError, match="scopes are unknown"):
        make_client(handler).create(request())


# -- a sign-in page instead of JSON -------------------------------------------------------------------


SIGN_IN_PAGES = {
    "html-200": lambda req: httpx.Response(200, html="<html><body>Sign in to your account</body></html>"),
    "203": lambda req: httpx.Response(203, json={}),
    "302": lambda req: httpx.Response(302, headers={"Location": "https://login.example/_signin"}),
    "html-401": lambda req: httpx.Response(401, html="<html>sign in</html>"),
    "empty-401": lambda req: httpx.Response(401),
}


@pytest.mark.parametrize("kind", sorted(SIGN_IN_PAGES))
@pytest.mark.parametrize("call", ["list", "get", "create", "revoke"])
def test_sign_in_page_means_auth_expired(make_client, kind, call):
    c = make_client(SIGN_IN_PAGES[kind])
    with pytest.raises(AuthExpiredError) as info:
        {
            "list": lambda: c.list_tokens(),
            "get": lambda: c.get_token("a1"),
            "create": lambda: c.create(request()),
            "revoke": lambda: c.revoke("a1"),
        }[call]()
    assert "the Entra sign-in of ado-bot expired or was refused" in str(info.value)
    assert "sign in again" in str(info.value)


@pytest.mark.parametrize("status", [401, 403])
def test_json_401_403_carry_the_server_message(make_client, status):
    msg = {
        "$id": "1",
        "message": "TF400813: The user 'bot@contoso.com' is not authorized to access this resource.",
        "typeKey": "UnauthorizedRequestException",
        "errorCode": 0,
    }
    c = make_client(lambda req: httpx.Response(status, json=msg))
    with pytest.raises(ProviderError) as info:
        c.list_tokens()
    assert not isinstance(info.value, AuthExpiredError)
    assert f"HTTP {status}" in str(info.value)
    assert "TF400813" in str(info.value)


def test_other_4xx_carry_the_server_message(make_client):
    c = make_client(lambda req: httpx.Response(400, json={"message": "Bad\nrequest"}))
    with pytest.raises(ProviderError, match="HTTP 400: Bad request"):
        c.list_tokens()


# -- paging ----------------------------------------------------------------------------------------


def test_list_follows_continuation_tokens(client, fake_ado):
    for i in range(5):
        fake_ado.add(f"t{i}")
    fake_ado.page_size = 2
    tokens = client.list_tokens()
    assert [t.name for t in tokens] == [f"t{i}" for i in range(5)]
    active_calls = [r for r in fake_ado.requests if r.url.params.get("displayFilterOption") == "active"]
    assert [r.url.params.get("continuationToken") for r in active_calls] == [None, "2", "4"]
    assert len(fake_ado.requests) == 3  # active tokens only: one listing
    fake_ado.requests.clear()
    assert [t.name for t in client.list_tokens(include_inactive=True)] == [f"t{i}" for i in range(5)]
    all_calls = [r for r in fake_ado.requests if r.url.params.get("displayFilterOption") == "all"]
    assert [r.url.params.get("continuationToken") for r in all_calls] == [None, "2", "4"]
    assert all(r.method == "GET" and r.url.path == PATS_PATH for r in fake_ado.requests)


def test_list_stops_on_absent_continuation_token(make_client):
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        return httpx.Response(200, json={"patTokens": [{"authorizationId": "a", "displayName": "x"}]})

    assert len(list(make_client(handler).iter_pats("all"))) == 1
    assert len(calls) == 1


def test_list_refuses_a_continuation_loop(make_client):
    handler = lambda req: httpx.Response(200, json={"patTokens": [], "continuationToken": "same"})  # noqa: E731
    with pytest.raises(ProviderError, match="repeated a continuation token"):
        list(make_client(handler).iter_pats("all"))


def test_list_marks_revoked_and_expired(client, fake_ado):
    live = fake_ado.add("live")
    old = fake_ado.add("old", days=-2)
    gone = fake_ado.add("gone")
    fake_ado.revoked.add(gone["authorizationId"])
    by_name = {t.name: t for t in client.list_tokens(include_inactive=True)}
    assert by_name["live"].active and by_name["live"].extra["status"] == "active"
    assert not by_name["old"].active and by_name["old"].extra["status"] == "expired"
    assert not by_name["gone"].active and by_name["gone"].extra["status"] == "revoked"
    assert by_name["live"].id == live["authorizationId"] and by_name["old"].id == old["authorizationId"]


def test_token_info_mapping():
    info = token_info(
        {
            "displayName": "all_access_token",
            "validTo": "2020-11-23T04:04:38.5233333Z",
            "scope": "app_token vso.build",
            "targetAccounts": None,
            "validFrom": "2020-10-24T03:04:57.52Z",
            "authorizationId": "4c60c9ed-a378-4883-af16-d655ca025b11",
            "token": None,
        },
        now=datetime(2020, 11, 1, tzinfo=UTC),
    )
    assert info == TokenInfo(
        id="4c60c9ed-a378-4883-af16-d655ca025b11",
        name="all_access_token",
        expires_at=datetime(2020, 11, 23, 4, 4, 38, 523333, tzinfo=UTC),
        scopes=("app_token", "vso.build"),
        active=True,
        extra={"targetAccounts": "all", "status": "active", "validFrom": "2020-10-24T03:04:57.520000+00:00"},
    )
    assert token_info({"targetAccounts": ["a", "b"]}).extra["targetAccounts"] == "2 orgs"
    assert parse_time("2020-12-01T23:46:23") == datetime(2020, 12, 1, 23, 46, 23, tzinfo=UTC)
    assert parse_time("garbage") is None


# -- get and revoke --------------------------------------------------------------------------------


def test_get_unknown_is_none(client):
    assert client.get_token("0b3f0000-0000-0000-0000-000000000000") is None


def test_get_404_is_none(make_client):
    assert make_client(lambda req: httpx.Response(404, json={"message": "nope"})).get_token("x") is None


def test_get_sees_revocation_through_the_active_listing(client, fake_ado):
    pat = fake_ado.add("keda")
    assert client.get_token(pat["authorizationId"]).active
    client.revoke(pat["authorizationId"])
    after = client.get_token(pat["authorizationId"])
    assert after is not None and not after.active and after.extra["status"] == "revoked"


def test_404_for_an_unknown_organization_is_an_error(make_client):
    body = {
        "message": "TF400813: The organization 'contoso' does not exist or you are not allowed to access it.",
        "typeKey": "HostNotFoundException",
    }
    c = make_client(lambda req: httpx.Response(404, json=body))
    with pytest.raises(ProviderError, match="HTTP 404: TF400813"):
        c.revoke("a1")
    with pytest.raises(ProviderError, match="HTTP 404"):
        c.get_token("a1")


def test_revoke_sends_delete_with_the_id(client, fake_ado):
    client.revoke("4ab5764f-4193-4f1d-b995-64144880b7d7")
    (req,) = fake_ado.requests
    assert req.method == "DELETE" and req.url.path == PATS_PATH
    assert req.url.params["authorizationId"] == "4ab5764f-4193-4f1d-b995-64144880b7d7"


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404, json={"message": "No PAT a1 was found.", "typeKey": "SessionTokenNotFoundException"}),
        httpx.Response(200, json={"patTokenError": "tokenNotFound"}),
        httpx.Response(200, json={"patTokenError": "authorizationNotFound"}),
        httpx.Response(200, text=""),
    ],
)
def test_revoking_an_unknown_or_revoked_token_is_fine(make_client, answer):
    make_client(lambda req: answer).revoke("a1")


# -- non-idempotent create: ambiguity, never a blind retry -----------------------------------------
# (a connect failure on create was here: it is "not sent" now, like every client's; see
# tests/unit/test_retry_policy.py)


AMBIGUOUS = {
    "500": lambda req: httpx.Response(500, text="oops"),
    "503": lambda req: httpx.Response(503, headers={"Retry-After": "1"}),
    "read-timeout": httpx.ReadTimeout("timed out"),
    "reset": httpx.RemoteProtocolError("peer closed connection"),
    "not-json": lambda req: httpx.Response(200, text="{not json"),
    "empty": lambda req: httpx.Response(200),
}


@pytest.mark.parametrize("kind", sorted(AMBIGUOUS))
def test_create_failure_with_unknown_outcome_is_ambiguous(make_client, sleeps, kind):
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        what = AMBIGUOUS[kind]
        if isinstance(what, Exception):
            raise what
        return what(req)

    with pytest.raises(AmbiguousResultError) as info:
        make_client(handler).create(request())
    assert len(calls) == 1 and sleeps == []
    assert "keda-agents" in str(info.value)


def test_create_rate_limited_is_a_plain_refusal(make_client):
    c = make_client(lambda req: httpx.Response(429, headers={"Retry-After": "12"}))
    with pytest.raises(ProviderError) as info:
        c.create(request())
    assert not isinstance(info.value, AmbiguousResultError)
    assert "rate limiting" in str(info.value) and "12 s" in str(info.value)


# -- idempotent calls: bounded retries ---------------------------------------------------------------


def flaky(answers):
    """A handler that plays ``answers`` (responses or exceptions) then succeeds with an empty listing."""
    calls: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        if answers:
            a = answers.pop(0)
            if isinstance(a, Exception):
                raise a
            return a
        return httpx.Response(200, json={"patTokens": [], "continuationToken": ""})

    return handler, calls


def test_list_retries_honouring_retry_after(make_client, sleeps):
    handler, calls = flaky(
        [httpx.Response(503, headers={"Retry-After": "2"}), httpx.Response(429, headers={"Retry-After": "5"})]
    )
    assert list(make_client(handler).iter_pats("all")) == []
    assert len(calls) == 3
    assert sleeps == [2.0, 5.0]


def test_retry_after_is_capped_and_may_be_a_date(make_client, sleeps):
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    handler, _ = flaky(
        [httpx.Response(503, headers={"Retry-After": "3600"}), httpx.Response(503, headers={"Retry-After": later})]
    )
    list(make_client(handler).iter_pats("all"))
    assert sleeps[0] == 30.0
    assert 5.0 <= sleeps[1] <= 10.0


def test_list_retries_transport_errors_with_backoff(make_client, sleeps):
    handler, calls = flaky([httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])
    list(make_client(handler).iter_pats("all"))
    assert len(calls) == 3 and sleeps == [1.0, 2.0]


def test_list_gives_up_after_three_attempts(make_client, sleeps):
    handler, calls = flaky([httpx.Response(500)] * 5)
    with pytest.raises(ProviderError, match="HTTP 500 after 3 attempts") as info:
        list(make_client(handler).iter_pats("all"))
    assert not isinstance(info.value, AmbiguousResultError)
    assert len(calls) == 3


def test_revoke_retries_then_reports(make_client):
    handler, calls = flaky([httpx.ReadTimeout("slow")] * 3)
    with pytest.raises(ProviderError, match=r"timed out .* after 3 attempts"):
        make_client(handler).revoke("a1")
    assert len(calls) == 3


# -- verification with the new PAT -------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["vso.agentpools", "vso.agentpools_manage", "app_token"])
def test_verify_pool_scopes_list_pools_with_basic_auth(client, fake_ado, scope):
    out = client.verify(minted(("vso.build", scope)))
    (req,) = fake_ado.requests
    assert req.url.host == "dev.example.test"
    assert req.url.path == f"/{ORG}/_apis/distributedtask/pools"
    assert req.url.params["api-version"] == "7.1"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b":the-new-pat").decode()
    assert out == f"GET /{ORG}/_apis/distributedtask/pools -> 200 (3 pools)"


def test_verify_other_scopes_use_connection_data(client, fake_ado):
    out = client.verify(minted(("vso.build", "vso.release")))
    assert fake_ado.requests[0].url.path == f"/{ORG}/_apis/connectionData"
    assert out == f"GET /{ORG}/_apis/connectionData -> 200 (authenticated as RPE Bot)"


def test_verify_runs_on_a_fresh_client_without_cookies(client, fake_ado):
    def set_cookie(req: httpx.Request):
        if req.url.path.endswith("/tokens/pats"):
            return httpx.Response(
                200,
                json={"patTokens": [], "continuationToken": ""},
                headers={"Set-Cookie": "UserAuthentication=session; Path=/"},
            )
        return None

    fake_ado.override = set_cookie
    client.list_tokens()
    client.verify(minted(("vso.agentpools",)))
    pats_call, verify_call = fake_ado.requests[0], fake_ado.requests[-1]
    assert "cookie" not in {k.lower() for k in verify_call.headers}
    assert "Bearer" not in verify_call.headers["Authorization"]
    assert pats_call is not verify_call


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(401),
        httpx.Response(203, json={}),
        httpx.Response(200, html="<html>Sign in</html>"),
    ],
)
def test_verify_refused(make_client, answer):
    c = make_client(lambda req: answer)
    with pytest.raises(ProviderError) as info:
        c.verify(minted(("vso.agentpools",)))
    assert not isinstance(info.value, AuthExpiredError)  # the bot's sign-in is fine; the new PAT is not
    assert str(info.value).startswith("the new token was refused by dev.example.test")


def test_verify_anonymous_connection_data_is_a_refusal(make_client):
    body = {"authenticatedUser": {"descriptor": "System:PublicAccess;aaaa", "providerDisplayName": "Anonymous"}}
    with pytest.raises(ProviderError, match="refused"):
        make_client(lambda req: httpx.Response(200, json=body)).verify(minted(("vso.build",)))


def test_verify_403_says_the_scopes_do_not_allow_it(make_client):
    c = make_client(lambda req: httpx.Response(403, json={"message": "Access denied: needs Agent Pools read."}))
    with pytest.raises(ProviderError, match=r"may not GET .* 403.*Agent Pools"):
        c.verify(minted(("vso.agentpools",)))


# -- logging -------------------------------------------------------------------------------------------


def test_logs_method_path_and_status_only(client, fake_ado, caplog):
    caplog.set_level(logging.DEBUG)
    fake_ado.add("keda")
    client.list_tokens()
    client.create(request())
    lines = [r.getMessage() for r in caplog.records if r.name == "keyturn.providers.azure_devops"]
    assert f"GET {PATS_PATH} -> 200" in lines
    assert f"POST {PATS_PATH} -> 200" in lines
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "entra-access-token" not in text and fake_ado.new_value not in text
    assert "Authorization" not in text
    assert not any("api-version" in line or "?" in line for line in lines)  # ours: path only


def test_urls_are_checked():
    with pytest.raises(KeyturnError, match="plain HTTP"):
        PatClient("ado-bot", ORG, bearer=lambda: "t", vssps_url="http://vssps.example.test")
    PatClient("ado-bot", ORG, bearer=lambda: "t", vssps_url="http://127.0.0.1:8080", base_url="http://localhost:1")


def test_every_pat_call_sends_exactly_the_7_2_api_version(client, fake_ado):
    """One api-version for the PAT Lifecycle API: the vendored 7.2 swagger's (its api-Version-preview.1 parameter)."""
    from app.sandbox.swagger import tokens_spec

    documented = tokens_spec().doc["parameters"]["api-Version-preview.1"]["description"]
    assert "This should be set to '7.2-preview.1'" in documented
    minted_pat = client.create(request())
    fake_ado.add("other")
    client.list_tokens(include_inactive=True)
    client.get_token(minted_pat.info.id)
    client.revoke(minted_pat.info.id)
    pat_calls = [r for r in fake_ado.requests if r.url.path == PATS_PATH]
    assert {r.method for r in pat_calls} == {"POST", "GET", "DELETE"}
    for r in pat_calls:
        assert r.url.params.get_list("api-version") == ["7.2-preview.1"], (r.method, str(r.url))
        assert "api-version" not in r.headers.get("accept", "")
