"""Fixtures for the sandbox tests: a running sandbox per test, an httpx client that trusts its CA, tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.sandbox import DEVOPS_RESOURCE, Sandbox

PUBLIC_CLIENT = "872cd9fa-d31f-45e0-9eab-6e460a02d1f1"


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sb") as sandbox:
        yield sandbox
    assert sandbox.state.internal_errors == [], "the emulator itself failed"


@pytest.fixture
def http(sb: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(verify=sb.client_ssl_context(), timeout=10) as client:
        yield client


@pytest.fixture
def password_grant(sb: Sandbox, http: httpx.Client) -> Callable[..., httpx.Response]:
    """POST a password grant of the bot for ``scope`` (keyword arguments override form fields)."""

    def post(scope: str, **extra: str) -> httpx.Response:
        email, password = sb.state.bot_credentials
        data = {
            "grant_type": "password",
            "client_id": PUBLIC_CLIENT,
            "username": email,
            "password": password,
            "scope": f"{scope} openid profile offline_access",
        }
        data.update(extra)
        return http.post(f"{sb.urls['entra']}/{sb.state.tenant_id}/oauth2/v2.0/token", data=data)

    return post


@pytest.fixture
def user_token(password_grant: Callable[..., httpx.Response]) -> Callable[[], str]:
    """A fresh Entra user token of the bot for Azure DevOps (password grant over the wire)."""

    def make() -> str:
        resp = password_grant(f"{DEVOPS_RESOURCE}/.default")
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    return make


@pytest.fixture
def app_token(sb: Sandbox, http: httpx.Client) -> Callable[[str], str]:
    """A client-credentials (app-only) token of the sandbox service principal."""

    def make(resource: str) -> str:
        resp = http.post(
            f"{sb.urls['entra']}/{sb.state.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": sb.state.sp_client_id,
                "client_secret": sb.state.sp_client_secret,
                "scope": f"{resource}/.default",
            },
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    return make
