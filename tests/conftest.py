"""Shared by every test: each test starts with keyturn's logger as the interpreter made it, and with the Key Vault
SDK's challenge cache empty.

``app.logs.setup_logging`` (run by in-process CLI and engine tests) points the "keyturn" logger at a file and stops
its records from propagating; a later test in the same worker that reads records with caplog would then see none,
depending on which tests xdist gave that worker first.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _keyturn_logger_as_found() -> Iterator[None]:
    log = logging.getLogger("keyturn")
    propagate, level, handlers = log.propagate, log.level, list(log.handlers)
    yield
    for handler in [h for h in log.handlers if h not in handlers]:
        log.removeHandler(handler)
        handler.close()
    log.propagate, log.level = propagate, level


@pytest.fixture(autouse=True)
def _no_key_vault_challenge_from_an_earlier_sandbox() -> None:
    """azure-keyvault-secrets keeps each vault's auth challenge (the tenant to sign in to) in a process-wide cache
    keyed by host:port (``_shared/http_challenge_cache.py``). Sandboxes started one after another in one xdist worker
    reuse loopback ports, each with a new tenant: a cached challenge then names the last sandbox's tenant and the
    credential refuses it ("not configured to acquire tokens for tenant ..."). One keyturn process has one vault per
    address, so only the tests need this."""
    cache = sys.modules.get("azure.keyvault.secrets._shared.http_challenge_cache")
    if cache is not None:
        cache.clear()
