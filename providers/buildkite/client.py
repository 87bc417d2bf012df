"""Buildkite's GraphQL API (gql over httpx) and REST ``/v2/access-token``.

Awkward parts handled here: errors inside HTTP 200 (``{"errors": [{"message"}]}``), a refused GraphQL call
explained by the token's scopes (``GET /v2/access-token``), 429 with ``RateLimit-Reset`` (waited out and
retried for queries only), mutations sent again only when they were not sent at all (app.net's retry policy;
``AmbiguousResultError`` on 5xx, timeout, reset).

gql and httpx are imported on first use. Only method, path or operation name and status are logged
(logger ``keyturn.providers.buildkite``), never a header, a body, a variable or a token value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.errors import AmbiguousResultError, ProviderError, one_line
from app.net import (
    USER_AGENT,
    LimitExceededError,
    Listing,
    Outcome,
    Transient,
    announced_wait,
    answer_failure,
    bounded_hooks,
    check_url,
    http_timeout,
    retry_sleep,
    ssl_context,
    times,
    transport_failure,
    with_retries,
)
from app.secret import SecretValue

log = logging.getLogger("keyturn.providers.buildkite")

DEFAULT_GRAPHQL_URL = "https://graphql.buildkite.com/v1"
DEFAULT_REST_URL = "https://api.buildkite.com"
ACCESS_TOKEN_PATH = "/v2/access-token"  # noqa: S105 (a path)
OPERATIONS_DIR = Path(__file__).with_name("operations")

RATE_LIMIT_CAP = 60.0  # seconds: a longer RateLimit-Reset is not waited for
GRAPHQL_SCOPE = "graphql"  # how /v2/access-token lists "Enable GraphQL API access"
# Cursor paging (ListClusters, 50 a page): the provider follows at most this many pages; an answer that would need
# more is an error here rather than a list silently cut short (and a cursor sent twice is one at once).
MAX_GRAPHQL_PAGES = 100



def parse_time(value: object) -> datetime | None:
    """GraphQL DateTime ('2026-01-02T03:04:05Z') or REST ('2025-07-16 06:07:42 UTC') -> aware UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(" UTC"):
        text = text[:-4].replace(" ", "T") + "+00:00"
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def format_time(dt: datetime) -> str:
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@cache
def operations() -> dict[str, str]:
    """Operation name -> the text of that one operation, from ``operations/*.graphql``."""
    from graphql import OperationDefinitionNode, parse, print_ast

    out: dict[str, str] = {}
    for path in sorted(OPERATIONS_DIR.glob("*.graphql")):
        for definition in parse(path.read_text(encoding="utf-8")).definitions:
            if isinstance(definition, OperationDefinitionNode) and definition.name is not None:
                out[definition.name.value] = print_ast(definition)
    return out


def rate_limit_wait(headers: Any) -> float | None:
    """Seconds until the rate-limit window resets (``RateLimit-Reset``, else ``Retry-After``), capped."""
    return announced_wait(headers, ("RateLimit-Reset", "Retry-After"), RATE_LIMIT_CAP)


def _make_transport_class() -> Any:
    """gql's HTTPXTransport that remembers the HTTP status and never logs payloads (they hold token values)."""
    from gql.transport.httpx import HTTPXTransport

    class QuietHTTPXTransport(HTTPXTransport):  # type: ignore[misc]
        last_status: int | None = None

        def _prepare_request(self, request: Any, *, extra_args: Any = None, upload_files: bool = False) -> Any:
            post_args: dict[str, Any] = {"json": request.payload}
            if extra_args:
                post_args.update(extra_args)
            return post_args

        def _get_json_result(self, response: Any) -> Any:
            from gql.transport.exceptions import TransportProtocolError, TransportServerError

            self.response_headers = response.headers
            self.last_status = response.status_code
            try:
                return self.json_deserialize(response.content)
            except Exception:
                if response.status_code >= 400:
                    raise TransportServerError(f"HTTP {response.status_code}", response.status_code) from None
                raise TransportProtocolError("not a GraphQL answer: the body is not JSON") from None  # never the body

    return QuietHTTPXTransport


class AccessTokenInfo:
    """What ``GET /v2/access-token`` says about the token that made the call (never its value)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.uuid = str(body.get("uuid") or "")
        scopes = body.get("scopes")
        self.scopes = tuple(str(s) for s in scopes) if isinstance(scopes, list) else ()
        self.description = str(body.get("description") or "")
        self.created_at = parse_time(body.get("created_at"))
        self.expires_at = parse_time(body.get("expires_at"))
        user = body.get("user")
        self.user = str(user.get("email") or user.get("name") or "") if isinstance(user, dict) else ""

    @property
    def graphql(self) -> bool:
        return GRAPHQL_SCOPE in self.scopes


class BuildkiteClient:
    """GraphQL (as ``token``) and REST ``/v2/access-token`` (as any token) for one organization.

    ``transport`` (an ``httpx.BaseTransport``) replaces the network in tests; ``sleep`` the rate-limit waits.
    """

    def __init__(
        self,
        account_name: str,
        organization: str,
        *,
        token: Callable[[], SecretValue],
        graphql_url: str | None = None,
        rest_url: str | None = None,
        ca_bundle: Path | None = None,
        transport: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.account_name = account_name
        self.organization = organization
        self.graphql_url = check_url(graphql_url or DEFAULT_GRAPHQL_URL, f"accounts.{account_name}.graphql_url")
        self.rest_url = check_url(rest_url or DEFAULT_REST_URL, f"accounts.{account_name}.rest_url")
        self._token = token
        self._ca_bundle = ca_bundle
        self._transport = transport
        # time.sleep (the provider's default) becomes the scaled retry_sleep (KEYTURN_RETRY_SLEEP_SCALE)
        self._sleep = retry_sleep if sleep is time.sleep else sleep
        self._sessions: dict[str, Any] = {}  # fingerprint of the bearer -> (gql client, session)
        self._rest: Any = None
        self._org_id: str | None = None
        self._listings: dict[str, Listing] = {}  # operation -> the cursor-paged listing it is in the middle of

    # -- plumbing ----------------------------------------------------------------------------------

    def _httpx_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "verify": ssl_context(self._ca_bundle),
            "timeout": http_timeout(),
            "event_hooks": bounded_hooks(),  # the body limit, for gql's client and the REST one
        }
        if self._transport is not None:
            kwargs["transport"] = self._transport
        return kwargs

    def _session(self, bearer: SecretValue) -> Any:
        key = bearer.fingerprint
        if key not in self._sessions:
            from gql import Client

            transport = _make_transport_class()(
                url=self.graphql_url,
                headers={
                    "Authorization": f"Bearer {bearer.reveal()}",
                    "User-Agent": USER_AGENT,
                    "Accept": "application/json",
                },
                **self._httpx_kwargs(),
            )
            client = Client(transport=transport, fetch_schema_from_transport=False)
            self._sessions[key] = (client, client.connect_sync())
        return self._sessions[key]

    def _rest_client(self) -> Any:
        if self._rest is None:
            import httpx

            self._rest = httpx.Client(headers={"User-Agent": USER_AGENT}, **self._httpx_kwargs())
        return self._rest

    def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for client, _session in sessions.values():
            try:
                client.close_sync()
            except Exception:  # noqa: S110 (closing is best effort)
                pass
        if self._rest is not None:
            self._rest.close()
            self._rest = None

    # -- GraphQL -----------------------------------------------------------------------------------

    def graphql(
        self,
        operation: str,
        variables: dict[str, Any] | None = None,
        *,
        what: str,
        bearer: SecretValue | None = None,
        ambiguous_hint: str = "list the tokens by description before trying again",
    ) -> dict[str, Any]:
        """Run one named operation; its ``data``. Queries are retried (5xx, 429, network); mutations only when
        the request never left (a failed connection)."""
        from gql import GraphQLRequest
        from gql.transport.exceptions import (
            TransportConnectionFailed,
            TransportProtocolError,
            TransportQueryError,
            TransportServerError,
        )

        text = operations().get(operation)
        if text is None:
            raise ProviderError(f"{what}: keyturn has no GraphQL operation {operation!r}")
        mutation = text.lstrip().startswith("mutation")
        # Never send null: a variable without a value is left out (Buildkite treats null differently).
        values = {k: v for k, v in (variables or {}).items() if v is not None}
        token = bearer if bearer is not None else self._token()
        redact = (token.reveal(),)
        host = urlsplit(self.graphql_url).netloc
        # app.net's policy: queries are tried again after timeouts, resets, 5xx, 429 and unreadable answers;
        # a mutation only when it was not sent (a failed connection). A 429 stops a mutation with "try again in
        # N s", and after a timeout, a reset, a 5xx or an unreadable answer it may have happened, which only the
        # caller can find out (AmbiguousResultError).

        def once() -> dict[str, Any]:
            _client, session = self._session(token)
            transport = session.transport
            transport.last_status = None
            request = GraphQLRequest(text, variable_values=values or None, operation_name=operation)
            errors: list[Any] | None = None
            data: Any = None
            malformed = False
            try:
                data = session.execute(request)
            except TransportQueryError as exc:
                errors = list(exc.errors or []) or [{"message": str(exc)}]
            except TransportConnectionFailed as exc:
                if isinstance(exc.__cause__, LimitExceededError):  # too large an answer: never retried
                    if mutation:
                        raise AmbiguousResultError(
                            f"{what}: {operation}: {exc.__cause__.message}; it may or may not have happened",
                            hint=ambiguous_hint,
                        ) from None
                    raise LimitExceededError(f"{what}: {exc.__cause__.message}", hint=exc.__cause__.hint) from None
                raise transport_failure(exc, self.graphql_url) from None
            except TransportProtocolError:
                malformed = True
            except TransportServerError:
                errors = None
            status = transport.last_status or 0
            headers = transport.response_headers
            log.info("POST graphql %s -> %d", operation, status)
            if status == 429:
                raise Transient("HTTP 429", Outcome.RATE_LIMITED, wait=rate_limit_wait(headers), status=429)
            if status >= 500 or (status == 0 and errors is None) or (malformed and status < 400):
                said = f"HTTP {status}" if status >= 500 or not malformed else f"an unreadable answer (HTTP {status})"
                wait = announced_wait(headers, cap=RATE_LIMIT_CAP) if status >= 500 else None
                raise Transient(said, Outcome.UNKNOWN, wait=wait, status=status)
            if status in (401, 403):
                raise ProviderError(self._refused(what, token, errors, status))
            if errors:
                message = errors[0].get("message") if isinstance(errors[0], dict) else errors[0]
                raise ProviderError(f"{what}: {one_line(message or 'Buildkite reported an error', redact=redact)}")
            if status >= 400:
                raise ProviderError(f"{what}: Buildkite answered HTTP {status}")
            if not isinstance(data, dict):
                if mutation:
                    raise AmbiguousResultError(f"{what}: Buildkite answered without data", hint=ambiguous_hint)
                raise ProviderError(f"{what}: Buildkite answered without data")
            if not mutation:
                self._bound_listing(operation, variables or {}, data, what)
            return data

        def unknown(failure: Transient, problems: list[str]) -> dict[str, Any]:
            said = f"Buildkite answered {failure.problem}" if failure.status is not None else f"{failure.problem} ({host})"
            raise AmbiguousResultError(f"{what}: {operation}: {said}; it may or may not have happened", hint=ambiguous_hint)

        def gave_up(failure: Transient, problems: list[str]) -> ProviderError:
            if failure.outcome is Outcome.RATE_LIMITED:
                return ProviderError(
                    f"{what}: {operation}: Buildkite is rate limiting this organization (HTTP 429 {times(len(problems))})",
                    hint=f"try again in {failure.wait:.0f} s" if failure.wait is not None else "try again later",
                )
            return ProviderError(_gave_up(what, operation, host, problems))

        return with_retries(
            once,
            idempotent=not mutation,
            unknown=unknown,
            gave_up=gave_up,
            sleep=self._sleep,
            log=log,
            call=f"POST graphql {operation}",
        )

    def _bound_listing(self, operation: str, variables: dict[str, Any], data: dict[str, Any], what: str) -> None:
        """Invariant 9 for every connection (``edges``) in a query's answer: at most MAX_ITEMS items, and for a
        cursor-paged operation (one that takes ``after``) at most MAX_GRAPHQL_PAGES pages and no cursor twice.
        Checked here, where every listing passes, so no caller can forget it."""
        connections = _connections(data)
        if not connections:
            return
        host = urlsplit(self.graphql_url).netloc
        noun = connections[0][0]
        if "after" in variables:
            if variables["after"] is None or operation not in self._listings:
                self._listings[operation] = Listing(what, host, items=noun, cursor="cursor", max_pages=MAX_GRAPHQL_PAGES)
            listing = self._listings[operation]
        else:
            listing = Listing(what, host, items=noun, max_pages=1)
        listing.page(sum(len(conn["edges"]) for _name, conn in connections))
        if "after" in variables:
            for _name, conn in connections:
                page = conn.get("pageInfo")
                if isinstance(page, dict) and page.get("hasNextPage") and page.get("endCursor"):
                    listing.next(page["endCursor"])

    def _refused(self, what: str, token: SecretValue, errors: list[Any] | None, status: int) -> str:
        """Why GraphQL refused the token: asks /v2/access-token, so a missing scope is named as such."""
        who = f"the API token of accounts.{self.account_name}"
        try:
            info = self.access_token(token)
        except ProviderError as exc:
            return f"{what}: GraphQL refused {who} (HTTP {status}) and so did the REST API: {exc.message}"
        if info is None:
            return f"{what}: Buildkite does not accept {who}: it is unknown, revoked or expired (HTTP {status})"
        if not info.graphql:
            return (
                f"{what}: {who} lacks GraphQL access (scope 'graphql' missing; it has "
                f"{', '.join(info.scopes) or 'no scopes'}): enable 'GraphQL API access' on the token or create a new one"
            )
        message = ""
        if errors and isinstance(errors[0], dict) and errors[0].get("message"):
            message = ": " + one_line(errors[0]["message"], redact=(token.reveal(),))
        return f"{what}: GraphQL refused {who} (HTTP {status}) although it has GraphQL access{message}"

    def organization_id(self) -> str:
        if self._org_id is None:
            data = self.graphql(
                "GetOrganizationId", {"slug": self.organization}, what=f"could not read organization {self.organization!r}"
            )
            org = data.get("organization")
            if not isinstance(org, dict) or not org.get("id"):
                raise ProviderError(
                    f"Buildkite has no organization {self.organization!r} that the API token of "
                    f"accounts.{self.account_name} can see",
                    hint="check accounts.<name>.organization (the slug) and the token's organization access",
                )
            self._org_id = str(org["id"])
        return self._org_id

    # -- REST /v2/access-token ---------------------------------------------------------------------

    def access_token(self, token: SecretValue, *, what: str = "could not read the API token") -> AccessTokenInfo | None:
        """``GET /v2/access-token`` as ``token``; None when Buildkite does not accept it (401)."""
        response = self._rest_call("GET", token, what=what)
        if response.status_code == 401:
            return None
        if response.status_code != 200:
            raise ProviderError(f"{what}: GET {ACCESS_TOKEN_PATH} -> {response.status_code}{self._rest_message(response, token)}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderError(f"{what}: GET {ACCESS_TOKEN_PATH} answered with a body that is not a JSON object")
        return AccessTokenInfo(body)

    def delete_access_token(self, token: SecretValue, *, what: str) -> bool:
        """``DELETE /v2/access-token`` as ``token``: True when revoked now, False when it was already not accepted."""
        response = self._rest_call("DELETE", token, what=what)
        if response.status_code == 401:
            return False
        if response.status_code not in (200, 204):
            raise ProviderError(f"{what}: DELETE {ACCESS_TOKEN_PATH} -> {response.status_code}{self._rest_message(response, token)}")
        return True

    @staticmethod
    def _rest_message(response: Any, token: SecretValue) -> str:
        try:
            body = response.json()
        except ValueError:
            return ""
        if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"].strip():
            return ": " + one_line(body["message"], redact=(token.reveal(),))
        return ""

    def _rest_call(self, method: str, token: SecretValue, *, what: str) -> Any:
        """GET and DELETE of /v2/access-token are both safe to repeat (a second DELETE answers 401)."""
        import httpx

        url = self.rest_url + ACCESS_TOKEN_PATH
        host = urlsplit(url).netloc
        call = f"{method} {ACCESS_TOKEN_PATH}"

        def once() -> Any:
            headers = {"Authorization": f"Bearer {token.reveal()}", "Accept": "application/json"}
            try:
                response = self._rest_client().request(method, url, headers=headers)
            except LimitExceededError as exc:  # GET and DELETE are both safe: say it, do not retry
                raise LimitExceededError(f"{what}: {exc.message}", hint=exc.hint) from None
            except httpx.TransportError as exc:
                raise transport_failure(exc, url) from None
            status = response.status_code
            log.info("%s -> %d", call, status)
            if status == 429:
                raise Transient("HTTP 429", Outcome.RATE_LIMITED, wait=rate_limit_wait(response.headers), status=429)
            failure = answer_failure(status, response.headers, cap=RATE_LIMIT_CAP)
            if failure is not None:
                raise failure
            if status == 200 and method == "GET" and _malformed(response):
                raise Transient("an unreadable answer (HTTP 200)", Outcome.UNKNOWN, status=status)
            return response

        def gave_up(failure: Transient, problems: list[str]) -> ProviderError:
            if failure.outcome is Outcome.RATE_LIMITED:
                return ProviderError(
                    f"{what}: {call}: Buildkite is rate limiting this token (HTTP 429 {times(len(problems))})",
                    hint=f"try again in {failure.wait:.0f} s" if failure.wait is not None else "try again later",
                )
            return ProviderError(_gave_up(what, call, host, problems))

        return with_retries(once, idempotent=True, gave_up=gave_up, sleep=self._sleep, log=log, call=call)


def _connections(data: Any, name: str = "items", depth: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """The GraphQL connections (objects with ``edges``) in an answer, each with its field's name in words
    ("agentTokens" -> "agent tokens"); not below a connection's own edges, and no deeper than a query nests."""
    if depth > 8 or not isinstance(data, dict):
        return []
    if isinstance(data.get("edges"), list):
        return [(name, data)]
    out: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        words = "".join(f" {c.lower()}" if c.isupper() else c for c in key).strip()
        out.extend(_connections(value, words, depth + 1))
    return out


def _malformed(response: Any) -> bool:
    try:
        body = response.json()
    except ValueError:
        return True
    return not isinstance(body, dict)


def _gave_up(what: str, call: str, host: str, problems: list[str]) -> str:
    """'...: ListClusters: HTTP 503 after 3 attempts (graphql.buildkite.com); try again later' (or the mix)."""
    said = problems[0] if len(set(problems)) == 1 else ", then ".join(problems)
    return f"{what}: {call}: {said} after {len(problems)} attempts ({host}); try again later"
