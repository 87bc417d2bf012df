"""Key Vault messages found misleading by hostile testing, against the sandbox's Key Vault (real SDK, real sockets):

- a secret whose current version is disabled was reported as a missing role (Key Vault answers 403 "Forbidden" for
  both; only the inner error code, "SecretDisabled", tells them apart);
- a refused version listing read "list versions of forbidden" (a format string given the wrong argument).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Config, load_config
from app.errors import SecretSourceError
from app.keyvault import VaultClient
from app.sandbox import Sandbox
from app.secret_sources import resolve_plain

VAULT = "cftptl-intsvc"
SECRET = "jenkins-api-token"


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sb") as sandbox:
        yield sandbox
    assert sandbox.state.internal_errors == [], "the emulator itself failed"


@pytest.fixture
def config(sb: Sandbox) -> Config:
    return load_config(sb.config_path)


@pytest.fixture
def vault(config: Config) -> Iterator[VaultClient]:
    client = VaultClient(config, VAULT)
    client.sleep = lambda s: None
    yield client
    client.close()


def test_a_disabled_current_version_is_named_as_such(sb: Sandbox, vault: VaultClient) -> None:
    latest = sb.state.latest_secret(VAULT, SECRET)
    assert latest is not None
    vault.update(SECRET, latest.version, enabled=False)  # as `az keyvault secret set-attributes --enabled false`
    with pytest.raises(SecretSourceError) as err:
        vault.get(SECRET)
    assert str(err.value) == (
        f"Key Vault {VAULT} / secret {SECRET}: the secret's current version is disabled, so Key Vault does not give "
        f"its value (enable it with `az keyvault secret set-attributes --vault-name {VAULT} --name {SECRET} "
        "--enabled true`, or add a new version)"
    )
    assert "role" not in str(err.value) and "permission" not in str(err.value)


def test_a_disabled_version_asked_for_by_id_is_named(sb: Sandbox, vault: VaultClient) -> None:
    old = sb.state.latest_secret(VAULT, SECRET)
    assert old is not None
    vault.set(SECRET, "a-newer-value")
    vault.update(SECRET, old.version, enabled=False)
    with pytest.raises(SecretSourceError) as err:
        vault.get(SECRET, old.version)
    assert str(err.value).startswith(
        f"Key Vault {VAULT} / secret {SECRET}: the secret's version {old.version} is disabled, so Key Vault does not "
        f"give its value (enable it with `az keyvault secret set-attributes --vault-name {VAULT} --name {SECRET} "
        f"--version {old.version} --enabled true`"
    )
    assert vault.get(SECRET).value == "a-newer-value"  # the current one still reads


def test_a_disabled_secret_behind_a_vault_reference(sb: Sandbox, config: Config, vault: VaultClient) -> None:
    latest = sb.state.latest_secret(VAULT, SECRET)
    assert latest is not None
    vault.update(SECRET, latest.version, enabled=False)
    with pytest.raises(SecretSourceError, match="the secret's current version is disabled"):
        resolve_plain(config, f"vault:{VAULT}/{SECRET}", what="accounts.jenkins.api_token")


def test_a_missing_get_permission_still_says_so(sb: Sandbox, vault: VaultClient) -> None:
    sb.state.deny(VAULT, "get")
    with pytest.raises(SecretSourceError) as err:
        vault.get(SECRET)
    assert str(err.value) == (
        f"Key Vault {VAULT} / secret {SECRET}: reading it is forbidden (403): the signed-in identity lacks the "
        f"secrets get permission on vault {VAULT} (grant the signed-in identity the Key Vault Secrets User role on "
        "the vault, or an access policy with secrets get)"
    )


def test_a_refused_version_listing_reads_properly(sb: Sandbox, vault: VaultClient) -> None:
    sb.state.deny(VAULT, "list")
    with pytest.raises(SecretSourceError) as err:
        vault.versions(SECRET)
    assert str(err.value) == (
        f"Key Vault {VAULT} / secret {SECRET}: listing its versions is forbidden (403): the signed-in identity lacks "
        f"the secrets list permission on vault {VAULT} (grant the signed-in identity the Key Vault Secrets User role "
        "on the vault, or an access policy with secrets list)"
    )
    assert "list versions of forbidden" not in str(err.value)


def test_a_refused_write_names_the_officer_role(sb: Sandbox, vault: VaultClient) -> None:
    sb.state.deny(VAULT, "set")
    with pytest.raises(SecretSourceError) as err:
        vault.set(SECRET, "v")
    assert str(err.value) == (
        f"Key Vault {VAULT} / secret {SECRET}: writing a new version is forbidden (403): the signed-in identity lacks "
        f"the secrets set permission on vault {VAULT} (grant the signed-in identity the Key Vault Secrets Officer "
        "role on the vault, or an access policy with secrets set)"
    )


def test_a_failing_version_listing_reads_properly(sb: Sandbox, vault: VaultClient) -> None:
    sb.state.inject_fault("keyvault.list", "503", times=3)
    with pytest.raises(SecretSourceError) as err:
        vault.versions(SECRET)
    assert str(err.value) == (
        f"Key Vault {VAULT}: list versions of secret {SECRET} failed: HTTP 503 3 times; try again later"
    )
