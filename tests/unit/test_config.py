"""Every bad configuration gets one line naming the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import load_config, parse_config
from app.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

ACCOUNT = {"platform": "azure-devops", "organization": "o"}


def cfg(**targets: dict) -> dict:
    return {"accounts": {"bot": ACCOUNT}, "targets": targets}


def t(**kw: object) -> dict:
    return {"account": "bot", "token_name": "tok", "preset": "keda", **kw}


BAD = [
    (cfg(x=t(account="nobody")), "targets.x.account", "define [accounts.nobody]"),
    ({"accounts": {"bot": {**ACCOUNT, "email": "vault:nope/x"}}}, "accounts.bot.email", "define [vaults.nope]"),
    ({"accounts": {"bot": {**ACCOUNT, "colour": "red"}}}, "accounts.bot.colour", "unknown key"),
    ({"accounts": {"bot": {**ACCOUNT, "platform": "gitlab"}}}, "accounts.bot.platform", "'azure-devops'"),
    ({"accounts": {"bot": {"platform": "azure-devops"}}}, "accounts.bot.organization", "missing; add it"),
    ({"accounts": {"bot": {**ACCOUNT, "sign_in": "password"}}}, "accounts.bot", "needs email and password"),
    ({"accounts": {"bot": {**ACCOUNT, "email": "hunter2"}}}, "accounts.bot.email", "not a secret reference"),
    (cfg(x=t(follow_ups=[{"kind": "bogus"}])), "targets.x.follow_ups.0", "unknown follow-up kind"),
    (cfg(x=t(follow_ups=[{"kind": "manual"}])), "targets.x.follow_ups.0.text", "missing; add it"),
    (cfg(x=t(follow_ups=[{"text": "x"}])), "targets.x.follow_ups.0", "without kind"),
    (cfg(x=t(revoke_after="soon")), "targets.x.revoke_after", "not a duration"),
    (cfg(x={"account": "bot", "token_name": "tok"}), "targets.x", "give scopes"),
    (cfg(x=t(scopes=["vso.build"])), "targets.x", "not both"),
    (cfg(x=t(validity_days=0)), "targets.x.validity_days", "greater than or equal to 1"),
    (cfg(x=t(validity_days=400)), "targets.x.validity_days", "less than or equal to 365"),
    (cfg(x=t(token_name="")), "targets.x.token_name", "at least 1 character"),
    (cfg(x=t(follow_ups=[{"kind": "keyvault-secret-version", "vault": "v", "secret": "s"}])), "targets.x.follow_ups.0.vault", "define [vaults.v]"),
    ({"vaults": {"v": {"auth": "client-secret"}}}, "vaults.v", "needs tenant_id, client_id and client_secret"),
    ({"settings": {"clipboard_clear_seconds": -1}}, "settings.clipboard_clear_seconds", "greater than or equal to 0"),
    ({"vaults": {"v": {"kind": "hashicorp"}}}, "vaults.v.kind", "'azure-keyvault'"),
    (cfg(x={"account": "bot", "token_name": "agents", "token_type": "cluster-agent-token"}), "targets.x", "needs cluster"),
    ({"accounts": {"bk": {"platform": "buildkite", "organization": "o", "api_token": "bkua_123"}}}, "accounts.bk.api_token", "not a secret reference"),
    (cfg(x=t(token_type="ssh-key")), "targets.x.token_type", "'pat'"),
]


@pytest.mark.parametrize(("data", "key", "fix"), BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_config_one_line(data: dict, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, Path("/etc/keyturn.toml"))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("/etc/keyturn.toml: ")
    assert key in msg
    assert fix in msg
    for secret in ("hunter2", "bkua_123"):  # a value pasted where a reference belongs is never echoed
        assert secret not in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.toml")


def test_not_toml(tmp_path: Path) -> None:
    p = tmp_path / "k.toml"
    p.write_text("[targets\nx=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "examples" / "keyturn.toml")
    assert set(config.targets) == {"keda", "daily-checks", "buildkite-cluster", "buildkite-conductorone", "jenkins"}
    assert config.targets["jenkins"].scopes is None and config.targets["jenkins"].preset is None  # no scopes to pick
    assert config.targets["buildkite-cluster"].validity_days is None  # agent tokens: no expiry unless asked
    keda = config.targets["keda"]
    assert keda.preset == "keda"
    assert [f.kind for f in keda.follow_ups] == ["flux-sops-secret"]
    assert keda.follow_ups[0].files == ["apps/keda/cft/pipeline-auth.enc.yaml", "apps/keda/sds/pipeline-auth.enc.yaml"]  # type: ignore[union-attr]
    daily = config.targets["daily-checks"]
    assert daily.follow_ups[0].kind == "keyvault-secret-version"
    assert (daily.follow_ups[0].vault, daily.follow_ups[0].secret) == ("cftptl-intsvc", "azure-devops-token")  # type: ignore[union-attr]
    assert config.accounts["ado-bot"].email == "vault:rpe-prod/rpe-azure-devops-email"


def test_relative_paths_follow_the_file(tmp_path: Path) -> None:
    p = tmp_path / "k.toml"
    p.write_text('[settings]\nca_bundle = "ca.pem"\n')
    config = load_config(p)
    assert config.settings.ca_bundle is not None
    assert config.resolve_path(config.settings.ca_bundle) == tmp_path / "ca.pem"


STRUCTURE = [
    'settings = "x"\n',
    "[settings]\ntheme = 7\n",
    "[keymap]\n'app.quit' = 1\n",
    "[targets.x]\naccount = 'nobody'\ntoken_name = 't'\npreset = 'keda'\n",
    "[accounts.bot]\norganization = 'o'\n[targets.x]\naccount = 'bot'\ntoken_name = 't'\npreset = 'keda'\n",
]


@pytest.mark.parametrize("text", STRUCTURE)
def test_the_wizard_start_refuses_what_its_first_frame_needs_with_load_configs_message(tmp_path: Path, text: str) -> None:
    from app.config_view import open_config

    p = tmp_path / "k.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as today:
        load_config(p)
    with pytest.raises(ConfigError) as start:
        open_config(p)
    assert str(start.value) == str(today.value)


def test_the_wizard_start_views_a_file_that_only_full_validation_refuses(tmp_path: Path) -> None:
    from app.config_view import PendingConfig, open_config

    p = tmp_path / "k.toml"
    p.write_text("[accounts.bot]\nplatform = 'buildkite'\norganization = 'o'\n[targets.b]\naccount = 'bot'\n"
                 "token_name = 't'\ndescription = 'agents'\n[targets.a]\naccount = 'bot'\ntoken_name = 'u'\nrevoke_after = 'soon'\n")
    pending = open_config(p)
    assert isinstance(pending, PendingConfig)
    assert list(pending.view.targets) == ["b", "a"]  # file order
    assert pending.view.targets["b"].platform == "buildkite" and pending.view.targets["b"].description == "agents"
    with pytest.raises(ConfigError, match=r"targets\.a\.revoke_after"):
        pending.validate()
