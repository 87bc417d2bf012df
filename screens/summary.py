"""What changed where: the new token, the stores, the follow-ups, the old tokens, the rotation id."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Label, Static

from screens import ICONS, PaletteCommand, WizardScreen

if TYPE_CHECKING:
    from app.engine import Rotation


def _short(summary: str) -> str:
    """A manual step's summary repeats its whole text; the checklist showed it, the summary says it was done."""
    return "done by hand" if summary.startswith("done by hand:") else summary


def summary_rows(rotation: Rotation, outcome: str) -> list[tuple[str, str]]:
    """(label, text) rows of the summary; shared by the screen and its tests."""
    from providers.registry import scope_label

    record = rotation.record
    plan = rotation.plan
    rows: list[tuple[str, str]] = []
    token = rotation.new_token
    if token is not None:
        exp = f", expires {token.expires_at:%Y-%m-%d}" if token.expires_at else ", never expires"
        rows.append(("New token", f"{token.name} (id {token.shown_id}{exp})"))
        # what the platform changed on its own, e.g. the organization's maximum lifespan clamping the expiry
        minted = [e for e in record.events if e["event"] == "minted"]
        for note in minted[-1].get("notes", []) if minted else []:
            rows.append(("Note", note))
    scopes = plan.scopes
    platform = plan.platform
    labels = ((scope_label(platform, s), s) for s in scopes)
    rows.append(("Scopes", ", ".join(label if label == s else f"{label} ({s})" for label, s in labels) or "-"))
    stored = rotation.stored_in()
    if not stored:
        # no store keyturn can read it back from; a consumer step (the Flux secret, the connector) may still hold it
        got_it = [s.title for s in rotation.steps if not s.is_store and s.needs_value]
        where = f"only {', '.join(got_it)} got it" if got_it else "the value was only revealed"
        stored = [f"no vault or keyring ({where})"]
    rows.append(("Stored in", "\n".join(stored)))
    follow = [
        f"{'ⓘ' if record.steps_done[s.id].get('reminder') else ICONS['done']} {s.title}: {_short(record.steps_done[s.id].get('summary', 'done'))}"
        for s in rotation.steps
        if not s.is_store and s.id in record.steps_done
    ]
    follow += [
        f"{ICONS['pending']} {s.title}: not done"
        for s in rotation.steps
        if not s.is_store and s.id not in record.steps_done
    ]
    rows.append(("Follow-ups", "\n".join(follow) if follow else "none"))
    olds = {t.id: t for t in plan.old_tokens}  # the journal's revoked events name the API's id; people see shown_id
    revoked = [e["token_id"] for e in record.events if e["event"] == "revoked" and e.get("role") == "old"]
    if revoked:
        old_text = "revoked " + ", ".join(f"{olds[i].name} ({olds[i].shown_id})" if i in olds else f"? ({i})" for i in revoked)
        for e in record.events:
            if e["event"] == "gates_passed":
                old_text += "".join(f"\nonce {g.get('title')}: {g.get('progress') or 'passed'}" for g in e.get("gates", []))
            elif e["event"] == "gate_overridden":
                old_text += f"\n⚠ without waiting for {e.get('title')} ({e.get('waiting_for')}), by {e.get('by')}"
    elif record.retire_at and olds:
        still = ", ".join(f"{t.name} ({t.shown_id})" for t in olds.values())
        old_text = f"{outcome}\nstill active until then: {still}"
    else:
        old_text = outcome or "none to revoke"
    rows.append(("Old tokens", old_text))
    rows.append(("Rotation", f"{rotation.id} ({record.state})"))
    return rows


class SummaryScreen(WizardScreen[None]):
    """The end of a rotation; Enter goes back to the targets."""

    CSS_PATH = "summary.tcss"
    AUTO_FOCUS = "#changes"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "done", "Done", id="summary.done", tooltip="Back to the targets (their expiry is read again)"),
        Binding("q", "app.quit", "Quit", id="summary.quit", tooltip="Quit keyturn"),
    ]

    def __init__(self, rotation: Rotation, outcome: str) -> None:
        super().__init__()
        self.rotation = rotation
        self.outcome = outcome

    def compose(self) -> ComposeResult:
        rotation = self.rotation
        yield Static(f"Summary · {rotation.record.target} · rotation {rotation.id[:8]}", classes="title-bar", markup=False)
        if rotation.state == "done":
            headline = f"{ICONS['done']} Rotation of {rotation.record.target} done."
        else:
            headline = f"{ICONS['stopped']} Rotation of {rotation.record.target} is waiting to revoke the old token ({rotation.state})."
        yield Static(headline, id="headline", markup=False)
        with VerticalScroll(id="changes"):
            for label, text in summary_rows(rotation, self.outcome):
                with Horizontal(classes="row"):
                    yield Label(label, classes="label")
                    yield Static(text, classes="value", markup=False)
        yield Static("Enter goes back to the targets; q quits.", classes="hint")
        yield Footer()

    def action_done(self) -> None:
        self.dismiss(None)

    def palette_commands(self) -> list[PaletteCommand]:
        rid = self.rotation.id
        return [("Copy rotation id", lambda: self._copy_id(rid), "Copy the rotation id (not a secret)")]

    def _copy_id(self, rid: str) -> None:
        self.app.copy_to_clipboard(rid)
        self.notify(f"Copied the rotation id {rid[:8]}.")
