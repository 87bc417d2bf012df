"""Secret references resolve from each source; failures name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from app.config import load_config, parse_config
from app.errors import SecretSourceError
from app.sandbox import Sandbox
from app.secret_sources import SecretResolver, describe, resolve_plain


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


@pytest.fixture
def memory_keyring():
    before = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(before)


CONFIG = parse_config({}, Path("/tmp/x/keyturn.toml"))


def test_vault_reference_through_the_real_sdk(sandbox: Sandbox) -> None:
    config = load_config(sandbox.config_path)
    resolver = SecretResolver(config)
    email = resolver("vault:rpe-prod/rpe-azure-devops-email")
    assert email.reveal() == sandbox.state.bot_email
    before = sandbox.state.requests.count("vault:rpe-prod")
    assert resolver("vault:rpe-prod/rpe-azure-devops-email") is email  # read once per run
    assert sandbox.state.requests.count("vault:rpe-prod") == before
    with pytest.raises(SecretSourceError, match="Key Vault rpe-prod / secret nope: not found"):
        resolver("vault:rpe-prod/nope")


def test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_SECRET", "v1")
    assert resolve_plain(CONFIG, "env:KT_SECRET", what="k").reveal() == "v1"
    monkeypatch.delenv("KT_SECRET")
    with pytest.raises(SecretSourceError, match="k: environment variable KT_SECRET is not set"):
        resolve_plain(CONFIG, "env:KT_SECRET", what="k")


def test_file(tmp_path: Path) -> None:
    config = parse_config({}, tmp_path / "keyturn.toml")
    (tmp_path / "s.txt").write_text("v2\n")
    assert resolve_plain(config, "file:s.txt", what="k").reveal() == "v2"
    with pytest.raises(SecretSourceError, match="cannot read"):
        resolve_plain(config, "file:missing.txt", what="k")


def test_keyring(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.set_password("svc", "bot", "v3")
    assert resolve_plain(CONFIG, "keyring:svc/bot", what="k").reveal() == "v3"
    with pytest.raises(SecretSourceError, match="nothing in the OS keyring for svc / other"):
        resolve_plain(CONFIG, "keyring:svc/other", what="k")


def test_prompt() -> None:
    assert resolve_plain(CONFIG, "prompt", what="k", prompt=lambda what: "v4").reveal() == "v4"
    with pytest.raises(SecretSourceError, match="--no-input"):
        resolve_plain(CONFIG, "prompt", what="k")


def test_describe() -> None:
    assert describe("vault:rpe-prod/rpe-azure-devops-email") == "Key Vault rpe-prod / secret rpe-azure-devops-email"
    assert describe("keyring:svc/bot") == "OS keyring svc / bot"
    assert describe("env:X") == "environment variable X"
