"""Benchmark: a headless rotation of `daily-checks` against the sandbox.

Reports the median wall time of `keyturn rotate daily-checks --no-input --json` (a child process,
as a user runs it, so interpreter start and imports count) over several runs, and the HTTP
requests it made, by service and route, against the minimum the protocol needs.

    .venv/bin/python benchmarks/headless_rotation.py [--runs 7]
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
sys.path.insert(0, str(ROOT))

from app.sandbox import Sandbox  # noqa: E402

# The protocol's own calls for a target with one old token and a Key Vault store:
# list the account's tokens, mint, store (set), verify with the new token, revoke the old one,
# and read the old one back to prove it is revoked.
PROTOCOL_MINIMUM = {
    ("vssps", "list PATs"): 1,
    ("vssps", "create PAT"): 1,
    ("keyvault", "set secret"): 1,
    ("devops", "verify with the new PAT"): 1,
    ("vssps", "revoke old PAT"): 1,
    ("vssps", "get old PAT (proof)"): 1,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    times: list[float] = []
    counts: list[dict[str, dict[tuple[str, str], int]]] = []
    with tempfile.TemporaryDirectory() as tmp, Sandbox(Path(tmp) / "sb") as sb:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
        env["PYTHONPATH"] = str(ROOT)
        for _ in range(args.runs):
            sb.state.requests.reset()
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "app.cli", "--config", str(sb.config_path), "rotate", "daily-checks", "--no-input", "--json"],
                capture_output=True, text=True, env=env, cwd=ROOT, check=False,
            )
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                sys.exit(f"rotation failed: {proc.stderr}")
            counts.append(sb.state.requests.snapshot())
    total = [sum(sum(v.values()) for v in c.values()) for c in counts]
    print(f"headless rotation of daily-checks, {args.runs} runs")
    print(f"  wall time: median {statistics.median(times):.3f} s  (min {min(times):.3f}, max {max(times):.3f})")
    print(f"  HTTP requests: median {statistics.median(total):.0f} per rotation; protocol minimum {sum(PROTOCOL_MINIMUM.values())} (+ sign-in and Key Vault auth)")
    print("  by service and route (last run):")
    for service, routes in sorted(counts[-1].items()):
        for (method, route), n in sorted(routes.items()):
            print(f"    {service:<10} {method:<6} {route:<55} {n}")
    print("  protocol minimum:")
    for (service, what), n in PROTOCOL_MINIMUM.items():
        print(f"    {service:<10} {what:<62} {n}")


if __name__ == "__main__":
    main()
