"""Issue 12: the plan is journaled as one typed record and read back into the same type; step ids are stable."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from app.config import parse_config
from app.followups import build_steps
from app.plan import PlanRecord, StepRecord, TokenRecord, step_id

CONFIG = {
    "vaults": {"kv": {"url": "https://kv.vault.azure.net"}},
    "accounts": {"bot": {"platform": "azure-devops", "organization": "contoso", "tenant_id": "t", "sign_in": "azure-cli"}},
    "targets": {
        "t": {
            "account": "bot",
            "token_name": "tok",
            "preset": "keda",
            "follow_ups": [
                {"kind": "keyvault-secret-version", "vault": "kv", "secret": "azure-devops-token"},
                {"kind": "manual", "text": "Tell the team about {target}"},
                {"kind": "keyring", "service": "keyturn", "username": "bot"},
            ],
        }
    },
}


def test_a_plan_record_reads_back_into_the_same_type() -> None:
    record = PlanRecord(
        account="bot", platform="azure-devops", display_name="tok-20261202-abcdef12", token_name="tok",
        scopes=("vso.agentpools",), expires_at=datetime(2027, 3, 2, 12, 0, tzinfo=UTC), all_orgs=False,
        old_tokens=(TokenRecord("id-1", "tok", datetime(2026, 12, 9, tzinfo=UTC), ("vso.agentpools",)),),
        steps=(StepRecord("keyring-keyturn-bot", "keyring", "OS keyring"),), revoke_after_s=int(timedelta(hours=24).total_seconds()),
        warnings=("w",), cluster=None, lines=("1. mint",), target_config={"account": "bot"},
    )
    again = PlanRecord.from_json(record.to_json())
    assert again == record and isinstance(again.old_tokens[0], TokenRecord) and again.expires_at == record.expires_at
    assert again.target_config == {"account": "bot"}


def test_step_ids_name_what_a_step_acts_on_not_its_position() -> None:
    config = parse_config(CONFIG)
    ids = [s.id for s in build_steps(config, config.targets["t"])]
    assert ids[0] == "keyvault-secret-version-kv-azure-devops-token" and ids[2] == "keyring-keyturn-bot"
    assert all(re.fullmatch(r"[a-z][a-z0-9_-]*", i) for i in ids), "usable as widget ids"
    reordered = {**CONFIG, "targets": {"t": {**CONFIG["targets"]["t"], "follow_ups": CONFIG["targets"]["t"]["follow_ups"][::-1]}}}
    config2 = parse_config(reordered)
    assert sorted(s.id for s in build_steps(config2, config2.targets["t"])) == sorted(ids)


def test_long_or_repeated_places_keep_unique_ids() -> None:
    long = step_id("manual", "x" * 300)
    assert len(long) < 60 and long != step_id("manual", "x" * 299)
    twice = {**CONFIG, "targets": {"t": {**CONFIG["targets"]["t"], "follow_ups": [CONFIG["targets"]["t"]["follow_ups"][2]] * 2}}}
    config = parse_config(twice)
    assert [s.id for s in build_steps(config, config.targets["t"])] == ["keyring-keyturn-bot", "keyring-keyturn-bot-2"]


def test_a_journal_of_an_older_keyturn_is_known_by_its_positional_ids() -> None:
    old = {"account": "bot", "platform": "azure-devops", "display_name": "d", "scopes": [], "steps": [{"id": "1-keyring", "kind": "keyring", "title": "k"}]}
    assert PlanRecord.from_json(old).positional_ids
    assert not PlanRecord.from_json({**old, "steps": [{"id": "keyring-keyturn-bot", "kind": "keyring", "title": "k"}]}).positional_ids
