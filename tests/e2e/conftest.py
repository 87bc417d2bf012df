"""End-to-end tests: the real CLI in a child process against a sandbox in this process, over loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sb") as sb:
        yield sb


@pytest.fixture
def prompt_consumers(sandbox: Sandbox) -> Sandbox:
    """Consumers that take up a new value as it lands (the Flux remote auto-merges, no agent holds an old token, the
    pipeline run and the deploy jobs follow at once): for tests of everything but the waiting, whose rotations then
    pass their gates in one run. Modules opt in with ``pytestmark = pytest.mark.usefixtures("prompt_consumers")``."""
    from app.sandbox.consumers import consumers_follow_promptly

    consumers_follow_promptly(sandbox)
    return sandbox


@pytest.fixture
def keyturn(sandbox: Sandbox, tmp_path: Path):
    """Run `keyturn --config <sandbox> ARGS` in a child process, as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> Run:
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
        child_env.update({"HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)})
        child_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "app.cli", "--config", str(sandbox.config_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run
