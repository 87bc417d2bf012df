"""What the three Buildkite token kinds share: the client, the manager token, organization lookups, texts, constants.

- ``BuildkiteBase``: one Buildkite target of one account (the constructor every kind takes), the GraphQL/REST client
  made on first use with the account's API token (the "manager token"), sign-in, ``close``.
- ``AgentTokenBase``: what cluster and unclustered agent tokens share (the retire notice and its manual step,
  finding one token in the listing, reading a create mutation's answer).

Nothing per rotation is kept here: the cluster, the token this rotation minted, the revoke reason come in the
``RotationContext`` of each call. Importing this module loads neither gql, httpx nor textual.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import KeyturnError, ProviderError
from app.secret import SecretValue
from providers.base import NO_ROTATION, Interaction, Provider, RotationContext, TokenInfo

if TYPE_CHECKING:
    from app.config import Account, Manual, Target
    from providers.buildkite.client import BuildkiteClient

CONDUCTORONE_SCOPES = ("read_teams", "read_organizations", "read_user")
BUILTIN_PRESETS: dict[str, tuple[str, ...]] = {"conductorone": CONDUCTORONE_SCOPES}
# What the account's own API token (the one keyturn manages agent tokens with) should carry; GraphQL access
# is what matters for the agent-token mutations (GraphQL is not limited by REST scopes).
MANAGER_SCOPES = ("graphql",)

TOKEN_TYPES = ("cluster-agent-token", "unclustered-agent-token", "api-access-token")
DEFAULT_TOKEN_TYPE = "cluster-agent-token"  # noqa: S105 (a type name)
MIN_EXPIRY = timedelta(minutes=10)
EXPIRY_SLACK = timedelta(seconds=30)  # the request takes time to arrive
PAGE = 100
MAX_CLUSTER_PAGES = 100  # = client.MAX_GRAPHQL_PAGES (not imported here: the client loads gql)
DEFAULT_WEB_URL = "https://buildkite.com"
NEW_API_TOKEN_PATH = "/user/api-access-tokens/new"  # noqa: S105 (a path)
API_TOKEN_PREFIX = "bkua_"  # noqa: S105 (a prefix)
AGENT_TOKEN_PREFIXES = {"bkct_": "a cluster agent token", "bkar_": "an agent access token"}

RETIRE_NOTICE = (
    "Revoking the old agent token does not stop agents that are already connected: they keep running jobs. "
    "An agent that restarts with the old token can no longer register. Where agents keep the token "
    "(Elastic CI Stack instances, the buildkite-agent-metrics binary, baked images), cycle them onto the new "
    "token before revoking."
)
DEPRECATION_NOTICE = (
    "Unclustered agent tokens are a deprecated Buildkite feature (organizations created since 2024-02-26 have "
    "none). Consider moving these agents to a cluster and rotating a cluster agent token instead "
    "(token_type = 'cluster-agent-token', cluster = 'NAME')."
)


def human(dt: datetime) -> str:
    """'2026-01-02 03:04 UTC': how times appear in notes and errors."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class BuildkiteBase(Provider):
    """One Buildkite target (one token kind) of one account: the plumbing every kind shares."""

    platform = "buildkite"

    def __init__(
        self,
        account_name: str,
        account: Account,
        target_name: str,
        target: Target,
        *,
        ca_bundle: Path | None,
        resolve_secret: Callable[[str], SecretValue],
        interaction: Interaction,
        scopes: tuple[str, ...] | None = None,
        web_url: str | None = None,
        transport: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.account_name = account_name
        self.account = account
        self.target_name = target_name
        self.target = target
        self.interaction = interaction
        self._expected_scopes = scopes  # API access tokens: the exact scopes wanted (else the target's / preset's)
        self._resolve_secret = resolve_secret
        self._ca_bundle = ca_bundle
        self._transport = transport
        self._sleep = sleep
        self._now = now
        self._web_url = web_url
        self._client_obj: BuildkiteClient | None = None
        self._account_token: SecretValue | None = None

    # -- plumbing ----------------------------------------------------------------------------------

    @property
    def _client(self) -> BuildkiteClient:
        if self._client_obj is None:
            from providers.buildkite.client import BuildkiteClient

            self._client_obj = BuildkiteClient(
                self.account_name,
                self.account.organization,
                token=self._manager_token,
                graphql_url=self.account.graphql_url,
                rest_url=self.account.rest_url,
                ca_bundle=self._ca_bundle,
                transport=self._transport,
                sleep=self._sleep,
            )
        return self._client_obj

    def _manager_token(self) -> SecretValue:
        """The account's API token (``accounts.<name>.api_token``), which manages agent tokens over GraphQL."""
        if self._account_token is None:
            if not self.account.api_token:
                raise KeyturnError(
                    f"accounts.{self.account_name}.api_token is not set: keyturn needs a Buildkite API access token "
                    "with GraphQL access to manage agent tokens"
                )
            self._account_token = self._resolve_secret(self.account.api_token)
        return self._account_token

    def _organization(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data.organization`` of a GraphQL answer, or the one line saying the token cannot see it."""
        org = data.get("organization")
        if not isinstance(org, dict):
            raise ProviderError(f"Buildkite has no organization {self.account.organization!r} visible to this token")
        return org

    def sign_in(self) -> None:
        self._manager_token()
        self._client.organization_id()

    def close(self) -> None:
        if self._client_obj is not None:
            self._client_obj.close()


class AgentTokenBase(BuildkiteBase):
    """Cluster and unclustered agent tokens: minted and revoked by the manager token over GraphQL."""

    def retire_notice(self) -> str:
        """What revoking the old token does and does not do; shown before revoking (a manual follow-up)."""
        return RETIRE_NOTICE

    def manual_follow_ups(self) -> list[Manual]:
        """A checklist item, before the old token is revoked, to cycle the agents that cache it."""
        from app.config import Manual

        return [Manual(kind="manual", name="Cycle agents that cache the old agent token", text=RETIRE_NOTICE)]

    def get_token(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> TokenInfo | None:
        for token in self.list_tokens(ctx, include_inactive=True):
            if token.id == token_id or token.extra.get("uuid") == token_id:
                return token
        return None

    @staticmethod
    def _created(
        payload: Any, key: str, what: str, parse: Callable[[dict[str, Any]], TokenInfo]
    ) -> tuple[TokenInfo, SecretValue]:
        """A create mutation's answer: the new token (``payload[key]``, or its edge's node) and its value; an answer
        without either is ambiguous (the token may exist)."""
        from app.errors import AmbiguousResultError

        node: Any = None
        if isinstance(payload, dict):
            node = payload.get(key)
            if key == "agentTokenEdge" and isinstance(node, dict):
                node = node.get("node")
        value = payload.get("tokenValue") if isinstance(payload, dict) else None
        if not isinstance(node, dict) or not node.get("id"):
            raise AmbiguousResultError(f"{what}: Buildkite answered without the new token", hint="list the tokens before minting again")
        info = parse(node)
        if not isinstance(value, str) or not value:
            raise AmbiguousResultError(
                f"{what}: Buildkite created token {info.extra.get('uuid') or info.id} but sent no value",
                hint="revoke it; keyturn cannot use a token it never saw",
            )
        from providers.buildkite.client import log

        log.info("created agent token %s (%s)", info.extra.get("uuid") or info.id, info.name)
        return info, SecretValue(value)
