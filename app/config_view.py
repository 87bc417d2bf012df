"""The configuration file before pydantic: the file read as TOML, and the little of it the wizard's first frame draws.

`keyturn --config F` draws its targets list from this view and validates the whole file (app.config.parse_config)
in a worker right after the first frame; nothing that needs the validated Config runs before that has finished.
Importing this module imports no pydantic.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import ConfigError

if TYPE_CHECKING:
    from app.config import Config


def read_config(path: Path) -> dict[str, Any]:
    """The file as TOML, or a ConfigError with a one-line message (missing, unreadable, not TOML)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file", hint="create it (see examples/keyturn.toml) or pass --config") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def default_config_path() -> Path:
    env = os.environ.get("KEYTURN_CONFIG")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_path

    return user_config_path("keyturn") / "keyturn.toml"


@dataclass(frozen=True)
class TargetRow:
    """One row of the targets list."""

    account: str
    platform: str
    token_name: str
    description: str | None = None


@dataclass(frozen=True)
class FirstFrameView:
    """What the wizard reads before its first frame: the targets (in file order), the sandbox flag, theme and keymap."""

    path: Path | None
    targets: dict[str, TargetRow] = field(default_factory=dict)
    sandbox: bool = False
    theme: str | None = None
    keymap: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, config: Config) -> FirstFrameView:
        """The view of an already validated Config (tests, the demo, `keyturn rotate T`)."""
        rows = {
            name: TargetRow(t.account, config.accounts[t.account].platform, t.token_name, t.description)
            for name, t in config.targets.items()
        }
        s = config.settings
        return cls(config.path, rows, s.sandbox, s.theme, dict(config.keymap))

    @classmethod
    def read(cls, data: dict[str, Any], path: Path) -> FirstFrameView | None:
        """The view of raw TOML, or None when what the first frame needs is missing or of the wrong type (the
        caller then validates at once, so the message is parse_config's own)."""
        settings = data.get("settings", {})
        accounts = data.get("accounts", {})
        targets = data.get("targets", {})
        keymap = data.get("keymap", {})
        if not all(isinstance(x, dict) for x in (settings, accounts, targets, keymap)):
            return None
        sandbox, theme = settings.get("sandbox", False), settings.get("theme")
        if not isinstance(sandbox, bool) or not (theme is None or isinstance(theme, str)):
            return None
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in keymap.items()):
            return None
        rows: dict[str, TargetRow] = {}
        for name, t in targets.items():
            if not isinstance(t, dict):
                return None
            account, token_name, description = t.get("account"), t.get("token_name"), t.get("description")
            if not (isinstance(account, str) and isinstance(token_name, str) and token_name):
                return None
            if not (description is None or isinstance(description, str)):
                return None
            acc = accounts.get(account)
            platform = acc.get("platform") if isinstance(acc, dict) else None
            if not isinstance(platform, str):
                return None
            rows[name] = TargetRow(account, platform, token_name, description)
        return cls(path.resolve(), rows, sandbox, theme, dict(keymap))


class PendingConfig:
    """A config file read and viewed but not validated yet: `validate()` is app.config.parse_config on it."""

    def __init__(self, data: dict[str, Any], path: Path, view: FirstFrameView) -> None:
        self.data = data
        self.path = path
        self.view = view

    def validate(self) -> Config:
        from app.config import parse_config

        return parse_config(self.data, self.path)


def open_config(path: Path) -> PendingConfig | Config:
    """The wizard's start: the file read, and either the view its first frame needs (validation still to do) or,
    when the file lacks even that structure, the validated Config, i.e. parse_config's one-line ConfigError."""
    data = read_config(path)
    view = FirstFrameView.read(data, path)
    if view is None:
        from app.config import parse_config

        return parse_config(data, path)
    return PendingConfig(data, path, view)
