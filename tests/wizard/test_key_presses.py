"""The README's key-press table, held: each sandbox target rotated from launch back to the targets screen with
exactly the keys the table lists (issue 15), against a real sandbox over loopback, at 80x24.

Each key is followed by the screen it must lead to; the test waits for that screen to be ready (the plan built, the
follow-ups run, the gates asked) before the next key, as a person reading the screen would. The rotation must end
`done` with the old token revoked, so a key that silently stopped doing its job fails here. The README's table is
read and compared with WALKS, so the two cannot drift.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.journal import RotationJournal

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


CLEAR = "RetireScreen, every gate passed"  # after the sandbox's `m`: the consumers have the new token

# target -> (key, what the key leads to); the README's "Key presses in the demo" table lists the same keys
WALKS: dict[str, list[tuple[str, str]]] = {
    "keda": [
        ("enter", "ScopesScreen"), ("ctrl+s", "ReviewScreen"), ("enter", "RevealScreen"), ("space", "RevealScreen"),
        ("ctrl+s", "FollowUpsScreen"), ("ctrl+s", "RetireScreen"), ("m", CLEAR), ("enter", "SummaryScreen"),
        ("enter", "TargetsScreen"),
    ],
    "daily-checks": [
        ("down", "TargetsScreen"), ("enter", "ScopesScreen"), ("ctrl+s", "ReviewScreen"), ("enter", "RevealScreen"),
        ("ctrl+s", "FollowUpsScreen"), ("ctrl+s", CLEAR), ("enter", "SummaryScreen"), ("enter", "TargetsScreen"),
    ],
    "buildkite-cluster": [
        ("down", "TargetsScreen"), ("down", "TargetsScreen"), ("enter", "TokenOptionsScreen"),
        ("ctrl+s", "ReviewScreen"), ("enter", "RevealScreen"), ("ctrl+s", "RetireScreen"), ("m", CLEAR),
        ("enter", "SummaryScreen"), ("enter", "TargetsScreen"),
    ],
    "buildkite-unclustered": [
        ("down", "TargetsScreen"), ("down", "TargetsScreen"), ("down", "TargetsScreen"),
        ("enter", "TokenOptionsScreen"), ("ctrl+s", "ReviewScreen"), ("enter", "RevealScreen"),
        ("ctrl+s", "RetireScreen"), ("m", CLEAR), ("enter", "SummaryScreen"), ("enter", "TargetsScreen"),
    ],
    "buildkite-conductorone": [
        ("down", "TargetsScreen"), ("down", "TargetsScreen"), ("down", "TargetsScreen"), ("down", "TargetsScreen"),
        ("enter", "TokenOptionsScreen"), ("ctrl+s", "ReviewScreen"), ("enter", "PasteTokenScreen"),
        ("ctrl+n", "RevealScreen"), ("ctrl+s", "FollowUpsScreen"), ("ctrl+s", CLEAR), ("enter", "SummaryScreen"),
        ("enter", "TargetsScreen"),
    ],
    "jenkins": [
        ("end", "TargetsScreen"), ("enter", "TokenOptionsScreen"), ("ctrl+s", "ReviewScreen"),
        ("enter", "RevealScreen"), ("ctrl+s", "RetireScreen"), ("m", CLEAR), ("enter", "SummaryScreen"),
        ("enter", "TargetsScreen"),
    ],
}


def ready(wiz: Any, app: Any, expected: str) -> bool:
    """The screen a key leads to, done with what it does by itself (nothing left for a person to wait for)."""
    screen = app.screen
    name = wiz.screen_name(app)
    if expected == CLEAR:
        return name == "RetireScreen" and screen.ready and not screen.busy and not screen.waiting
    if name != expected:
        return False
    if name == "TargetsScreen":
        return not screen.reading
    if name == "ReviewScreen":
        return screen.plan is not None
    if name == "FollowUpsScreen":
        return all(s == "done" for s in screen.states.values())
    if name == "RetireScreen":
        return bool(screen.ready and not screen.busy)
    return True


@pytest.mark.parametrize("target", list(WALKS))
async def test_each_target_rotates_with_the_keys_the_readme_lists(target: str, wiz, sandbox_wizard, wizard_sandbox) -> None:
    app = sandbox_wizard()
    async with app.run_test(size=(80, 24)) as pilot:
        await wiz.wait_until(pilot, lambda: ready(wiz, app, "TargetsScreen"), what="the targets' expiry")
        press = wiz.KeyCounter(pilot)
        summary = ""
        for key, expected in WALKS[target]:
            await press(key)
            await wiz.wait_until(pilot, lambda e=expected: ready(wiz, app, e), what=f"{expected} after {key!r} ({target})")
            if expected == "SummaryScreen":
                summary = " ".join(wiz.screen_text(app).split())
        keys = press.keys

    print(f"{target}: {len(keys)} key presses: {' '.join(keys)}")  # shown with -s
    (record,) = RotationJournal(wizard_sandbox.directory / "journal").all()
    assert record.target == target
    assert record.state == "done"
    assert any(e["event"] == "revoked" and e.get("role") == "old" for e in record.events), "the old token was not revoked"
    # where the value went, as the summary says it: keda's only holder is the Flux secret, not "nowhere"
    assert STORED_IN[target] in summary, summary


STORED_IN = {
    "keda": "Stored in no vault or keyring (only Flux pipeline-auth secret (cft, sds) got it)",
    "daily-checks": "Stored in Key Vault",
    "buildkite-cluster": "Stored in Key Vault",
    "buildkite-unclustered": "Stored in Key Vault",
    "buildkite-conductorone": "Stored in Key Vault",
    "jenkins": "Stored in Key Vault",
}


def readme_table() -> dict[str, tuple[list[str], int]]:
    """The README's "Key presses in the demo" table: target -> (the keys as Pilot names, the count column)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text.split("**Key presses in the demo**", 1)[1].split("\n\n", 2)[1]
    rows: dict[str, tuple[list[str], int]] = {}
    for line in section.splitlines()[2:]:  # past the header and the rule
        target_cell, keys_cell, count_cell = (c.strip() for c in line.strip("|").split("|"))
        keys: list[str] = []
        for word in keys_cell.split(", "):
            word = word.split(" (")[0]  # "Ctrl+N (what it does)"
            name, _, times = word.partition(" x")
            keys += [name.lower()] * (int(times) if times else 1)
        rows[target_cell.split("`")[1]] = (keys, int(count_cell))
    return rows


def test_the_readme_table_lists_exactly_these_walks() -> None:
    table = readme_table()
    assert set(table) == set(WALKS)
    for target, walk in WALKS.items():
        keys, count = table[target]
        assert keys == [key for key, _ in walk], target
        assert count == len(walk), target
