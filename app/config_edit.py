"""Small, careful edits of the user's keyturn.toml: set plain string keys of one table (``[targets.NAME]``,
``[settings]``).

Line-based, so the file's comments, order and layout stay as the user wrote them. The edited text must load as a
valid config before it replaces the file (written next to it, then renamed, keeping the file's mode). Only
identifier-like values (uuids) are written; a value is never a secret.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import KeyturnError

if TYPE_CHECKING:
    from app.config import Config

_SAFE_VALUE = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _table_name(line: str) -> str | None:
    m = _HEADER.match(line)
    if not m:
        return None
    return ".".join(part.strip().strip('"').strip("'") for part in m.group(1).split("."))


def edit_text(text: str, target: str, updates: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The text with ``updates`` set in ``[targets.<target>]``, and what actually changed."""
    return edit_table(text, f"targets.{target}", updates)


def edit_table(text: str, table: str, updates: dict[str, str], *, create: bool = False) -> tuple[str, dict[str, str]]:
    """The text with ``updates`` set in ``[<table>]``, and what actually changed.

    With ``create``, a missing table is added at the end of the file (a new ``[table]`` header there is valid TOML
    whatever precedes it; the caller's load check catches a table the file defines another way)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _table_name(line) == table and not line.lstrip().startswith("[[")), None)
    if start is None:
        if not create:
            raise KeyturnError(f"the config file has no [{table}] table keyturn can edit")
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.extend(["\n", f"[{table}]\n"])
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if _table_name(lines[i]) is not None), len(lines))
    changed: dict[str, str] = {}
    for key, value in updates.items():
        if not _SAFE_VALUE.fullmatch(value):
            raise KeyturnError(f"refusing to write {table}.{key}: the value is not an identifier")
        new_line = f"{key} = {json.dumps(value)}\n"
        key_re = re.compile(rf"^\s*{re.escape(key)}\s*=\s*(.*?)\s*(#.*)?$")
        at = next((i for i in range(start + 1, end) if key_re.match(lines[i].rstrip("\n"))), None)
        if at is not None:
            m = key_re.match(lines[at].rstrip("\n"))
            assert m is not None
            if m.group(1) == json.dumps(value):
                continue
            comment = f"  {m.group(2)}" if m.group(2) else ""
            lines[at] = new_line.rstrip("\n") + comment + "\n"
        else:
            last = max((i for i in range(start, end) if lines[i].strip() and not lines[i].lstrip().startswith("#")), default=start)
            if not lines[last].endswith("\n"):
                lines[last] += "\n"
            lines.insert(last + 1, new_line)
            end += 1
        changed[key] = value
    return "".join(lines), changed


def set_target_values(path: Path, target: str, updates: dict[str, str]) -> dict[str, str]:
    """Set ``updates`` in ``[targets.<target>]`` of the config file at ``path``; returns what changed."""
    return _set_values(path, f"targets.{target}", updates, lambda config: config.targets[target])


def set_setting_values(path: Path, updates: dict[str, str]) -> dict[str, str]:
    """Set ``updates`` in ``[settings]`` of the config file at ``path`` (added when missing); returns what changed."""
    return _set_values(path, "settings", updates, lambda config: config.settings, create=True)


def _set_values(
    path: Path, table: str, updates: dict[str, str], section: Callable[[Config], object], *, create: bool = False
) -> dict[str, str]:
    from app.config import load_config

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyturnError(f"cannot read {path} to record {table}: {exc.strerror}") from None
    new_text, changed = edit_table(text, table, updates, create=create)
    if not changed:
        return {}
    fd, tmp = tempfile.mkstemp(prefix=".keyturn-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        check = load_config(Path(tmp))
        if any(getattr(section(check), k, None) != v for k, v in changed.items()):
            raise KeyturnError(f"the edited config does not say {table} as intended")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return changed
