"""Azure Key Vault through the real SDK (azure-keyvault-secrets + azure-identity).

Imported on first use: the Azure SDK costs ~330 ms to import.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from app.errors import KeyturnError, SecretSourceError, one_line
from app.net import (
    MAX_PAGES,
    LimitExceededError,
    Listing,
    Outcome,
    Transient,
    answer_failure,
    bounded_requests_session,
    certificate_error,
    certificate_problem,
    check_url,
    http_timeout,
    is_loopback,
    limit_exceeded,
    retry_sleep,
    said_of,
    with_retries,
)

if TYPE_CHECKING:
    from app.config import Config, Vault

API_VERSION = "7.5"  # pinned: the vendored contract is secrets 7.5
# Versions are listed 25 a page at most: MAX_PAGES full pages. A secret rotated daily for 60 years stays under it.
MAX_VERSIONS = MAX_PAGES * 25

# The calls keyturn makes: the secrets permission each needs (GetSecret: get; GetSecretVersions: list; SetSecret
# and UpdateSecret: set), and how a message says it was refused ("Key Vault v / secret s: listing its versions ...").
READ, LIST_VERSIONS, WRITE, UPDATE = "read", "list versions", "write", "update"
PERMISSION = {READ: "get", LIST_VERSIONS: "list", WRITE: "set", UPDATE: "set"}
DOING = {READ: "reading it", LIST_VERSIONS: "listing its versions", WRITE: "writing a new version", UPDATE: "updating a version"}

log = logging.getLogger("keyturn.keyvault")
T = TypeVar("T")


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
        common.update(authority=check_url(vault.authority, f"vaults.{name}.authority"), disable_instance_discovery=True)
    if config.settings.ca_bundle:
        common["connection_verify"] = str(config.resolve_path(config.settings.ca_bundle))
    if vault.auth == "cli":
        return AzureCliCredential(tenant_id=vault.tenant_id) if vault.tenant_id else AzureCliCredential()
    if vault.auth == "client-secret":
        from app.secret_sources import resolve_plain

        assert vault.tenant_id and vault.client_id and vault.client_secret
        secret = resolve_plain(config, vault.client_secret, what=f"vaults.{name}.client_secret")
        # its own bounded session: the sign-in's answers are held to the same body limit as the vault's
        return ClientSecretCredential(
            vault.tenant_id, vault.client_id, secret.reveal(), session=bounded_requests_session(), **common
        )
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
        # keyturn retries itself (see _call and set): bounded, with its own waits, never a blind second
        # SetSecret (the SDK's policy would repeat a PUT after a reset, making a second version)
        kwargs.update(retry_total=0, connection_timeout=http_timeout(), read_timeout=http_timeout())
        kwargs["session"] = bounded_requests_session()  # the body limit (invariant 9); the SDK's transport owns it
        self._client = SecretClient(self.url, _credential(config, name, vault), **kwargs)
        self.sleep: Callable[[float], None] = retry_sleep

    @staticmethod
    def _transient(exc: Exception) -> Transient | None:
        """An SDK failure another attempt may cure, classified as app.net's retry policy knows them (a failed
        connection: not sent; 429: rate limited, with its Retry-After; a reset, a timeout, a 5xx, an unreadable
        answer: outcome unknown); None for the rest (403, 404, a bad request, a sign-in failure, a certificate)."""
        from azure.core.exceptions import (
            DecodeError,
            DeserializationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        if certificate_problem(exc) is not None:
            return None  # never retried: _fail says which certificate
        if isinstance(exc, ServiceRequestError):  # azure-core: no request was sent
            return Transient("could not connect", Outcome.NOT_SENT)
        if isinstance(exc, ServiceResponseError):
            said = "timed out" if "timed out" in str(exc).lower() else "the connection was reset"
            return Transient(said, Outcome.UNKNOWN)
        if isinstance(exc, DecodeError | DeserializationError):
            return Transient("an unreadable answer", Outcome.UNKNOWN)
        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            headers = getattr(exc.response, "headers", None) if exc.response is not None else None
            return answer_failure(exc.status_code, headers or {})
        return None

    def _where(self, secret: str) -> str:
        return f"Key Vault {self.name} / secret {secret}"

    def _tried(self, action: str, secret: str) -> str:
        """What was tried, ready for "failed": "Key Vault v / secret s: read", "Key Vault v: list versions of secret s"."""
        if action == LIST_VERSIONS:
            return f"Key Vault {self.name}: list versions of secret {secret}"
        return f"{self._where(secret)}: {action}"

    def _gave_up(self, action: str, secret: str, problems: list[str]) -> SecretSourceError:
        return SecretSourceError(f"{self._tried(action, secret)} failed: {said_of(problems)}; try again later")

    def _call(self, fn: Callable[[], T], action: str, secret: str, version: str | None = None) -> T:
        """An idempotent call under app.net.with_retries (timeouts, resets, 429 after its Retry-After, 5xx,
        unreadable answers are tried again)."""

        def once() -> T:
            try:
                return fn()
            except Exception as exc:
                failure = self._transient(exc)
                if failure is None:
                    raise self._fail(exc, action, secret, version) from None
                raise failure from None

        return with_retries(
            once,
            idempotent=True,
            gave_up=lambda _failure, problems: self._gave_up(action, secret, problems),
            sleep=self.sleep,
            log=log,
            call=self._tried(action, secret),
        )

    def _fail(self, exc: Exception, action: str, secret: str, version: str | None = None) -> KeyturnError:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
        )

        where = self._where(secret)
        if (limit := limit_exceeded(exc)) is not None:  # a bound of invariant 9, met by the vault or its sign-in
            if limit is exc:
                return limit
            during = "sign-in for the vault failed: " if isinstance(exc, ClientAuthenticationError) else ""
            return SecretSourceError(f"{where}: {during}{limit.message}", hint=limit.hint)
        if isinstance(exc, KeyturnError):
            return exc
        if (reason := certificate_problem(exc)) is not None:
            return certificate_error(urlsplit(self.url).netloc, reason)
        if isinstance(exc, ResourceNotFoundError):
            return SecretSourceError(f"{where}: not found", hint="check the secret name or create it")
        if isinstance(exc, ClientAuthenticationError):
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
            return SecretSourceError(f"{where}: sign-in for the vault failed: {first}", hint="run `az login` or fix the vault's auth settings")
        if isinstance(exc, HttpResponseError) and exc.status_code == 403:
            return self._forbidden(_inner_code(exc), action, secret, version)
        if isinstance(exc, ServiceRequestError):
            return SecretSourceError(f"{where}: cannot reach {self.url}", hint="check the network or the vault's url")
        if isinstance(exc, HttpResponseError):
            code = getattr(exc.error, "code", None) or exc.status_code
            return SecretSourceError(f"{self._tried(action, secret)} failed ({code})")
        return SecretSourceError(f"{self._tried(action, secret)} failed ({exc.__class__.__name__})")

    def _forbidden(self, inner: str | None, action: str, secret: str, version: str | None) -> SecretSourceError:
        """Key Vault answers 403 "Forbidden" for a missing permission, a firewall and a disabled version alike;
        the inner error code tells them apart."""
        where = self._where(secret)
        if inner == "SecretDisabled":
            which = f"version {version}" if version else "current version"
            flag = f" --version {version}" if version else ""
            host = urlsplit(self.url).hostname or ""
            vault = host.split(".")[0] if ".vault." in host else self.name  # the Azure name, from its URL
            return SecretSourceError(
                f"{where}: the secret's {which} is disabled, so Key Vault does not give its value",
                hint=f"enable it with `az keyvault secret set-attributes --vault-name {vault} --name {secret}{flag} "
                "--enabled true`, or add a new version",
            )
        if inner == "ForbiddenByFirewall":
            return SecretSourceError(
                f"{where}: {DOING.get(action, action)} is forbidden (403): the vault's firewall does not allow this network",
                hint="allow this address in the vault's networking settings, or run keyturn from an allowed network",
            )
        permission = PERMISSION.get(action, action)
        role = "Key Vault Secrets Officer" if permission == "set" else "Key Vault Secrets User"
        hint = f"grant the signed-in identity the {role} role on the vault, or an access policy with secrets {permission}"
        if inner not in (None, "AccessDenied", "ForbiddenByRbac"):  # a reason keyturn does not know: say it as is
            return SecretSourceError(
                f"{where}: {DOING.get(action, action)} is forbidden (403, {one_line(inner, limit=60)})", hint=hint
            )
        return SecretSourceError(
            f"{where}: {DOING.get(action, action)} is forbidden (403): the signed-in identity lacks the secrets {permission} "
            f"permission on vault {self.name}",
            hint=hint,
        )

    def get(self, secret: str, version: str | None = None) -> Any:
        return self._call(lambda: self._client.get_secret(secret, version), READ, secret, version)

    def versions(self, secret: str) -> list[Any]:
        """Every version's properties, page by page within bounds (MAX_VERSIONS, MAX_PAGES, no nextLink twice)."""
        from azure.core.exceptions import ResourceNotFoundError

        def listing() -> list[Any]:
            bounds = Listing(
                f"{self._where(secret)}: {DOING[LIST_VERSIONS]}",
                urlsplit(self.url).netloc,
                items="versions",
                cursor="nextLink",
                max_items=MAX_VERSIONS,
            )
            out: list[Any] = []
            pages = self._client.list_properties_of_secret_versions(secret).by_page()
            try:
                for page in pages:
                    items = list(page)
                    bounds.page(len(items))
                    out.extend(items)
                    if pages.continuation_token:  # type: ignore[attr-defined]
                        bounds.next(pages.continuation_token)  # type: ignore[attr-defined]
            except ResourceNotFoundError:
                return []
            return out

        return self._call(listing, LIST_VERSIONS, secret)

    def set(self, secret: str, value: str, **kwargs: Any) -> Any:
        """SetSecret, which adds a version each time: never repeated blindly (app.net.with_retries, not idempotent).
        A failed connection or a 429 wrote nothing: sent again. After a failure that may have written it (a
        timeout, a reset, a 5xx, an unreadable answer, one too large) the versions are read back: a version with
        these tags and this value is the one we wrote; only when there is none is it written again."""

        def once() -> Any:
            try:
                return self._client.set_secret(secret, value, **kwargs)
            except Exception as exc:
                if isinstance(exc, LimitExceededError):  # the answer was too large: it may be written
                    log.warning("%s -> %s", self._tried(WRITE, secret), exc.message)
                    written = self._check_written(secret, value, kwargs.get("tags"), exc.message)
                    if written is not None:
                        return written
                    # not written; a server that answers like that is not asked again
                    raise SecretSourceError(f"{self._tried(WRITE, secret)} failed: {exc.message}", hint=exc.hint) from None
                failure = self._transient(exc)
                if failure is None:
                    raise self._fail(exc, WRITE, secret) from None
                raise failure from None

        def unknown(failure: Transient, problems: list[str]) -> Any:
            written = self._check_written(secret, value, kwargs.get("tags"), failure.problem)
            if written is not None:
                return written
            raise failure.not_done()  # read back: not there, so writing it again makes no second version

        return with_retries(
            once,
            idempotent=False,
            wait_out_rate_limit=True,  # refused: nothing written; the new token already exists, so wait
            unknown=unknown,
            gave_up=lambda _failure, problems: self._gave_up(WRITE, secret, problems),
            sleep=self.sleep,
            log=log,
            call=self._tried(WRITE, secret),
        )

    def _check_written(self, secret: str, value: str, tags: dict[str, str] | None, problem: str) -> Any | None:
        """After a SetSecret that failed with ``problem`` but may have written: the version it wrote, or None."""
        try:
            written = self._written(secret, value, tags)
        except KeyturnError as check:
            raise SecretSourceError(
                f"{self._tried(WRITE, secret)} failed ({problem}) and whether it happened cannot be checked: {check.message}",
                hint="look at the secret's versions before trying again",
            ) from None
        if written is not None:
            log.info("%s: %s: %s, but the version was written", self._where(secret), WRITE, problem)
        return written

    def _written(self, secret: str, value: str, tags: dict[str, str] | None) -> Any | None:
        """The version a failed SetSecret wrote anyway (same tags, same value), or None."""
        versions = sorted(self.versions(secret), key=lambda p: p.created_on or 0)
        candidates = [p for p in versions if (p.tags or None) == (tags or None)] if tags else versions[-1:]
        for props in reversed(candidates[-3:]):
            bundle = self.get(secret, props.version)
            if bundle.value is not None and hmac.compare_digest(bundle.value.encode(), value.encode()):
                return bundle
        return None

    def update(self, secret: str, version: str, **kwargs: Any) -> Any:
        """UpdateSecret sets the same properties again when repeated: retried like a read."""
        return self._call(
            lambda: self._client.update_secret_properties(secret, version, **kwargs), UPDATE, secret, version
        )

    def close(self) -> None:
        self._client.close()


def _inner_code(exc: Any) -> str | None:
    """The inner error code of a Key Vault error ({"error": {"code": "Forbidden", "innererror": {"code": ...}}})."""
    inner = getattr(getattr(exc, "error", None), "innererror", None)
    code = inner.get("code") if isinstance(inner, dict) else None
    return str(code) if code else None


_CLIENTS: dict[tuple[int, str], tuple[Config, VaultClient]] = {}


def vault_client(config: Config, name: str) -> VaultClient:
    """One client per (config, vault) so its bearer token is reused across calls.

    The config is kept beside its client so its id() cannot be reused by another config object."""
    key = (id(config), name)
    if key not in _CLIENTS:
        _CLIENTS[key] = (config, VaultClient(config, name))
    return _CLIENTS[key][1]
