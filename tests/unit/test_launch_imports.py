"""What `keyturn` pays for before its first screen, as import contracts (speed itself is benchmarks/wizard_startup.py's).

- `keyturn --help` / `--version` parse nothing: no pydantic, no config models, no Textual.
- `keyturn --config F` reads the file (TOML, and the structure its first frame draws) before the wizard is imported, with
  no pydantic, no click and nothing of the engine, the providers, the journal, the log file or the network; the wizard
  gets that raw view, and validates the whole file (pydantic) in a worker after its first frame, before any engine or
  provider is imported (they load from the status worker, which waits for the validation).
- A file that is not TOML, or lacks what the first frame draws, is one `keyturn: error:` line and the wizard (Textual)
  is never imported. A file that fails only the full validation gets the same single line and exit 2 from the
  wizard, and no rotation starts: nothing of the engine or the providers is ever imported.

Each case runs in a fresh interpreter, so what an earlier test imported cannot hide an import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG_MODELS = ("pydantic", "pydantic_core", "app.config")
WIZARD = ("textual", "rich", "screens", "app.tui")  # app.tui last: the stand-in below is in sys.modules
# loaded by the wizard's workers after the first frame (the targets screen's status read), never before it
AFTER_THE_FIRST_FRAME = (
    "app.engine", "app.journal", "app.locks", "app.logs", "app.net", "app.keyvault", "app.followups", "app.secret_sources",
    "providers", "azure", "httpx", "httpcore", "keyring", "boto3", "botocore",
)
VALID = """
[settings]
theme = "nord"

[accounts.bot]
platform = "azure-devops"
organization = "acme"

[targets.app]
account = "bot"
token_name = "app-token"
preset = "keda"
"""


def _run(code: str, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.stdout.strip(), proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


def _loaded(prefixes: tuple[str, ...]) -> str:
    """Python for: which of these modules (or their submodules) are in sys.modules."""
    return f"sorted({{m for m in sys.modules for p in {prefixes!r} if m == p or m.startswith(p + '.')}})"


# `keyturn ARGS` through the console script's entry (app.cli:main), exit code caught
_MAIN = """
import json, sys
from app.cli import main
sys.argv = ["keyturn", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["rotate", "--help"], ["sandbox", "--help"]])
def test_help_and_version_import_no_config_models_and_no_wizard(args: list[str]) -> None:
    code = _MAIN + f"print(json.dumps({{'code': code, 'pulled': {_loaded(CONFIG_MODELS + WIZARD)}}}))\n"
    result = _run(code, *args)
    assert result["code"] in (0, None), result["stderr"]
    assert result["pulled"] == [], f"keyturn {' '.join(args)} imported {result['pulled']}"


def test_the_wizard_starts_on_the_raw_view_with_nothing_else_loaded(tmp_path: Path) -> None:
    """The wizard's start is stood in for by a module that records what had been imported when it was called."""
    cfg = tmp_path / "keyturn.toml"
    cfg.write_text(VALID)
    code = (
        "import json, sys, types\n"
        "seen = {}\n"
        "def run_wizard(config, **kwargs):\n"
        f"    seen.update(early={_loaded(CONFIG_MODELS + AFTER_THE_FIRST_FRAME + WIZARD[:-1] + ('click', 'app.commands'))})\n"
        "    from app.config_view import PendingConfig\n"
        "    view = config.view\n"
        "    seen.update(pending=isinstance(config, PendingConfig), path=str(view.path), theme=view.theme,\n"
        "                targets={n: [r.account, r.platform, r.token_name] for n, r in view.targets.items()})\n"
        "stand_in = types.ModuleType('app.tui')\n"
        "stand_in.run_wizard = run_wizard\n"
        "sys.modules['app.tui'] = stand_in\n"
        + _MAIN
        + "print(json.dumps({'code': code, **seen}))\n"
    )
    result = _run(code, "--config", str(cfg))
    assert result["code"] in (0, None), result["stderr"]
    assert result["pending"] and result["path"] == str(cfg.resolve())
    assert result["targets"] == {"app": ["bot", "azure-devops", "app-token"]} and result["theme"] == "nord"
    assert result["early"] == [], f"imported before the wizard started: {result['early']}"


# the real wizard, headless: what was imported at its first frame, and once it is done (it quits 1 s after the first
# frame, or exits on its own when the file fails validation); ROTATE: Enter on the first target at the first frame
_WIZARD_RUN = """
import json, sys
import app.tui
seen = {}
def _on_ready(self):
    seen.update(validated_at_first_frame=self.config_validated, at_first_frame=AT_FIRST_FRAME)
    if ROTATE:
        self.start_rotation("app")
    self.set_timer(1.0, self.exit)
app.tui.KeyturnApp.on_ready = _on_ready
_run = app.tui.KeyturnApp.run
def run(self, **kw):
    try:
        return _run(self, headless=True)
    finally:
        seen.update(validated=self.config_validated, return_code=self.return_code, at_exit=AT_EXIT)
app.tui.KeyturnApp.run = run
""".replace("AT_FIRST_FRAME", _loaded(CONFIG_MODELS + AFTER_THE_FIRST_FRAME)).replace(
    "AT_EXIT", _loaded(CONFIG_MODELS + AFTER_THE_FIRST_FRAME + ("screens.signin",))
)


def test_the_wizard_validates_after_its_first_frame_before_any_engine(tmp_path: Path) -> None:
    cfg = tmp_path / "keyturn.toml"
    cfg.write_text(VALID)
    code = "ROTATE = False\n" + _WIZARD_RUN + _MAIN + "print(json.dumps({'code': code, **seen}))\n"
    result = _run(code, "--config", str(cfg))
    assert result["code"] in (0, None) and result["return_code"] == 0, result["stderr"]
    assert result["at_first_frame"] == [] and not result["validated_at_first_frame"], result["at_first_frame"]
    assert result["validated"] and "pydantic" in result["at_exit"]


def test_a_config_that_fails_validation_after_the_first_frame_is_one_line_and_no_rotation(tmp_path: Path) -> None:
    cfg = tmp_path / "keyturn.toml"
    cfg.write_text(VALID + "revoke_after = 'soon'\n")  # passes the raw view; only pydantic refuses it
    code = "ROTATE = True\n" + _WIZARD_RUN + _MAIN + "print(json.dumps({'code': code, **seen}))\n"
    result = _run(code, "--config", str(cfg))
    errors = [line for line in result["stderr"].splitlines() if line.startswith("keyturn: error:")]
    assert result["code"] == 2 and result["return_code"] == 2
    assert len(errors) == 1 and "targets.app.revoke_after" in errors[0] and str(cfg) in errors[0], result["stderr"]
    assert result["stderr"].count("Traceback") == 0, result["stderr"]
    # the rotation asked for at the first frame waited for the validation and never started: no engine, no sign-in
    assert not result["validated"]
    assert not [m for m in result["at_exit"] if not m.startswith(CONFIG_MODELS)], result["at_exit"]


BAD = [
    ("[targets.app]\naccount = 'nobody'\ntoken_name = 't'\npreset = 'keda'\n", "targets.app.account"),
    ("[settings]\ntheme = 7\n", "settings.theme"),
    ("[settings\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "named"), BAD, ids=[b[1] for b in BAD])
def test_a_bad_config_stops_the_wizard_before_it_is_imported(tmp_path: Path, text: str, named: str) -> None:
    cfg = tmp_path / "keyturn.toml"
    cfg.write_text(text)
    code = _MAIN + f"print(json.dumps({{'code': code, 'pulled': {_loaded(WIZARD + AFTER_THE_FIRST_FRAME)}}}))\n"
    result = _run(code, "--config", str(cfg))
    errors = [line for line in result["stderr"].splitlines() if line.startswith("keyturn: error:")]
    assert result["code"] == 2
    assert len(errors) == 1 and named in errors[0] and str(cfg) in errors[0], result["stderr"]
    assert result["pulled"] == [], f"imported on the way to a config error: {result['pulled']}"
