"""A canary token value in every answer: it must reach no exception text and no log record.

Every error path of the client (and the Entra sign-in) is triggered with the canary in the token
field, in HTML sign-in pages, in server messages, as the Entra bearer token and as the PAT being
verified; then every exception (with its chained causes) and every log record of every logger
is searched for it.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.identity
import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError

from app.config import Account
from app.errors import KeyturnError
from app.secret import SecretValue
from providers.azure_devops.auth import EntraUserAuth
from providers.azure_devops.client import PAT_TOKEN_ERRORS, PatClient
from providers.base import Interaction, MintedToken, MintRequest, TokenInfo

CANARY = "canary-7f3a9c"
ENCODED = base64.b64encode(f":{CANARY}".encode()).decode()


def pat(**kw: Any) -> dict[str, Any]:
    return {
        "authorizationId": "a1",
        "displayName": "keda",
        "scope": "vso.agentpools",
        "validTo": "2030-01-01T00:00:00Z",
        "targetAccounts": None,
        "token": CANARY,
        **kw,
    }


def answers() -> dict[str, Callable[[httpx.Request], httpx.Response]]:
    out: dict[str, Callable[[httpx.Request], httpx.Response]] = {}
    for error in [*PAT_TOKEN_ERRORS, "somethingNew"]:
        body = {"patToken": pat(), "patTokenError": error, "patTokenErrorMessage": f"server said {CANARY}"}
        out[f"200-{error}"] = lambda req, body=body: httpx.Response(200, json=body)
        out[f"400-{error}"] = lambda req, body=body: httpx.Response(400, json=body)
    for status in (400, 401, 403, 404, 409, 500, 503):
        out[f"json-{status}"] = lambda req, s=status: httpx.Response(
            s, json={"message": f"TF400813: token {CANARY} / {ENCODED} refused", "token": CANARY}
        )
        out[f"text-{status}"] = lambda req, s=status: httpx.Response(s, text=f"token={CANARY}")
    for status in (200, 203, 401):
        out[f"html-{status}"] = lambda req, s=status: httpx.Response(s, html=f"<html>Sign in {CANARY}</html>")
    out["302"] = lambda req: httpx.Response(302, headers={"Location": f"https://login.example/?t={CANARY}"})
    out["429"] = lambda req: httpx.Response(429, headers={"Retry-After": "1"}, json={"message": CANARY})
    out["not-json"] = lambda req: httpx.Response(200, text=f"{{{CANARY}")
    out["list-loop"] = lambda req: httpx.Response(200, json={"patTokens": [pat()], "continuationToken": "same"})
    out["no-value"] = lambda req: httpx.Response(200, json={"patTokenError": "none", "patToken": pat(token=None)})
    out["no-id"] = lambda req: httpx.Response(200, json={"patTokenError": "none", "patToken": {"token": CANARY}})
    out["anonymous"] = lambda req: httpx.Response(
        200, json={"authenticatedUser": {"descriptor": f"System:PublicAccess;{CANARY}"}, "count": CANARY}
    )
    out["who-is-canary"] = lambda req: httpx.Response(
        200, json={"authenticatedUser": {"providerDisplayName": f"bot {CANARY}"}, "value": [CANARY]}
    )

    def raise_(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
        def handler(req: httpx.Request) -> httpx.Response:
            raise exc

        return handler

    out["connect-error"] = raise_(httpx.ConnectError(f"refused {CANARY}"))
    out["read-timeout"] = raise_(httpx.ReadTimeout(f"slow {CANARY}"))
    out["reset"] = raise_(httpx.RemoteProtocolError(f"reset {CANARY}"))
    return out


CALLS: dict[str, Callable[[PatClient], object]] = {
    "list": lambda c: c.list_tokens(),
    "get": lambda c: c.get_token("a1"),
    "create": lambda c: c.create(MintRequest("keda", ("vso.agentpools",), datetime.now(UTC) + timedelta(days=9))),
    "revoke": lambda c: c.revoke("a1"),
    "verify-pools": lambda c: c.verify(
        MintedToken(TokenInfo("a1", "keda", None, ("vso.agentpools",)), SecretValue(CANARY))
    ),
    "verify-connection": lambda c: c.verify(
        MintedToken(TokenInfo("a1", "keda", None, ("vso.build",)), SecretValue(CANARY))
    ),
}


def assert_clean(exc: BaseException | None, caplog: pytest.LogCaptureFixture, *, basic: bool = False) -> None:
    """No canary anywhere; with ``basic`` (the canary was sent as Basic auth) not its base64 form either."""
    if exc is not None:
        text = "".join(traceback.format_exception(exc))
        assert CANARY not in text
        assert not basic or ENCODED not in text
        if isinstance(exc, KeyturnError):
            assert CANARY not in str(exc) and CANARY not in repr(exc) and CANARY not in str(exc.hint)
    for record in caplog.records:
        rendered = record.getMessage() + repr(record.args) + repr(record.__dict__)
        assert CANARY not in rendered, record.name
        assert not basic or ENCODED not in rendered, record.name


@pytest.mark.parametrize("answer", sorted(answers()))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_canary_never_leaks(answer, call, caplog):
    caplog.set_level(logging.DEBUG)  # root: every logger
    client = PatClient(
        "ado-bot",
        "contoso",
        bearer=lambda: CANARY,
        vssps_url="https://vssps.example.test",
        base_url="https://dev.example.test",
        transport=httpx.MockTransport(answers()[answer]),
        sleep=lambda s: None,
    )
    caught: BaseException | None = None
    try:
        result = CALLS[call](client)
    except KeyturnError as exc:
        caught = exc
    else:
        assert CANARY not in repr(result) and CANARY not in str(result)
    finally:
        client.close()
    assert_clean(caught, caplog, basic=call.startswith("verify"))


def test_the_new_value_is_only_in_the_secret(caplog):
    caplog.set_level(logging.DEBUG)
    body = {"patTokenError": "none", "patToken": pat()}
    client = PatClient(
        "ado-bot",
        "contoso",
        bearer=lambda: "entra",
        vssps_url="https://vssps.example.test",
        transport=httpx.MockTransport(lambda req: httpx.Response(200, json=body)),
    )
    out = client.create(MintRequest("keda", ("vso.agentpools",), datetime.now(UTC) + timedelta(days=9)))
    assert out.value.reveal() == CANARY
    assert CANARY not in repr(out) and CANARY not in str(out)
    assert_clean(None, caplog)


@pytest.mark.parametrize(
    "raw",
    [
        "AADSTS50126: Error validating credentials due to invalid username or password.",
        "AADSTS50076: MFA required.",
        "Something without a code.",
    ],
)
def test_entra_errors_do_not_carry_the_password(monkeypatch, caplog, raw):
    caplog.set_level(logging.DEBUG)

    class Refusing:
        def __init__(self, *a: Any, **kw: Any) -> None:
            pass

        def get_token(self, *scopes: str, **kw: Any) -> Any:
            raise ClientAuthenticationError(message=raw)

    monkeypatch.setattr(azure.identity, "UsernamePasswordCredential", Refusing)
    acc = Account(
        platform="azure-devops",
        organization="contoso",
        sign_in="password",
        email="vault:rpe-prod/rpe-azure-devops-email",
        password="vault:rpe-prod/rpe-azure-devops-password",
    )
    auth = EntraUserAuth(
        "ado-bot", acc, ca_bundle=None, resolve_secret=lambda ref: SecretValue(CANARY), interaction=Interaction()
    )
    with pytest.raises(KeyturnError) as info:
        auth.bearer()
    assert_clean(info.value, caplog)
