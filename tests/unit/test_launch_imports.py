"""What `keyturn` pays for before its first screen, as import contracts (speed itself is benchmarks/wizard_startup.py's).

- `keyturn --help` / `--version` parse nothing: no pydantic, no config models, no Textual.
- `keyturn --config F` validates the whole file before the wizard is imported, and by then has imported nothing of the
  engine, the providers, the journal, the log file or the network (they load from the wizard's workers, after the first
  frame): the path to the first frame is click, the config and the wizard's first screen, nothing else.
- A bad file on the wizard's path is one `keyturn: error:` line, and the wizard (Textual) is never imported: no screen,
  so no rotation, can start on an invalid config.

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


def test_the_wizard_starts_on_a_validated_config_with_nothing_else_loaded(tmp_path: Path) -> None:
    """The wizard's start is stood in for by a module that records what had been imported when it was called."""
    cfg = tmp_path / "keyturn.toml"
    cfg.write_text(VALID)
    code = (
        "import json, sys, types\n"
        "seen = {}\n"
        "def run_wizard(config, **kwargs):\n"
        "    from app.config import Config\n"
        "    seen.update(validated=isinstance(config, Config), path=str(config.path), theme=config.settings.theme,\n"
        f"                targets=sorted(config.targets), early={_loaded(AFTER_THE_FIRST_FRAME + WIZARD[:-1])})\n"
        "stand_in = types.ModuleType('app.tui')\n"
        "stand_in.run_wizard = run_wizard\n"
        "sys.modules['app.tui'] = stand_in\n"
        + _MAIN
        + "print(json.dumps({'code': code, **seen}))\n"
    )
    result = _run(code, "--config", str(cfg))
    assert result["code"] in (0, None), result["stderr"]
    assert result["validated"] and result["path"] == str(cfg.resolve()) and result["targets"] == ["app"]
    assert result["theme"] == "nord"
    assert result["early"] == [], f"imported before the wizard started: {result['early']}"


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
