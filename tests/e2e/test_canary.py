"""The new token's value reaches the stores and nothing else: not the journal, the log file, log
records (ours, the sandbox's, the Azure SDK's), events, exception texts, stdout or stderr."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest

import app.sandbox.state as sandbox_state
from app.config import load_config
from app.engine import Engine
from app.errors import KeyturnError
from app.logs import setup_logging
from app.sandbox import Sandbox
from providers.base import Interaction

CANARY = "canary7f3a"


@pytest.fixture
def canary_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # every PAT the emulator mints from now on carries the canary prefix
    monkeypatch.setattr(sandbox_state, "pat_value", lambda: CANARY + secrets.token_hex(21))
    with Sandbox(tmp_path / "sb") as sb:
        yield sb


LOGGERS = ("keyturn", "azure", "httpx", "httpcore", "msal")


@pytest.fixture
def capture_all(caplog: pytest.LogCaptureFixture):
    """Every logger that could carry a value, at DEBUG, restored afterwards."""
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate, list(logging.getLogger(n).handlers)) for n in LOGGERS}
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        logging.getLogger(name).addHandler(caplog.handler)
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog
    for name, (level, propagate, handlers) in saved.items():
        log = logging.getLogger(name)
        for h in log.handlers:
            if h not in handlers:
                log.removeHandler(h)
                h.close()
        log.setLevel(level)
        log.propagate = propagate


def test_canary_appears_only_in_the_store(canary_sandbox: Sandbox, capture_all: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    sb = canary_sandbox
    caplog = capture_all
    config = load_config(sb.config_path)
    log_file = setup_logging(sb.config_path.parent / "keyturn.log", logging.DEBUG)
    logging.getLogger("keyturn").addHandler(caplog.handler)
    said: list[str] = []
    interaction = Interaction(on_device_code=lambda p: said.append(p.message), on_warning=said.append, on_progress=said.append)
    errors: list[str] = []

    # a rotation that fails at the store (403), then one that succeeds after a reconciled ambiguous mint
    sb.state.deny("cftptl-intsvc", "set")
    engine = Engine(config, interaction=interaction, on_event=lambda k, t: said.append(t))
    rotation = engine.begin(engine.plan("daily-checks"))
    with pytest.raises(KeyturnError) as failed:
        rotation.run_to_end()
    errors.append(str(failed.value))
    sb.state.allow("cftptl-intsvc")
    sb.state.inject_fault("pats.create", "500-after-create")
    rotation = engine.begin(engine.plan("daily-checks"))
    rotation.run_to_end()
    engine.close()
    assert rotation.state == "done"

    minted = [p for p in sb.state.pats() if p.value.startswith(CANARY)]
    assert len(minted) >= 3  # the rolled-back one, the orphan, the live one
    latest = sb.state.secret_versions("cftptl-intsvc", "azure-devops-token")[-1]
    assert latest.value.startswith(CANARY)  # the store has it: the canary is real

    out = capsys.readouterr()
    journal = "".join(p.read_text() for p in (sb.config_path.parent / "journal").glob("*"))
    places = {
        "journal": journal,
        "log file": log_file.read_text(),
        "log records": "\n".join(r.getMessage() + repr(r.args) for r in caplog.records),
        "events and warnings": "\n".join(said),
        "exceptions": "\n".join(errors),
        "stdout/stderr": out.out + out.err,
    }
    for where, text in places.items():
        assert CANARY not in text, f"the token value leaked into {where}"
    assert len(caplog.records) > 10  # the capture did see the run
