"""HTTP clients with keyturn's transport rules: HTTPS with certificate checks, plain HTTP only to loopback, and bounded
input (invariant 9): a body limit on every client, bounds on paginated listings."""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from app.errors import KeyturnError, ProviderError

USER_AGENT = "keyturn/0.1 (+https://github.com/keyturn)"
T = TypeVar("T")

# Retries (one policy for every client, see with_retries below): how many attempts, the backoff between them
# (1 s, 2 s, ...) and the longest server-announced wait (Retry-After) honoured (a vendor may pass its own cap).
MAX_ATTEMPTS = 3
RETRY_WAIT_CAP = 30.0
DEFAULT_TIMEOUT = 30.0

# Bounds on what a server may send (invariant 9): past them keyturn stops with one line instead of buffering a
# body or following pages without end. The answers keyturn reads are KiB (a page of tokens, a security page):
# 8 MiB is far past any of them; 10,000 tokens is more than any bot holds; 1,000 pages is past both at any size.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_PAGES = 1000
MAX_ITEMS = 10_000

# Tests of the real CLI shorten the timeout and the waits through the environment (a child process
# cannot be handed a fake clock): KEYTURN_HTTP_TIMEOUT (seconds) and KEYTURN_RETRY_SLEEP_SCALE (factor).
TIMEOUT_ENV = "KEYTURN_HTTP_TIMEOUT"
SLEEP_SCALE_ENV = "KEYTURN_RETRY_SLEEP_SCALE"


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 else default


def http_timeout() -> float:
    """Seconds a call may take to connect, or between two reads of its answer (default 30)."""
    return _env_float(TIMEOUT_ENV, DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT


def retry_sleep(seconds: float) -> None:
    """Wait before a retry (scaled by KEYTURN_RETRY_SLEEP_SCALE; clients take a ``sleep`` to replace it)."""
    time.sleep(max(seconds, 0.0) * _env_float(SLEEP_SCALE_ENV, 1.0))


def times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def said_of(problems: list[str]) -> str:
    """What the attempts met: "HTTP 503 3 times", or "timed out, then HTTP 503" when they differ."""
    distinct = list(dict.fromkeys(problems))
    return f"{distinct[0]} {times(len(problems))}" if len(distinct) == 1 else ", then ".join(problems)


# -- the retry policy (one for every HTTP client) -------------------------------------------------------
#
# Every failure an attempt may meet is put in one of three kinds, the same for every client:
#
# - NOT_SENT: the request never reached the server (a connect failure, a connect timeout), or the caller has
#   checked that it had no effect. Tried again for any call, a creation too.
# - RATE_LIMITED: HTTP 429; the server did nothing and may have said when to come back (Retry-After, or a
#   vendor's reset header), which is waited (capped) instead of the backoff. Tried again for idempotent calls
#   and for writes that ask for it (``wait_out_rate_limit``: a Key Vault version, a connector's setting, made
#   after the new token exists); a creation of a token stops at once with "try again in N s".
# - UNKNOWN: the request was sent and its outcome is unknown (a read timeout, a reset after sending, a 5xx, an
#   answer that cannot be read). Tried again for idempotent calls only; for any other call the caller's own
#   check decides (``unknown``): AmbiguousResultError for the engine to reconcile, or read back what was
#   written and send it again only when it is not there.
#
# Never tried again: an untrusted certificate (raise_if_certificate: one line, never bypassed), an answer past
# a bound (LimitExceededError), and every other answer (4xx...): an attempt raises those as they are.


class Outcome(enum.Enum):
    NOT_SENT = "not sent"
    RATE_LIMITED = "rate limited"
    UNKNOWN = "outcome unknown"


class Transient(Exception):
    """One attempt's failure that another attempt may cure, raised by the attempt for :func:`with_retries`.

    ``problem`` says what happened in words for the one-line message ("timed out", "HTTP 503", "an unreadable
    answer (HTTP 200)"); ``wait`` is what the server announced (seconds, capped); ``status`` the HTTP status of
    an answer (None for a failed connection). Holds no header, body or value."""

    def __init__(self, problem: str, outcome: Outcome, *, wait: float | None = None, status: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.outcome, self.wait, self.status = problem, outcome, wait, status

    def reworded(self, problem: str) -> Transient:
        return Transient(problem, self.outcome, wait=self.wait, status=self.status)

    def not_done(self) -> Transient:
        """The same failure once the caller has checked that the call had no effect: as safe to send again as a
        request that was never sent."""
        return Transient(self.problem, Outcome.NOT_SENT, wait=self.wait, status=self.status)


def announced_wait(headers: Any, names: tuple[str, ...] = ("Retry-After",), cap: float = RETRY_WAIT_CAP) -> float | None:
    """The first of ``names`` the answer carries, as seconds from now (a number, or an HTTP date), between 0
    and ``cap``; None when none is there or readable."""
    for name in names:
        value = headers.get(name) if headers is not None else None
        if not value:
            continue
        try:
            seconds = float(value)
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
            except (TypeError, ValueError):
                continue
        return min(max(seconds, 0.0), cap)
    return None


def answer_failure(
    status: int,
    headers: Any,
    *,
    rate_limit_headers: tuple[str, ...] = ("Retry-After",),
    cap: float = RETRY_WAIT_CAP,
) -> Transient | None:
    """An HTTP answer another attempt may cure: 429 (RATE_LIMITED, with the wait ``rate_limit_headers`` announce)
    or any 5xx (UNKNOWN: the server may have acted; a Retry-After it sends is honoured); None for the rest."""
    if status == 429:
        return Transient("HTTP 429", Outcome.RATE_LIMITED, wait=announced_wait(headers, rate_limit_headers, cap), status=429)
    if 500 <= status < 600:
        return Transient(f"HTTP {status}", Outcome.UNKNOWN, wait=announced_wait(headers, ("Retry-After",), cap), status=status)
    return None


def transport_failure(exc: BaseException, url: str) -> Transient:
    """An httpx transport failure (or one that wraps it, as gql does), classified; a failed certificate check is
    raised as its one-line error instead (never tried again)."""
    import httpx

    raise_if_certificate(exc, url)
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and not isinstance(cur, httpx.HTTPError):
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    if isinstance(cur, httpx.ConnectTimeout):
        return Transient("could not connect (timed out)", Outcome.NOT_SENT)
    if isinstance(cur, httpx.ConnectError):
        return Transient("could not connect", Outcome.NOT_SENT)
    if isinstance(cur, httpx.TimeoutException):
        return Transient("timed out", Outcome.UNKNOWN)
    if isinstance(cur, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return Transient("the connection was reset", Outcome.UNKNOWN)
    if isinstance(cur, httpx.DecodingError):
        return Transient("an unreadable answer", Outcome.UNKNOWN)
    return Transient("the connection failed", Outcome.UNKNOWN)


def may_repeat(failure: Transient, *, idempotent: bool, wait_out_rate_limit: bool | None = None) -> bool:
    """Whether the policy sends the call again after ``failure`` (the attempts left aside)."""
    if failure.outcome is Outcome.NOT_SENT:
        return True
    if failure.outcome is Outcome.RATE_LIMITED:
        return idempotent if wait_out_rate_limit is None else wait_out_rate_limit
    return idempotent


def with_retries(
    attempt: Callable[[], T],
    *,
    idempotent: bool,
    gave_up: Callable[[Transient, list[str]], BaseException],
    unknown: Callable[[Transient, list[str]], T] | None = None,
    wait_out_rate_limit: bool | None = None,
    sleep: Callable[[float], None] | None = None,
    log: logging.Logger | None = None,
    call: str = "call",
) -> T:
    """Run ``attempt`` (one request) under keyturn's one retry policy, on tenacity: at most MAX_ATTEMPTS attempts,
    which a :class:`Transient` it raises may bring about (see the kinds above); any other exception goes through.

    Between attempts: the wait the server announced, else the backoff (1 s, 2 s), through ``sleep`` (default
    :func:`retry_sleep`, scaled by KEYTURN_RETRY_SLEEP_SCALE). ``problems`` (what each attempt met, in order) goes to:

    - ``unknown(failure, problems)`` when a call that is not ``idempotent`` met an UNKNOWN outcome: it returns
      the result (the caller found its write done), raises its own error (AmbiguousResultError...), or raises
      ``failure.not_done()`` (checked: nothing happened) to have it sent again. Without it, ``gave_up`` is raised.
    - ``gave_up(failure, problems)`` when the policy stops: the one-line error it returns is raised."""
    import tenacity

    problems: list[str] = []
    logger = log or logging.getLogger("keyturn.net")
    backoff_wait = tenacity.wait_exponential(multiplier=1, exp_base=2)

    def once() -> T:
        try:
            return attempt()
        except Transient as failure:
            problems.append(failure.problem)
            logger.warning("%s -> %s (attempt %d/%d)", call, failure.problem, len(problems), MAX_ATTEMPTS)
            if failure.outcome is Outcome.UNKNOWN and not idempotent:
                if unknown is None:
                    raise gave_up(failure, list(problems)) from None
                return unknown(failure, list(problems))
            raise

    def repeat(exc: BaseException) -> bool:
        return isinstance(exc, Transient) and may_repeat(exc, idempotent=idempotent, wait_out_rate_limit=wait_out_rate_limit)

    def wait(state: tenacity.RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, Transient) and failure.wait is not None:
            if failure.outcome is Outcome.RATE_LIMITED:
                logger.info("rate limited: waiting %.0f s", failure.wait)
            return failure.wait
        return float(backoff_wait(state))

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(MAX_ATTEMPTS),
        retry=tenacity.retry_if_exception(repeat),
        wait=wait,
        sleep=sleep or retry_sleep,
        reraise=True,
    )
    try:
        return retrying(once)
    except Transient as failure:
        raise gave_up(failure, list(problems)) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> str:
    """Refuse URLs keyturn must not send credentials to; return the URL without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise KeyturnError(f"{what}: {url!r} is not an http(s) URL", hint="write https://host/...")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise KeyturnError(f"{what}: plain HTTP to {parts.hostname} is refused", hint="use https://")
    return url.rstrip("/")


def certificate_problem(exc: BaseException) -> str | None:
    """The reason when ``exc`` is (or was caused by) a failed certificate check, e.g. "self-signed certificate in
    certificate chain"; None otherwise. httpx, requests and azure-core each wrap ssl's error their own way."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return str(cur.verify_message or cur.reason or "certificate verify failed")
        for arg in getattr(cur, "args", ()):  # urllib3 keeps the ssl error as an argument
            if isinstance(arg, ssl.SSLCertVerificationError):
                return str(arg.verify_message or arg.reason or "certificate verify failed")
        cur = cur.__cause__ or cur.__context__
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("CERTIFICATE_VERIFY_FAILED", 1)[1].strip(" ]:)(")
        return detail.split("(_ssl.c", 1)[0].strip(" ()") or "certificate verify failed"
    return None


def certificate_error(host: str, reason: str) -> KeyturnError:
    """One line for an untrusted server certificate: never retried, never bypassed."""
    return KeyturnError(
        f"the certificate of {host} is not trusted ({reason})",
        hint="set settings.ca_bundle to the CA that signed it, or fix the server's certificate chain",
    )


def raise_if_certificate(exc: BaseException, url: str) -> None:
    """Call first in a transport-error handler: a certificate failure is its own one-line error."""
    reason = certificate_problem(exc)
    if reason is not None:
        raise certificate_error(urlsplit(url).netloc or url, reason) from None


@cache
def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """System trust store plus the configured extra CA (the sandbox's own)."""
    ctx = ssl.create_default_context()
    if ca_bundle is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise KeyturnError(f"settings.ca_bundle: cannot load {ca_bundle}: {exc}") from None
    return ctx


def http_client(ca_bundle: Path | None, *, timeout: float | None = None, **kwargs: Any) -> Any:
    """An httpx.Client with keyturn's TLS settings and body limit. No cookie persistence is relied upon."""
    import httpx  # imported on first use: ~190 ms

    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    return httpx.Client(
        verify=ssl_context(ca_bundle),
        timeout=timeout or http_timeout(),
        headers=headers,
        event_hooks=bounded_hooks(kwargs.pop("event_hooks", None)),
        **kwargs,
    )


# -- bounded input (invariant 9) ------------------------------------------------------------------------


class LimitExceededError(ProviderError):
    """A server's answer went past one of keyturn's bounds (body size, pages, items); keyturn stopped reading.

    Raised by reads, so nothing was changed; a client whose *write* met it turns it into AmbiguousResultError."""


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n:,} bytes"


def body_limit_error(host: str, call: str, limit: int, *, announced: int | None = None) -> LimitExceededError:
    if announced is not None:
        said = f"announced a body of {_size(announced)}, over keyturn's {_size(limit)} limit; keyturn did not read it"
    else:
        said = f"sent more than keyturn's {_size(limit)} limit; keyturn stopped reading it"
    return LimitExceededError(
        f"{host} answered {call} and {said}",
        hint="no answer keyturn needs is that large: check that the configured URL points at the service itself, "
        "not at a proxy, a file server or another site",
    )


def _announced(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _inflater(encoding: str) -> Any:
    """A zlib decompressor for one Content-Encoding layer (gzip, or deflate with or without its zlib header)."""
    import zlib

    return zlib.decompressobj(zlib.MAX_WBITS | 32 if encoding != "deflate" else zlib.MAX_WBITS)


def _bounded(
    chunks: Iterator[bytes], limit: int, error: Callable[[], Exception], encoding: str | None
) -> Iterator[bytes]:
    """The body's bytes, decompressed here when ``encoding`` is given (so a small gzip cannot unpack into GiB), and an
    error as soon as more than ``limit`` bytes have come (never more than ``limit`` + one chunk is held)."""
    import zlib

    total = 0
    inflate = _inflater(encoding) if encoding else None
    first = True
    for chunk in chunks:
        if inflate is not None:
            try:
                data = inflate.decompress(chunk, limit - total + 1)
            except zlib.error:
                if not (first and encoding == "deflate"):
                    raise
                inflate = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send it
                data = inflate.decompress(chunk, limit - total + 1)
            first = first and not chunk
        else:
            data = chunk
        total += len(data)
        if total > limit:
            raise error()
        yield data
    if inflate is not None:
        data = inflate.flush()
        if total + len(data) > limit:
            raise error()
        yield data


def _single_encoding(values: list[str], host: str, call: str) -> str | None:
    """The one gzip/deflate layer keyturn decodes itself (None: none); more layers than one are refused."""
    layers = [v.strip().lower() for v in values if v.strip() and v.strip().lower() != "identity"]
    known = [v for v in layers if v in ("gzip", "x-gzip", "deflate")]
    if len(known) > 1:
        raise LimitExceededError(
            f"{host} answered {call} compressed {len(known)} times ({', '.join(layers)}); keyturn decodes one layer",
            hint="check that the configured URL points at the service itself, not at a proxy or another site",
        )
    return known[0] if known else None


@cache
def _bounded_stream_class() -> Any:
    import httpx

    class BoundedStream(httpx.SyncByteStream):
        def __init__(self, inner: Any, limit: int, error: Callable[[], Exception], encoding: str | None) -> None:
            self._inner, self._limit, self._error, self._encoding = inner, limit, error, encoding

        def __iter__(self) -> Iterator[bytes]:
            try:
                yield from _bounded(iter(self._inner), self._limit, self._error, self._encoding)
            except Exception as exc:
                import zlib

                if isinstance(exc, zlib.error):
                    raise httpx.DecodingError(f"the compressed body is corrupt: {exc}") from None
                raise

        def close(self) -> None:
            self._inner.close()

    return BoundedStream


def limit_body(max_bytes: int = MAX_BODY_BYTES) -> Callable[[Any], None]:
    """An httpx response hook (runs before the body is read): a Content-Length over ``max_bytes`` is refused unread,
    and a body that grows past it (decompressed) stops being read. Raises LimitExceededError, which is no
    httpx.TransportError: clients do not retry it."""

    def hook(response: Any) -> None:
        import httpx

        request = response.request
        host, call = urlsplit(str(request.url)).netloc, f"{request.method} {request.url.path}"
        announced = _announced(response.headers.get("Content-Length"))
        if announced is not None and announced > max_bytes:
            raise body_limit_error(host, call, max_bytes, announced=announced)
        try:
            content = response.content  # already in memory (an answer built in a test): just measure it
        except httpx.ResponseNotRead:
            pass
        else:
            if len(content) > max_bytes:
                raise body_limit_error(host, call, max_bytes)
            return
        encoding = _single_encoding(response.headers.get_list("Content-Encoding", split_commas=True), host, call)
        if encoding is not None:
            del response.headers["Content-Encoding"]  # decoded below, bounded; httpx must not decode it again
        response.stream = _bounded_stream_class()(
            response.stream, max_bytes, lambda: body_limit_error(host, call, max_bytes), encoding
        )

    return hook


def bounded_hooks(
    event_hooks: dict[str, list[Any]] | None = None, max_bytes: int = MAX_BODY_BYTES
) -> dict[str, list[Any]]:
    """``event_hooks`` for an httpx.Client (or gql's HTTPXTransport) with the body limit added."""
    hooks = {k: list(v) for k, v in (event_hooks or {}).items()}
    hooks.setdefault("response", []).append(limit_body(max_bytes))
    return hooks


class _BoundedRaw:
    """``requests``' raw urllib3 response, its decoded chunks counted (requests reads ``raw.stream``)."""

    def __init__(self, raw: Any, limit: int, error: Callable[[], Exception]) -> None:
        self._raw, self._limit, self._error = raw, limit, error

    def stream(self, amt: int | None = None, decode_content: bool | None = None) -> Iterator[bytes]:
        # urllib3 (>= 2.6) decodes at most ``amt`` bytes per read, so counting decoded chunks bounds memory too
        try:
            yield from _bounded(self._raw.stream(amt, decode_content=decode_content), self._limit, self._error, None)
        except LimitExceededError:
            self._raw.close()  # the rest is never read: drop the connection rather than return it to the pool
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def limit_requests_body(max_bytes: int = MAX_BODY_BYTES) -> Callable[..., Any]:
    """The same limit as :func:`limit_body` as a ``requests`` response hook (the Azure SDK's transport)."""

    def hook(response: Any, *args: Any, **kwargs: Any) -> Any:
        request = response.request
        host, call = urlsplit(request.url).netloc, f"{request.method} {urlsplit(request.url).path}"
        announced = _announced(response.headers.get("Content-Length"))
        if announced is not None and announced > max_bytes:
            if response.raw is not None:
                response.close()  # the connection goes, unread
            raise body_limit_error(host, call, max_bytes, announced=announced)
        response.raw = _BoundedRaw(response.raw, max_bytes, lambda: body_limit_error(host, call, max_bytes))
        return response

    return hook


def bounded_requests_session(max_bytes: int = MAX_BODY_BYTES) -> Any:
    """A requests.Session as azure-core makes its own (no urllib3 retries, no redirects) plus the body limit.

    Handed to an Azure SDK client as ``session=``; the SDK's transport then owns and closes it."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    adapter = HTTPAdapter(max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    for prefix in ("http://", "https://"):
        session.mount(prefix, adapter)
    session.hooks["response"].append(limit_requests_body(max_bytes))
    return session


def limit_exceeded(exc: BaseException) -> LimitExceededError | None:
    """The LimitExceededError ``exc`` is, or was caused by (an SDK may wrap it, e.g. azure-identity's
    "Authentication failed: ..."); None otherwise."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, LimitExceededError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


class Listing:
    """Bounds on one paginated listing: at most ``max_pages`` pages and ``max_items`` items, and a cursor the server
    already sent is an error, not a loop. ``what`` starts each message ("could not list the PATs of contoso")."""

    def __init__(
        self,
        what: str,
        host: str,
        *,
        items: str = "tokens",
        cursor: str = "continuation token",
        max_pages: int = MAX_PAGES,
        max_items: int = MAX_ITEMS,
        hint: str = "try again later; if it persists, the server or a proxy in front of it is misbehaving",
    ) -> None:
        self.what, self.host, self.noun, self.cursor = what, host, items, cursor
        self.max_pages, self.max_items, self.hint = max_pages, max_items, hint
        self.pages = 0
        self.count = 0
        self._seen: set[str] = set()

    def page(self, n_items: int) -> None:
        """One page arrived holding ``n_items`` items."""
        self.pages += 1
        self.count += n_items
        if self.count > self.max_items:
            raise LimitExceededError(
                f"{self.what}: {self.host} listed more than {self.max_items:,} {self.noun}; keyturn stopped reading",
                hint=f"remove {self.noun} nobody uses, or check that the configured URL points at the service",
            )

    def next(self, cursor: object) -> None:
        """The page just counted points at another page (``cursor``): refuse a repeat, or one page too many."""
        key = str(cursor)
        if key in self._seen:
            raise LimitExceededError(
                f"{self.what}: {self.host} repeated a {self.cursor} it had already sent (after {self.pages} pages); "
                "the listing would never end",
                hint=self.hint,
            )
        self._seen.add(key)
        if self.pages >= self.max_pages:
            raise LimitExceededError(
                f"{self.what}: {self.host} had more than {self.max_pages:,} pages of {self.noun}; keyturn stopped reading",
                hint=self.hint,
            )
