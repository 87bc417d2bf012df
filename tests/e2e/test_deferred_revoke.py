"""`revoke_after`: the old token outlives the rotation until the delay has passed, then `resume` retires it."""

from __future__ import annotations

from datetime import timedelta

from app.config import load_config
from app.engine import Engine
from app.journal import utcnow
from app.sandbox import Sandbox
from providers.base import Interaction


def test_deferred_revoke_is_picked_up_later(sandbox: Sandbox) -> None:
    text = sandbox.config_path.read_text().replace('token_name = "daily-checks"', 'token_name = "daily-checks"\nrevoke_after = "24h"', 1)
    sandbox.config_path.write_text(text)
    config = load_config(sandbox.config_path)
    now = [utcnow()]
    engine = Engine(config, interaction=Interaction(on_device_code=lambda p: None), clock=lambda: now[0])
    old = next(p for p in sandbox.state.pats() if p.display_name == "daily-checks")

    rotation = engine.begin(engine.plan("daily-checks"))
    outcome = rotation.run_to_end()
    assert "scheduled" in outcome
    assert rotation.state == "propagated"
    assert not sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]
    assert [r.rotation_id for r in engine.journal.unfinished()] == [rotation.id]
    assert {s.target: s.retire_due for s in engine.status()}["daily-checks"] == []

    now[0] += timedelta(hours=23)
    again = engine.open(rotation.id)
    assert "scheduled" in again.run_to_end()
    assert not sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]

    now[0] += timedelta(hours=2)
    assert {s.target: s.retire_due for s in engine.status()}["daily-checks"] == [rotation.id]
    final = engine.open(rotation.id)
    assert final.run_to_end() == "revoked 1 old token(s)"
    assert final.state == "done"
    assert sandbox.state.pat(old.authorization_id).revoked  # type: ignore[union-attr]
    engine.close()
