"""HTTP clients with keyturn's transport rules: HTTPS with certificate checks, plain HTTP only to loopback."""

from __future__ import annotations

import ipaddress
import os
import ssl
import time
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.errors import KeyturnError

USER_AGENT = "keyturn/0.1 (+https://github.com/keyturn)"

# Retries (idempotent calls only; creations are never repeated blindly): how many attempts, the backoff
# between them (1 s, 2 s, ...) and the longest server-announced wait (Retry-After, RateLimit-Reset) honoured.
MAX_ATTEMPTS = 3
RETRY_WAIT_CAP = 30.0
DEFAULT_TIMEOUT = 30.0

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


def backoff(attempt: int) -> float:
    """The wait after failed attempt ``attempt`` (1-based): 1 s, 2 s, 4 s..."""
    return float(2 ** (attempt - 1))


def times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def said_of(problems: list[str]) -> str:
    """What the attempts met: "HTTP 503 3 times", or "timed out, then HTTP 503" when they differ."""
    distinct = list(dict.fromkeys(problems))
    return f"{distinct[0]} {times(len(problems))}" if len(distinct) == 1 else ", then ".join(problems)


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
    """An httpx.Client with keyturn's TLS settings. No cookie persistence is relied upon."""
    import httpx  # imported on first use: ~190 ms

    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    return httpx.Client(
        verify=ssl_context(ca_bundle), timeout=timeout or http_timeout(), headers=headers, **kwargs
    )
