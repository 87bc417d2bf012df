"""A keyturn child process that runs beside the test (for interleavings: kill it, or start another meanwhile)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[3]


def spawn_keyturn(sandbox: Sandbox, home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    child_env.update({"HOME": str(home), "PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--config", str(sandbox.config_path), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=child_env, cwd=ROOT,
    )
