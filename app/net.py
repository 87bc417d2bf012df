"""HTTP clients with keyturn's transport rules: HTTPS with certificate checks, plain HTTP only to loopback."""

from __future__ import annotations

import ipaddress
import ssl
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.errors import KeyturnError

USER_AGENT = "keyturn/0.1 (+https://github.com/keyturn)"


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


def http_client(ca_bundle: Path | None, *, timeout: float = 30.0, **kwargs: Any) -> Any:
    """An httpx.Client with keyturn's TLS settings. No cookie persistence is relied upon."""
    import httpx  # imported on first use: ~190 ms

    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    return httpx.Client(verify=ssl_context(ca_bundle), timeout=timeout, headers=headers, **kwargs)
