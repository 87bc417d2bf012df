"""Secret references: ``vault:NAME/SECRET``, ``keyring:SERVICE/USER``, ``env:VAR``, ``file:PATH``, ``prompt``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.errors import SecretSourceError
from app.secret import SecretValue

if TYPE_CHECKING:
    from app.config import Config

PromptFn = Callable[[str], str]


def describe(ref: str) -> str:
    """Where a secret comes from, for humans: 'Key Vault rpe-prod / secret rpe-azure-devops-email'."""
    kind, _, rest = ref.partition(":")
    if kind == "vault":
        vault, _, secret = rest.partition("/")
        return f"Key Vault {vault} / secret {secret}"
    if kind == "keyring":
        service, _, user = rest.partition("/")
        return f"OS keyring {service} / {user}"
    if kind == "env":
        return f"environment variable {rest}"
    if kind == "file":
        return f"file {rest}"
    return "typed in at a prompt"


def resolve_plain(config: Config, ref: str, *, what: str, prompt: PromptFn | None = None) -> SecretValue:
    """Resolve one reference. ``what`` names the config key, for the error message."""
    kind, _, rest = ref.partition(":")
    if kind == "env":
        value = os.environ.get(rest)
        if not value:
            raise SecretSourceError(f"{what}: environment variable {rest} is not set", hint=f"export {rest} or change the reference")
        return SecretValue(value)
    if kind == "file":
        path = config.resolve_path(rest)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretSourceError(f"{what}: cannot read {path} ({exc.strerror})") from None
        if not value:
            raise SecretSourceError(f"{what}: {path} is empty")
        return SecretValue(value)
    if kind == "keyring":
        service, _, user = rest.partition("/")
        import keyring
        from keyring.errors import KeyringError

        try:
            value = keyring.get_password(service, user)
        except KeyringError as exc:
            raise SecretSourceError(f"{what}: the OS keyring is not available ({exc.__class__.__name__})") from None
        if value is None:
            raise SecretSourceError(f"{what}: nothing in the OS keyring for {service} / {user}", hint="store it with `keyring set`")
        return SecretValue(value)
    if kind == "vault":
        from app.keyvault import vault_client

        vault, _, secret = rest.partition("/")
        bundle = vault_client(config, vault).get(secret)
        if not bundle.value:
            raise SecretSourceError(f"{what}: Key Vault {vault} / secret {secret} is empty")
        return SecretValue(bundle.value)
    if ref == "prompt":
        if prompt is None:
            raise SecretSourceError(f"{what}: the reference is `prompt` but input is off (--no-input)", hint="use a vault:, keyring:, env: or file: reference")
        value = prompt(what)
        if not value:
            raise SecretSourceError(f"{what}: nothing was typed")
        return SecretValue(value)
    raise SecretSourceError(f"{what}: unknown secret reference kind {kind!r}")


class SecretResolver:
    """Resolves references for one run, remembering values so a vault is read once."""

    def __init__(self, config: Config, *, prompt: PromptFn | None = None) -> None:
        self.config = config
        self.prompt = prompt
        self._cache: dict[str, SecretValue] = {}

    def forget(self) -> None:
        """Read every reference again from now on (a rotation may have written where one points)."""
        self._cache.clear()

    def __call__(self, ref: str, what: str | None = None) -> SecretValue:
        if ref not in self._cache:
            self._cache[ref] = resolve_plain(self.config, ref, what=what or ref, prompt=self.prompt)
        return self._cache[ref]
