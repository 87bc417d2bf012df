"""Azure DevOps personal access tokens behind ``providers.base.Provider``.

Importing this module loads neither azure.identity, httpx nor textual: they come on first use.

One provider serves every target of an account (one sign-in), so it keeps nothing of a rotation: the Entra sign-in
and the PAT client are the account's; every method takes the rotation's ``ctx`` and needs nothing from it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app.errors import AuthExpiredError
from app.secret import SecretValue
from providers.azure_devops.auth import EntraUserAuth
from providers.azure_devops.client import PatClient
from providers.base import NO_ROTATION, Interaction, MintedToken, MintRequest, Provider, RotationContext, TokenInfo

if TYPE_CHECKING:
    from app.config import Account

T = TypeVar("T")


class AzureDevOpsProvider(Provider):
    """PATs of one bot account in one organization, minted with the bot's Entra user token."""

    platform = "azure-devops"
    token_kind = "pat"  # noqa: S105 (a kind, not a secret)

    def __init__(
        self,
        account_name: str,
        account: Account,
        *,
        ca_bundle: Path | None,
        resolve_secret: Callable[[str], SecretValue],
        interaction: Interaction,
        transport: Any = None,
    ) -> None:
        self.account_name = account_name
        self.account = account
        self.interaction = interaction
        self._auth = EntraUserAuth(
            account_name, account, ca_bundle=ca_bundle, resolve_secret=resolve_secret, interaction=interaction
        )
        self._client = PatClient(
            account_name,
            account.organization,
            bearer=self._auth.bearer,
            vssps_url=account.vssps_url,
            base_url=account.base_url,
            ca_bundle=ca_bundle,
            transport=transport,
        )

    def sign_in(self) -> None:
        self._auth.bearer()

    def list_tokens(self, ctx: RotationContext = NO_ROTATION, *, include_inactive: bool = False) -> list[TokenInfo]:
        return self._call(lambda: self._client.list_tokens(include_inactive=include_inactive))

    def get_token(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> TokenInfo | None:
        return self._call(lambda: self._client.get_token(token_id))

    def mint(self, request: MintRequest, ctx: RotationContext = NO_ROTATION) -> MintedToken:
        return self._call(lambda: self._client.create(request))

    def verify(self, token: MintedToken, ctx: RotationContext = NO_ROTATION) -> str:
        # The new PAT authenticates itself: no Entra sign-in involved.
        return self._client.verify(token)

    def revoke(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> None:
        self._call(lambda: self._client.revoke(token_id))

    def close(self) -> None:
        self._client.close()

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except AuthExpiredError as exc:
            # Azure DevOps refused the cached Entra token: the next sign_in() starts afresh.
            self._auth.forget()
            if self.account.sign_in == "azure-cli":
                raise AuthExpiredError(exc.message, hint=f"run az login --tenant {self.account.tenant_id}") from None
            raise
