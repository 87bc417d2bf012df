"""Azure DevOps' custom-defined scope picker, from the vendored ``scopes.json``.

``scopes.json`` is compiled from Microsoft's docs and third-party UI guides; see
``providers/azure_devops/SOURCE.md``. The picker order, the groups shown before
"Show all scopes" and the presets all come from here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

FULL_ACCESS = "app_token"


@dataclass(frozen=True)
class ScopeLevel:
    label: str
    scope: str
    high_privilege: bool
    description: str


@dataclass(frozen=True)
class ScopeGroup:
    name: str
    levels: tuple[ScopeLevel, ...]
    initially_shown: bool
    notes: str | None

    def level_of(self, scope: str) -> ScopeLevel | None:
        return next((lv for lv in self.levels if lv.scope == scope), None)


@dataclass(frozen=True)
class Preset:
    id: str
    label: str
    scopes: tuple[str, ...]
    why: str
    reminders: tuple[tuple[str, str], ...] = ()  # (name, text): checklist items every rotation of the job shows


# The two jobs the runbook knows. Labels say what the picker shows for each group.
BUILTIN_PRESETS: dict[str, Preset] = {
    "keda": Preset(
        "keda",
        "KEDA agent pools",
        ("vso.agentpools_manage",),
        "Agent Pools: Read & manage, for the KEDA azure-pipelines scaler and agent registration",
        (
            (
                "KEDA picks up the new PAT",
                "Before the old PAT is revoked, check that KEDA scales agents again in every environment: KEDA may keep "
                "using the old credential after the secret changed until its operator restarts (kedacore/keda#7906, "
                "#7640); if so, restart it: kubectl -n keda rollout restart deployment/keda-operator",
            ),
        ),
    ),
    "daily-checks": Preset(
        "daily-checks",
        "Daily checks pipeline",
        ("vso.agentpools", "vso.build", "vso.pipelineresources_use", "vso.release"),
        "Agent Pools: Read; Build: Read; Pipeline Resources: Use; Release: Read",
    ),
}


@dataclass(frozen=True)
class ScopeCatalogue:
    groups: tuple[ScopeGroup, ...]  # in the portal's order: shown first, then the rest alphabetically
    full_access_label: str
    show_all_label: str

    @property
    def initially_shown(self) -> tuple[ScopeGroup, ...]:
        return tuple(g for g in self.groups if g.initially_shown)

    @property
    def hidden(self) -> tuple[ScopeGroup, ...]:
        return tuple(g for g in self.groups if not g.initially_shown)

    def all_scope_ids(self) -> frozenset[str]:
        return frozenset(lv.scope for g in self.groups for lv in g.levels) | {FULL_ACCESS}

    def group_of(self, scope: str) -> ScopeGroup | None:
        return next((g for g in self.groups if g.level_of(scope)), None)

    def label(self, scope: str) -> str:
        """'Agent Pools: Read & manage' as the portal says it."""
        if scope == FULL_ACCESS:
            return self.full_access_label
        group = self.group_of(scope)
        if group is None:
            return scope
        level = group.level_of(scope)
        assert level is not None
        return group.name if level.label == group.name else f"{group.name}: {level.label}"

    def high_privilege(self, scopes: tuple[str, ...] | list[str]) -> list[str]:
        out = []
        for s in scopes:
            group = self.group_of(s)
            level = group.level_of(s) if group else None
            if s == FULL_ACCESS or (level and level.high_privilege):
                out.append(s)
        return out

    def search(self, text: str) -> tuple[ScopeGroup, ...]:
        """Groups whose name, level labels or scope ids contain every word of ``text``."""
        words = [w for w in re.split(r"\s+", text.lower()) if w]

        def hay(g: ScopeGroup) -> str:
            return " ".join([g.name, *(f"{lv.label} {lv.scope} {lv.description}" for lv in g.levels)]).lower()

        return tuple(g for g in self.groups if all(w in hay(g) for w in words))

    def validate(self, scopes: list[str] | tuple[str, ...]) -> list[str]:
        """Unknown scope ids (empty when all are known)."""
        known = self.all_scope_ids()
        return [s for s in scopes if s not in known]


@cache
def load_catalogue() -> ScopeCatalogue:
    data = json.loads(resources.files(__package__).joinpath("scopes.json").read_text(encoding="utf-8"))
    groups = []
    for g in data["groups"]:
        levels = tuple(
            ScopeLevel(lv["label"], lv["scope"], bool(lv["high_privilege"]), lv.get("doc_description") or "")
            for lv in g["levels"]
        )
        groups.append(ScopeGroup(g["name"], levels, bool(g["initially_shown"]), g.get("notes")))
    shown_order = data["show_all_link"]["initially_shown_groups"]
    groups.sort(key=lambda g: (0, shown_order.index(g.name)) if g.name in shown_order else (1, g.name.lower()))
    return ScopeCatalogue(tuple(groups), data["full_access"]["label"], data["show_all_link"]["label"])


def scope_string(scopes: list[str] | tuple[str, ...]) -> str:
    """The PAT API's ``scope`` field: space-separated ids, de-duplicated, order kept."""
    return " ".join(dict.fromkeys(scopes))
