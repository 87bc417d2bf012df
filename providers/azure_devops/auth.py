"""The bot's Entra USER token for Azure DevOps (device code, Azure CLI or password flow).

Only a user token may create PATs; service principals cannot. azure-identity is imported on first
use (~330 ms). Its credentials are synchronous: the wizard calls them from a thread worker.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app.errors import KeyturnError, ProviderError
from app.net import check_url, raise_if_certificate
from app.secret import SecretValue
from providers.base import DeviceCodePrompt, Interaction

if TYPE_CHECKING:
    from app.config import Account

ADO_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
ADO_SCOPE = f"{ADO_RESOURCE}/.default"
REFRESH_MARGIN = 300.0  # seconds: ask for a new Entra token this long before the cached one expires
GENERIC_TENANTS = frozenset({"organizations", "common"})  # not a tenant `az` can be told about
ROPC_WARNING = (
    "the password (ROPC) sign-in is deprecated by Microsoft and fails when the bot needs MFA; "
    'prefer sign_in = "device-code"'
)

_ROPC_LIBRARY_WARNINGS = (
    r"UsernamePasswordCredential is deprecated",  # azure-identity
    r"This API has been deprecated for public client flows",  # msal
)
_AADSTS = re.compile(r"\bAADSTS(\d+)\b")


def quiet_azure_logging() -> None:
    """Keep azure-identity's and MSAL's log records off the terminal (and out of our handlers)."""
    for name in ("azure", "msal"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
        logger.propagate = False


class EntraUserAuth:
    """Acquires and caches the bot's Azure DevOps access token according to ``account.sign_in``."""

    def __init__(
        self,
        account_name: str,
        account: Account,
        *,
        ca_bundle: Path | None,
        resolve_secret: Callable[[str], SecretValue],
        interaction: Interaction,
    ) -> None:
        self.account_name = account_name
        self.account = account
        self._ca_bundle = ca_bundle
        self._resolve_secret = resolve_secret
        self._interaction = interaction
        self._credential: Any = None
        self._token: SecretValue | None = None
        self._expires_on = 0.0
        self._lock = threading.Lock()

    @property
    def signed_in(self) -> bool:
        return self._token is not None and time.time() < self._expires_on - REFRESH_MARGIN

    def bearer(self) -> str:
        """The access token for ``Authorization: Bearer``; signs in when there is none or it is about to expire."""
        with self._lock:
            if not self.signed_in:
                self._acquire()
            assert self._token is not None
            return self._token.reveal()

    def forget(self) -> None:
        """Drop the token and the credential: the next ``bearer()`` signs in from scratch."""
        with self._lock:
            self._credential = None
            self._token = None
            self._expires_on = 0.0

    def _acquire(self) -> None:
        quiet_azure_logging()
        from azure.core.exceptions import AzureError, ClientAuthenticationError
        from azure.identity import CredentialUnavailableError

        if self._credential is None:
            self._credential = self._make_credential()
        try:
            access = self._credential.get_token(ADO_SCOPE)
        except CredentialUnavailableError as exc:
            self._credential = None
            raise self._unavailable(exc) from None
        except ClientAuthenticationError as exc:
            self._credential = None
            raise_if_certificate(exc, self.account.authority or "https://login.microsoftonline.com")
            raise self._refused(exc) from None
        except AzureError as exc:
            self._credential = None
            raise_if_certificate(exc, self.account.authority or "https://login.microsoftonline.com")
            raise ProviderError(f"the Entra sign-in of {self.account_name} failed: {_first_sentence(exc)}") from None
        self._token = SecretValue(access.token)
        self._expires_on = float(access.expires_on)

    # -- credentials ---------------------------------------------------------------------------

    def _common_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"tenant_id": self.account.tenant_id}
        if self.account.authority:
            # A sovereign cloud or the sandbox: without this MSAL asks the public host and stalls.
            kwargs["authority"] = check_url(self.account.authority, f"accounts.{self.account_name}.authority")
            kwargs["disable_instance_discovery"] = True
            _skip_user_realm_discovery_on_other_ports(kwargs["authority"])
        if self._ca_bundle is not None:
            kwargs["connection_verify"] = str(self._ca_bundle)
        return kwargs

    def _make_credential(self) -> Any:
        mode = self.account.sign_in
        if mode == "device-code":
            return self._device_code_credential()
        if mode == "azure-cli":
            from azure.identity import AzureCliCredential

            tenant = self.account.tenant_id
            cli_kwargs: dict[str, Any] = {} if tenant in GENERIC_TENANTS else {"tenant_id": tenant}
            return AzureCliCredential(process_timeout=30, **cli_kwargs)
        if mode == "password":
            return self._password_credential()
        raise KeyturnError(f"accounts.{self.account_name}.sign_in: unknown sign-in {mode!r}")

    def _device_code_credential(self) -> Any:
        on_code = self._interaction.on_device_code
        if on_code is None:
            raise KeyturnError(
                f"device-code sign-in of {self.account_name} needs a terminal to show the code",
                hint='run it interactively, or set sign_in = "azure-cli" after az login',
            )
        from azure.identity import DeviceCodeCredential

        account_name = self.account_name

        def prompt(verification_uri: str, user_code: str, expires_on: datetime) -> None:
            on_code(
                DeviceCodePrompt(
                    verification_uri=verification_uri,
                    user_code=user_code,
                    message=(
                        f"To sign in as the bot of {account_name}, open {verification_uri} "
                        f"and enter the code {user_code}"
                    ),
                    expires_on=expires_on,
                )
            )

        return DeviceCodeCredential(client_id=self.account.client_id, prompt_callback=prompt, **self._common_kwargs())

    def _password_credential(self) -> Any:
        assert self.account.email and self.account.password  # the config requires both for this flow
        self._interaction.warn(ROPC_WARNING)
        email = self._resolve_secret(self.account.email)
        password = self._resolve_secret(self.account.password)
        from azure.identity import UsernamePasswordCredential

        # azure-identity (at construction) and MSAL (at each sign-in) warn about ROPC themselves; we
        # already said so through the interaction. Targeted filters, not catch_warnings(): the sign-in
        # runs in a worker thread and catch_warnings() swaps the process-wide filters.
        for message in _ROPC_LIBRARY_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        return UsernamePasswordCredential(
            self.account.client_id, email.reveal(), password.reveal(), **self._common_kwargs()
        )

    # -- errors ---------------------------------------------------------------------------------

    def _unavailable(self, exc: Exception) -> KeyturnError:
        text = str(getattr(exc, "message", None) or exc)
        login = "az login" + (
            f" --tenant {self.account.tenant_id}" if self.account.tenant_id not in GENERIC_TENANTS else ""
        )
        if "not found on path" in text:
            return ProviderError(
                f"the Azure CLI (az) is not installed or not on PATH, so {self.account_name} cannot sign in",
                hint=f'install it and run {login}, or set sign_in = "device-code"',
            )
        if "az login" in text or "az account" in text:
            return ProviderError(f"the Azure CLI is not signed in as the bot of {self.account_name}: run {login}")
        return ProviderError(f"the Entra sign-in of {self.account_name} is unavailable: {_first_sentence(exc)}")

    def _refused(self, exc: Exception) -> KeyturnError:
        from azure.core.exceptions import ServiceRequestError, ServiceResponseError

        if isinstance(exc.__cause__, ServiceRequestError | ServiceResponseError):
            where = urlsplit(self.account.authority or "https://login.microsoftonline.com").netloc
            return ProviderError(
                f"cannot reach Entra at {where} to sign in the bot of {self.account_name}: {_first_sentence(exc)}"
            )
        text = str(getattr(exc, "message", None) or exc)
        if "JSON is invalid" in text or "Content:" in text:
            # MSAL quotes the unreadable body, which may hold tokens: never repeat it
            where = urlsplit(self.account.authority or "https://login.microsoftonline.com").netloc
            return ProviderError(
                f"Entra at {where} sent an unreadable answer to the sign-in of the bot of {self.account_name}; "
                "nothing was changed",
                hint="try again in a minute",
            )
        m = _AADSTS.search(text)
        code = m.group(1) if m else None
        who = f"the bot of {self.account_name}"
        acct = f"accounts.{self.account_name}"
        if code == "50126":
            return ProviderError(
                f"the bot's password was refused by Entra (AADSTS50126): check the secret {self.account.password}"
                f" and the user in {self.account.email}"
            )
        if code in ("50076", "50079", "50158", "50072"):
            return ProviderError(
                f"Entra requires multi-factor authentication for {who} (AADSTS{code}), "
                "which the password flow cannot do",
                hint='set sign_in = "device-code"',
            )
        if code == "50034":
            return ProviderError(
                f"Entra does not know the bot's user (AADSTS50034): check the secret {self.account.email}"
            )
        if code == "50053":
            return ProviderError(f"the account of {who} is locked (AADSTS50053): wait, or ask an Entra admin")
        if code == "50055":
            return ProviderError(f"the password of {who} has expired (AADSTS50055): reset it and update the vault")
        if code == "50057":
            return ProviderError(f"the account of {who} is disabled in Entra (AADSTS50057)")
        if code == "53003":
            return ProviderError(f"a conditional access policy blocked the sign-in of {who} (AADSTS53003)")
        if code in ("700016", "7000218", "65001"):
            return ProviderError(
                f"Entra refused the client application {self.account.client_id} (AADSTS{code})",
                hint=f"check {acct}.client_id: it must be a public client allowed to sign in to Azure DevOps",
            )
        if code == "90002":
            return ProviderError(
                f"Entra does not know the tenant {self.account.tenant_id} (AADSTS90002): check {acct}.tenant_id"
            )
        if code in ("70020", "70019", "50173", "70043", "700082"):
            return ProviderError(f"the Entra sign-in of {self.account_name} expired (AADSTS{code}); sign in again")
        if "Timed out waiting for user" in text or code == "70016":
            return ProviderError(f"nobody finished the device-code sign-in of {self.account_name} in time; try again")
        reason = f"AADSTS{code}: " if code else ""
        return ProviderError(f"Entra refused the sign-in of {self.account_name}: {reason}{_first_sentence(exc)}")


def _skip_user_realm_discovery_on_other_ports(authority: str) -> None:
    """MSAL's password flow asks ``https://<authority host>/common/userrealm/...`` with the port dropped,
    so an authority on another port (the sandbox) gets a stranger on 443 or a refused connection. MSAL
    keeps a per-process set of hosts without realm discovery (it adds a host itself after a 404): use it."""
    parts = urlsplit(authority)
    if parts.port in (None, 443) or not parts.hostname:
        return
    import msal.authority

    hosts = getattr(msal.authority.Authority, "_domains_without_user_realm_discovery", None)
    if isinstance(hosts, set):
        hosts.add(parts.hostname)


def _first_sentence(exc: Exception, limit: int = 200) -> str:
    """The first sentence of an azure error, one line, without AADSTS prefixes, trace or correlation ids."""
    text = str(getattr(exc, "message", None) or exc)
    text = " ".join(text.split())
    text = re.sub(r"^(Authentication failed: )", "", text)
    text = _AADSTS.sub("", text).lstrip(": ")
    text = re.split(r"(?<=\.)\s|Trace ID:|Correlation ID:", text, maxsplit=1)[0].strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
