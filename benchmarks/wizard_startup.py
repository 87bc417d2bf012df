"""Start-up time of the wizard, as a ratio against a bare Textual app, measured in the same run.

Each sample is a fresh Python process, timed from just before it is spawned until it prints that
its first screen is displayed (Textual's ``Ready`` event: the first frame is up, keys are taken):

- ``bare``: Header, OptionList, Footer; nothing else imported.
- ``wizard``: ``run_wizard`` on a parsed configuration (the sandbox's): what ``app.tui`` costs.
- ``keyturn``: the whole command, ``keyturn --config FILE``: click, the pydantic config, the wizard.

Runs are interleaved (bare, wizard, keyturn, bare, ...) so machine noise hits all three alike; the
report gives medians and the ratios. Goal: wizard / bare <= 1.3.

    .venv/bin/python benchmarks/wizard_startup.py [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BARE = """
import time
T0 = time.perf_counter()
from textual.app import App
from textual.widgets import Footer, Header, OptionList

class Bare(App):
    def compose(self):
        yield Header()
        yield OptionList("keda", "daily-checks", "laptop-git")
        yield Footer()

    def on_ready(self):
        print("ready", time.perf_counter() - T0, flush=True)
        self.exit()

Bare().run(headless=True)
"""

# Both wizard variants exit on the first Ready; the status worker started by the first screen is
# abandoned (it is a daemon-thread wait), as it would be if the engineer quit at once.
READY_HOOK = """
import time
T0 = globals().get("T0") or time.perf_counter()
import app.tui

def _on_ready(self):
    print("ready", time.perf_counter() - T0, flush=True)
    self.exit()

app.tui.KeyturnApp.on_ready = _on_ready
_run = app.tui.KeyturnApp.run
app.tui.KeyturnApp.run = lambda self, **kw: _run(self, headless=True)
"""

WIZARD = (
    """
import sys, time
from app.config import load_config
CONFIG = load_config(__import__("pathlib").Path(sys.argv[1]))
T0 = time.perf_counter()  # in-process clock: from run_wizard's imports on, after the config is parsed
"""
    + READY_HOOK
    + """
app.tui.run_wizard(CONFIG)
"""
)

KEYTURN = (
    READY_HOOK
    + """
import sys
from app.cli import main
sys.argv = ["keyturn", "--config", sys.argv[1]]
try:
    main()
except SystemExit:
    pass
"""
)


def sample(code: str, config: Path) -> tuple[float, float]:
    """(seconds from spawn to ready, seconds the child counted itself from its T0 to ready)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEXTUAL_ANIMATIONS": "none"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.wait(timeout=30)
    word, _, inner = line.strip().partition(" ")
    if word != "ready":
        raise SystemExit(f"the child did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return elapsed, float(inner or "nan")


def time_config_only(config: Path) -> float:
    """The part of the wizard's start that is the wizard's own: everything after the config is parsed."""
    code = (
        "import sys, time; from app.config import load_config; load_config(__import__('pathlib').Path(sys.argv[1]));"
        "print('ready', flush=True)"
    )
    return sample(code, config)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="samples per variant (default 9)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from app.sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="keyturn-bench-") as tmp, Sandbox(Path(tmp)) as sb:
        config = sb.config_path
        sample(BARE, config)  # warm the OS file cache and the bytecode caches
        sample(WIZARD, config)
        sample(KEYTURN, config)
        times: dict[str, list[float]] = {
            k: [] for k in ("bare", "wizard", "keyturn", "bare in-process", "wizard in-process", "config only")
        }
        for _ in range(args.runs):
            outer, inner = sample(BARE, config)
            times["bare"].append(outer)
            times["bare in-process"].append(inner)
            outer, inner = sample(WIZARD, config)
            times["wizard"].append(outer)
            times["wizard in-process"].append(inner)
            times["keyturn"].append(sample(KEYTURN, config)[0])
            times["config only"].append(time_config_only(config))

    med = {name: statistics.median(values) for name, values in times.items()}

    def row(name: str) -> str:
        return f"  {name:<18} {med[name] * 1000:6.0f} ms   ({', '.join(f'{v * 1000:.0f}' for v in times[name])})"

    print(f"medians of {args.runs} runs each, interleaved")
    print(
        "in-process: imports to first frame (bare: from its first line; wizard: from run_wizard, config already parsed)"
    )
    print(row("bare in-process"))
    print(row("wizard in-process"))
    print(f"  wizard / bare = {med['wizard in-process'] / med['bare in-process']:.2f}   (goal <= 1.3)")
    print("whole process: spawn to first frame")
    print(row("bare"))
    print(row("wizard"))
    print(row("keyturn"))
    print(
        f"  ({med['config only'] * 1000:.0f} ms for a process that only parses the config: Python, pydantic, the file)"
    )
    print(
        f"  keyturn / bare = {med['keyturn'] / med['bare']:.2f}   (the whole command: click, pydantic config, wizard)"
    )


if __name__ == "__main__":
    main()
