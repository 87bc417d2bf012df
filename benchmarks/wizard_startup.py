"""Start-up time of the wizard, as a ratio against a bare Textual app, measured in the same run.

Each sample is a fresh Python process, timed from just before it is spawned until it prints that
its first screen is displayed (Textual's ``Ready`` event: the first frame is up, keys are taken):

- ``bare``: Header, OptionList, Footer; nothing else imported.
- ``wizard``: ``run_wizard`` on a parsed configuration (the sandbox's): what ``app.tui`` costs.
- ``keyturn``: the whole command, ``keyturn --config FILE`` through ``app.cli:main`` (the console script's entry):
  its argument check, the file read (TOML and what the first frame draws), the wizard; the file's pydantic
  validation runs in a worker after the first frame.
- ``keyturn validated``: the same command timed until that validation has finished too (from then on a rotation
  can start), so the time the first frame no longer waits for stays visible.

Runs are interleaved (bare, wizard, keyturn, bare, ...) so machine noise hits all three alike; the
report gives medians and the ratios. Goal: wizard / bare <= 1.3.

Each child exits right after its first frame, so its peak RSS (``ru_maxrss`` from ``wait4``) is that of
"launch, first screen, quit"; the report gives the median per variant too.

    .venv/bin/python benchmarks/wizard_startup.py [--runs 9] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
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

KEYTURN_VALIDATED_HOOK = """
import threading

def _on_ready_validated(self):
    def wait():
        self.validate_config()  # the worker started after the first frame does it; this waits for it
        print("ready", time.perf_counter() - T0, flush=True)
        self.call_from_thread(self.exit)

    threading.Thread(target=wait, daemon=True).start()

app.tui.KeyturnApp.on_ready = _on_ready_validated
"""

KEYTURN_MAIN = """
import sys
from app.cli import main
sys.argv = ["keyturn", "--config", sys.argv[1]]
try:
    main()
except SystemExit:
    pass
"""
KEYTURN = READY_HOOK + KEYTURN_MAIN
KEYTURN_VALIDATED = READY_HOOK + KEYTURN_VALIDATED_HOOK + KEYTURN_MAIN


def sample(code: str, config: Path) -> tuple[float, float, float]:
    """(seconds from spawn to ready, seconds the child counted itself from its T0 to ready, peak RSS in MiB).

    The child exits right after its first frame (launch, first screen, quit); it is reaped with wait4, whose
    ru_maxrss is the peak resident set of the whole run (Linux: KiB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEXTUAL_ANIMATIONS": "none"}
    err = tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=err,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    rest = proc.stdout.read()  # until the child closes it (exits)
    killer = threading.Timer(30, proc.kill)
    killer.start()
    try:
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    word, _, inner = line.strip().partition(" ")
    err.seek(0)
    errors = err.read().decode(errors="replace")
    err.close()
    if word != "ready" or proc.returncode != 0:
        raise SystemExit(f"the child did not start or exit cleanly ({proc.returncode}): {line!r} {rest!r} {errors}")
    return elapsed, float(inner or "nan"), usage.ru_maxrss / 1024


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
    parser.add_argument("--quiet-below", type=float, metavar="CORES",
                        help="before each round, wait until other processes use fewer than CORES cores (see --quiet-wait)")
    parser.add_argument("--quiet-wait", type=float, default=120.0, metavar="SECONDS",
                    help="the longest wait for --quiet-below (default 120); the run starts anyway after it")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the report")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from _machine import LoadMeter, wait_for_quiet  # benchmarks/, the script's folder

    from app.sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="keyturn-bench-") as tmp, Sandbox(Path(tmp)) as sb, LoadMeter() as meter:
        config = sb.config_path
        sample(BARE, config)  # warm the OS file cache and the bytecode caches
        sample(WIZARD, config)
        sample(KEYTURN, config)
        sample(KEYTURN_VALIDATED, config)
        times: dict[str, list[float]] = {
            k: []
            for k in ("bare", "wizard", "keyturn", "keyturn validated", "bare in-process", "wizard in-process", "config only")
        }
        rss: dict[str, list[float]] = {k: [] for k in ("bare", "wizard", "keyturn")}
        others: list[float | None] = []
        for _ in range(args.runs):
            others.append(wait_for_quiet(args.quiet_below, max_wait=args.quiet_wait))
            outer, inner, peak = sample(BARE, config)
            times["bare"].append(outer)
            times["bare in-process"].append(inner)
            rss["bare"].append(peak)
            outer, inner, peak = sample(WIZARD, config)
            times["wizard"].append(outer)
            times["wizard in-process"].append(inner)
            rss["wizard"].append(peak)
            outer, _inner, peak = sample(KEYTURN, config)
            times["keyturn"].append(outer)
            rss["keyturn"].append(peak)
            times["keyturn validated"].append(sample(KEYTURN_VALIDATED, config)[0])
            times["config only"].append(time_config_only(config))

    med = {name: statistics.median(values) for name, values in times.items()}
    med_rss = {name: statistics.median(values) for name, values in rss.items()}
    ratios = {
        "wizard_in_process_over_bare": med["wizard in-process"] / med["bare in-process"],
        "keyturn_over_bare": med["keyturn"] / med["bare"],
        "keyturn_validated_over_bare": med["keyturn validated"] / med["bare"],
        "keyturn_rss_over_bare": med_rss["keyturn"] / med_rss["bare"],
    }
    if args.json:
        print(json.dumps({
            "runs": args.runs, "machine": meter.report(),
            "seconds": {k: {"median": med[k], "all": [round(v, 4) for v in times[k]]} for k in times},
            "peak_rss_mib": {k: {"median": med_rss[k], "all": [round(v, 1) for v in rss[k]]} for k in rss},
            "ratios": ratios,
            "others_busy_cores_before_each_round": [None if x is None else round(x, 2) for x in others],
        }, indent=2))
        return

    def row(name: str) -> str:
        return f"  {name:<18} {med[name] * 1000:6.0f} ms   ({', '.join(f'{v * 1000:.0f}' for v in times[name])})"

    print(f"medians of {args.runs} runs each, interleaved")
    print(meter.line())
    if measured := [x for x in others if x is not None]:
        print(f"cores other processes used in the 2 s before each round: median {statistics.median(measured):.2f}, "
              f"max {max(measured):.2f}")
    print(
        "in-process: imports to first frame (bare: from its first line; wizard: from run_wizard, config already parsed)"
    )
    print(row("bare in-process"))
    print(row("wizard in-process"))
    print(f"  wizard / bare = {ratios['wizard_in_process_over_bare']:.2f}   (goal <= 1.3)")
    print("whole process: spawn to first frame")
    print(row("bare"))
    print(row("wizard"))
    print(row("keyturn"))
    print(row("keyturn validated"))
    print(
        f"  ({med['config only'] * 1000:.0f} ms for a process that only parses the config: Python, pydantic, the file)"
    )
    print(f"  keyturn / bare = {ratios['keyturn_over_bare']:.2f}   (the whole command: arguments, the file read, wizard; goal <= 1.3)")
    print(f"  keyturn validated / bare = {ratios['keyturn_validated_over_bare']:.2f}   (until the pydantic validation after the "
          "first frame is done)")
    print("peak RSS of the process (launch, first frame, quit; ru_maxrss from wait4)")
    for name in rss:
        print(f"  {name:<18} {med_rss[name]:6.1f} MiB ({', '.join(f'{v:.0f}' for v in rss[name])})")
    print(f"  keyturn / bare = {ratios['keyturn_rss_over_bare']:.2f}")
    print()
    print(f"{'figure':<46} {'median':>10} {'ratio to bare':>14}")
    print(f"{'bare Textual app: spawn to first frame':<46} {med['bare'] * 1000:>7.0f} ms {'1.00':>14}")
    print(f"{'keyturn --config F: spawn to first frame':<46} {med['keyturn'] * 1000:>7.0f} ms {ratios['keyturn_over_bare']:>14.2f}")
    print(f"{'keyturn --config F: spawn to config validated':<46} {med['keyturn validated'] * 1000:>7.0f} ms "
          f"{ratios['keyturn_validated_over_bare']:>14.2f}")
    print(f"{'wizard in-process (config parsed)':<46} {med['wizard in-process'] * 1000:>7.0f} ms "
          f"{ratios['wizard_in_process_over_bare']:>14.2f}")
    print(f"{'bare Textual app: peak RSS':<46} {med_rss['bare']:>6.1f} MiB {'1.00':>14}")
    print(f"{'keyturn --config F: peak RSS':<46} {med_rss['keyturn']:>6.1f} MiB {ratios['keyturn_rss_over_bare']:>14.2f}")


if __name__ == "__main__":
    main()
