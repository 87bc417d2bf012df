"""Small, careful edits of the user's keyturn.toml: set plain string keys of one ``[targets.NAME]`` table.

Line-based, so the file's comments, order and layout stay as the user wrote them. The edited text must load as a
valid config before it replaces the file (written next to it, then renamed, keeping the file's mode). Only
identifier-like values (uuids) are written; a value is never a secret.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from app.errors import KeyturnError

_SAFE_VALUE = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _table_name(line: str) -> str | None:
    m = _HEADER.match(line)
    if not m:
        return None
    return ".".join(part.strip().strip('"').strip("'") for part in m.group(1).split("."))


def edit_text(text: str, target: str, updates: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The text with ``updates`` set in ``[targets.<target>]``, and what actually changed."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _table_name(line) == f"targets.{target}" and not line.lstrip().startswith("[[")), None)
    if start is None:
        raise KeyturnError(f"the config file has no [targets.{target}] table keyturn can edit")
    end = next((i for i in range(start + 1, len(lines)) if _table_name(lines[i]) is not None), len(lines))
    changed: dict[str, str] = {}
    for key, value in updates.items():
        if not _SAFE_VALUE.fullmatch(value):
            raise KeyturnError(f"refusing to write targets.{target}.{key}: the value is not an identifier")
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
    from app.config import load_config

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyturnError(f"cannot read {path} to record targets.{target}: {exc.strerror}") from None
    new_text, changed = edit_text(text, target, updates)
    if not changed:
        return {}
    fd, tmp = tempfile.mkstemp(prefix=".keyturn-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        check = load_config(Path(tmp))
        if any(getattr(check.targets[target], k, None) != v for k, v in changed.items()):
            raise KeyturnError(f"the edited config does not say targets.{target} as intended")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return changed
