"""Verify and retire: the verification, the consumer gates checked live, then revoke the old token.

Verify before revoke, and revoke only once every consumer demonstrably has the new token, are the engine's rules:
this screen shows each gate (checked again every few seconds) and offers the revoke once they pass. Revoking
anyway asks first, naming what breaks, and is journaled. Leaving keeps the rotation waiting; a later resume
(here, or `keyturn resume`) checks again and revokes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from screens import ICONS, WizardScreen, one_line
from screens.prompt import ConfirmPrompt

if TYPE_CHECKING:
    from app.engine import Rotation
    from providers.base import GateCheck

RECHECK_S = 4.0  # how often a waiting gate is asked again while the screen is shown


def human_delay(delay: timedelta) -> str:
    seconds = int(delay.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


class RetireScreen(WizardScreen["str | None"]):
    """Dismisses with what happened to the old tokens, or None when the engineer leaves it for later."""

    CSS_PATH = "retire.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        # Enter does one thing per state, and the footer says which: Textual shows and runs the first binding of a key
        # whose check_action is not False. One id for all of them, so the config's [keymap] moves them together
        # (Textual's apply_keymap drops every binding of a key when one of them is remapped).
        Binding(
            "enter",
            "enter('wait')",
            "What it waits for",
            id="retire.default",
            tooltip="Say what the old token's revoke still waits for (o revokes it anyway, asking first)",
        ),
        Binding(
            "enter",
            "enter('finish')",
            "Finish",
            id="retire.default",
            tooltip="Finish the rotation: there is no old token to revoke",
        ),
        Binding(
            "enter",
            "enter('later')",
            "Revoke after delay",  # the delay itself replaces this in __init__ ("Revoke after 24 hours")
            id="retire.default",
            tooltip="Revoke the old token after the target's delay (a later resume does it)",
        ),
        Binding(
            "enter",
            "enter('now')",
            "Revoke now",
            id="retire.default",
            tooltip="Revoke the old token now",
        ),
        # n too: hidden from the footer while Enter already says "Revoke now" (the footer would say it twice)
        Binding("n", "retire_now", "Revoke now", show=False, id="retire.now", tooltip="Revoke the old token now"),
        Binding("n", "retire(True)", "Revoke now", id="retire.now", tooltip="Revoke the old token now"),
        Binding(
            "d",
            "retire(False)",
            "After delay",
            id="retire.later",
            tooltip="Revoke the old token after the target's delay (a later resume does it)",
        ),
        Binding(
            "m",
            "play",
            "Sandbox: play it",
            id="retire.sandbox_play",
            tooltip="Sandbox only: do what the waiting gate needs (the reviewer merges, the agents reconnect, a job runs)",
        ),
        Binding(
            "o",
            "override",
            "Revoke anyway…",
            id="retire.override",
            tooltip="Revoke the old token although a gate still waits (asks first, naming what breaks; journaled)",
        ),
        Binding(
            "a",
            "revoke_all_others",
            "Revoke all others…",
            id="retire.all_others",
            tooltip="Jenkins, old token unknown: revoke every other API token of the user (asks first, naming what dies)",
        ),
        Binding(
            "l",
            "leave",
            "Leave",
            id="retire.leave",
            tooltip="Leave the rotation here; resume it later from the targets screen",
        ),
    ]

    def __init__(self, rotation: Rotation) -> None:
        super().__init__()
        self.rotation = rotation
        self.ready = False
        self.busy = False
        self.delay = timedelta(seconds=rotation.plan.revoke_after_s)
        self.gates: list[GateCheck] = []
        self.checking = False
        if self.delay:
            # a Binding's description is fixed: this screen's copy of Enter's "later" binding names the delay
            enter = self._bindings.key_to_bindings.get("enter", [])
            self._bindings.key_to_bindings["enter"] = [
                replace(b, description=f"Revoke after {human_delay(self.delay)}") if b.action == "enter('later')" else b
                for b in enter
            ]

    def compose(self) -> ComposeResult:
        rotation = self.rotation
        yield Static(f"Verify and retire · {rotation.record.target} · rotation {rotation.id[:8]}", classes="title-bar")
        with VerticalScroll(id="retire-main"):
            yield Static(f"{ICONS['running']} Checking the verification…", id="verified", markup=False)
            yield Static("Old tokens of this target", classes="section")
            yield Static(self._old_tokens(), id="old", markup=False)
            yield Static("Before the old token is revoked", classes="section", id="gates-title")
            yield Static("", id="gates", markup=False)
            yield Static("", id="choice", markup=False)
            yield Static("", id="error", classes="error-line", markup=False)
        yield Footer()

    @property
    def old_unknown(self) -> bool:
        """Jenkins without a readable security page or a token_uuid: the old token cannot be named."""
        provider = self.rotation.provider
        return not self.rotation.plan.old_tokens and provider.CAN_REVOKE_ALL_EXCEPT and not provider.lists_tokens()

    def _old_tokens(self) -> Table:
        olds = self.rotation.plan.old_tokens
        if not olds and self.old_unknown:
            text = self.rotation.provider.unknown_old_token_help()
            return hanging([("", f"not known: {text.replace('rotate with --revoke-all-other-tokens', 'press a')}")])
        if not olds:
            return hanging([("", "none found: nothing to revoke")])
        rows = []
        for t in olds:
            exp = f", expires {t.expires_at:%Y-%m-%d}" if t.expires_at else ""
            rows.append(("•", f"{t.name}{exp}\nid {t.shown_id}"))
        # what revocation does and does not do on this platform (Buildkite: running agents), before Enter
        if text := self.rotation.provider.retire_notice():
            rows += [("", ""), ("ⓘ", text)]
        return hanging(rows)

    @property
    def waiting(self) -> list[GateCheck]:
        return [g for g in self.gates if not g.passed]

    def _gates_text(self) -> Table:
        rows = []
        for g in self.gates:
            if g.passed:
                rows.append((ICONS["done"], f"{g.title}" + (f": {g.progress}" if g.progress else "")))
            else:
                rows.append((ICONS["running"], f"{g.title}: {g.waiting_for}" + (f"\n{g.progress}" if g.progress else "")))
        return hanging(rows)

    def _playable(self) -> list[GateCheck]:
        if self.wizard.sandbox is None:
            return []
        from app.sandbox.consumers import what_plays

        return [g for g in self.waiting if what_plays(g)]

    def _choice_text(self) -> str:
        if self.waiting and self.rotation.revokes_something:
            from app.sandbox.consumers import what_plays

            played = self._playable()
            lines = [
                f"The old token stays alive until every check above passes (asked again every {RECHECK_S:g} s).",
            ]
            if played:
                lines.append(f"m: in the sandbox, {what_plays(played[0])}.")
            lines.append("o revokes it anyway (asks first); l leaves the rotation waiting: resuming it later checks again.")
            return "\n".join(lines)
        if self.rotation.revoke_all_others:
            when = f"after {human_delay(self.delay)}" if self.delay else "now"
            return f"Enter revokes every other API token of the user {when}; the new one stays."
        if not self.rotation.plan.old_tokens:
            return "Enter finishes the rotation (nothing revoked)" + ("; a revokes every other token first." if self.old_unknown else ".")
        if self.delay:
            return (
                f"This target keeps the old token for {human_delay(self.delay)} after propagation, so every consumer "
                "picks up the new one first.\n"
                f"Enter (or d) revokes it after the delay; n revokes it now."
            )
        passed = "Every consumer has the new token. " if self.gates else ""
        return passed + "Enter (or n) revokes the old token now."

    def on_mount(self) -> None:
        self.query_one("#error").display = False
        self.query_one("#choice").display = False
        self.query_one("#gates-title").display = False
        self.query_one("#gates").display = False
        self._prepare()
        self.set_interval(RECHECK_S, self._tick)

    def _tick(self) -> None:
        if self.ready and not self.busy and not self.checking and self.waiting:
            self.checking = True
            self._recheck()

    @work(thread=True, exclusive=True, group="retire-gates", exit_on_error=False)
    def _recheck(self) -> None:
        self.ui(self._rechecked, self._ask_gates())

    def _ask_gates(self) -> list[GateCheck]:
        """From a worker: the gates asked now and what they wait for journaled; the last ones shown on a failure."""
        try:
            with self.wizard.rotation_lock:
                gates = self.rotation.check_gates() if self.rotation.revokes_something else []
                self.rotation.note_gates(gates)
                return gates
        except Exception as exc:
            self.ui(self._failed, one_line(exc))
            return self.gates

    def _rechecked(self, gates: list[GateCheck]) -> None:
        self.checking = False
        if not self.busy:  # a revoke or a play under way shows its own result
            self._show_gates(gates)

    @work(thread=True, exclusive=True, group="retire", exit_on_error=False)
    def _prepare(self) -> None:
        try:
            with self.wizard.rotation_lock:
                self.rotation.run_until("propagated")  # already done by the checklist, or nothing to propagate
                detail = self.rotation.verified_detail()
        except Exception as exc:
            self.ui(self._failed, one_line(exc))
            return
        self.ui(self._ready, detail, self._ask_gates())

    @work(thread=True, exclusive=True, group="retire", exit_on_error=False)
    def _retire(self, now: bool, overrides: list[GateCheck] | None = None) -> None:
        """``now``: without the soak time; every gate still has to pass (a gate that closed since it was shown stops
        the revoke and is shown again); ``overrides``: the gates the engineer chose to revoke without (journaled)."""
        try:
            with self.wizard.rotation_lock:
                for g in overrides or []:
                    self.rotation.override_gate(g, by="the wizard (asked, answered yes)")
                outcome = self.rotation.run_until("done", skip_soak=now)
                gates = self.rotation.gates
        except Exception as exc:
            self.ui(self._failed, one_line(exc))
            return
        if self.rotation.state == "propagated" and not self.rotation.record.retire_at:  # a gate closed meanwhile
            self.ui(self._show_gates, gates)
            return
        self.ui(self.dismiss, outcome)

    def _ready(self, detail: str, gates: list[GateCheck]) -> None:
        self.ready = True
        self.query_one("#verified", Static).update(f"{ICONS['done']} Verified: {detail}")
        self._show_gates(gates)

    def _show_gates(self, gates: list[GateCheck]) -> None:
        was_waiting = bool(self.waiting)
        self.gates = gates
        self.busy = False
        shown = bool(gates)
        self.query_one("#gates-title").display = shown
        box = self.query_one("#gates", Static)
        box.update(self._gates_text())
        box.display = shown
        choice = self.query_one("#choice", Static)
        choice.update(self._choice_text())
        choice.display = True
        if was_waiting and not self.waiting:
            self.notify("Every consumer has the new token: Enter revokes the old one.", markup=False)
        self.refresh_bindings()

    def _failed(self, message: str) -> None:
        self.busy = False
        error = self.query_one("#error", Static)
        error.update(f"✗ {message}")
        error.display = True
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "play":
            return bool(self._playable()) and ((self.ready and not self.busy) or None)
        if action == "override":
            return bool(self.waiting and self.rotation.revokes_something) and ((self.ready and not self.busy) or None)
        if action == "retire_now":
            if self.enter_does != "now" or not self.rotation.plan.old_tokens or self.waiting:
                return False
            return (self.ready and not self.busy) or None
        if action == "retire":
            if not self.rotation.plan.old_tokens or self.waiting:
                return False  # while a gate waits, o (asked, journaled) is the only way to revoke
            if parameters and parameters[0] is True and self.enter_does == "now":
                return False  # the hidden n (retire_now) is the one while Enter says it
            if parameters and parameters[0] is False and not self.delay:
                return False
            return (self.ready and not self.busy) or None
        if action == "enter":
            if not parameters or parameters[0] != self.enter_does:
                return False  # another of Enter's bindings is the one for this state
            return (self.ready and not self.busy) or None
        if action == "revoke_all_others":
            if not self.old_unknown or self.rotation.revoke_all_others:
                return False  # hidden: only for an old token that cannot be named
            return (self.ready and not self.busy) or None
        return True

    def action_retire_now(self) -> None:
        self.action_retire(True)

    def action_revoke_all_others(self) -> None:
        p = self.rotation.provider
        user = p.owner() or "the user"
        question = (
            f"Revoke EVERY other API token of {user}? Jobs, scripts and people using any other token of {user} get 401 "
            "from their next request; only the new token stays. Type yes to confirm."
        )

        def answered(answer: str | None) -> None:
            if (answer or "").strip().lower() == "yes":
                self.rotation.confirm_revoke_all_others()
                self.query_one("#choice", Static).update(self._choice_text())
                self.refresh_bindings()
                self.checking = True
                self._recheck()  # something dies now: its consumer gates are asked
            else:
                self.notify("Nothing revoked.", markup=False)

        self.app.push_screen(ConfirmPrompt(question), answered)

    def action_play(self) -> None:
        played = self._playable()
        if not played or self.busy:
            return
        self.busy = True
        self.refresh_bindings()
        self._play(played[0])

    @work(thread=True, exclusive=True, group="retire", exit_on_error=False)
    def _play(self, gate: GateCheck) -> None:
        from app.sandbox.consumers import play

        try:
            self.ui(self.notify, play(self.wizard.sandbox, gate, self.rotation.record.steps_done.get(gate.gate, {})))
        except Exception as exc:
            self.ui(self._failed, one_line(exc))
        self.ui(self._show_gates, self._ask_gates())

    def action_override(self) -> None:
        waiting = self.waiting
        if not waiting or self.busy:
            return
        what = "\n".join(f"• {g.title}: {g.waiting_for}" + (f"\n  {g.breaks}" if g.breaks else "") for g in waiting)
        question = f"Revoke the old token now, although these have not passed?\n{what}\nType yes to revoke anyway (journaled)."

        def answered(answer: str | None) -> None:
            if (answer or "").strip().lower() != "yes":
                self.notify("Nothing revoked; still waiting.", markup=False)
                return
            self.action_retire(True, asked=True, overrides=waiting)

        self.app.push_screen(ConfirmPrompt(question), answered)

    @property
    def enter_does(self) -> str:
        """What Enter does now: 'wait' (say what the revoke waits for), 'finish' (nothing to revoke), 'later' (revoke
        after the target's delay) or 'now'."""
        if self.waiting and self.rotation.revokes_something:
            return "wait"
        if not self.rotation.revokes_something:
            return "finish"
        return "later" if self.delay else "now"

    def action_enter(self, does: str) -> None:
        if does != self.enter_does:
            return  # the state changed between the key and now: the footer shows the new label
        if does == "wait":
            self.notify(f"The old token waits for: {'; '.join(g.waiting_for for g in self.waiting)}.", markup=False)
            return
        self.action_retire(does != "later")

    def action_retire(self, now: bool, asked: bool = False, overrides: list[GateCheck] | None = None) -> None:
        if not self.ready or self.busy:
            return
        if self.waiting and self.rotation.revokes_something and not asked:
            self.action_override()  # revoking while a gate waits is an override: asked, named, journaled
            return
        self.busy = True
        self.query_one("#error").display = False
        self.refresh_bindings()
        self._retire(now, overrides)

    def action_leave(self) -> None:
        self.dismiss(None)


def hanging(rows: list[tuple[str, str]]) -> Table:
    """Lines with a mark (•, ✓, ⓘ) whose wrapped continuation lines start under the text, not under the mark.

    Plain text (no markup: names and the platform's words may hold brackets)."""
    grid = Table.grid(padding=(0, 1, 0, 0))
    grid.add_column(width=3, justify="right", no_wrap=True)
    grid.add_column(ratio=1)
    for mark, text in rows:
        grid.add_row(Text(mark), Text(text))
    return grid
