"""The plan as the journal keeps it: one typed record, written when a rotation begins and read back into the same type.

The engine, the CLI and the wizard read a rotation's plan through :class:`PlanRecord` (``Rotation.plan``), never as a
dict. Step ids are derived from what a step is and what it acts on (its kind and target: a vault and secret, a repo
and key, a parameter), not from its position in the config, so reordering follow-ups between a crash and `resume`
cannot remap which steps count as done.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from providers.base import TokenInfo

POSITIONAL_ID = re.compile(r"\d+-[a-z0-9-]+")  # the ids keyturn journaled before they were stable ("1-keyring")


def step_id(kind: str, what: str) -> str:
    """A step's stable id: its kind and a readable slug of what it acts on (a short hash keeps long ones unique).
    Safe as a widget id (letters, digits, '-', '_')."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", what).strip("-").lower()
    if len(slug) > 40:
        slug = f"{slug[:28].rstrip('-')}-{hashlib.sha256(what.encode()).hexdigest()[:8]}"
    return f"{kind}-{slug}" if slug else kind


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()
    display_id: str | None = None  # TokenInfo.display_id (Buildkite: the uuid); journals before it lack it

    @classmethod
    def of(cls, info: TokenInfo) -> TokenRecord:
        return cls(info.id, info.name, info.expires_at, tuple(info.scopes), info.display_id)

    def info(self) -> TokenInfo:
        return TokenInfo(id=self.id, name=self.name, expires_at=self.expires_at, scopes=self.scopes, display_id=self.display_id)

    @property
    def shown_id(self) -> str:
        """The id to show a person (TokenInfo.shown_id)."""
        return self.display_id or self.id

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "name": self.name, "expires_at": self.expires_at.isoformat() if self.expires_at else None, "scopes": list(self.scopes)}
        if self.display_id:
            d["display_id"] = self.display_id
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TokenRecord:
        exp = datetime.fromisoformat(d["expires_at"]) if d.get("expires_at") else None
        shown = d.get("display_id")
        return cls(str(d["id"]), str(d.get("name", "")), exp, tuple(d.get("scopes", ())), str(shown) if shown else None)


@dataclass(frozen=True)
class StepRecord:
    id: str
    kind: str
    title: str


@dataclass(frozen=True)
class PlanRecord:
    """What a rotation was planned to do, exactly as journaled in its `planned` line."""

    account: str
    platform: str
    display_name: str
    token_name: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    all_orgs: bool
    old_tokens: tuple[TokenRecord, ...]
    steps: tuple[StepRecord, ...]
    revoke_after_s: int = 0
    revoke_all_others: bool = False
    warnings: tuple[str, ...] = ()
    cluster: str | None = None
    lines: tuple[str, ...] = ()
    target_config: dict[str, Any] | None = field(default=None, compare=False)  # the target's settings (abort after a rename)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        d["old_tokens"] = [t.to_json() for t in self.old_tokens]
        d["steps"] = [asdict(s) for s in self.steps]
        for key in ("scopes", "warnings", "lines"):
            d[key] = list(d[key])
        if self.target_config is None:
            d.pop("target_config")
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PlanRecord:
        return cls(
            account=str(d["account"]),
            platform=str(d["platform"]),
            display_name=str(d["display_name"]),
            token_name=str(d.get("token_name", "")),
            scopes=tuple(d.get("scopes", ())),
            expires_at=datetime.fromisoformat(d["expires_at"]) if d.get("expires_at") else None,
            all_orgs=bool(d.get("all_orgs")),
            old_tokens=tuple(TokenRecord.from_json(t) for t in d.get("old_tokens", ())),
            steps=tuple(StepRecord(str(s["id"]), str(s.get("kind", "")), str(s.get("title", ""))) for s in d.get("steps", ())),
            revoke_after_s=int(d.get("revoke_after_s", 0)),
            revoke_all_others=bool(d.get("revoke_all_others")),
            warnings=tuple(d.get("warnings", ())),
            cluster=d.get("cluster"),
            lines=tuple(d.get("lines", ())),
            target_config=d.get("target_config"),
        )

    @property
    def positional_ids(self) -> bool:
        """Journaled by a keyturn whose step ids were positions in the config."""
        return bool(self.steps) and all(POSITIONAL_ID.fullmatch(s.id) for s in self.steps)
