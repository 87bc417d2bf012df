"""Azure Key Vault through the real SDK (azure-keyvault-secrets + azure-identity).

Imported on first use: the Azure SDK costs ~330 ms to import.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app.errors import KeyturnError, SecretSourceError
from app.net import check_url, is_loopback

if TYPE_CHECKING:
    from app.config import Config, Vault

API_VERSION = "7.5"  # pinned: the vendored contract is secrets 7.5


def quiet_azure_logging() -> None:
    """The Azure SDK logs warnings to the root logger, which would draw over the terminal UI."""
    log = logging.getLogger("azure")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())
    log.propagate = False


def vault_url(name: str, vault: Vault) -> str:
    return check_url(vault.url or f"https://{name}.vault.azure.net", f"vaults.{name}.url")


def _credential(config: Config, name: str, vault: Vault) -> Any:
    from azure.identity import AzureCliCredential, ClientSecretCredential, DefaultAzureCredential

    common: dict[str, Any] = {}
    if vault.authority:
        common.update(authority=vault.authority, disable_instance_discovery=True)
    if config.settings.ca_bundle:
        common["connection_verify"] = str(config.resolve_path(config.settings.ca_bundle))
    if vault.auth == "cli":
        return AzureCliCredential(tenant_id=vault.tenant_id) if vault.tenant_id else AzureCliCredential()
    if vault.auth == "client-secret":
        from app.secret_sources import resolve_plain

        assert vault.tenant_id and vault.client_id and vault.client_secret
        secret = resolve_plain(config, vault.client_secret, what=f"vaults.{name}.client_secret")
        return ClientSecretCredential(vault.tenant_id, vault.client_id, secret.reveal(), **common)
    return DefaultAzureCredential(**common)


class VaultClient:
    """The operations keyturn needs on one vault, with errors turned into one-line messages."""

    def __init__(self, config: Config, name: str) -> None:
        if name not in config.vaults:
            raise SecretSourceError(f"no vault {name!r} in the configuration", hint=f"define [vaults.{name}]")
        quiet_azure_logging()
        from azure.keyvault.secrets import SecretClient

        vault = config.vaults[name]
        self.name = name
        self.url = vault_url(name, vault)
        kwargs: dict[str, Any] = {"api_version": API_VERSION}
        if config.settings.ca_bundle:
            kwargs["connection_verify"] = str(config.resolve_path(config.settings.ca_bundle))
        if is_loopback(urlsplit(self.url).hostname or ""):
            kwargs["verify_challenge_resource"] = False  # a local vault is not *.vault.azure.net
        self._client = SecretClient(self.url, _credential(config, name, vault), **kwargs)

    def _fail(self, exc: Exception, action: str, secret: str) -> KeyturnError:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
        )

        where = f"Key Vault {self.name} / secret {secret}"
        if isinstance(exc, ResourceNotFoundError):
            return SecretSourceError(f"{where}: not found", hint="check the secret name or create it")
        if isinstance(exc, ClientAuthenticationError):
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
            return SecretSourceError(f"{where}: sign-in for the vault failed: {first}", hint="run `az login` or fix the vault's auth settings")
        if isinstance(exc, HttpResponseError) and exc.status_code == 403:
            return SecretSourceError(
                f"{where}: {action} forbidden (403)",
                hint="grant the signed-in identity a Key Vault Secrets role on this vault",
            )
        if isinstance(exc, ServiceRequestError):
            return SecretSourceError(f"{where}: cannot reach {self.url}", hint="check the network or the vault's url")
        if isinstance(exc, HttpResponseError):
            code = getattr(exc.error, "code", None) or exc.status_code
            return SecretSourceError(f"{where}: {action} failed ({code})")
        return SecretSourceError(f"{where}: {action} failed ({exc.__class__.__name__})")

    def get(self, secret: str, version: str | None = None) -> Any:
        try:
            return self._client.get_secret(secret, version)
        except Exception as exc:
            raise self._fail(exc, "read", secret) from None

    def versions(self, secret: str) -> list[Any]:
        try:
            return list(self._client.list_properties_of_secret_versions(secret))
        except Exception as exc:
            from azure.core.exceptions import ResourceNotFoundError

            if isinstance(exc, ResourceNotFoundError):
                return []
            raise self._fail(exc, "list versions of", secret) from None

    def set(self, secret: str, value: str, **kwargs: Any) -> Any:
        try:
            return self._client.set_secret(secret, value, **kwargs)
        except Exception as exc:
            raise self._fail(exc, "write", secret) from None

    def update(self, secret: str, version: str, **kwargs: Any) -> Any:
        try:
            return self._client.update_secret_properties(secret, version, **kwargs)
        except Exception as exc:
            raise self._fail(exc, "update", secret) from None

    def close(self) -> None:
        self._client.close()


_CLIENTS: dict[tuple[int, str], tuple[Config, VaultClient]] = {}


def vault_client(config: Config, name: str) -> VaultClient:
    """One client per (config, vault) so its bearer token is reused across calls.

    The config is kept beside its client so its id() cannot be reused by another config object."""
    key = (id(config), name)
    if key not in _CLIENTS:
        _CLIENTS[key] = (config, VaultClient(config, name))
    return _CLIENTS[key][1]
