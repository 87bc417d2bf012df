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
from textual.timer import Timer
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
    """One scope group, as the portal draws it: a box for the group, then its levels as radio buttons.

    The box says whether the group is in the token; the levels say at which level. A press (space,
    enter, click) on a level selects it and never clears it, so pressing a level that a preset
    already chose keeps it. Only the group's box (or delete) drops the group, and ticking the box
    again brings back the level it had. Left/right move between the box and the levels, up/down to
    the previous/next row. Levels wrap under each other when the row is too narrow.
    """

    NAME_WIDTH = 24
    GAP = 2
    BOX = 4  # "[x] " before the group's name

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
            "press",
            "Select",
            id="scopes.level_toggle",
            tooltip="Select the highlighted level (a press never clears it); on the group's box, add or drop the group",
        ),
        Binding(
            "delete,backspace",
            "drop_group",
            "Drop group",
            show=False,
            id="scopes.group_clear",
            tooltip="Drop this group from the token (its box ticked again brings the level back)",
        ),
        Binding("up", "row(-1)", "Previous group", show=False, id="scopes.row_up", tooltip="Previous group"),
        Binding("down", "row(1)", "Next group", show=False, id="scopes.row_down", tooltip="Next group"),
    ]

    selected: reactive[str | None] = reactive(None)
    # 0 is the group's box, 1.. the levels
    cursor: reactive[int] = reactive(1)

    class Changed(Message):
        """The engineer selected a level of this group, or dropped the group (``scope`` is None)."""

        def __init__(self, row: ScopeGroupRow, scope: str | None) -> None:
            super().__init__()
            self.row = row
            self.scope = scope

        @property
        def control(self) -> ScopeGroupRow:
            return self.row

    class Kept(Message):
        """A press on the level that was already selected: nothing changed, and the screen says so."""

        def __init__(self, row: ScopeGroupRow, scope: str) -> None:
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
        self._last: str | None = selected  # the level the box brings back
        self.tooltip = group.notes

    def watch_selected(self, selected: str | None) -> None:
        self.set_class(selected is not None, "-selected")
        if selected is not None:
            self._last = selected

    def _items(self) -> list[str]:
        return [f"({'●' if lv.scope == self.selected else ' '}) {lv.label}" for lv in self.group.levels]

    def _layout(self, width: int) -> tuple[list[str], list[list[tuple[int, int]]]]:
        """Name lines (the box included), and per line the (level index, x) of each level placed on it."""
        box = f"[{'x' if self.selected else ' '}] "
        # A long name wraps with an indent, so its second line does not read as another group.
        wrapped = textwrap.wrap(self.group.name, self.NAME_WIDTH - self.BOX - 1, subsequent_indent="  ") or [""]
        name_lines = [box + wrapped[0], *(" " * self.BOX + line for line in wrapped[1:])]
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
            parts: list[str | tuple[str, str] | Content] = []
            if row == 0:
                box = Content(name[: self.BOX - 1])
                if self.selected:
                    box = box.stylize(on_style)
                if self.has_focus and self.cursor == 0:
                    box = box.stylize(cursor_style)
                parts += [box, Content.styled(name[self.BOX - 1 :].ljust(self.NAME_WIDTH - self.BOX + 1), name_style)]
            else:
                parts.append(Content.styled(name.ljust(self.NAME_WIDTH), name_style))
            x = self.NAME_WIDTH
            for index, at in lines[row] if row < len(lines) else []:
                parts.append(" " * (at - x))
                text = Content(items[index])
                if self.group.levels[index].scope == self.selected:
                    text = text.stylize(on_style)
                if self.has_focus and index + 1 == self.cursor:
                    text = text.stylize(cursor_style)
                parts.append(text)
                x = at + len(items[index])
            out.append(Content.assemble(*parts))
        return Content("\n").join(out)

    def _on_focus(self, event: events.Focus) -> None:
        # Start on the chosen level, else on the first one: never on the box by surprise.
        scopes = [lv.scope for lv in self.group.levels]
        self.cursor = scopes.index(self.selected) + 1 if self.selected in scopes else max(self.cursor, 1)
        self.refresh()

    def _on_blur(self, event: events.Blur) -> None:
        self.refresh()

    def action_move(self, step: int) -> None:
        self.cursor = max(0, min(len(self.group.levels), self.cursor + step))

    def action_row(self, step: int) -> None:
        if step < 0:
            self.screen.focus_previous()
        else:
            self.screen.focus_next()

    def action_press(self) -> None:
        if self.cursor == 0:
            self._press_box()
        else:
            self._select(self.cursor - 1)

    def action_drop_group(self) -> None:
        if self.selected is not None:
            self.selected = None
            self.post_message(self.Changed(self, None))

    def _press_box(self) -> None:
        if self.selected is not None:
            self.action_drop_group()
        else:
            self.selected = self._last or self.group.levels[0].scope
            self.post_message(self.Changed(self, self.selected))

    def _select(self, index: int) -> None:
        scope = self.group.levels[index].scope
        if self.selected == scope:
            self.post_message(self.Kept(self, scope))
            return
        self.selected = scope
        self.post_message(self.Changed(self, scope))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0 and offset.x < self.BOX - 1:
            self.cursor = 0
            self._press_box()
            return
        _, lines = self._layout(self.content_size.width)
        if offset.y >= len(lines):
            return
        items = self._items()
        for index, at in lines[offset.y]:
            if at <= offset.x < at + len(items[index]):
                self.cursor = index + 1
                self._select(index)
                return


class ScopesScreen(Screen[ScopeSelection | None]):
    """The custom-defined scope picker; dismisses with a :class:`ScopeSelection`, or ``None`` on escape."""

    CSS_PATH = "scopes.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "confirm", "Confirm", id="scopes.confirm", tooltip="Use these scopes and continue"),
        Binding("escape", "cancel", "Back", id="scopes.cancel", tooltip="Leave without choosing scopes"),
        Binding("a", "toggle_all", "All scopes", id="scopes.toggle_all", tooltip="Show all scope groups, or fewer"),
        Binding(
            "c",
            "clear",
            "Clear",
            id="scopes.clear",
            tooltip="Untick every scope (u undoes it)",
        ),
        Binding("u", "undo", "Undo", id="scopes.undo", tooltip="Undo the last clear or preset"),
        # last: the Search field is on screen, and at 80 columns the footer's last key is the one cut
        Binding("slash", "search", "Search", id="scopes.search", tooltip="Filter the scope groups"),
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
        preset: str | None = None,
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
        self._elsewhere_timer: Timer | None = None  # the "N more chosen further down" note, asked again after a scroll
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
        # The preset the selection started from: the one named, else the one it matches exactly. The
        # screen says it, and how far the selection has moved from it since.
        self._preset: Preset | None = self.presets.get(preset) if preset else None
        if self._preset is None and not self.full_access:
            self._preset = self._matching_preset()
        # (selection, preset) before each clear or preset, for undo
        self._undo: list[tuple[dict[str, str], Preset | None]] = []

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
                        yield Button("Clear", id="clear", compact=True).with_tooltip("Untick every scope (u undoes it)")
                with Horizontal(classes="field"):
                    yield Label("Search", classes="field-label")
                    yield Input(placeholder="filter, e.g. agent pools", id="search", compact=True)
                yield Static("", id="chosen-elsewhere", markup=False)
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
        self.watch(self.query_one(Body), "scroll_y", lambda _old, _new: self._layout_changed(), init=False)
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
        self._refresh_elsewhere()
        self._layout_changed()  # and again once the shown rows are laid out

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

    def _matching_preset(self) -> Preset | None:
        chosen = set(self._selected.values())
        return next((p for p in self.presets.values() if chosen and set(p.scopes) == chosen), None)

    def preset_status(self) -> str:
        """Which preset the selection came from and whether it has moved since, e.g. 'Preset: KEDA (1 scope)'."""
        if self.full_access:
            return "Full access"
        chosen = set(self.scopes)
        preset = self._preset
        if preset is None:
            return "Custom selection (no preset)" if chosen else "No preset"
        wanted = set(preset.scopes)
        if chosen == wanted:
            return f"Preset: {preset.label} ({len(wanted)} scope{'s' if len(wanted) != 1 else ''})"
        if not chosen:
            return f"Cleared (was preset {preset.label})" + (" · u undoes" if self._undo else "")
        return f"Preset {preset.label}, changed: +{len(chosen - wanted)} −{len(wanted - chosen)}"

    def chosen_elsewhere(self) -> tuple[str, tuple[ScopeGroup, ...]]:
        """The groups with a chosen level that are not listed, or not among the usual six, and where they are."""
        if self.full_access:
            return "", ()
        chosen = tuple(g for g in self.catalogue.groups if g.name in self._selected)
        if self._search_text:
            shown = set(self.visible_groups())
            return "hidden by the search", tuple(g for g in chosen if g not in shown)
        if self.show_all:
            return "", ()
        return "further down", tuple(g for g in chosen if not g.initially_shown and not self._in_view(g))

    def _in_view(self, group: ScopeGroup) -> bool:
        """Whether the group's row is on screen whole now (the form scrolls; at 80x24 the seventh group is not)."""
        row = next((r for r in self.query(ScopeGroupRow) if r.group is group), None)
        if row is None or not row.region.area:
            return False  # not laid out yet: say it
        return self.query_one(Body).content_region.contains_region(row.region)

    def _layout_changed(self) -> None:
        """The form scrolled or the terminal was resized: a chosen row may have come into view or left it. Asked
        once the screen has been drawn again (the rows' places are the compositor's, known only after it)."""
        if self._elsewhere_timer is not None:
            self._elsewhere_timer.stop()
        self._elsewhere_timer = self.set_timer(0.05, self._refresh_elsewhere)

    def on_resize(self) -> None:
        self._layout_changed()

    def _refresh_elsewhere(self) -> None:
        where, groups = self.chosen_elsewhere()
        note = self.query_one("#chosen-elsewhere", Static)
        note.display = bool(groups)
        if groups:
            note.update(f"ⓘ {len(groups)} more chosen, {where}: {', '.join(g.name for g in groups)}")

    def _refresh_summary(self) -> None:
        scopes = self.scopes
        summary = self.query_one("#summary", Static)
        summary.border_title = f" {self.preset_status()} "
        self._refresh_elsewhere()
        self.refresh_bindings()
        if not scopes:
            summary.update(
                Content.assemble(("No scope selected yet: ", "bold"), "select one level of a group, or pick a preset.")
            )
            return
        labels = " · ".join(self.catalogue.label(s) for s in scopes)
        parts: list[str | tuple[str, str] | Content] = []
        high = self.catalogue.high_privilege(scopes)
        if high:
            # First: with many scopes the summary runs out of lines, and this one must not be the one cut.
            parts += [("⚠ High privilege: " + ", ".join(self.catalogue.label(s) for s in high), "bold"), "\n"]
        parts += [
            (f"Requesting {len(scopes)} scope{'s' if len(scopes) != 1 else ''}: ", "bold"),
            scope_string(scopes),
            "\n",
            ("  " + labels, "italic"),
        ]
        summary.update(Content.assemble(*parts))
        summary.set_class(bool(high), "-high")

    def _say(self, text: str, *, error: bool = False) -> None:
        message = self.query_one("#message", Static)
        message.update(text)
        message.set_class(error, "-error")

    # -- events ------------------------------------------------------------------------------

    @on(ScopeGroupRow.Changed)
    def _level_changed(self, event: ScopeGroupRow.Changed) -> None:
        group = event.row.group
        if event.scope is None:
            dropped = self._selected.pop(group.name, None)
            self._say(f"Dropped {self.catalogue.label(dropped)}; its box brings it back." if dropped else "")
        else:
            self._selected[group.name] = event.scope
            self._say("")
        self._refresh_summary()

    @on(ScopeGroupRow.Kept)
    def _level_kept(self, event: ScopeGroupRow.Kept) -> None:
        # A press on the chosen level keeps it; say so, and how to drop the group instead.
        self._say(f"{self.catalogue.label(event.scope)} stays selected; its [x] box or Delete drops the group.")

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

    @on(Button.Pressed, "#clear")
    def _clear_pressed(self) -> None:
        self.action_clear()

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
            commands.append(("Clear all scopes", self.action_clear, "Untick every scope (u undoes it)"))
            label = "Show fewer scopes" if self.show_all else "Show all scopes"
            commands.append((label, self.action_toggle_all, "List every scope group, or only the usual ones"))
        return commands

    def runbook_target(self) -> str | None:
        return self.target_name

    # -- actions -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "preset":
            return parameters[0] in self.presets
        if action in ("search", "toggle_all", "clear") and self.full_access:
            return False  # there is no list in Full access mode
        if action == "undo":
            return bool(self._undo)  # in the footer only when there is something to undo
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
        self._remember()
        self._selected = chosen
        self._preset = preset
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

    def _remember(self) -> None:
        self._undo.append((dict(self._selected), self._preset))
        del self._undo[:-20]

    def action_clear(self) -> None:
        if not self._selected:
            self._say("Nothing to clear: no scope is selected.")
            return
        count = len(self._selected)
        self._remember()
        self._selected = {}
        self._refresh_groups()
        self._refresh_summary()
        self._say(f"Cleared {count} scope{'s' if count != 1 else ''}; u brings {'them' if count != 1 else 'it'} back.")

    def action_undo(self) -> None:
        if not self._undo:
            return
        self._selected, self._preset = self._undo.pop()
        self.query_one("#mode-custom", RadioButton).value = True
        self.full_access = False
        self._refresh_groups()
        self._refresh_summary()
        self._say(f"Undone: {len(self._selected)} scope{'s' if len(self._selected) != 1 else ''} selected again.")

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
