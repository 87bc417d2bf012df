"""Benchmark: a headless rotation of each sandbox target, as a user runs it.

For every target (round-robin, so machine noise hits all of them alike) and every run, a fresh
sandbox is started in this process, then ``keyturn --config SB/keyturn.toml rotate TARGET --no-input
--json`` runs as a child process (interpreter start and imports count) with its own empty HOME.
Reported per target, as medians over the runs:

- wall time: from just before the child is spawned until it has exited;
- peak RSS: ``ru_maxrss`` of the child from ``os.wait4`` (the largest resident set of the child and of
  any process it waited for: for ``keda`` that includes ``git`` and ``sops``, which are smaller: ``sops
  --version`` peaks near 35 MiB, ``git`` near 11 MiB, the keyturn process above 60 MiB);
- HTTP requests the sandbox served, per service, against the protocol minimum written down below
  (``PROTOCOL_MINIMUM``). The sandbox counts every request any emulator received, by service and route
  template (``SandboxState.requests``); Buildkite's GraphQL is one route (``POST /v1``), so its
  operations are taken from the Buildkite world's own counters (``graphql.<field>``).

Targets: ``daily-checks``, ``keda``, ``buildkite-cluster`` and ``buildkite-unclustered`` (both with
``--skip-manual``: their provider adds a manual step), ``buildkite-conductorone`` (no API mints a
Buildkite API access token, so before each run the benchmark makes one on the sandbox, as the engineer
does on buildkite.com, and points ``new_token = "env:..."`` at it), and ``jenkins`` when the sandbox's
config has such a target (otherwise a note says it was skipped; ``--add-jenkins`` adds it the way
tests/e2e/test_jenkins_headless.py does).

The sandbox runs in this process, so the machine's other load matters: the report measures it
(``_machine.py``), and ``--quiet-below CORES`` waits before each run until other processes are quiet.

    .venv/bin/python benchmarks/headless_rotation.py [--runs 7] [--target daily-checks ...] [--json] [--save FILE]
        [--add-jenkins] [--quiet-below 0.5 [--quiet-wait 120]] [-q]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _machine import LoadMeter, wait_for_quiet  # noqa: E402  (benchmarks/, the script's folder)

from app.sandbox import Sandbox  # noqa: E402

# The targets the sandbox's config defines today, with the flags a headless run of each needs.
TARGETS: dict[str, tuple[str, ...]] = {
    "daily-checks": (),
    "keda": (),
    "buildkite-cluster": ("--skip-manual",),
    "buildkite-unclustered": ("--skip-manual",),
    "buildkite-conductorone": (),
    "jenkins": (),
}
NEW_TOKEN_ENV = "KT_BENCH_NEW_BK_TOKEN"

# The fewest HTTP requests each rotation needs, by target: {target: [(service, what, n, why)]}. Services
# are the sandbox's names ("vault:<name>" for a Key Vault). A fresh process has no token cache, so its
# sign-in counts. Not counted as minimal (they show up as the difference): OpenID discovery documents
# MSAL/azure-identity fetch once per process and authority, the Azure SDK's unauthenticated first request
# to a vault (its bearer challenge), pre-flight checks made before anything is minted, the extra
# pages of a listing, and follow-up reads keyturn makes to be resumable (find_done, tags).
_ADO_SIGN_IN = [
    ("entra", "sign-in: device code", 1, "POST /devicecode starts the device-code grant"),
    ("entra", "sign-in: token", 1, "at least one POST /token redeems it (the sandbox approves at once)"),
]
_ADO_CORE = [
    ("vssps", "list the bot's active PATs (page 1)", 1, "find the old token by name"),
    ("vssps", "create PAT", 1, "mint"),
    ("devops", "verify with the new PAT", 1, "one call authenticated by the new value proves it works"),
    ("vssps", "revoke old PAT", 1, "retire"),
    ("vssps", "list active PATs again (page 1)", 1, "proof: a revoke may answer 200 without effect"),
]


def _vault_store(vault: str) -> list[tuple[str, str, int, str]]:
    return [
        ("entra", "Key Vault: client-credentials token", 1, "Key Vault takes only a bearer token for its audience"),
        (f"vault:{vault}", "set secret (new version)", 1, "one PUT stores the new value"),
    ]


def _vault_read_and_store(vault: str) -> list[tuple[str, str, int, str]]:
    return [
        ("entra", "Key Vault: client-credentials token", 1, "Key Vault takes only a bearer token for its audience"),
        (f"vault:{vault}", "get the old token", 1, "the config keeps the current token in Key Vault"),
        (f"vault:{vault}", "set secret (new version)", 1, "one PUT stores the new value"),
    ]


_BK_AGENT = [
    ("buildkite-graphql", "list the agent tokens", 1, "find the old one (cluster and organization id in the same query)"),
    ("buildkite-graphql", "create agent token", 1, "mint; the mutation's answer is the only confirmation an agent "
     "token can get through the API (it cannot authenticate API calls)"),
    ("buildkite-graphql", "revoke old agent token", 1, "retire"),
    ("buildkite-graphql", "list the agent tokens again", 1, "proof of the revocation"),
]
PROTOCOL_MINIMUM: dict[str, list[tuple[str, str, int, str]]] = {
    # ADO = sign-in (2) + list + create + verify + revoke + list proof (5) + Key Vault token + set (2)
    "daily-checks": _ADO_SIGN_IN + _ADO_CORE + _vault_store("cftptl-intsvc"),
    # ADO = sign-in (2) + list + create + verify + revoke + list proof (5); Flux/sops is local git + sops, no HTTP
    "keda": _ADO_SIGN_IN + _ADO_CORE,
    # Buildkite cluster agent token = list + create + revoke + list proof (4) + Key Vault token + set (2)
    "buildkite-cluster": _BK_AGENT + _vault_store("cftptl-intsvc"),
    # Buildkite unclustered agent token: the same four GraphQL calls + Key Vault token + set (2)
    "buildkite-unclustered": _BK_AGENT + _vault_store("cftptl-intsvc"),
    # Buildkite API access token (made by hand) = Key Vault token + get old + set (3) + REST inspect old + inspect
    # new + revoke + proof (4) + ConductorOne sign-in + update connector + force sync + one poll (4)
    "buildkite-conductorone": [
        *_vault_read_and_store("cftptl-intsvc"),
        ("buildkite-rest", "GET /v2/access-token with the old token", 1, "the old token's uuid (to revoke the right one)"),
        ("buildkite-rest", "GET /v2/access-token with the new token", 1, "authenticates the new value and shows its scopes"),
        ("buildkite-rest", "DELETE /v2/access-token with the old token", 1, "the only way to revoke an API access token"),
        ("buildkite-rest", "GET /v2/access-token with the old token -> 401", 1, "proof of the revocation"),
        ("conductorone", "client-credentials sign-in", 1, "POST /auth/v1/token"),
        ("conductorone", "update the connector's config", 1, "api_token (updateMask: config)"),
        ("conductorone", "force sync", 1, "the connector reads Buildkite with the new token"),
        ("conductorone", "read the connector once (sync done)", 1, "the sync's outcome verifies the new token end to end"),
    ],
    # Jenkins = who-am-I with the old token + mint + who-am-I with the new + revoke + proof (5) + Key Vault get + set (3)
    "jenkins": [
        *_vault_read_and_store("cftptl-intsvc"),
        ("jenkins", "whoAmI with the old token", 1, "the user the token belongs to (its uuid is in the config)"),
        ("jenkins", "generateNewToken", 1, "mint (Basic auth with an API token needs no crumb)"),
        ("jenkins", "whoAmI with the new token", 1, "verify"),
        ("jenkins", "revoke the old token", 1, "retire by uuid"),
        ("jenkins", "whoAmI with the old token -> 401/anonymous", 1, "proof of the revocation"),
    ],
}
# Azure DevOps listings the sandbox pages by its page_size (2): each listing costs ceil(active PATs / 2) requests.
ADO_LISTINGS = {"daily-checks": 2, "keda": 2}


@dataclass
class Sample:
    seconds: float
    maxrss_kib: int
    requests: dict[str, dict[str, int]]  # service -> "METHOD route" -> n
    graphql_ops: dict[str, int] = field(default_factory=dict)
    extra_pages: int = 0  # listing pages beyond the first that the sandbox's page size forces
    added_jenkins: bool = False
    others_before: float | None = None  # cores others used just before the run (with --quiet-below)

    @property
    def total(self) -> int:
        return sum(sum(r.values()) for r in self.requests.values())

    def per_service(self) -> dict[str, int]:
        return {s: sum(r.values()) for s, r in self.requests.items()}


def ado_extra_pages(sb: Sandbox, target: str) -> int:
    listings = ADO_LISTINGS.get(target, 0)
    if not listings:
        return 0
    now = datetime.now(UTC)
    active = sum(1 for p in sb.state.pats() if p.owner_oid == sb.state.bot_oid and p.active(now))
    return listings * (max(1, math.ceil(active / sb.state.page_size)) - 1)


def has_jenkins_target(sb: Sandbox) -> bool:
    return "jenkins" in tomllib.loads(sb.config_path.read_text()).get("targets", {})


def add_jenkins(sb: Sandbox) -> None:
    """The Jenkins target the way tests/e2e/test_jenkins_headless.py adds it (old token in Key Vault)."""
    seeded = sb.jenkins.seeded
    assert seeded is not None
    sb.state.set_secret("cftptl-intsvc", "jenkins-api-token", seeded.token_value)
    block = sb.jenkins.config_toml(sb.urls["jenkins"], api_token_ref="vault:cftptl-intsvc/jenkins-api-token")
    block += '\n[[targets.jenkins.follow_ups]]\nkind = "keyvault-secret-version"\nvault = "cftptl-intsvc"\nsecret = "jenkins-api-token"\n'
    sb.config_path.write_text(sb.config_path.read_text() + "\n" + block)


def prepare(sb: Sandbox, target: str) -> dict[str, str]:
    """Whatever a target needs before a headless run; returns extra environment for the child."""
    if target != "buildkite-conductorone":
        return {}
    # no API creates an API access token: the engineer makes it on the page and hands it over
    new = sb.buildkite.create_api_token(
        ("read_teams", "read_organizations", "read_user"), graphql=True, description="ConductorOne Buildkite connector"
    )
    text = sb.config_path.read_text()
    if "new_token =" not in text.split("[targets.buildkite-conductorone]", 1)[1].split("[", 1)[0]:
        text = text.replace('old_token = "vault:', f'new_token = "env:{NEW_TOKEN_ENV}"\nold_token = "vault:', 1)
        sb.config_path.write_text(text)
    return {NEW_TOKEN_ENV: new.value}


def run_once(target: str, tmp: Path, index: int, add_jenkins_target: bool) -> Sample | None:
    """One rotation of ``target`` on a fresh sandbox; None when the sandbox has no such target."""
    base = tmp / f"{target}-{index}"
    added = False
    with Sandbox(base / "sb") as sb:
        if target == "jenkins" and not has_jenkins_target(sb):
            if not add_jenkins_target:
                return None
            add_jenkins(sb)
            added = True
        extra_env = prepare(sb, target)
        from app.sandbox.consumers import consumers_follow_promptly

        consumers_follow_promptly(sb)  # the consumers take the new value up at once: one run to `done`, gates included
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
        env.update({"HOME": str(base / "home"), "PYTHONPATH": str(ROOT), **extra_env})
        (base / "home").mkdir()
        extra_pages = ado_extra_pages(sb, target)
        sb.state.requests.reset()
        sb.buildkite.counters.clear()
        cmd = [sys.executable, "-m", "app.cli", "--config", str(sb.config_path),
               "rotate", target, "--no-input", "--json", *TARGETS[target]]
        with open(base / "stdout", "w+b") as out_f, open(base / "stderr", "w+b") as err_f:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
            code, maxrss_kib = wait_with_rusage(proc, timeout=120)
            seconds = time.perf_counter() - t0
            out = (base / "stdout").read_bytes()
            err = (base / "stderr").read_bytes()
        if code != 0:
            sys.exit(f"rotation of {target} failed ({code}): {err.decode(errors='replace')}")
        state = json.loads(out)["state"]
        if state != "done":
            sys.exit(f"rotation of {target} ended in state {state!r}: {err.decode(errors='replace')}")
        snap = sb.state.requests.snapshot()
        requests = {s: {f"{m} {r}": n for (m, r), n in routes.items()} for s, routes in snap.items()}
        ops = {k.removeprefix("graphql."): n for k, n in sb.buildkite.counters.items() if k.startswith("graphql.")}
        sample = Sample(seconds, maxrss_kib, requests, ops, extra_pages, added)
    shutil.rmtree(base, ignore_errors=True)
    return sample


def wait_with_rusage(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, int]:
    """Reap ``proc`` with a blocking wait4 (waitpid would drop its rusage): (exit code, ru_maxrss in KiB)."""
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss  # KiB on Linux


def median(xs: list[float] | list[int]) -> float:
    return float(statistics.median(xs))


def summarize(target: str, samples: list[Sample]) -> dict[str, Any]:
    minimum = PROTOCOL_MINIMUM[target]
    services = sorted({s for x in samples for s in x.requests})
    min_by_service: dict[str, int] = {}
    for service, _what, n, _why in minimum:
        min_by_service[service] = min_by_service.get(service, 0) + n
    last = samples[-1]
    return {
        "target": target,
        "runs": len(samples),
        "flags": list(TARGETS[target]),
        "others_busy_cores_before_each_run": [None if x.others_before is None else round(x.others_before, 2) for x in samples],
        "wall_s": {"median": median([x.seconds for x in samples]), "min": min(x.seconds for x in samples),
                   "max": max(x.seconds for x in samples), "all": [round(x.seconds, 3) for x in samples]},
        "peak_rss_mib": {"median": median([x.maxrss_kib for x in samples]) / 1024,
                         "min": min(x.maxrss_kib for x in samples) / 1024,
                         "max": max(x.maxrss_kib for x in samples) / 1024},
        "requests": {
            "median": median([x.total for x in samples]),
            "all": [x.total for x in samples],
            "minimum": sum(n for _s, _w, n, _y in minimum),
            "sandbox_extra_pages": median([x.extra_pages for x in samples]),
            "per_service_median": {s: median([x.per_service().get(s, 0) for x in samples]) for s in services},
            "per_service_minimum": min_by_service,
            "routes_last_run": last.requests,
            "buildkite_graphql_ops_last_run": last.graphql_ops,
        },
        "minimum_breakdown": [{"service": s, "what": w, "n": n, "why": y} for s, w, n, y in minimum],
    }


def minimum_text(req: dict[str, Any]) -> str:
    extra = req["sandbox_extra_pages"]
    return f"{req['minimum']}+{extra:.0f}" if extra else str(req["minimum"])


def print_report(results: list[dict[str, Any]], skipped: list[str], runs: int, machine: str, verbose: bool) -> None:
    print(f"headless rotations, {runs} runs per target, round-robin, fresh sandbox per run")
    print(machine)
    before = [x for r in results for x in r["others_busy_cores_before_each_run"] if x is not None]
    if before:
        print(f"cores other processes used in the 2 s before each run: median {median(before):.2f}, max {max(before):.2f}")
    for note in skipped:
        print(f"  note: {note}")
    if verbose:
        for r in results:
            req = r["requests"]
            print(f"\n{r['target']} {' '.join(r['flags'])}".rstrip())
            print(f"  wall times (s): {', '.join(f'{x:.2f}' for x in r['wall_s']['all'])}")
            print(f"  requests per run: {req['all']}")
            print(f"  minimum: {minimum_text(req)}; by service: median (protocol minimum)")
            for s in sorted(set(req["per_service_median"]) | set(req["per_service_minimum"])):
                print(f"    {s:<20} {req['per_service_median'].get(s, 0):>4.0f}  ({req['per_service_minimum'].get(s, 0)})")
            print("  routes (last run):")
            for s, routes in sorted(req["routes_last_run"].items()):
                for route, n in sorted(routes.items()):
                    print(f"    {s:<20} {route:<62} {n}")
            if req["buildkite_graphql_ops_last_run"]:
                ops = ", ".join(f"{k} {n}" for k, n in sorted(req["buildkite_graphql_ops_last_run"].items()))
                print(f"    buildkite-graphql operations: {ops}")
            print("  protocol minimum:")
            for m in r["minimum_breakdown"]:
                print(f"    {m['service']:<20} {m['n']}  {m['what']}  -- {m['why']}")
    print()
    header = (f"{'target':<24} {'wall median':>11} {'min..max':>13} {'peak RSS':>9} {'requests':>8} {'minimum':>9}"
              "  per service (median/minimum)")
    print(header)
    print("-" * len(header))
    for r in results:
        req = r["requests"]
        per = " ".join(
            f"{s}={req['per_service_median'].get(s, 0):.0f}/{req['per_service_minimum'].get(s, 0)}"
            for s in sorted(set(req["per_service_median"]) | set(req["per_service_minimum"]))
        )
        print(
            f"{r['target']:<24} {r['wall_s']['median']:>9.2f} s {r['wall_s']['min']:>5.2f}..{r['wall_s']['max']:<5.2f}"
            f" {r['peak_rss_mib']['median']:>5.0f} MiB {req['median']:>8.0f} {minimum_text(req):>9}  {per}"
        )
    if any(r["requests"]["sandbox_extra_pages"] for r in results):
        print("minimum 'N+k': N for one page per listing; k more pages because the sandbox pages PAT listings by 2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="rotations per target (default 7)")
    ap.add_argument("--target", action="append", choices=sorted(TARGETS), help="only these targets (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    ap.add_argument("--add-jenkins", action="store_true",
                    help="when the sandbox's config has no jenkins target, add it as tests/e2e/test_jenkins_headless.py does")
    ap.add_argument("--quiet-below", type=float, metavar="CORES",
                    help="before each run, wait until other processes use fewer than CORES cores (see --quiet-wait)")
    ap.add_argument("--quiet-wait", type=float, default=120.0, metavar="SECONDS",
                    help="the longest wait for --quiet-below (default 120); the run starts anyway after it")
    ap.add_argument("--save", metavar="FILE", help="also write the JSON to FILE")
    ap.add_argument("-q", "--quiet", action="store_true", help="only the table (no per-route breakdown)")
    args = ap.parse_args()
    targets = args.target or list(TARGETS)
    samples: dict[str, list[Sample]] = {t: [] for t in targets}
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="keyturn-bench-") as tmp, LoadMeter() as meter:
        for target in targets:  # warm the bytecode and OS caches once per target (not measured)
            if run_once(target, Path(tmp), -1, args.add_jenkins) is None:
                skipped.append(f"{target}: the sandbox's config has no [targets.{target}] yet; skipped "
                               "(--add-jenkins adds it as the e2e test does)")
                samples.pop(target)
        for i in range(args.runs):
            for target in samples:
                others = wait_for_quiet(args.quiet_below, max_wait=args.quiet_wait)
                sample = run_once(target, Path(tmp), i, args.add_jenkins)
                assert sample is not None
                sample.others_before = others
                samples[target].append(sample)
    results = [summarize(t, s) for t, s in samples.items()]
    for r in results:
        if any(x.added_jenkins for x in samples[r["target"]]):
            r["note"] = "target added by the benchmark (--add-jenkins): the sandbox's config has none"
            skipped.append(f"{r['target']}: {r['note']}")
    doc = {"runs": args.runs, "machine": meter.report(), "notes": skipped, "results": results}
    if args.save:
        Path(args.save).write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_report(results, skipped, args.runs, meter.line(), verbose=not args.quiet)


if __name__ == "__main__":
    main()
