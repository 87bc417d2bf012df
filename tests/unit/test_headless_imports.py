"""Import contracts, so the layering cannot rot.

1. The headless paths must not pay for Textual (harlequin's habit): every module under app/ and providers/ except the
   wizard's own is imported in a fresh interpreter, and Textual (and rich, and screens) must not be in sys.modules
   after any of them. Modules are found by walking the packages' folders, so a new module is covered the day it is
   added; only the wizard's modules (``UI``) are exempt.
2. The CLI's headless commands, and a whole headless rotation (over the in-memory fakes of tests/engine), run in a
   fresh interpreter without importing Textual.
3. Who may import whom (docs/architecture.md's picture: config -> engine -> provider/follow-ups -> journal), read from
   the source (every import, also the ones inside functions and under TYPE_CHECKING): providers know nothing of the
   engine, the follow-ups or the wizard; follow-ups know no platform; the engine names no platform; the journal, the
   locks and the plan sit below all of them.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "providers")
UI = frozenset({"app.tui", "app.palette"})  # the wizard (screens/ is all wizard): these may import Textual
# modules that may import the wizard lazily, inside the function that starts it (never on a headless path)
STARTS_THE_WIZARD = frozenset({"app.cli", "app.sandbox.demo"})
NOT_HEADLESS = ("textual", "rich", "screens")


def module_files() -> dict[str, Path]:
    """Every module of the packages, by walking their folders (not by importing them)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = module_files()
HEADLESS = sorted(m for m in MODULES if m not in UI)


def group_of(module: str) -> str:
    """One interpreter per package (app, app.followups, providers.buildkite, ...): quick, and readable ids."""
    parts = module.split(".")
    if len(parts) >= 2 and (ROOT / parts[0] / parts[1]).is_dir():
        return ".".join(parts[:2])
    return parts[0]


GROUPS: dict[str, list[str]] = defaultdict(list)
for _m in HEADLESS:
    GROUPS[group_of(_m)].append(_m)

_CHECK = f"""
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    pulled = [m for m in {NOT_HEADLESS!r} if m in sys.modules]
    if pulled:  # nothing before this module had pulled them in: this one did
        print(json.dumps({{"module": name, "pulled": pulled}}))
        sys.exit(1)
print(json.dumps({{"imported": len(sys.argv) - 1}}))
"""


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_discovery_finds_every_headless_module() -> None:
    """The walk covers what the contract names (every provider and token kind, every follow-up, the engine and its
    journal, locks and plan, the CLI, Key Vault and the HTTP plumbing), and the exemptions exist."""
    named = {
        "app.cli", "app.commands", "app.engine", "app.journal", "app.plan", "app.locks", "app.config", "app.keyvault", "app.net",
        "app.secret_sources", "app.sandbox",
        "app.followups", "app.followups.keyvault_version", "app.followups.keyring_store", "app.followups.manual",
        "app.followups.aws_ssm", "app.followups.flux_sops", "app.followups.conductorone",
        "providers.base", "providers.registry", "providers.azure_devops.provider", "providers.azure_devops.scopes",
        "providers.buildkite.cluster_tokens", "providers.buildkite.agent_tokens", "providers.buildkite.api_token",
        "providers.buildkite.common", "providers.jenkins.provider",
    }
    assert named <= set(HEADLESS), sorted(named - set(HEADLESS))
    assert UI <= set(MODULES), "an exempt module is gone: drop it from UI"
    every_followup = {m for m in MODULES if m.startswith("app.followups.")}
    every_provider = {m for m in MODULES if m.startswith("providers.")}
    assert every_followup <= set(HEADLESS) and every_provider <= set(HEADLESS)
    assert sum(len(v) for v in GROUPS.values()) == len(HEADLESS)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_headless_modules_do_not_import_textual(group: str) -> None:
    modules = GROUPS[group]
    proc = subprocess.run([sys.executable, "-c", _CHECK, *modules], capture_output=True, text=True, timeout=120, env=_child_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"imported": len(modules)}


def test_headless_cli_run_does_not_import_textual(tmp_path: Path) -> None:
    """Real headless commands (on a config with no targets) run without Textual: status, resume, abort, a dry run of
    an unknown target, and the help of every command."""
    cfg = tmp_path / "k.toml"
    cfg.write_text(f"[settings]\njournal_dir = {str(tmp_path / 'journal')!r}\n")
    code = (
        "import sys\n"
        "from app.cli import cli\n"
        "runs = [['status', '--json'], ['resume', '--no-input', '--json'], ['abort', 'abcdef12'],\n"
        "        ['rotate', 'nosuch', '--no-input', '--dry-run'], ['--help'], ['rotate', '--help'], ['resume', '--help'],\n"
        "        ['abort', '--help'], ['status', '--help'], ['sandbox', '--help'], ['sandbox', 'up', '--help'], ['demo', '--help']]\n"
        "for args in runs:\n"
        f"    try:\n        cli(['--config', {str(cfg)!r}, *args], standalone_mode=False)\n"
        "    except SystemExit:\n        pass\n"
        f"bad = [m for m in {NOT_HEADLESS!r} if m in sys.modules]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_child_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_headless_rotation_does_not_import_textual(tmp_path: Path) -> None:
    """`keyturn rotate --no-input`, `status` and `resume` run a whole rotation (plan, journal, locks, follow-ups,
    retire) in a fresh interpreter over the in-memory fakes: Textual is never imported on the way."""
    code = (
        "import sys, pathlib\n"
        "from tests.engine.fakes import installed_world\n"
        "from app.cli import cli\n"
        f"with installed_world(pathlib.Path({str(tmp_path / 'world')!r})) as w:\n"
        "    w.add_target('app', consumers=('ci',))\n"
        "    for args in (['rotate', 'app', '--no-input', '--json'], ['status', '--json'], ['resume', '--no-input'],\n"
        "                 ['rotate', 'app', '--no-input', '--dry-run']):\n"
        "        try:\n"
        "            cli(['--config', str(w.config_path), *args], standalone_mode=False)\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code in (0, None), (args, exc.code)\n"
        "    w.check_done('app')\n"
        f"bad = [m for m in {NOT_HEADLESS!r} if m in sys.modules]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_child_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- who may import whom ------------------------------------------------------------------------------------------

PLATFORMS = ("providers.azure_devops", "providers.buildkite", "providers.jenkins")
WIZARD = ("app.tui", "app.palette", "screens", "textual", "rich")
# (modules the rule applies to, what they may not import, why)
CONTRACTS: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    (("providers",), ("app.engine", "app.cli", "app.followups", "app.journal", "app.locks", "app.plan", "app.sandbox", *WIZARD),
     "a provider is told what it needs (RotationContext); it never reaches into the engine, the journal or the follow-ups"),
    (("app.followups",), ("app.engine", "app.cli", "app.sandbox", "providers.registry", *PLATFORMS, *WIZARD),
     "a follow-up knows its store, not the engine nor any platform"),
    (("app.engine",), ("app.cli", "app.sandbox", *PLATFORMS, *WIZARD),
     "the engine never branches on a platform: it asks providers.registry"),
    (("app.journal", "app.locks", "app.plan", "app.config", "app.errors", "app.secret", "app.net"),
     ("app.engine", "app.cli", "app.followups", "app.sandbox", "app.keyvault", "providers.registry", *PLATFORMS, *WIZARD),
     "the journal, the locks, the plan record and the config sit below everything that uses them"),
    (("app.keyvault", "app.secret_sources", "app.logs", "app.config_edit", "app.clipboard"),
     ("app.engine", "app.cli", "app.followups", "app.sandbox", *PLATFORMS, *WIZARD),
     "plumbing the engine and the follow-ups use knows neither of them"),
]


def _covered(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def imports_of(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import statement of the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    for stmt in tree.body:  # `if TYPE_CHECKING:` / `try:` blocks at module level count as module level
        if isinstance(stmt, ast.If | ast.Try):
            top |= {id(n) for n in ast.walk(stmt) if isinstance(n, ast.Import | ast.ImportFrom)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((base, node.lineno, id(node) in top))
            out += [(f"{base}.{alias.name}", node.lineno, id(node) in top) for alias in node.names]
    return out


def test_who_may_import_whom() -> None:
    broken = []
    for rules, forbidden, why in CONTRACTS:
        for module, path in MODULES.items():
            if not _covered(module, rules):
                continue
            for imported, line, _ in imports_of(module, path):
                if _covered(imported, forbidden):
                    broken.append(f"{path.relative_to(ROOT)}:{line}: {module} imports {imported} ({why})")
    assert not broken, "\n".join(sorted(set(broken)))


def test_only_the_wizards_starters_import_it_and_only_lazily() -> None:
    """No headless module imports the wizard at module level; the two that start it do so inside that function."""
    broken = []
    for module in HEADLESS:
        for imported, line, at_top in imports_of(module, MODULES[module]):
            if not _covered(imported, WIZARD):
                continue
            if at_top or module not in STARTS_THE_WIZARD:
                broken.append(f"{MODULES[module].relative_to(ROOT)}:{line}: {module} imports {imported}")
    assert not broken, "\n".join(broken)


def test_the_contracts_see_imports() -> None:
    """The reader finds lazy, TYPE_CHECKING and relative imports (else the contracts above would pass vacuously)."""
    engine = {name for name, _, _ in imports_of("app.engine", MODULES["app.engine"])}
    assert {"app.journal", "providers.base", "providers.registry"} <= engine
    lazy = [(name, top) for name, _, top in imports_of("app.cli", MODULES["app.cli"]) if name == "app.tui"]
    assert lazy and not any(top for _, top in lazy)
