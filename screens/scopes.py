"""Pick the scopes of a new Azure DevOps PAT, the way the portal's "Create a new personal access token" does.

Name, organization, expiration, then "Scopes": Full access or Custom defined. Custom defined lists
the catalogue's groups in the portal's order, one level per group at most, the rarely used groups
behind "Show all scopes". Presets and a search box come on top, and a summary says exactly which
scope ids will be requested. The screen only collects a choice: it dismisses with a
:class:`ScopeSelection` (or ``None`` when cancelled) and mints nothing.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Footer, Input, Label, RadioButton, RadioSet, Select, Static

from providers.azure_devops.scopes import (
    BUILTIN_PRESETS,
    FULL_ACCESS,
    Preset,
    ScopeCatalogue,
    ScopeGroup,
    load_catalogue,
    scope_string,
)

VALIDITY_CHOICES = (30, 60, 90, 180, 365)
CUSTOM_DATE = "custom"
MAX_VALIDITY = timedelta(days=365)
TOKEN_NAME_MAX = 100  # the config's limit for token_name
GLOBAL_PAT_SUNSET = "2026-12-01"

FULL_ACCESS_WARNING = (
    "⚠ Full access lets this token call every Azure DevOps API as the account, and many "
    "organizations block full-access PATs by policy. Prefer Custom defined."
)
ALL_ORGS_WARNING = (
    f"⚠ All-organizations (global) PATs stop working on {GLOBAL_PAT_SUNSET}; prefer a single organization."
)


def today() -> date:
    """The current UTC date (Azure DevOps expiry dates are UTC); tests replace it."""
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class ScopeSelection:
    """What the engineer chose. Exactly one of ``validity_days`` and ``valid_to`` is set."""

    scopes: tuple[str, ...]  # ("app_token",) when full_access
    full_access: bool
    token_name: str
    validity_days: int | None  # one of the 30/60/90/180/365-day choices
    valid_to: date | None  # a custom date
    all_orgs: bool

    @property
    def scope(self) -> str:
        """The PAT API's space-separated ``scope`` field."""
        return scope_string(self.scopes)


class Body(VerticalScroll, can_focus=False):
    """The scrolling form; not a tab stop itself: focusing a field scrolls it into view."""


class Choice(RadioButton):
    """A radio button that draws its dot only when on, so its state reads without colour (NO_COLOR)."""

    def render(self) -> Content:
        self.BUTTON_INNER = "●" if self.value else " "
        return super().render()


class ScopeGroupRow(Widget, can_focus=True):
    """One scope group: its name, then its levels as check boxes of which at most one is ticked.

    Left/right move between levels, space/enter ticks one (and clears the others, or clears it when
    it was already ticked), up/down move to the previous/next row. Levels wrap under each other when
    the row is too narrow.
    """

    NAME_WIDTH = 22
    GAP = 2

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "scope-row--name",
        "scope-row--on",
        "scope-row--cursor",
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "move(-1)", "Previous level", show=False, id="scopes.level_prev", tooltip="Previous level"),
        Binding("right", "move(1)", "Next level", show=False, id="scopes.level_next", tooltip="Next level"),
        Binding(
            "space,enter",
            "toggle_level",
            "Tick",
            id="scopes.level_toggle",
            tooltip="Tick the highlighted level (clears the group's other level)",
        ),
        Binding("up", "row(-1)", "Previous group", show=False, id="scopes.row_up", tooltip="Previous group"),
        Binding("down", "row(1)", "Next group", show=False, id="scopes.row_down", tooltip="Next group"),
    ]

    selected: reactive[str | None] = reactive(None)
    cursor: reactive[int] = reactive(0)

    class Changed(Message):
        """The engineer ticked or cleared a level of this group."""

        def __init__(self, row: ScopeGroupRow, scope: str | None) -> None:
            super().__init__()
            self.row = row
            self.scope = scope

        @property
        def control(self) -> ScopeGroupRow:
            return self.row

    def __init__(self, group: ScopeGroup, selected: str | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.group = group
        self.set_reactive(ScopeGroupRow.selected, selected)
        self.tooltip = group.notes

    def watch_selected(self, selected: str | None) -> None:
        self.set_class(selected is not None, "-selected")

    def _items(self) -> list[str]:
        return [f"[{'x' if lv.scope == self.selected else ' '}] {lv.label}" for lv in self.group.levels]

    def _layout(self, width: int) -> tuple[list[str], list[list[tuple[int, int]]]]:
        """Name lines, and per line the (level index, x) of each level box placed on it."""
        # A long name wraps with an indent, so its second line does not read as another group.
        name_lines = textwrap.wrap(self.group.name, self.NAME_WIDTH - 1, subsequent_indent="  ") or [""]
        avail = max(width - self.NAME_WIDTH, 1)
        lines: list[list[tuple[int, int]]] = [[]]
        x = 0
        for i, item in enumerate(self._items()):
            if lines[-1] and x + len(item) > avail:
                lines.append([])
                x = 0
            lines[-1].append((i, self.NAME_WIDTH + x))
            x += len(item) + self.GAP
        return name_lines, lines

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        name_lines, lines = self._layout(width)
        return max(len(name_lines), len(lines))

    def render(self) -> Content:
        name_lines, lines = self._layout(self.content_size.width)
        items = self._items()
        name_style = self.get_visual_style("scope-row--name")
        on_style = self.get_visual_style("scope-row--on")
        cursor_style = self.get_visual_style("scope-row--cursor")
        out: list[Content] = []
        for row in range(max(len(name_lines), len(lines))):
            name = name_lines[row] if row < len(name_lines) else ""
            parts: list[str | tuple[str, str] | Content] = [Content.styled(name.ljust(self.NAME_WIDTH), name_style)]
            x = self.NAME_WIDTH
            for index, at in lines[row] if row < len(lines) else []:
                parts.append(" " * (at - x))
                text = Content(items[index])
                if self.group.levels[index].scope == self.selected:
                    text = text.stylize(on_style)
                if self.has_focus and index == self.cursor:
                    text = text.stylize(cursor_style)
                parts.append(text)
                x = at + len(items[index])
            out.append(Content.assemble(*parts))
        return Content("\n").join(out)

    def _on_focus(self, event: events.Focus) -> None:
        # Start on the ticked level, so space on arrival does not tick a different one by surprise.
        scopes = [lv.scope for lv in self.group.levels]
        if self.selected in scopes:
            self.cursor = scopes.index(self.selected)
        self.refresh()

    def _on_blur(self, event: events.Blur) -> None:
        self.refresh()

    def action_move(self, step: int) -> None:
        self.cursor = max(0, min(len(self.group.levels) - 1, self.cursor + step))

    def action_row(self, step: int) -> None:
        if step < 0:
            self.screen.focus_previous()
        else:
            self.screen.focus_next()

    def action_toggle_level(self) -> None:
        self._tick(self.cursor)

    def _tick(self, index: int) -> None:
        scope = self.group.levels[index].scope
        self.selected = None if self.selected == scope else scope
        self.post_message(self.Changed(self, self.selected))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        _, lines = self._layout(self.content_size.width)
        if offset.y >= len(lines):
            return
        items = self._items()
        for index, at in lines[offset.y]:
            if at <= offset.x < at + len(items[index]):
                self.cursor = index
                self._tick(index)
                return


class ScopesScreen(Screen[ScopeSelection | None]):
    """The custom-defined scope picker; dismisses with a :class:`ScopeSelection`, or ``None`` on escape."""

    CSS_PATH = "scopes.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "confirm", "Confirm", id="scopes.confirm", tooltip="Use these scopes and continue"),
        Binding("escape", "cancel", "Cancel", id="scopes.cancel", tooltip="Leave without choosing scopes"),
        Binding("slash", "search", "Search", id="scopes.search", tooltip="Filter the scope groups"),
        Binding("a", "toggle_all", "All scopes", id="scopes.toggle_all", tooltip="Show all scope groups, or fewer"),
        Binding(
            "k",
            "preset('keda')",
            "KEDA",
            show=False,  # the preset buttons are on screen; the footer has no room for every preset
            id="scopes.preset_keda",
            tooltip="Select exactly the KEDA agent pools preset",
        ),
        Binding(
            "d",
            "preset('daily-checks')",
            "Daily checks",
            show=False,
            id="scopes.preset_daily_checks",
            tooltip="Select exactly the daily checks pipeline preset",
        ),
    ]

    show_all: reactive[bool] = reactive(False, init=False)
    full_access: reactive[bool] = reactive(False, init=False)

    def __init__(
        self,
        target_name: str,
        *,
        initial_scopes: tuple[str, ...] = (),
        presets: dict[str, Preset] = BUILTIN_PRESETS,
        token_name: str,
        validity_days: int = 90,
        all_orgs: bool = False,
        organization: str,
        max_lifespan_note: str | None = None,
    ) -> None:
        super().__init__()
        self.catalogue: ScopeCatalogue = load_catalogue()
        self.target_name = target_name
        self.presets = dict(presets)
        self.token_name = token_name
        self.validity_days = validity_days
        self.all_orgs = all_orgs
        self.organization = organization
        self.max_lifespan_note = max_lifespan_note
        # group name -> the one ticked scope of that group
        self._selected: dict[str, str] = {}
        self._dropped: list[str] = []
        self.set_reactive(ScopesScreen.full_access, FULL_ACCESS in initial_scopes)
        for scope in initial_scopes:
            if scope == FULL_ACCESS:
                continue
            group = self.catalogue.group_of(scope)
            if group is None:
                self._dropped.append(scope)
            else:
                if group.name in self._selected:
                    self._dropped.append(self._selected[group.name])
                self._selected[group.name] = scope

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(
            Content.assemble(("New personal access token", "bold"), f" · {self.target_name}"),
            id="title",
        )
        with Body(id="body"):
            with Horizontal(classes="field"):
                yield Label("Name", classes="field-label")
                yield Input(self.token_name, id="name", compact=True, max_length=TOKEN_NAME_MAX)
            with Horizontal(classes="field"):
                yield Label("Organization", classes="field-label")
                with RadioSet(id="org", compact=True):
                    yield Choice(self.organization, value=not self.all_orgs, id="org-single")
                    yield Choice("All accessible organizations", value=self.all_orgs, id="org-all")
            yield Static(ALL_ORGS_WARNING, id="all-orgs-warning", classes="warning", markup=False)
            with Horizontal(classes="field"):
                yield Label("Expiration", classes="field-label")
                yield Select[int | str](self._validity_options(), id="validity", compact=True, allow_blank=False)
                yield Input(placeholder="YYYY-MM-DD", id="valid-to", compact=True, max_length=10)
                yield Static("", id="expires-on", markup=False)
            if self.max_lifespan_note:
                yield Static(
                    f"ⓘ {self.max_lifespan_note} A later expiry is shortened to the organization's maximum.",
                    id="lifespan-note",
                    classes="note",
                    markup=False,
                )
            with Horizontal(classes="field", id="mode-field"):
                yield Label("Scopes", classes="field-label")
                with RadioSet(id="mode", compact=True):
                    yield Choice(self.catalogue.full_access_label, value=self.full_access, id="mode-full")
                    yield Choice("Custom defined", value=not self.full_access, id="mode-custom")
            yield Static(FULL_ACCESS_WARNING, id="full-access-warning", classes="warning", markup=False)
            with Vertical(id="custom"):
                if self.presets:
                    with Horizontal(classes="field", id="presets"):
                        yield Label("Presets", classes="field-label")
                        for preset_id, preset in self.presets.items():
                            yield Button(
                                preset.label, id=f"preset-{preset_id}", classes="preset", compact=True
                            ).with_tooltip(preset.why)
                with Horizontal(classes="field"):
                    yield Label("Search", classes="field-label")
                    yield Input(placeholder="filter, e.g. agent pools", id="search", compact=True)
                with Vertical(id="groups"):
                    for index, group in enumerate(self.catalogue.groups):
                        yield ScopeGroupRow(group, self._selected.get(group.name), id=f"group-{index}")
                yield Static("", id="no-match", markup=False)
                yield Button("", id="toggle-all", compact=True)
        yield Static("", id="summary")
        yield Static("", id="message", markup=False)
        with Horizontal(id="actions"):
            yield Button("Confirm", id="confirm", variant="primary", compact=True)
            yield Button("Cancel", id="cancel", compact=True)
        yield Footer()

    def _validity_options(self) -> list[tuple[str, int | str]]:
        days = sorted({*VALIDITY_CHOICES, self.validity_days})
        return [(f"{d} days", d) for d in days] + [("Custom date…", CUSTOM_DATE)]

    def on_mount(self) -> None:
        self.query_one("#validity", Select).value = self.validity_days
        self._refresh_all()
        if self._dropped:
            self._say(f"Left out (unknown, or a second level of one group): {' '.join(self._dropped)}", error=True)
        # Start in the list, not in the prefilled name: the first keystroke would replace the name,
        # and the shortcuts (a, k, d, /) only work outside text fields.
        if self.full_access:
            self.query_one("#mode", RadioSet).focus()
        else:
            self.query_one(ScopeGroupRow).focus()

    # -- state -> widgets --------------------------------------------------------------------

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scope ids that would be requested now, in the picker's order."""
        if self.full_access:
            return (FULL_ACCESS,)
        return tuple(self._selected[g.name] for g in self.catalogue.groups if g.name in self._selected)

    @property
    def _search_text(self) -> str:
        return self.query_one("#search", Input).value.strip()

    def visible_groups(self) -> tuple[ScopeGroup, ...]:
        """The groups listed now: the search's matches, else the shown ones plus any with a ticked level."""
        if self._search_text:
            return self.catalogue.search(self._search_text)
        if self.show_all:
            return self.catalogue.groups
        return tuple(g for g in self.catalogue.groups if g.initially_shown or g.name in self._selected)

    def _refresh_all(self) -> None:
        self._refresh_groups()
        self._refresh_mode()
        self._refresh_org()
        self._refresh_expiry()
        self._refresh_summary()

    def _refresh_groups(self) -> None:
        visible = {g.name for g in self.visible_groups()}
        for row in self.query(ScopeGroupRow):
            row.display = row.group.name in visible
            row.selected = self._selected.get(row.group.name)
        searching = bool(self._search_text)
        no_match = self.query_one("#no-match", Static)
        no_match.update(f"No scope group matches “{self._search_text}”." if searching and not visible else "")
        no_match.display = searching and not visible
        toggle = self.query_one("#toggle-all", Button)
        toggle.display = not searching
        hidden = len(self.catalogue.hidden)
        toggle.label = "Show fewer scopes" if self.show_all else f"{self.catalogue.show_all_label} ({hidden} more)"

    def _refresh_mode(self) -> None:
        self.query_one("#full-access-warning").display = self.full_access
        self.query_one("#custom").display = not self.full_access
        self.refresh_bindings()

    def _refresh_org(self) -> None:
        self.query_one("#all-orgs-warning").display = self.query_one("#org-all", RadioButton).value

    def _refresh_expiry(self) -> None:
        value = self.query_one("#validity", Select).value
        custom = value == CUSTOM_DATE
        self.query_one("#valid-to", Input).display = custom
        label = self.query_one("#expires-on", Static)
        if isinstance(value, int):
            label.update(f"until {today() + timedelta(days=value)} (UTC)")
        else:
            label.update(f"UTC, {today() + timedelta(days=1)} to {today() + MAX_VALIDITY}")

    def _refresh_summary(self) -> None:
        scopes = self.scopes
        summary = self.query_one("#summary", Static)
        if not scopes:
            summary.update(
                Content.assemble(("No scope selected yet: ", "bold"), "tick one level of a group, or pick a preset.")
            )
            return
        labels = " · ".join(self.catalogue.label(s) for s in scopes)
        parts: list[str | tuple[str, str] | Content] = [
            (f"Requesting {len(scopes)} scope{'s' if len(scopes) != 1 else ''}: ", "bold"),
            scope_string(scopes),
            "\n",
            ("  " + labels, "italic"),
        ]
        high = self.catalogue.high_privilege(scopes)
        if high:
            parts += ["\n", ("⚠ High privilege: " + ", ".join(self.catalogue.label(s) for s in high), "bold")]
        summary.update(Content.assemble(*parts))
        summary.set_class(bool(high), "-high")

    def _say(self, text: str, *, error: bool = False) -> None:
        message = self.query_one("#message", Static)
        message.update(text)
        message.set_class(error, "-error")

    # -- events ------------------------------------------------------------------------------

    @on(ScopeGroupRow.Changed)
    def _level_changed(self, event: ScopeGroupRow.Changed) -> None:
        if event.scope is None:
            self._selected.pop(event.row.group.name, None)
        else:
            self._selected[event.row.group.name] = event.scope
        self._say("")
        self._refresh_summary()

    @on(RadioSet.Changed, "#mode")
    def _mode_changed(self, event: RadioSet.Changed) -> None:
        self.full_access = event.pressed.id == "mode-full"

    def watch_full_access(self) -> None:
        self._refresh_mode()
        self._refresh_summary()

    @on(RadioSet.Changed, "#org")
    def _org_changed(self) -> None:
        self._refresh_org()

    @on(Select.Changed, "#validity")
    def _validity_changed(self) -> None:
        self._refresh_expiry()

    @on(Input.Changed, "#search")
    def _search_changed(self) -> None:
        self._refresh_groups()

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        rows = [r for r in self.query(ScopeGroupRow) if r.display]
        if rows:
            rows[0].focus()

    @on(Button.Pressed, "#toggle-all")
    def _toggle_all_pressed(self) -> None:
        self.action_toggle_all()

    @on(Button.Pressed, ".preset")
    def _preset_pressed(self, event: Button.Pressed) -> None:
        assert event.button.id is not None
        self.action_preset(event.button.id.removeprefix("preset-"))

    @on(Button.Pressed, "#confirm")
    def _confirm_pressed(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    # -- the wizard's command palette and runbook pane (duck-typed: see app/palette.py) ---------

    def palette_commands(self) -> list[tuple[str, Callable[[], object], str]]:
        """Every preset (configured ones have no key), and the show-all toggle."""
        commands: list[tuple[str, Callable[[], object], str]] = [
            (f"Preset: {preset.label}", partial(self.action_preset, preset_id), preset.why)
            for preset_id, preset in self.presets.items()
        ]
        if not self.full_access:
            label = "Show fewer scopes" if self.show_all else "Show all scopes"
            commands.append((label, self.action_toggle_all, "List every scope group, or only the usual ones"))
        return commands

    def runbook_target(self) -> str | None:
        return self.target_name

    # -- actions -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "preset":
            return parameters[0] in self.presets
        if action in ("search", "toggle_all") and self.full_access:
            return False  # there is no list in Full access mode
        return True

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_toggle_all(self) -> None:
        before = set(self.visible_groups())
        self.show_all = not self.show_all
        if self._search_text:
            self.query_one("#search", Input).value = ""  # Input.Changed refreshes the list
        self._refresh_groups()
        target: Widget = self.query_one("#toggle-all", Button)
        if self.show_all:
            # Carry on where the new groups start, so down-arrow walks through them.
            new = [r for r in self.query(ScopeGroupRow) if r.display and r.group not in before]
            if new:
                target = new[0]
        # After the layout has caught up with the rows shown or hidden, or the scroll goes nowhere.
        self.call_after_refresh(self._focus_and_show, target)

    def _focus_and_show(self, widget: Widget) -> None:
        widget.focus(scroll_visible=False)
        self.call_after_refresh(widget.scroll_visible, animate=False, top=True)

    def action_preset(self, preset_id: str) -> None:
        preset = self.presets.get(preset_id)
        if preset is None:
            return
        chosen: dict[str, str] = {}
        unknown = []
        for scope in preset.scopes:
            group = self.catalogue.group_of(scope)
            if group is None:
                unknown.append(scope)
            else:
                chosen[group.name] = scope
        self._selected = chosen
        self.query_one("#mode-custom", RadioButton).value = True
        self.full_access = False
        self._refresh_groups()
        self._refresh_summary()
        # Bring the first group the preset ticked outside the first six into view.
        rows = [r for r in self.query(ScopeGroupRow) if r.group.name in chosen and not r.group.initially_shown]
        if rows:
            self.call_after_refresh(rows[0].scroll_visible, animate=False)
        if unknown:
            self._say(f"Preset {preset.label}: left out unknown scopes {' '.join(unknown)}", error=True)
        else:
            self._say(f"Preset {preset.label}: {preset.why}")

    def action_cancel(self) -> None:
        search = self.query_one("#search", Input)
        if self.focused is search and search.value:
            search.value = ""  # escape in a filled search box clears it, not the whole picker
            return
        self.dismiss(None)

    def action_confirm(self) -> None:
        name = self.query_one("#name", Input)
        token_name = name.value.strip()
        if not token_name:
            self._refuse("Give the token a name.", name)
            return
        validity = self.query_one("#validity", Select).value
        validity_days: int | None = None
        valid_to: date | None = None
        if isinstance(validity, int):
            validity_days = validity
        else:
            date_input = self.query_one("#valid-to", Input)
            try:
                valid_to = date.fromisoformat(date_input.value.strip())
            except ValueError:
                self._refuse("The custom expiration must be a date written YYYY-MM-DD.", date_input)
                return
            now = today()
            if valid_to <= now:
                self._refuse(f"The custom expiration must be after today ({now}).", date_input)
                return
            if valid_to > now + MAX_VALIDITY:
                self._refuse(f"The custom expiration can be at most a year ahead ({now + MAX_VALIDITY}).", date_input)
                return
        scopes = self.scopes
        if not scopes:
            self._refuse("Select at least one scope (or a preset), or choose Full access.", self.query_one("#search"))
            return
        self.dismiss(
            ScopeSelection(
                scopes=scopes,
                full_access=self.full_access,
                token_name=token_name,
                validity_days=validity_days,
                valid_to=valid_to,
                all_orgs=self.query_one("#org-all", RadioButton).value,
            )
        )

    def _refuse(self, text: str, widget: Widget) -> None:
        self._say(text, error=True)
        self.app.bell()
        widget.focus()
