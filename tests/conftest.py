"""Shared by every test: each test starts with keyturn's logger as the interpreter made it.

``app.logs.setup_logging`` (run by in-process CLI and engine tests) points the "keyturn" logger at a file and stops
its records from propagating; a later test in the same worker that reads records with caplog would then see none,
depending on which tests xdist gave that worker first.
"""

from __future__ import annotations

import logging
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
