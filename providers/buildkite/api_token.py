"""Buildkite API access tokens (e.g. the ConductorOne connector's): no API creates one.

The value is made by hand on buildkite.com and pasted (``ctx.paste``) or read from ``target.new_token`` (headless),
checked with ``GET /v2/access-token`` (its scopes must be exactly the expected ones, GraphQL access included), and
the old one is revoked with ``DELETE /v2/access-token`` authenticated by the old value (``target.old_token``, or,
once the stores hold the new value there, what they held before: ``ctx.previous_values()``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote, urlencode, urlsplit

from app.errors import KeyturnError, ProviderError
from app.net import is_loopback
from app.secret import SecretValue
from providers.base import NO_ROTATION, MintedToken, MintRequest, RotationContext, TokenInfo
from providers.buildkite.common import (
    AGENT_TOKEN_PREFIXES,
    API_TOKEN_PREFIX,
    BUILTIN_PRESETS,
    CONDUCTORONE_SCOPES,
    DEFAULT_WEB_URL,
    NEW_API_TOKEN_PATH,
    BuildkiteBase,
)

if TYPE_CHECKING:
    from providers.buildkite.client import AccessTokenInfo


class ApiAccessTokenProvider(BuildkiteBase):
    """One Buildkite API access token, made by hand; the old and the new token authenticate themselves."""

    token_kind = "api-access-token"  # noqa: S105 (a type name)
    MADE_BY_HAND: ClassVar[bool] = True

    def sign_in(self) -> None:
        return  # the old and the new token authenticate themselves

    def retire_notice(self) -> str:
        """What revoking the old token does; shown before revoking."""
        return (
            "Revoking the old API access token (DELETE /v2/access-token with the old value) is immediate: "
            "anything still using it (the ConductorOne connector before its update) gets 401."
        )

    # -- what to make, where -----------------------------------------------------------------------

    def expected_scopes(self, request_scopes: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The exact scope set wanted, GraphQL access included (as ``graphql``)."""
        if request_scopes:
            scopes = request_scopes
        elif self._expected_scopes:
            scopes = self._expected_scopes
        elif self.target.scopes:
            scopes = tuple(self.target.scopes)
        else:
            scopes = BUILTIN_PRESETS.get(self.target.preset or "conductorone", CONDUCTORONE_SCOPES)
        out = [s for s in dict.fromkeys(scopes) if s != "graphql"]
        return (*out, "graphql")

    def creation_url(self, description: str | None = None, scopes: tuple[str, ...] = ()) -> str:
        """buildkite.com's pre-filled "New API Access Token" page. The organization must still be picked there."""
        base = self._web_url
        if base is None:
            # The sandbox serves the page beside its REST API on loopback; everywhere else it is buildkite.com.
            rest = self.account.rest_url
            host = urlsplit(rest).hostname if rest else None
            base = rest if rest and host and is_loopback(host) else DEFAULT_WEB_URL
        params: list[tuple[str, str]] = [("description", description or self.target.token_name)]
        params += [("scopes[]", s) for s in self.expected_scopes(scopes)]
        return base.rstrip("/") + NEW_API_TOKEN_PATH + "?" + urlencode(params, quote_via=quote)

    # -- the old token and this rotation's ---------------------------------------------------------

    @staticmethod
    def _own_value(token_id: str, ctx: RotationContext) -> SecretValue | None:
        """The value of the token this rotation took, when ``token_id`` is that token and this process holds it."""
        if ctx.value is not None and ctx.minted is not None and ctx.minted.id == token_id:
            return ctx.value
        return None

    def _old_api_token(self, ctx: RotationContext) -> SecretValue | None:
        """The old API access token's value: ``old_token``, unless it already resolves to this rotation's new token
        (resumed after the store step wrote the new value there); then the stores' previous values."""
        if not self.target.old_token:
            return None
        value = self._resolve_secret(self.target.old_token)
        new = {fp for fp in (ctx.minted_fingerprint, ctx.value.fingerprint if ctx.value is not None else None) if fp}
        if value.fingerprint not in new:
            return value
        return next((v for v in ctx.previous_values() if v.fingerprint not in new), None)

    @staticmethod
    def _info(info: AccessTokenInfo) -> TokenInfo:
        extra = {"user": info.user} if info.user else {}
        if info.created_at:
            extra["created_at"] = info.created_at.isoformat()
        return TokenInfo(id=info.uuid, name=info.description, expires_at=info.expires_at, scopes=info.scopes, extra=extra)

    # -- Provider ----------------------------------------------------------------------------------

    def list_tokens(self, ctx: RotationContext = NO_ROTATION, *, include_inactive: bool = False) -> list[TokenInfo]:
        old = self._old_api_token(ctx)
        if old is None:
            return []
        info = self._client.access_token(old, what=f"could not read targets.{self.target_name}.old_token")
        return [] if info is None else [self._info(info)]

    def get_token(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> TokenInfo | None:
        for value in (self._own_value(token_id, ctx), self._old_api_token(ctx)):
            if value is None:
                continue
            info = self._client.access_token(value)
            if info is not None and info.uuid == token_id:
                return self._info(info)
        return None

    def mint(self, request: MintRequest, ctx: RotationContext = NO_ROTATION) -> MintedToken:
        """Take the token made by hand: ``ctx.paste(url)`` (the wizard), else ``target.new_token`` (headless)."""
        scopes = self.expected_scopes(request.scopes)
        url = self.creation_url(request.display_name, scopes)
        if ctx.paste is not None:
            value = ctx.paste(url)
        elif self.target.new_token:
            value = self._resolve_secret(self.target.new_token)
        else:
            raise KeyturnError(
                f"targets.{self.target_name}: Buildkite has no API that creates an API access token; create it at "
                f"{url} (pick organization {self.account.organization}) and paste it in the wizard, or set "
                f"targets.{self.target_name}.new_token to where it is stored for --no-input"
            )
        old = self._old_api_token(ctx)
        if old is not None and old == value:
            raise KeyturnError(f"targets.{self.target_name}: the new API access token is the old one; create a new token at {url}")
        info, _summary = self._check_api_token(value, scopes, check_graphql=False)
        # no notes: MintedToken.notes are what the platform changed on its own (said as warnings); the check above is
        # the verify step's line again
        return MintedToken(info=info, value=value)

    def verify(self, token: MintedToken, ctx: RotationContext = NO_ROTATION) -> str:
        return self._check_api_token(token.value, self.expected_scopes(token.info.scopes), check_graphql=True)[1]

    def check_pasted(self, value: SecretValue) -> None:
        """Refuse a pasted value that is not an API access token (e.g. an agent token), before any request."""
        raw = value.reveal().strip()
        for prefix, kind in AGENT_TOKEN_PREFIXES.items():
            if raw.startswith(prefix):
                raise KeyturnError(
                    f"targets.{self.target_name}: that is {kind} ({prefix}…), not an API access token (bkua_…); "
                    "paste the value shown after 'Create New API Access Token'"
                )
        if not raw.startswith(API_TOKEN_PREFIX):
            raise KeyturnError(
                f"targets.{self.target_name}: that does not look like a Buildkite API access token "
                f"(they start with {API_TOKEN_PREFIX})"
            )
        if raw != value.reveal() or any(c.isspace() for c in raw):
            raise KeyturnError(f"targets.{self.target_name}: the pasted API access token contains spaces or line breaks")

    def _check_api_token(self, value: SecretValue, scopes: tuple[str, ...], *, check_graphql: bool) -> tuple[TokenInfo, str]:
        """The token's scopes must be exactly ``scopes`` (GraphQL access included); returns (info, what was called)."""
        self.check_pasted(value)
        info = self._client.access_token(value, what="could not check the new API access token")
        if info is None:
            raise ProviderError("Buildkite does not accept the new API access token (GET /v2/access-token -> 401)")
        have = set(info.scopes)
        missing = [("GraphQL access" if s == "graphql" else s) for s in scopes if s not in have]
        extra = sorted(("GraphQL access" if s == "graphql" else s) for s in have - set(scopes))
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(missing))
            if extra:
                parts.append("extra " + ", ".join(extra))
            raise ProviderError(
                f"the new API access token {info.uuid} has the wrong scopes: {'; '.join(parts)}",
                hint=f"revoke it and create it again at {self.creation_url(scopes=scopes)}",
            )
        summary = f"GET /v2/access-token -> 200 (token {info.uuid}, scopes {' '.join(info.scopes)})"
        if check_graphql:
            data = self._client.graphql(
                "GetOrganizationId",
                {"slug": self.account.organization},
                what="could not use the new API access token with GraphQL",
                bearer=value,
            )
            if not isinstance(data.get("organization"), dict):
                raise ProviderError(
                    f"the new API access token {info.uuid} cannot see organization {self.account.organization}",
                    hint="give it access to that organization (Organization Access on the token's page)",
                )
            summary += f"; GraphQL organization({self.account.organization}) -> ok"
        return self._info(info), summary

    def recover_value(self, token: TokenInfo, fingerprint: str, ctx: RotationContext = NO_ROTATION) -> SecretValue | None:
        """After a crash: a hand-made API access token is still where headless runs read it (``new_token``)."""
        if not self.target.new_token:
            return None
        value = self._resolve_secret(self.target.new_token)
        return value if value.fingerprint == fingerprint else None

    def revoke(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> None:
        """The old token, with its own value; or the token this rotation took (compensation, abort), with ``ctx.value``."""
        what = f"could not revoke API access token {token_id}"
        own = self._own_value(token_id, ctx)
        if own is not None:  # a token this rotation took: it revokes itself
            if self._client.access_token(own, what=what) is not None:
                self._client.delete_access_token(own, what=what)
            return
        old = self._old_api_token(ctx)
        if old is None:
            raise KeyturnError(
                f"targets.{self.target_name}.old_token is not set: Buildkite revokes an API access token only when "
                "called with that token's own value"
            )
        info = self._client.access_token(old, what=what)
        if info is None:
            return  # already revoked or expired
        if info.uuid != token_id:
            raise ProviderError(
                f"{what}: targets.{self.target_name}.old_token is token {info.uuid}, not {token_id}; refusing to revoke it",
                hint="Buildkite revokes an API access token only with its own value: revoke this one on "
                f"{self._web_url or DEFAULT_WEB_URL}/user/api-access-tokens",
            )
        self._client.delete_access_token(old, what=what)
