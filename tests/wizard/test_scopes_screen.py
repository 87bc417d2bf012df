"""The scope picker, driven with the keyboard (and a few clicks) the way an engineer would."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Button, Input, RadioButton, Select, Static

from providers.azure_devops.scopes import BUILTIN_PRESETS, FULL_ACCESS, Preset, load_catalogue, scope_string
from screens.scopes import Body, ScopeGroupRow, ScopeSelection, ScopesScreen

pytestmark = pytest.mark.anyio

CATALOGUE = load_catalogue()
FIRST_SHOWN = ["Work Items", "Code", "Build", "Release", "Test Management", "Packaging"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def scopes_screen(**overrides: Any) -> Any:
    kwargs: dict[str, Any] = {"token_name": "keda-agent-pools", "organization": "hmcts"}
    kwargs.update(overrides)
    return lambda app: ScopesScreen("keda-agents", **kwargs)


def text(screen: ScopesScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).content)


def shown_groups(screen: ScopesScreen) -> list[str]:
    return [row.group.name for row in screen.query(ScopeGroupRow) if row.display]


def row(screen: ScopesScreen, name: str) -> ScopeGroupRow:
    return next(r for r in screen.query(ScopeGroupRow) if r.group.name == name)


async def click(pilot: Pilot[Any], what: Any, **kw: Any) -> None:
    """A click once the layout has settled: a click posted while a relayout is pending (a section just shown) lands
    where the widget was, which on a loaded machine missed the preset button."""
    widget = pilot.app.screen.query_one(what) if isinstance(what, str) else what
    before = None
    for _ in range(50):
        await pilot.pause()
        if widget.region == before and widget.region.area:
            break
        before = widget.region
    await pilot.click(what, **kw)


async def start(pilot: Pilot[Any]) -> ScopesScreen:
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, ScopesScreen)
    return screen


async def test_groups_in_portal_order_and_only_the_first_six_shown(host_app) -> None:
    async with host_app(scopes_screen()).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        names = [r.group.name for r in screen.query(ScopeGroupRow)]
        assert names == [g.name for g in CATALOGUE.groups]
        assert names[:6] == FIRST_SHOWN
        assert names[6:] == sorted(names[6:], key=str.lower)
        assert shown_groups(screen) == FIRST_SHOWN
        hidden = len(CATALOGUE.hidden)
        assert str(screen.query_one("#toggle-all", Button).label) == f"Show all scopes ({hidden} more)"
        # the picker starts in the list, so the shortcuts work at once
        assert pilot.app.focused is row(screen, "Work Items")


async def test_show_all_reveals_the_hidden_groups_and_show_fewer_hides_them(host_app) -> None:
    async with host_app(scopes_screen()).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert len(shown_groups(screen)) == len(FIRST_SHOWN) + len(CATALOGUE.hidden)
        assert str(screen.query_one("#toggle-all", Button).label) == "Show fewer scopes"
        assert pilot.app.focused is row(screen, CATALOGUE.hidden[0].name)  # carry on where the new ones start
        # tick a hidden group, then show fewer: a group with a ticked level stays
        await pilot.press("down", "space")  # Agent Pools: Read
        assert screen.scopes == ("vso.agentpools",)
        await pilot.press("a")
        await pilot.pause()
        assert shown_groups(screen) == [*FIRST_SHOWN, "Agent Pools"]
        assert pilot.app.focused is screen.query_one("#toggle-all")


async def test_show_all_button_with_enter(host_app) -> None:
    async with host_app(scopes_screen()).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        screen.query_one("#toggle-all", Button).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert screen.show_all
        assert len(shown_groups(screen)) == len(CATALOGUE.groups)


async def test_search_filters_groups(host_app) -> None:
    async with host_app(scopes_screen()).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("slash")
        assert pilot.app.focused is screen.query_one("#search")
        await pilot.press(*"agent pools")
        await pilot.pause()
        expected = [g.name for g in CATALOGUE.search("agent pools")]
        assert "Agent Pools" in expected
        assert shown_groups(screen) == expected
        assert not screen.query_one("#toggle-all").display
        # enter goes to the first match; right + space ticks its second level
        await pilot.press("enter", "right", "space")
        assert screen.scopes == ("vso.agentpools_manage",)
        screen.query_one("#search", Input).value = "no-such-scope"
        await pilot.pause()
        assert shown_groups(screen) == []
        assert screen.query_one("#no-match").display
        assert "no-such-scope" in text(screen, "#no-match")
        screen.query_one("#search", Input).value = ""
        await pilot.pause()
        assert shown_groups(screen) == [*FIRST_SHOWN, "Agent Pools"]


@pytest.mark.parametrize(("key", "preset_id"), [("k", "keda"), ("d", "daily-checks")])
async def test_preset_selects_exactly_its_scopes(host_app, key: str, preset_id: str) -> None:
    preset = BUILTIN_PRESETS[preset_id]
    async with host_app(scopes_screen(initial_scopes=("vso.work_write", "vso.code"))).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert set(screen.scopes) == {"vso.work_write", "vso.code"}
        await pilot.press(key)
        await pilot.pause()
        assert set(screen.scopes) == set(preset.scopes)
        assert len(screen.scopes) == len(preset.scopes)
        for scope in preset.scopes:
            group = CATALOGUE.group_of(scope)
            assert group is not None
            assert group.name in shown_groups(screen)  # hidden groups it touches are shown
            assert row(screen, group.name).selected == scope
        assert row(screen, "Work Items").selected is None
        assert preset.label in text(screen, "#message")


async def test_preset_button_click_and_preset_leaves_full_access(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=(FULL_ACCESS,))).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert screen.full_access
        assert not screen.query_one("#custom").display
        screen.action_preset("keda")
        await pilot.pause()
        assert not screen.full_access
        assert screen.query_one("#custom").display
        await click(pilot, "#preset-daily-checks")
        wanted = set(BUILTIN_PRESETS["daily-checks"].scopes)
        for _ in range(20):  # the button's Pressed message is handled on a later turn of the loop
            if set(screen.scopes) == wanted:
                break
            await pilot.pause(0.05)
        assert set(screen.scopes) == wanted


async def test_levels_within_a_group_are_mutually_exclusive(host_app) -> None:
    async with host_app(scopes_screen()).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        work = row(screen, "Work Items")
        assert pilot.app.focused is work
        await pilot.press("space")
        assert work.selected == "vso.work"
        await pilot.press("right", "space")
        assert work.selected == "vso.work_write"
        assert screen.scopes == ("vso.work_write",)
        await pilot.press("right", "space")
        assert screen.scopes == ("vso.work_full",)
        await pilot.press("space")  # a press on the chosen level keeps it (radio-like), and says so
        assert screen.scopes == ("vso.work_full",)
        assert "stays selected" in text(screen, "#message")
        # another group is independent; down moves to it
        await pilot.press("down", "space")
        assert screen.scopes == ("vso.work_full", "vso.code")
        rendered = str(row(screen, "Work Items").render())
        assert rendered.count("(●)") == 1
        assert rendered.startswith("[x] Work Items")


async def test_clicking_a_level_ticks_it(host_app) -> None:
    async with host_app(scopes_screen()).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        build = row(screen, "Build")
        # "Build" + padding to the name column, then "[ ] Read  [ ] Read & execute"
        await click(pilot, build, offset=(ScopeGroupRow.NAME_WIDTH + 12, 0))
        assert build.selected == "vso.build_execute"
        await click(pilot, build, offset=(ScopeGroupRow.NAME_WIDTH + 1, 0))
        assert build.selected == "vso.build"


async def test_summary_lists_scope_ids_labels_and_high_privilege(host_app) -> None:
    async with host_app(scopes_screen()).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert "No scope selected" in text(screen, "#summary")
        await pilot.press("d")
        await pilot.pause()
        summary = text(screen, "#summary")
        daily = BUILTIN_PRESETS["daily-checks"].scopes
        ordered = tuple(s for g in CATALOGUE.groups for s in daily if CATALOGUE.group_of(s) == g)
        assert scope_string(ordered) in summary
        for scope in daily:
            assert CATALOGUE.label(scope) in summary
        high = CATALOGUE.high_privilege(daily)
        assert high == ["vso.pipelineresources_use"]
        assert "High privilege: Pipeline Resources: Use" in summary
        # live: ticking one more level updates it
        row(screen, "Work Items").focus()
        await pilot.press("space")
        await pilot.pause()
        assert "vso.work " in text(screen, "#summary")


async def test_full_access_warns_and_returns_app_token(host_app) -> None:
    app = host_app(scopes_screen())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert not screen.query_one("#full-access-warning").display
        await click(pilot, "#mode-full")
        await pilot.pause()
        warning = screen.query_one("#full-access-warning")
        assert warning.display
        assert "every Azure DevOps API" in text(screen, "#full-access-warning")
        assert "block" in text(screen, "#full-access-warning")
        assert not screen.query_one("#custom").display
        assert FULL_ACCESS in text(screen, "#summary")
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.result == ScopeSelection(
        scopes=(FULL_ACCESS,),
        full_access=True,
        token_name="keda-agent-pools",
        validity_days=90,
        valid_to=None,
        all_orgs=False,
    )


async def test_all_organizations_warns_about_the_sunset(host_app) -> None:
    app = host_app(scopes_screen(initial_scopes=("vso.agentpools",)))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert "hmcts" in str(screen.query_one("#org-single", RadioButton).label)
        assert not screen.query_one("#all-orgs-warning").display
        await click(pilot, "#org-all")
        await pilot.pause()
        assert screen.query_one("#all-orgs-warning").display
        assert "2026-12-01" in text(screen, "#all-orgs-warning")
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.result.all_orgs is True


async def test_confirm_refused_without_a_scope(host_app) -> None:
    app = host_app(scopes_screen())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        message = text(screen, "#message")
        assert message.startswith("Select at least one scope")
        assert "\n" not in message
        assert screen.query_one("#message").has_class("-error")
        assert pilot.app.screen is screen
    assert not app.dismissed


BAD_DATES = [
    ("2027-13-01", "must be a date written YYYY-MM-DD"),
    ("next week", "must be a date written YYYY-MM-DD"),
    ("2026-11-22", "must be after today (2026-11-22)"),
    ("2020-01-01", "must be after today"),
    ("2027-11-23", "at most a year ahead (2027-11-22)"),
]


async def test_confirm_refused_for_a_bad_custom_date(host_app) -> None:
    app = host_app(scopes_screen(initial_scopes=("vso.agentpools",)))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        screen.query_one("#validity", Select).value = "custom"
        await pilot.pause()
        date_input = screen.query_one("#valid-to", Input)
        assert date_input.display
        for custom_date, expected in BAD_DATES:
            date_input.value = custom_date
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert expected in text(screen, "#message"), custom_date
            assert pilot.app.focused is date_input
    assert not app.dismissed


async def test_confirm_refused_without_a_name(host_app) -> None:
    app = host_app(scopes_screen(initial_scopes=("vso.agentpools",)))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        screen.query_one("#name", Input).value = "   "
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert text(screen, "#message") == "Give the token a name."
        assert pilot.app.focused is screen.query_one("#name")
    assert not app.dismissed


async def test_confirm_returns_the_selection(host_app) -> None:
    app = host_app(scopes_screen(validity_days=30))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("k")
        screen.query_one("#name", Input).value = "keda-2026"
        screen.query_one("#confirm", Button).focus()
        await pilot.press("enter")
        await pilot.pause()
    assert app.result == ScopeSelection(
        scopes=("vso.agentpools_manage",),
        full_access=False,
        token_name="keda-2026",
        validity_days=30,
        valid_to=None,
        all_orgs=False,
    )
    assert app.result.scope == "vso.agentpools_manage"


async def test_confirm_with_a_custom_date(host_app) -> None:
    app = host_app(scopes_screen(initial_scopes=("vso.build", "vso.release")))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        screen.query_one("#validity", Select).value = "custom"
        await pilot.pause()
        screen.query_one("#valid-to", Input).value = "2027-01-31"
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.result.valid_to == date(2027, 1, 31)
    assert app.result.validity_days is None
    assert app.result.scopes == ("vso.build", "vso.release")


async def test_expiry_shows_the_date_and_the_lifespan_note(host_app) -> None:
    async with host_app(scopes_screen(max_lifespan_note="This organization allows PATs of at most 60 days.")).run_test(
        size=(80, 24)
    ) as pilot:
        screen = await start(pilot)
        assert text(screen, "#expires-on") == "until 2027-02-20 (UTC)"
        assert "at most 60 days" in text(screen, "#lifespan-note")
        assert "shortened" in text(screen, "#lifespan-note")
        options = [str(prompt) for prompt, _ in screen._validity_options()]
        assert options == ["30 days", "60 days", "90 days", "180 days", "365 days", "Custom date…"]


async def test_escape_cancels_with_none(host_app) -> None:
    app = host_app(scopes_screen(initial_scopes=("vso.agentpools",)))
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        await pilot.press("escape")
        await pilot.pause()
    assert app.result is None


async def test_escape_in_a_filled_search_box_clears_it_first(host_app) -> None:
    app = host_app(scopes_screen())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("slash", *"wiki", "escape")
        await pilot.pause()
        assert screen.query_one("#search", Input).value == ""
        assert shown_groups(screen) == FIRST_SHOWN
        assert not app.dismissed
        await pilot.press("escape")
        await pilot.pause()
    assert app.dismissed and app.result is None


async def test_unknown_initial_scopes_are_left_out_and_said(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=("vso.agentpools", "vso.nonsense"))).run_test(
        size=(80, 24)
    ) as pilot:
        screen = await start(pilot)
        assert screen.scopes == ("vso.agentpools",)
        assert "vso.nonsense" in text(screen, "#message")


async def test_keyboard_only_walk_through(host_app) -> None:
    """Tab to the organization choice, arrows and space, back to the list, tick, ctrl+s."""
    app = host_app(scopes_screen())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press(*["shift+tab"] * 7)  # search, clear, the two presets, the scopes mode, expiry
        assert app.focused is screen.query_one("#org")
        await pilot.press("right", "space")
        assert screen.query_one("#all-orgs-warning").display
        await pilot.press("left", "space")
        assert not screen.query_one("#all-orgs-warning").display
        await pilot.press("slash", *"build", "enter", "space")
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.result.scopes == ("vso.build",)
    assert app.result.all_orgs is False


async def test_keymap_can_remap_every_binding(host_app) -> None:
    app = host_app(scopes_screen(initial_scopes=("vso.agentpools",)))
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        app.set_keymap({"scopes.confirm": "ctrl+y"})
        await pilot.press("ctrl+y")
        await pilot.pause()
    assert isinstance(app.result, ScopeSelection)


def test_every_binding_has_an_id_and_a_tooltip() -> None:
    for owner in (ScopesScreen, ScopeGroupRow):
        for binding in owner.BINDINGS:
            assert isinstance(binding, Binding)
            assert binding.id and binding.id.startswith("scopes."), binding
            assert binding.tooltip, binding
    ids = {b.id for b in ScopesScreen.BINDINGS if isinstance(b, Binding)}
    assert {"scopes.confirm", "scopes.cancel", "scopes.search", "scopes.toggle_all", "scopes.preset_keda"} <= ids
    assert {"scopes.clear", "scopes.undo"} <= ids


# -- snapshots ---------------------------------------------------------------------------------


def test_snapshot_initial(snap_compare, host_app) -> None:
    assert snap_compare(host_app(scopes_screen()), terminal_size=(80, 24))


def test_snapshot_keda_preset(snap_compare, host_app) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        await pilot.press("k")
        await pilot.pause(0.3)  # the "more chosen" note is asked again once the rows have moved

    assert snap_compare(host_app(scopes_screen()), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_show_all(snap_compare, host_app) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause(0.3)  # the "more chosen" note is asked again once the rows have moved

    assert snap_compare(host_app(scopes_screen()), terminal_size=(80, 24), run_before=run_before)


async def test_palette_offers_every_preset_and_the_show_all_toggle(host_app) -> None:
    custom = Preset("ops", "Ops read-only", ("vso.build", "vso.release"), "from the configuration")
    presets = {**BUILTIN_PRESETS, "ops": custom}
    async with host_app(scopes_screen(presets=presets)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        commands = {name: callback for name, callback, _ in screen.palette_commands()}
        assert {"Preset: KEDA agent pools", "Preset: Daily checks pipeline", "Preset: Ops read-only"} <= set(commands)
        commands["Preset: Ops read-only"]()
        await pilot.pause()
        assert screen.scopes == ("vso.build", "vso.release")
        assert screen.query_one("#preset-ops")  # a configured preset gets its button too
        commands["Show all scopes"]()
        await pilot.pause()
        assert screen.show_all
        assert screen.runbook_target() == "keda-agents"


# -- issue 15: presets said, clear, a press never undoes a choice -------------------------------

DAILY = BUILTIN_PRESETS["daily-checks"]
DAILY_GROUPS = ["Build", "Release", "Agent Pools", "Pipeline Resources"]  # the runbook's four, as it lists them


async def test_ticking_the_runbooks_scopes_by_hand_over_the_preset_keeps_them(host_app) -> None:
    """The reported bug: the picker opened with the preset ticked, and pressing each runbook scope unticked it."""
    async with host_app(scopes_screen(initial_scopes=DAILY.scopes)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert set(screen.scopes) == set(DAILY.scopes)
        for name in DAILY_GROUPS:
            row(screen, name).focus()
            await pilot.pause()
            await pilot.press("space")  # the highlight starts on the chosen level: a press keeps it
            await pilot.pause()
        assert set(screen.scopes) == set(DAILY.scopes)
        for name in DAILY_GROUPS:
            assert row(screen, name).selected is not None
        assert "No scope selected" not in text(screen, "#summary")


def preset_title(screen: ScopesScreen) -> str:
    return str(screen.query_one("#summary").border_title).strip()


async def test_the_preset_the_picker_opens_with_is_said(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=DAILY.scopes)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert preset_title(screen) == "Preset: Daily checks pipeline (4 scopes)"
        assert screen.preset_status() == preset_title(screen)


async def test_a_named_preset_is_said_even_when_the_scopes_differ_from_it(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=("vso.build",), preset="daily-checks")).run_test(
        size=(80, 24)
    ) as pilot:
        screen = await start(pilot)
        assert preset_title(screen) == "Preset Daily checks pipeline, changed: +0 −3"


async def test_without_a_preset_the_selection_is_custom(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=("vso.work", "vso.code"))).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert preset_title(screen) == "Custom selection (no preset)"
        screen.action_clear()
        await pilot.pause()
        assert preset_title(screen) == "No preset"


async def test_changing_a_preset_selection_says_what_moved(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=DAILY.scopes)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("space")  # Work Items: Read, one more
        await pilot.pause()
        assert preset_title(screen) == "Preset Daily checks pipeline, changed: +1 −0"
        row(screen, "Build").focus()
        await pilot.press("right", "space")  # Build: Read & execute instead of Read
        await pilot.pause()
        assert screen.scopes[:2] == ("vso.work", "vso.build_execute")
        assert preset_title(screen) == "Preset Daily checks pipeline, changed: +2 −1"
        await pilot.press("left", "space")  # back to Read
        row(screen, "Work Items").focus()
        await pilot.press("delete")  # and Work Items dropped: the preset again
        await pilot.pause()
        assert preset_title(screen) == "Preset: Daily checks pipeline (4 scopes)"
        assert "Dropped Work Items: Read" in text(screen, "#message")


async def test_the_group_box_drops_the_group_and_brings_its_level_back(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=DAILY.scopes)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        build = row(screen, "Build")
        build.focus()
        await pilot.press("left", "space")  # the box: drops Build
        assert build.selected is None
        assert "vso.build" not in screen.scopes
        assert str(build.render()).startswith("[ ] Build")
        await pilot.press("space")  # ticked again: the level it had
        assert build.selected == "vso.build"
        await click(pilot, build, offset=(1, 0))  # a click on the box drops it too
        assert build.selected is None
        await click(pilot, build, offset=(1, 0))
        assert build.selected == "vso.build"
        work = row(screen, "Work Items")
        await click(pilot, work, offset=(1, 0))  # a group never chosen starts at its first level
        assert work.selected == "vso.work"


async def test_clicking_the_chosen_level_keeps_it(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=DAILY.scopes)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        release = row(screen, "Release")
        await click(pilot, release, offset=(ScopeGroupRow.NAME_WIDTH + 1, 0))
        await pilot.pause()
        assert release.selected == "vso.release"
        assert set(screen.scopes) == set(DAILY.scopes)
        assert "Release: Read stays selected" in text(screen, "#message")


async def test_clear_unticks_everything_and_undo_brings_it_back(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=DAILY.scopes)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        assert not screen.check_action("undo", ())  # nothing to undo yet: not in the footer
        await pilot.press("c")
        await pilot.pause()
        assert screen.scopes == ()
        assert all(r.selected is None for r in screen.query(ScopeGroupRow))
        assert "Cleared 4 scopes; u brings them back." == text(screen, "#message")
        assert preset_title(screen) == "Cleared (was preset Daily checks pipeline) · u undoes"
        assert "No scope selected" in text(screen, "#summary")
        assert screen.check_action("undo", ())
        await pilot.press("u")
        await pilot.pause()
        assert set(screen.scopes) == set(DAILY.scopes)
        assert row(screen, "Agent Pools").selected == "vso.agentpools"
        assert preset_title(screen) == "Preset: Daily checks pipeline (4 scopes)"
        # the Clear button does the same; a second clear says there is nothing to clear
        await click(pilot, "#clear")
        await pilot.pause()
        assert screen.scopes == ()
        screen.action_clear()
        assert text(screen, "#message").startswith("Nothing to clear")


async def test_undo_goes_back_over_a_preset(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=("vso.work",))).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        await pilot.press("k")
        await pilot.pause()
        assert screen.scopes == ("vso.agentpools_manage",)
        assert preset_title(screen) == "Preset: KEDA agent pools (1 scope)"
        await pilot.press("u")
        await pilot.pause()
        assert screen.scopes == ("vso.work",)
        assert preset_title(screen) == "Custom selection (no preset)"
        assert not screen.check_action("undo", ())


async def test_chosen_groups_outside_the_first_six_are_said(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=DAILY.scopes)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        note = screen.query_one("#chosen-elsewhere")
        assert note.display
        assert text(screen, "#chosen-elsewhere") == "ⓘ 2 more chosen, further down: Agent Pools, Pipeline Resources"
        await pilot.press("slash", *"build")
        await pilot.pause()
        assert text(screen, "#chosen-elsewhere") == (
            "ⓘ 3 more chosen, hidden by the search: Release, Agent Pools, Pipeline Resources"
        )
        screen.query_one("#search", Input).value = ""
        await pilot.pause()
        screen.action_toggle_all()
        await pilot.pause()
        assert not note.display  # every group is listed


async def test_the_note_goes_once_the_chosen_rows_are_on_screen(host_app) -> None:
    """"further down" only while it is true: scrolled to them, or on a terminal tall enough, the rows speak for
    themselves."""
    async with host_app(scopes_screen(initial_scopes=DAILY.scopes)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        note = screen.query_one("#chosen-elsewhere")
        await pilot.pause()
        assert note.display  # Agent Pools and Pipeline Resources are below the fold at 80x24
        screen.query_one(Body).scroll_end(animate=False)
        for _ in range(20):
            await pilot.pause(0.05)
            if not note.display:
                break
        assert not note.display
        screen.query_one(Body).scroll_home(animate=False)
        for _ in range(20):
            await pilot.pause(0.05)
            if note.display:
                break
        assert note.display
    async with host_app(scopes_screen(initial_scopes=DAILY.scopes)).run_test(size=(100, 60)) as pilot:
        screen = await start(pilot)
        note = screen.query_one("#chosen-elsewhere")
        for _ in range(20):
            await pilot.pause(0.05)
            if not note.display:
                break
        assert not note.display  # every chosen row is on screen


async def test_clear_is_in_the_palette(host_app) -> None:
    async with host_app(scopes_screen(initial_scopes=DAILY.scopes)).run_test(size=(80, 24)) as pilot:
        screen = await start(pilot)
        commands = {name: callback for name, callback, _ in screen.palette_commands()}
        commands["Clear all scopes"]()
        await pilot.pause()
        assert screen.scopes == ()


def test_snapshot_preset_applied(snap_compare, host_app) -> None:
    assert snap_compare(host_app(scopes_screen(initial_scopes=DAILY.scopes)), terminal_size=(80, 24))


def test_snapshot_preset_changed(snap_compare, host_app) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        await pilot.press("right", "space")  # Work Items: Read & write on top of the preset
        await pilot.pause(0.3)  # the "more chosen" note is asked again once the rows have moved

    assert snap_compare(
        host_app(scopes_screen(initial_scopes=DAILY.scopes)), terminal_size=(80, 24), run_before=run_before
    )


def test_snapshot_cleared(snap_compare, host_app) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause(0.3)  # the "more chosen" note is asked again once the rows have moved

    assert snap_compare(
        host_app(scopes_screen(initial_scopes=DAILY.scopes)), terminal_size=(80, 24), run_before=run_before
    )
