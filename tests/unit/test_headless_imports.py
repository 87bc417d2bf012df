"""The headless paths must not pay for Textual (harlequin's habit): prove it in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEADLESS = [
    "app.cli",
    "app.engine",
    "app.journal",
    "app.config",
    "app.secret_sources",
    "app.keyvault",
    "app.followups",
    "app.followups.keyvault_version",
    "app.followups.keyring_store",
    "app.followups.manual",
    "app.sandbox",
    "providers.registry",
    "providers.azure_devops.scopes",
    "providers.azure_devops.provider",
]


@pytest.mark.parametrize("module", HEADLESS)
def test_module_does_not_import_textual(module: str) -> None:
    code = f"import sys, {module}; bad = [m for m in ('textual', 'rich') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_headless_cli_run_does_not_import_textual(tmp_path) -> None:
    """A real headless command (status on a config with no targets) runs without Textual."""
    cfg = tmp_path / "k.toml"
    cfg.write_text("[settings]\n")
    code = (
        "import sys\n"
        "from app.cli import cli\n"
        f"try:\n    cli(['--config', {str(cfg)!r}, 'status', '--json'], standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "sys.exit(1 if 'textual' in sys.modules else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
