"""The theme switch: Textual's themes in the palette, the choice kept in the config's [settings] theme."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.config import load_config
from app.config_edit import edit_table, set_setting_values
from app.errors import KeyturnError
from app.palette import screen_commands

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

CONFIG = """\
# the team's keyturn config
[accounts.bot]  # the bot
platform = "azure-devops"
organization = "o"

[targets.keda]
account = "bot"
token_name = "keda-agent-pools"
preset = "keda"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "keyturn.toml"
    path.write_text(CONFIG + f'\n[settings]\njournal_dir = "{tmp_path / "journal"}"  # where rotations go\n')
    path.chmod(0o600)
    return path


def test_a_missing_settings_table_is_added_and_the_rest_of_the_file_is_kept() -> None:
    text, changed = edit_table(CONFIG, "settings", {"theme": "textual-light"}, create=True)
    assert changed == {"theme": "textual-light"}
    assert text.startswith(CONFIG)  # comments, order and layout as written
    assert text.endswith('\n[settings]\ntheme = "textual-light"\n')


def test_an_existing_settings_table_gets_the_key_and_keeps_its_comments(config_file: Path) -> None:
    assert set_setting_values(config_file, {"theme": "nord"}) == {"theme": "nord"}
    text = config_file.read_text()
    assert "# where rotations go" in text and text.count("[settings]") == 1
    assert load_config(config_file).settings.theme == "nord"
    assert oct(config_file.stat().st_mode & 0o777) == "0o600"
    assert set_setting_values(config_file, {"theme": "nord"}) == {}  # already so: the file is not rewritten
    assert set_setting_values(config_file, {"theme": "gruvbox"}) == {"theme": "gruvbox"}
    assert config_file.read_text().count("theme =") == 1


def test_a_value_that_is_not_a_name_is_refused_and_the_file_is_untouched(config_file: Path) -> None:
    before = config_file.read_text()
    with pytest.raises(KeyturnError, match=r"settings\.theme: the value is not an identifier"):
        set_setting_values(config_file, {"theme": 'x"\n[targets.evil]'})
    assert config_file.read_text() == before


async def test_the_palette_offers_change_theme_and_the_choice_is_saved_and_used_next_time(
    config_file: Path, wiz: Any
) -> None:
    wizard = wiz.RecordingWizard(load_config(config_file))
    async with wizard.run_test(size=(80, 24)) as pilot:
        await wiz.wait_until(pilot, lambda: wiz.screen_name(wizard) == "TargetsScreen")
        names = [name for name, _callback, _help in screen_commands(wizard.screen)]
        assert "Change theme" in names
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"change theme")
        await wiz.wait_until(pilot, lambda: "Change theme" in wiz.screen_text(wizard), what="the command")
        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: "Search for themes" in wiz.screen_text(wizard), what="the theme list")
        await pilot.press(*"textual-light")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wiz.wait_until(pilot, lambda: wizard.theme == "textual-light", what="the light theme")
        await wiz.wait_until(pilot, lambda: any("saved in" in m for _t, m in wizard.notified), what="the save")
    assert load_config(config_file).settings.theme == "textual-light"

    again = wiz.RecordingWizard(load_config(config_file))
    async with again.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert again.theme == "textual-light"
        assert not any(title == "Theme" for title, _m in again.notified)  # no warning, nothing saved again


async def test_an_unknown_theme_in_the_config_is_said_once_and_the_default_is_used(config_file: Path, wiz: Any) -> None:
    set_setting_values(config_file, {"theme": "no-such-theme"})
    wizard = wiz.RecordingWizard(load_config(config_file))
    async with wizard.run_test(size=(80, 24)) as pilot:
        await wiz.wait_until(pilot, lambda: wizard.notified, what="the warning")
        assert wizard.theme == "textual-dark"
        (title, message), *_ = wizard.notified
        assert title == "Theme" and "'no-such-theme' is not a theme" in message and "Change theme" in message
    assert load_config(config_file).settings.theme == "no-such-theme"  # the user's file is left as they wrote it


def test_snapshot_targets_in_the_light_theme(snap_compare, scripted_wizard, wiz) -> None:
    """Readable in a light theme: the expiry column's warning colours included."""

    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await wiz.wait_until(pilot, lambda: wiz.screen_name(app) == "TargetsScreen" and not app.screen.reading)
        await wiz.wait_until(pilot, lambda: "Stop waiting" not in wiz.screen_text(app))

    wizard = scripted_wizard(settings={"theme": "textual-light"})
    assert wizard.theme == "textual-light"
    assert snap_compare(wizard, terminal_size=(80, 24), run_before=run_before)
