"""The `keyring` follow-up: a copy of the new token in the OS keyring, before the reveal."""

from __future__ import annotations

from app.config import load_config
from app.engine import Engine
from app.sandbox import Sandbox
from providers.base import Interaction
from tests.e2e.test_secret_sources import MemoryKeyring, memory_keyring  # noqa: F401  (fixture)


def test_keyring_store_and_read_back(sandbox: Sandbox, memory_keyring: MemoryKeyring) -> None:  # noqa: F811
    # the keyring is daily-checks' only store here, so the read-back below can only come from it
    kv_block = '[[targets.daily-checks.follow_ups]]\nkind = "keyvault-secret-version"\nvault = "cftptl-intsvc"\nsecret = "azure-devops-token"\n'
    text = sandbox.config_path.read_text()
    assert kv_block in text
    text = text.replace(kv_block, '[[targets.daily-checks.follow_ups]]\nkind = "keyring"\nservice = "keyturn-test"\nusername = "daily-checks"\n')
    sandbox.config_path.write_text(text)
    engine = Engine(load_config(sandbox.config_path), interaction=Interaction(on_device_code=lambda p: None))
    rotation = engine.begin(engine.plan("daily-checks"))
    rotation.mint()
    stored = rotation.store()
    assert any("OS keyring: keyturn-test / daily-checks" in s for s in stored)
    new = sandbox.state.pat(rotation.new_token.id)  # type: ignore[union-attr]
    assert memory_keyring.store[("keyturn-test", "daily-checks")] == new.value  # type: ignore[union-attr]

    # a second process (resume) finds the value again in the keyring, checked by fingerprint
    resumed = engine.open(rotation.id)
    assert resumed.value is None
    assert resumed.run_to_end() == "revoked 1 old token(s)"
    assert resumed.value is not None and resumed.value.reveal() == new.value  # type: ignore[union-attr]
    assert [e["event"] for e in resumed.record.events].count("minted") == 1  # read back, not minted again
    assert resumed.state == "done"
    engine.close()
