"""Jenkins / CloudBees CI user API tokens behind ``providers.base.Provider``: one provider per target.

- mint: ``POST /user/{id}/descriptorByName/jenkins.security.ApiTokenProperty/generateNewToken`` (``newTokenName``;
  ``expirationDuration`` in days only when ``X-Jenkins`` is 2.548 or newer), ``status`` checked (errors come in 200).
- verify: ``GET /whoAmI/api/json`` with the new token on a fresh client without cookies; the name must be the user.
- revoke: ``POST .../revoke`` (``tokenUuid``) answers 200 even for an unknown uuid, so the revoked token's value
  (when known) must then get 401 on a fresh client, and the uuid must be gone from the user's security page.
- list: Jenkins has no API that lists tokens. The user's security page does (names and uuids, see
  :mod:`providers.jenkins.security_page`); when it cannot be read, the current token is ``target.token_uuid``
  (kept in the journal and the config), alive when ``account.api_token`` still authenticates.

Auth: Basic ``user:<current API token>`` on a stateless client (no cookie jar, no crumb needed); when the account has
a ``password``, a session (cookie + crumb on every POST) instead, ``api_token`` then only saying which token is the
current one. Importing this module loads no httpx.

Consumer gate (``jenkins-token-use``): the old token is revoked only once the user's security page shows the new
token used by a job since the store and the old one not used since (or the soak time passed). Jenkins counts a use
for every request a token authenticates (``ApiTokenStats``), keyturn's own included, so which credential keyturn reads
the page with decides what the counts mean; see :meth:`JenkinsProvider.gate_baseline`.

Per rotation, nothing is kept here: the token a rotation minted (its uuid, fingerprint and value) comes in every call
as ``ctx`` (:class:`providers.base.RotationContext`). What is kept is the account's: the sign-in client, the server
version, the current token's value as the reference first gave it, and whether the security page could be read.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from app.errors import KeyturnError, ProviderError, one_line
from app.secret import SecretValue
from providers.base import (
    NO_ROTATION,
    GateCheck,
    Interaction,
    MintedToken,
    MintRequest,
    Provider,
    RotationContext,
    TokenInfo,
)

if TYPE_CHECKING:
    from app.config import Account, Target
    from providers.jenkins.client import JenkinsClient
    from providers.jenkins.security_page import TokenPage

BUILTIN_PRESETS: dict[str, tuple[str, ...]] = {"user": ("user",)}  # a token carries all of its user's permissions
EXPIRY_SINCE = (2, 548)

RETIRE_NOTICE = (
    "Revoking the old Jenkins API token is immediate: every job, agent or script still using it gets 401 from its "
    "next request. Sessions a browser opened with the user's password are not affected."
)


GATE_ID = "jenkins-token-use"
# readers whose requests Jenkins does not count as a use of this user's tokens: a password session (no API token in
# the request), or another user's credential (an administrator's)
COUNT_FREE = ("password session", "another user")
# this process's own token uses when it took a rotation's baseline: (base_url, user, new uuid) -> own_uses() then
_MARKS: dict[tuple[str, str, str], dict[str, tuple[int, int]]] = {}
_MARKS_LOCK = threading.Lock()


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def script_console_snippet(user: str) -> str:
    """Groovy for an administrator's script console (Manage Jenkins > Script Console): the user's token uuids and names."""
    return (
        f"User.get({user!r}, false).getProperty(jenkins.security.ApiTokenProperty)"
        ".tokenList.each {{ println(it.uuid + '  ' + it.name) }}"
    )


def unknown_uuid_message(target_name: str, user: str, base_url: str, token_name: str) -> str:
    return (
        f"targets.{target_name}.token_uuid is not set and keyturn cannot read {user}'s security page, so it does not "
        f"know which token to revoke. In this order: (1) open {base_url}/user/{user}/security/ (or /configure), find "
        f"the token named {token_name!r} and copy its uuid into targets.{target_name}.token_uuid; (2) have an "
        f"administrator run `{script_console_snippet(user)}` in the script console and set token_uuid; (3) rotate "
        f"with --revoke-all-other-tokens, which revokes EVERY other API token of {user} (other jobs', scripts' and "
        "people's too) after the new one works"
    )


class JenkinsProvider(Provider):
    """The API token of one Jenkins user on one controller (or CloudBees CI Operations Center)."""

    platform = "jenkins"
    token_kind = "api-token"  # noqa: S105 (a kind, not a secret)
    CAN_REVOKE_ALL_EXCEPT: ClassVar[bool] = True  # revokeAllExcept: the way out when the old token's uuid is unknown

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
        auth_user: str | None = None,  # who signs in when it is not the token's user (an administrator)
        transport: Any = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.account_name = account_name
        self.account = account
        self.target_name = target_name
        self.target = target
        self.interaction = interaction
        if not account.base_url:
            raise KeyturnError(f"accounts.{account_name}.base_url is not set: give the Jenkins controller's URL")
        if not account.user:
            raise KeyturnError(f"accounts.{account_name}.user is not set: give the Jenkins user id whose token rotates")
        from app.net import check_url

        self.base_url = check_url(account.base_url.rstrip("/"), f"accounts.{account_name}.base_url")
        self.user: str = account.user  # whose API token rotates
        self.auth_user: str = auth_user or account.user  # who signs in (the user, or an administrator)
        self._ca_bundle = ca_bundle
        self._resolve_secret = resolve_secret
        self._transport = transport
        self._now = now
        self._client_obj: JenkinsClient | None = None
        self._current: SecretValue | None = None  # the current (old) token value, read once
        self._current_read = False
        self._page_readable: bool | None = None  # the last security page read worked (None: not tried yet)
        self._version: str | None = None
        # a client signed in with the token a rotation minted (ctx.value), kept by that value's fingerprint so
        # consecutive calls reuse it; which token signs a call is decided by each call's ctx, never by this cache
        self._revoker: tuple[str, JenkinsClient] | None = None

    # -- plumbing ----------------------------------------------------------------------------------

    def _current_token(self) -> SecretValue | None:
        """The current API token's value (``account.api_token``, else ``target.old_token``), read once: after the
        rotation stores the new value under the same reference, this must still be the old one."""
        if not self._current_read:
            own = self.account.api_token if self.auth_user == self.user else None  # else it is the administrator's
            ref = own or self.target.old_token
            self._current = self._resolve_secret(ref) if ref else None
            self._current_read = True
        return self._current

    @property
    def _client(self) -> JenkinsClient:
        if self._client_obj is None:
            from providers.jenkins.client import JenkinsClient

            if self.account.password:
                # a session: none of its requests counts as a use of an API token, so the use counts on the security
                # page are the jobs' alone (api_token, when set too, only says which token is the current one)
                if self.account.api_token:
                    self._current_token()
                self._client_obj = JenkinsClient(
                    self.base_url, self.auth_user, ca_bundle=self._ca_bundle,
                    password=self._resolve_secret(self.account.password), transport=self._transport,
                )
            elif self.account.api_token:
                token = self._resolve_secret(self.account.api_token)
                self._current_token()
                self._client_obj = JenkinsClient(
                    self.base_url, self.auth_user, ca_bundle=self._ca_bundle, token=token, transport=self._transport
                )
            else:
                raise KeyturnError(
                    f"accounts.{self.account_name}: set api_token (the user's current API token) or, for a password "
                    "sign-in, password"
                )
        return self._client_obj

    def close(self) -> None:
        if self._revoker is not None:
            self._revoker[1].close()
            self._revoker = None
        if self._client_obj is not None:
            self._client_obj.close()
            self._client_obj = None

    @property
    def server_version(self) -> str | None:
        """The controller's ``X-Jenkins`` version as sign_in() read it (e.g. ``"2.548"``); None before sign_in()."""
        return self._version

    @property
    def supports_expiry(self) -> bool:
        """Whether API tokens minted here can expire (Jenkins 2.548 or newer); False until sign_in() read the version."""
        from providers.jenkins.client import version_tuple

        return version_tuple(self._version) >= EXPIRY_SINCE

    def owner(self) -> str:
        """The Jenkins user whose API tokens these are."""
        return self.user

    def unknown_old_token_help(self) -> str:
        """No token_uuid and no readable security page: the three ways to name the old token, in order."""
        return unknown_uuid_message(self.target_name, self.user, self.base_url, self.target.token_name)

    def lists_tokens(self) -> bool:
        """False when the user's security page could not be read, so list_tokens() cannot find a token by name.

        Accurate once a page read was tried: list_tokens(), get_token() and revoke() read the page, and so does
        sign_in() for a target without ``token_uuid`` (mint, verify and revoke_all_except do not). Before any read it
        says True (nothing is known to be missing yet); every read updates it. The engine asks right after
        list_tokens(); the wizard's retire screen after planning listed the tokens."""
        return self._page_readable is not False

    def retire_notice(self) -> str:
        return RETIRE_NOTICE

    def no_expiry_notice(self) -> str:
        """For a release without token expiry; empty when the server supports it (or is not known yet)."""
        if self._version is None or self.supports_expiry:
            return ""
        return (f"Jenkins {self._version} has no token expiry (it arrived in 2.548): the new token never expires; "
                "rotate it on schedule and revoke it when done")

    def _alive(self, value: SecretValue) -> tuple[int, str | None]:
        from providers.jenkins.client import token_alive

        return token_alive(self.base_url, self._ca_bundle, self.user, value, transport=self._transport)

    # -- Provider ----------------------------------------------------------------------------------

    def sign_in(self) -> None:
        what = f"could not sign in to Jenkins at {self.base_url} as {self.auth_user}"
        client = self._client
        client.sign_in()
        status, name = client.who_am_i(what=what)
        self._version = client.info.version
        if status == 401:
            raise ProviderError(f"{what}: the API token in accounts.{self.account_name}.api_token is refused (401)",
                                hint="it may be revoked or expired: put the user's current token there")
        if status != 200:
            raise ProviderError(f"{what}: GET /whoAmI/api/json -> {status}")
        if self._version is None:
            raise ProviderError(f"{what}: {self.base_url} sent no X-Jenkins header; is it a Jenkins controller?")
        if name is None:
            raise ProviderError(f"{what}: Jenkins treats the request as anonymous")
        if name != self.auth_user:
            raise ProviderError(f"{what}: Jenkins says the credentials belong to {name!r}")
        if client.info.cloudbees and not client.info.operations_center:
            root = client.root_class()  # an Operations Center's root object says so too
            if "opscenter" not in root.lower() and "operationscenter" not in root.lower():
                raise ProviderError(
                    f"{self.base_url} is a CloudBees CI controller ({client.info.product}): API tokens made on a "
                    "controller are overwritten by the Operations Center's",
                    hint="point accounts.*.base_url at the Operations Center and mint the token there",
                )
        if self.target.token_uuid is None and self.account.api_token and self._page(NO_ROTATION) is None:
            self.interaction.warn(
                unknown_uuid_message(self.target_name, self.user, self.base_url, self.target.token_name)
                + " — this rotation will not revoke the old token"
            )

    def _info(self, uuid: str, name: str, expires_at: datetime | None = None, **extra: str) -> TokenInfo:
        return TokenInfo(id=uuid, name=name, expires_at=expires_at, scopes=("user",), extra={"user": self.user, **extra})

    def _page(self, ctx: RotationContext) -> list[tuple[str, str]] | None:
        """The live tokens (uuid, name) listed on the user's security page; None when it cannot be read."""
        from providers.jenkins.security_page import parse_token_list

        reader = self._revoke_client("", ctx)  # the token this rotation minted once there is one: the old may be dead
        html = reader.security_page(self.user, what=f"could not read the security page of Jenkins user {self.user}")
        tokens = parse_token_list(html) if html is not None else None
        self._page_readable = tokens is not None
        return tokens

    @staticmethod
    def _minted_value(ctx: RotationContext, token_id: str) -> SecretValue | None:
        """The value of ``token_id`` when it is the token this rotation minted and this process holds its value."""
        if ctx.minted is not None and ctx.minted.id == token_id:
            return ctx.value
        return None

    def _old_value(self, ctx: RotationContext) -> SecretValue | None:
        """The current (old) token's value: what the reference held when first read, unless that is the token this
        rotation minted (ctx: on resume the reference may already hold the new value)."""
        value = self._current_token()
        new = {fp for fp in (ctx.minted_fingerprint, ctx.value.fingerprint if ctx.value is not None else None) if fp}
        return value if value is not None and value.fingerprint not in new else None

    def list_tokens(self, ctx: RotationContext = NO_ROTATION, *, include_inactive: bool = False) -> list[TokenInfo]:
        page = self._page(ctx)
        if page is not None:
            return [self._info(uuid, name) for uuid, name in page]
        uuid = self.target.token_uuid
        if not uuid:
            return []
        if self._current_token() is None:  # nothing to test it with: trust the config
            return [self._info(uuid, self.target.token_name)]
        current = self._old_value(ctx)
        if current is None:  # the reference already holds this rotation's new token: the old one is not knowable
            return []
        status, name = self._alive(current)
        active = status == 200 and name == self.user
        if status not in (200, 401):
            raise ProviderError(f"could not check the current API token of {self.user}: GET /whoAmI/api/json -> {status}")
        if not active and not include_inactive:
            return []
        return [TokenInfo(id=uuid, name=self.target.token_name, expires_at=None, scopes=("user",), active=active,
                          extra={"user": self.user})]

    def get_token(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> TokenInfo | None:
        page = self._page(ctx)
        if page is not None:
            return next((self._info(uuid, name) for uuid, name in page if uuid == token_id), None)
        value = self._minted_value(ctx, token_id)
        if value is not None:
            status, name = self._alive(value)
            return self._info(token_id, "minted by keyturn") if status == 200 and name == self.user else None
        # No list: a uuid the caller knows (the config's, or the one the journal says the last rotation minted and
        # stored where api_token points) counts as current while the current value works. Revoking it is proven
        # afterwards with that value (401), so a wrong guess fails loudly, never silently.
        current = self._current_token()
        if current is None:
            return self._info(token_id, self.target.token_name)
        status, name = self._alive(current)
        if status == 200 and name == self.user:
            return TokenInfo(id=token_id, name=self.target.token_name, expires_at=None, scopes=("user",), active=True,
                             extra={"user": self.user})
        return None

    def mint(self, request: MintRequest, ctx: RotationContext = NO_ROTATION) -> MintedToken:
        if self._version is None:
            self.sign_in()
        client = self._client
        what = f"could not create API token {request.display_name!r} for Jenkins user {self.user}"
        form = {"newTokenName": request.display_name}
        notes: list[str] = []
        if request.expires_at is not None:
            if self.supports_expiry:
                days = max(1, math.ceil((request.expires_at - self._now()).total_seconds() / 86400))
                form["expirationDuration"] = str(days)
            else:
                notes.append(self.no_expiry_notice())  # the engine says it once
        elif not self.supports_expiry:
            notes.append(f"Jenkins {self._version}: API tokens never expire")
        resp = client.post(client.descriptor_path(self.user) + "/generateNewToken", form, what=what, ambiguous=True,
                           json_expected=True)
        body = client.check(resp, what, forbidden=self._forbidden_reason())
        data = (body or {}).get("data")
        if not isinstance(data, dict) or not data.get("tokenUuid") or not data.get("tokenValue"):
            raise ProviderError(f"{what}: Jenkins answered without tokenUuid/tokenValue")
        uuid = str(data["tokenUuid"])
        value = SecretValue(str(data["tokenValue"]))
        expires = self._answered_expiry(data, form.get("expirationDuration"), notes)
        info = self._info(uuid, str(data.get("tokenName") or request.display_name), expires, version=str(self._version))
        return MintedToken(info=info, value=value, notes=tuple(notes))

    def _answered_expiry(self, data: dict[str, Any], days: str | None, notes: list[str]) -> datetime | None:
        """The expiry the generateNewToken answer names (2.548+: the day in the request's locale, short style, or
        "never"; see providers.jenkins.dates), as the start of that day in UTC (the token works through the day in
        the controller's zone, which the answer does not name: the earliest it can mean). None: no expiry."""
        from providers.jenkins.dates import NEVER, expiry_day

        raw = data.get("expirationDate")
        mask = (str(data.get("tokenValue") or ""),)  # a server echoing the value into the date must not put it in a note
        if days is None:  # keyturn asked for none (or the release has none)
            if raw not in (None, NEVER):
                notes.append(f"Jenkins answered an expiry ({one_line(str(raw), redact=mask)}) keyturn did not ask for; recorded none")
            return None
        expected = self._now().date() + timedelta(days=int(days))
        day = expiry_day(str(raw), expected) if isinstance(raw, str) and raw != NEVER else None
        if day is None:
            said = "no expiry" if raw in (None, NEVER) else f"expiry {one_line(str(raw), redact=mask)!r}"
            notes.append(f"Jenkins answered {said} for a token asked to expire in {days} days; keyturn recorded "
                         f"{expected.isoformat()} (what it asked for): check the token's card on the security page")
            day = expected
        return datetime(day.year, day.month, day.day, tzinfo=UTC)

    def _forbidden_reason(self, action: str = "create") -> str:
        if action == "revoke" and self.auth_user == self.user:
            return (f"Jenkins refused {self.user} revoking their own API token, which User.getACL always allows: "
                    f"check what stands in front of {self.base_url} (a proxy or a plugin refusing the POST)")
        if action == "revoke":
            return (
                f"only {self.user} or a Jenkins administrator may revoke {self.user}'s API tokens "
                f"(User.getACL); {self.auth_user} is neither: sign in as {self.user} (their current API token in "
                "accounts.*.api_token) or as an administrator"
            )
        if self.auth_user != self.user:
            return (
                f"only {self.user} may create or revoke their own API tokens unless the controller runs with "
                "-Djenkins.security.ApiTokenProperty.adminCanGenerateNewTokens=true; instead sign in as "
                f"{self.user} (their current API token in accounts.*.api_token), or ask an administrator to start "
                "Jenkins with that property"
            )
        return f"{self.auth_user} may not manage API tokens on {self.base_url}"

    def verify(self, token: MintedToken, ctx: RotationContext = NO_ROTATION) -> str:
        status, name = self._alive(token.value)
        if status != 200:
            raise ProviderError(f"the new API token {token.info.id} is refused by Jenkins: GET /whoAmI/api/json -> {status}")
        if name is None:
            raise ProviderError(f"the new API token {token.info.id} was not accepted: Jenkins treats it as anonymous")
        if name != self.user:
            raise ProviderError(f"the new API token {token.info.id} authenticates as {name!r}, not {self.user!r}")
        return f"GET /whoAmI/api/json with the new token (fresh client, no cookies) -> 200 as {name}"

    def revoke(self, token_id: str, ctx: RotationContext = NO_ROTATION) -> None:
        client = self._revoke_client(token_id, ctx)
        what = f"could not revoke API token {token_id} of Jenkins user {self.user}"
        resp = client.post(client.descriptor_path(self.user) + "/revoke", {"tokenUuid": token_id}, what=what,
                           idempotent=True)  # revoking twice does no harm
        client.check(resp, what, forbidden=self._forbidden_reason("revoke"))
        # revoke answers 200 even for a uuid it does not know: only the token's value getting 401, or the uuid
        # being gone from the user's security page, proves it
        proven = False
        value = self._minted_value(ctx, token_id)
        if value is None and token_id == self.target.token_uuid:
            value = self._old_value(ctx)
        if value is not None:
            status, _name = self._alive(value)
            if status != 401:
                raise ProviderError(
                    f"Jenkins answered 200 to revoking API token {token_id}, but the token still works "
                    f"(GET /whoAmI/api/json -> {status} on a fresh client)",
                    hint=f"targets.{self.target_name}.token_uuid may not be this token's uuid: check the user's security page",
                )
            proven = True
        page = self._page(ctx)
        if page is not None:
            if any(uuid == token_id for uuid, _name in page):
                raise ProviderError(
                    f"Jenkins answered 200 to revoking API token {token_id}, but the user's security page still lists it",
                    hint=f"revoke it by hand on {self.base_url}/user/{self.user}/security/",
                )
            proven = True
        if not proven:
            self.interaction.warn(
                f"Jenkins answered 200 to revoking {token_id}, but keyturn can neither test its value nor read the "
                f"security page to prove it is gone; check {self.base_url}/user/{self.user}/security/"
            )

    def revoke_all_except(self, keep_id: str, ctx: RotationContext = NO_ROTATION) -> None:
        """``revokeAllExcept``: every API token of the user but ``keep_id`` dies (the last way out when the old
        token's uuid is unknown). Callers must have the engineer confirm first, naming what else dies."""
        client = self._revoke_client("", ctx)
        what = f"could not revoke the other API tokens of Jenkins user {self.user}"
        resp = client.post(client.descriptor_path(self.user) + "/revokeAllExcept", {"tokenUuid": keep_id}, what=what,
                           idempotent=True)
        client.check(resp, what, forbidden=self._forbidden_reason("revoke"))
        old = self._old_value(ctx)
        if old is not None and self._alive(old)[0] != 401:
            raise ProviderError("Jenkins answered 200 to revokeAllExcept, but the old token still works")

    def config_updates(self, token: TokenInfo) -> dict[str, str]:
        """What the config should now say about this target: the uuid of the token that is current."""
        return {"token_uuid": token.id}

    # -- consumer gate: a job uses the new token, none the old one -------------------------------------------------
    #
    # Which credential reads the security page matters, because Jenkins counts every request an API token
    # authenticates as a use of that token (ApiTokenStats), keyturn's own page reads included:
    #
    # - never the old token: its count is the proof that no job still uses it, and a read with it would make it look
    #   used (and show keyturn on the user's page as a user of the token being retired). When the only credential
    #   this run holds is the old token, the gate says so and waits.
    # - best, a reader Jenkins does not count at all: a password session (accounts.*.password; the whole provider then
    #   signs in with it) or another user's credential (an administrator). Every run, this one and the next, then
    #   reads exact job counts.
    # - else the new token (the value this run holds, or the account's api_token once the store wrote the new value
    #   where it points). Each read adds one use to it. This process counts what it sent with each token
    #   (client.record_use, by fingerprint) and subtracts it; a run that did not take the baseline cannot know how
    #   often earlier runs (resume, status, a plan: every one signs in with the account's token) used the new token,
    #   so it does not claim a job used it: only the run that took the baseline (the wizard, or a `rotate` whose jobs
    #   ran meanwhile) can prove it, otherwise the soak time (revoke_after) lets the revoke go ahead.
    #
    # Recording keyturn's own uses in the journal would not close that gap: `keyturn status` and planning sign in too
    # and journal nothing.

    def gate_plan(self) -> str:
        where = f"the use counts on {self.user}'s security page"
        if self.auth_user == self.user and not self.account.password:
            where += (f"; keyturn reads them with the new token, so only the run that verified it can tell its own reads "
                      f"from a job's unless accounts.{self.account_name}.password is set")
        return f"Jenkins shows the new API token used by a job and the old one not used since the store ({where})"

    def _gate_reader(self, ctx: RotationContext) -> tuple[JenkinsClient | None, str]:
        """(the client the gate reads the security page with, what kind of credential it is); never the old token."""
        if self.auth_user != self.user:
            return self._client, "another user"
        if self.account.password:
            return self._client, "password session"
        if ctx.value is not None and ctx.minted is not None and ctx.minted_fingerprint in (None, ctx.value.fingerprint):
            return self._token_client(ctx.value), "new token"
        if ctx.minted_fingerprint is not None and self.account.api_token:
            client = self._client  # the account's token as this process read it: the new one once the store wrote it
            if client.token_fingerprint == ctx.minted_fingerprint:
                return client, "new token"
        return None, "old token"

    def _usage_page(self, reader: JenkinsClient) -> TokenPage | None:
        from providers.jenkins.security_page import parse_security_page

        reader.sign_in()  # a password session signs in first (a token client has nothing to do)
        html = reader.security_page(self.user, what=f"could not read the security page of Jenkins user {self.user}")
        page = parse_security_page(html) if html is not None else None
        self._page_readable = page is not None
        return page

    def _is_target_token(self, uuid: str, name: str) -> bool:
        """A token the retire step revokes: the configured uuid, or named like the target (keyturn's names too)."""
        token_name = self.target.token_name
        return (uuid == self.target.token_uuid or name == token_name
                or re.fullmatch(re.escape(token_name) + r"-\d{8}-[0-9a-f]{8}", name) is not None)

    def _mark_key(self, ctx: RotationContext) -> tuple[str, str, str]:
        assert ctx.minted is not None
        return (self.base_url, self.user, ctx.minted.id)

    def gate_baseline(self, ctx: RotationContext) -> dict[str, Any]:
        """Each of the target's tokens' use count right after keyturn verified the new one (uuids, names, counts and
        what read them; never a value). Never raises: a failure here must not undo a verified rotation, the gate says
        later that it has nothing to compare with."""
        from providers.jenkins.client import own_uses

        if ctx.minted is None:
            return {}
        out: dict[str, Any] = {"read_at": self._now().isoformat(), "version": self._version or ""}
        try:
            reader, kind = self._gate_reader(ctx)
            out["reader"] = kind
            page = self._usage_page(reader) if reader is not None else None
        except KeyturnError as exc:
            out["unreadable"] = exc.message
            return out
        with _MARKS_LOCK:
            _MARKS[self._mark_key(ctx)] = own_uses()  # after the read: the baseline counts include it
        if reader is None:
            out["unreadable"] = "keyturn held only the old token to read the page with"
            return out
        if page is None:
            out["unreadable"] = f"the security page of {self.user} could not be read"
            return out
        mine = [t for t in page.tokens if t.uuid == ctx.minted.id or self._is_target_token(t.uuid, t.name)]
        out.update(
            markup=page.markup,
            statistics=not page.stats_disabled,
            new=ctx.minted.id,
            old=[t.uuid for t in mine if t.uuid != ctx.minted.id],
            names={t.uuid: t.name for t in mine},
            uses={t.uuid: t.uses for t in mine},
        )
        return out

    def consumer_gates(self, ctx: RotationContext) -> list[GateCheck]:
        if ctx.minted is None:
            return []
        return [self._token_use_gate(ctx)]

    def _own_since(self, ctx: RotationContext, fingerprint: str | None, *, upper: bool) -> int:
        """Requests this process sent with the token of ``fingerprint`` since it took the baseline (or since it
        started, when another process took it). ``upper`` counts the ones that got no answer too."""
        from providers.jenkins.client import own_uses

        if fingerprint is None:
            return 0
        with _MARKS_LOCK:
            mark = _MARKS.get(self._mark_key(ctx), {})
        counted, maybe = own_uses().get(fingerprint, (0, 0))
        counted0, maybe0 = mark.get(fingerprint, (0, 0))
        return (counted - counted0) + ((maybe - maybe0) if upper else 0)

    def _old_fingerprint(self, ctx: RotationContext) -> str | None:
        try:
            old = self._old_value(ctx)
        except KeyturnError:
            return None
        return old.fingerprint if old is not None else None

    def _token_use_gate(self, ctx: RotationContext) -> GateCheck:
        from urllib.parse import quote

        assert ctx.minted is not None
        new_id = ctx.minted.id
        title = f"Jenkins API token use ({self.user} on {self.base_url})"
        url = f"{self.base_url}/user/{quote(self.user, safe='')}/security/"
        base = ctx.gate_baseline
        now = self._now()
        soaked = bool(ctx.soak_s > 0 and ctx.stored_at is not None and now >= ctx.stored_at + timedelta(seconds=ctx.soak_s))
        waiting: list[str] = []
        progress: list[str] = []
        breaks = "every job still holding the old token gets 401 from its next request"
        page: TokenPage | None = None
        kind = ""
        if not base or "uses" not in base:
            why = base.get("unreadable") if base else "no reading was taken"
            waiting.append(f"the use counts on {self.user}'s Jenkins security page were not read when the new token was "
                           f"verified ({why}), so there is nothing to compare with")
        else:
            try:
                reader, kind = self._gate_reader(ctx)
                page = self._usage_page(reader) if reader is not None else None
            except KeyturnError as exc:
                waiting.append(f"the security page of Jenkins user {self.user} could not be read ({exc.message})")
                reader = None
            else:
                if reader is None:
                    waiting.append(
                        f"keyturn holds only the old token to read {self.user}'s security page with, and that read would "
                        f"count as a use of it (this run does not hold the new value and accounts.{self.account_name}"
                        ".api_token does not point at it)"
                    )
                elif page is None:
                    waiting.append(f"the security page of Jenkins user {self.user} could not be read, so keyturn cannot "
                                   "see which token the jobs use")
        if page is not None and page.stats_disabled:
            waiting.append("Jenkins records no API token use (usage statistics are off under Manage Jenkins > Security "
                           "> API Token)")
        elif page is not None:
            assert base is not None
            with _MARKS_LOCK:
                here = self._mark_key(ctx) in _MARKS  # this process took the baseline: it knows all its own reads
            then: dict[str, int | None] = dict(base.get("uses") or {})
            names: dict[str, str] = dict(base.get("names") or {})
            # -- the new token: used by a job since the baseline?
            new_fp = ctx.minted_fingerprint or (ctx.value.fingerprint if ctx.value is not None else None)
            own_new = self._own_since(ctx, new_fp, upper=True)
            attributable = here or (kind in COUNT_FREE and base.get("reader") in COUNT_FREE)
            new_now = page.token(new_id)
            new_then = then.get(new_id)
            if new_now is None:
                waiting.append("the new token is no longer on the security page (revoked or expired?)")
            elif new_now.uses is None or new_then is None:
                waiting.append("the security page shows no use count for the new token")
            else:
                total = max(0, new_now.uses - new_then)
                jobs = max(0, total - own_new)
                if not attributable:
                    waiting.append(
                        "keyturn cannot tell a job's use of the new token from its own page reads in earlier runs "
                        f"(set accounts.{self.account_name}.password: a session's reads are not counted)"
                    )
                    progress.append(f"new token: used {_times(total)} since it was verified, keyturn's own reads among them")
                else:
                    if jobs == 0:
                        waiting.append("the new token not used yet by any job")
                    mine = f" ({_times(own_new)} by keyturn's own page reads, not counted)" if own_new else ""
                    said = f"used by jobs {_times(jobs)}" if jobs else "not used by any job"
                    progress.append(f"new token: {said} since it was verified{mine}")
            # -- the old tokens: not used since?
            own_old = self._own_since(ctx, self._old_fingerprint(ctx), upper=False)
            grown = 0
            unknown: list[str] = []
            for uuid in base.get("old") or []:
                name = names.get(uuid, uuid)
                old_now = page.token(uuid)
                if old_now is None:
                    progress.append(f"old token {name!r}: no longer on the page")
                    continue
                old_then = then.get(uuid)
                if old_now.uses is None or old_then is None:
                    unknown.append(name)
                    continue
                grew = max(0, old_now.uses - old_then)
                grown += grew
                last = old_now.last_used_at or old_now.last_used
                progress.append(f"old token {name!r}: " + (f"used {_times(grew)} since the store" if grew else "not used since the store")
                                + (f" (last use: {last})" if last else ""))
            old_jobs = max(0, grown - own_old)
            if unknown:
                waiting.append(f"the security page shows no use count for the old token ({', '.join(map(repr, unknown))})")
            elif old_jobs:
                waiting.append(f"the old token used {_times(old_jobs)} since the new one was stored")
                breaks = f"the jobs that used the old token since the store ({_times(old_jobs)}) get 401 from their next request"
        if waiting and soaked:  # the soak time stands in for the proof the counts could not give
            return GateCheck(GATE_ID, title, True, url=url, breaks=breaks,
                             progress=f"the soak time (revoke_after) since the store is over, without: {'; '.join(waiting)}"
                             + (f"; {'; '.join(progress)}" if progress else ""))
        return GateCheck(GATE_ID, title, not waiting, waiting_for="; ".join(waiting), progress="; ".join(progress),
                         url=url, breaks=breaks)

    def _revoke_client(self, token_id: str, ctx: RotationContext) -> JenkinsClient:
        """Revoke (or read the page) with a token that survives the call: the token this rotation minted (ctx.minted
        with ctx.value), when it is not the one being revoked; else the sign-in client."""
        value = ctx.value if ctx.minted is not None and ctx.minted.id != token_id else None
        if self.account.password or not (self.account.api_token and value is not None and self.auth_user == self.user):
            return self._client  # a session survives any revocation
        return self._token_client(value)

    def _token_client(self, value: SecretValue) -> JenkinsClient:
        """A client signed in with ``value`` as the user's API token, kept by its fingerprint for the next call."""
        from providers.jenkins.client import JenkinsClient

        key = value.fingerprint
        if self._revoker is None or self._revoker[0] != key:
            if self._revoker is not None:
                self._revoker[1].close()
            client = JenkinsClient(self.base_url, self.user, ca_bundle=self._ca_bundle, token=value, transport=self._transport)
            self._revoker = (key, client)
        return self._revoker[1]
