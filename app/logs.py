"""keyturn's log file: what happened, for the engineer and for support. Never a value.

0600 in a 0700 folder. Records come from the `keyturn` loggers; the Azure SDK's are silenced.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from app.journal import ensure_private_dir


def log_path(journal_dir: Path | None) -> Path:
    if journal_dir is not None:
        return journal_dir.parent / "keyturn.log"
    from platformdirs import user_log_path

    return user_log_path("keyturn") / "keyturn.log"


def setup_logging(path: Path, level: int = logging.INFO) -> Path:
    ensure_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("keyturn")
    root.setLevel(level)
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == handler.baseFilename for h in root.handlers):
        root.addHandler(handler)
    root.propagate = False
    from app.keyvault import quiet_azure_logging

    quiet_azure_logging()
    # httpx logs full URLs at INFO (query strings such as continuation tokens): keep it to warnings
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # httpcore's DEBUG trace prints response headers (Jenkins' legacy token endpoint answers with the token in one)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    return path
