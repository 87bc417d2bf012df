"""keyturn's log file: what happened, for the engineer and for support. Never a value.

0600 in a 0700 folder keyturn made. Records come from the `keyturn` loggers; the Azure SDK's are silenced.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from app.errors import KeyturnError
from app.journal import ensure_private_dir


def log_path(journal_dir: Path | None) -> Path:
    """Inside a configured journal folder (keyturn's own), never beside it: the folder above is the engineer's,
    and keyturn neither writes there nor changes its mode. Otherwise the user log folder."""
    if journal_dir is not None:
        return journal_dir / "keyturn.log"
    from platformdirs import user_log_path

    return user_log_path("keyturn") / "keyturn.log"


def setup_logging(path: Path, level: int = logging.INFO) -> Path:
    ensure_private_dir(path.parent)  # 0700 if keyturn creates it; an existing folder keeps its mode
    try:
        # a symlink planted at the log's name is refused, not followed (its target is not chmodded); a FIFO
        # does not block the start (O_NONBLOCK) and is refused below
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            os.fchmod(fd, 0o600)  # the log is keyturn's own file: 0600 whatever the umask or an earlier mode
        finally:
            os.close(fd)
    except OSError as exc:
        raise KeyturnError(
            f"{path}: cannot write keyturn's log there ({exc.strerror or exc.__class__.__name__})",
            hint="remove what is at that path, or set settings.journal_dir to a folder you can write",
        ) from None
    root = logging.getLogger("keyturn")
    root.setLevel(level)
    wanted = os.path.abspath(path)  # what FileHandler keeps as baseFilename
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == wanted for h in root.handlers):
        handler = logging.FileHandler(path, encoding="utf-8")  # made only when added: it opens the file
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.propagate = False
    from app.keyvault import quiet_azure_logging

    quiet_azure_logging()
    # httpx logs full URLs at INFO (query strings such as continuation tokens): keep it to warnings
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # httpcore's DEBUG trace prints response headers (Jenkins' legacy token endpoint answers with the token in one)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    return path
