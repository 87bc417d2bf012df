"""The command palette (Ctrl+P): commands that depend on the screen it was opened on.

A screen of the wizard may offer its own commands (``palette_commands()``: on the targets screen,
"Rotate <target>" for each target); every screen also offers its enabled key bindings by name, so
the reveal screen's copy key shows up as "Copy token"; and "Change theme" (Textual's themes, the choice
saved in the config's ``[settings] theme``). Textual's other system commands (screenshots) are left out
on purpose: a screenshot of the reveal screen could hold a token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

# Friendlier palette names for bindings of screens that do not name their own commands.
NAMES_BY_BINDING_ID = {
    "reveal.copy": "Copy token",
    "reveal.toggle": "Show or hide token",
    "reveal.show": "Show token",
    "reveal.continue": "Continue (token copied or stored)",
    "scopes.confirm": "Use these scopes",
    "scopes.preset_keda": "Preset: KEDA agent pools",
    "scopes.preset_daily_checks": "Preset: daily checks pipeline",
}
SKIP_ACTIONS = {"command_palette", "app.command_palette"}


def screen_commands(screen: Any) -> list[tuple[str, Callable[[], Any], str]]:
    """(name, callback, help) for the palette opened on ``screen``, its own commands first."""
    commands: list[tuple[str, Callable[[], Any], str]] = []
    own = getattr(screen, "palette_commands", None)
    if callable(own):
        commands.extend(own())
    app = screen.app
    for active in screen.active_bindings.values():
        binding = active.binding
        if not active.enabled or binding.system or binding.action in SKIP_ACTIONS:
            continue
        if not binding.id and not binding.show:
            continue  # a widget's built-in movement key (scroll up, cursor left): not a command
        name = NAMES_BY_BINDING_ID.get(binding.id or "", binding.description)
        if not name:
            continue
        key = app.get_key_display(binding)
        commands.append(
            (name, partial(app.run_action, binding.action, active.node), f"{binding.tooltip or name} ({key})")
        )
    commands.append(
        (
            "Change theme",
            app.action_change_theme,
            "Pick one of Textual's themes (light ones too); keyturn keeps it in the config, [settings] theme",
        )
    )
    seen: set[str] = set()
    unique = []
    for name, callback, help_text in commands:
        if name.lower() not in seen:
            seen.add(name.lower())
            unique.append((name, callback, help_text))
    return unique


class WizardCommands(Provider):
    """Commands of the screen the palette was opened on."""

    async def discover(self) -> Hits:
        for name, callback, help_text in screen_commands(self.screen):
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> AsyncIterator[Hit]:
        matcher = self.matcher(query)
        for name, callback, help_text in screen_commands(self.screen):
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, text=name, help=help_text)
