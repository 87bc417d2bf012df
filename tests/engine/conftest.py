"""Fast engine tests: the real Engine, Rotation, journal and locks over in-memory fakes (tests/engine/fakes.py).

No sandbox, no child process, no network: a rotation takes milliseconds, so the crash and safety matrices run every
boundary in seconds. The SIGKILL-in-a-child-process cases stay in tests/e2e as the end-to-end proof.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.fakes import FakeWorld, installed_world


@pytest.fixture(autouse=True)
def _no_env_fault_injection(monkeypatch: pytest.MonkeyPatch) -> None:
    # the child-process crash tests' switches must not reach an in-process engine
    for name in ("KEYTURN_TEST_KILL_AT", "KEYTURN_TEST_PAUSE_AT", "KEYTURN_TEST_PAUSE_FILE", "KEYTURN_TEST_SIGNAL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[FakeWorld]:
    """A fresh world with the fakes installed; ``world.add_target(...)`` makes targets."""
    with installed_world(tmp_path / "world") as w:
        yield w
    assert not w.violations, w.violations


@pytest.fixture
def in_process_cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``in_process_cli(world, *args)`` -> click's Result of `keyturn --config <world> ARGS`, run in this process."""
    from click.testing import CliRunner

    import app.cli

    monkeypatch.setattr(app.cli, "_terminate_like_interrupt", lambda: None)  # no process-wide SIGTERM handler
    runner = CliRunner()

    def run(w: FakeWorld, *args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app.cli.cli, ["--config", str(w.config_path), *args], catch_exceptions=False)

    yield run
    log = logging.getLogger("keyturn")
    for handler in list(log.handlers):  # the CLI's log file handler, one per journal folder
        log.removeHandler(handler)
        handler.close()
