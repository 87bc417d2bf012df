"""The follow-up checklist: automated steps run with live status, manual ones are ticked by hand.

A tick is recorded by the engine (``rotation.tick`` then ``rotation.run_step``), so nothing shows as
done that the journal does not hold as done. Continue runs the engine's sequence to ``propagated``, which refuses
while any step is still open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from screens import ICONS, WizardScreen, one_line

if TYPE_CHECKING:
    from app.engine import Rotation
    from app.followups import FollowUpStep


class FollowUpsScreen(WizardScreen[bool]):
    """Dismisses True once ``propagate()`` recorded every step, False when the engineer leaves."""

    CSS_PATH = "followups.tcss"
    AUTO_FOCUS = "#steps"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "space",
            "act",
            "Tick / retry",
            id="followups.act",
            tooltip="Tick the highlighted manual step once you have done it, or retry a failed automated step",
        ),
        Binding(
            "ctrl+s",
            "continue",
            "Continue",
            id="followups.continue",
            tooltip="Record the follow-ups as done and go on to retiring the old token",
        ),
        Binding(
            "l",
            "leave",
            "Leave",
            id="followups.leave",
            tooltip="Leave the rotation here; resume it later from the targets screen",
        ),
    ]

    def __init__(self, rotation: Rotation) -> None:
        super().__init__()
        self.rotation = rotation
        self.states: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        self.continuing = False
        for step in rotation.steps:
            done = rotation.step_state(step) == "done"
            self.states[step.id] = "done" if done else "pending"
            self.notes[step.id] = rotation.record.steps_done.get(step.id, {}).get("summary", "") if done else ""

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        rotation = self.rotation
        yield Static(f"Follow-ups · {rotation.record.target} · rotation {rotation.id[:8]}", classes="title-bar")
        yield Static(
            "Automated steps run by themselves. Do each manual step, then tick it (space). "
            "Ctrl+S continues once every step is done.",
            id="lead",
            markup=False,
        )
        yield OptionList(*(Option(self._prompt(s), id=s.id) for s in rotation.steps), id="steps")
        yield Static("", id="note-line", markup=False)
        yield Footer()

    def _text(self, step: FollowUpStep) -> str:
        """A manual step's templated text, filled in for this rotation; else what the step does."""
        from app.followups.manual import ManualStep

        if isinstance(step, ManualStep):
            spec = step.spec
            from app.followups import StepContext
            from app.followups.manual import render

            token = self.rotation.new_token
            if token is not None:
                ctx = StepContext(
                    self.wizard.config,
                    self.rotation.id,
                    self.rotation.record.target,
                    self.rotation.target,
                    token,
                    None,
                    self.wizard.engine.interaction,
                )
                return render(spec.text, ctx)
            return str(spec.text)
        return step.describe()

    def _prompt(self, step: FollowUpStep) -> Table:
        """Two columns, so a long step text wraps under itself: the box or status glyph, then the words."""
        state = self.states[step.id]
        note = self.notes.get(step.id, "")
        if step.manual:
            mark = {"done": "[x]", "running": "[⋯]"}.get(state, "[ ]")
            body = self._text(step)
            if state == "failed":
                body += f"\n✗ {note}"
        else:
            mark = f" {ICONS[state]} "
            if state == "done" and self.rotation.record.steps_done.get(step.id, {}).get("reminder"):
                mark = " ⓘ "  # a reminder: said, not checked, never waited for
            if state == "done":
                body = note
            elif state == "failed":
                body = f"✗ {note}  (space retries)"
            else:
                body = "stored before the reveal" if step.is_store else {"running": "running…"}.get(state, "waiting")
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, width=3)
        grid.add_column(ratio=1)
        text = Text(step.title, style="bold")
        text.append("\n" + body)
        grid.add_row(Text(mark), text)
        return grid

    def on_mount(self) -> None:
        steps = self.query_one("#steps", OptionList)
        for index, step in enumerate(self.rotation.steps):
            if step.is_store:
                steps.disable_option_at_index(index)
        self._highlight_next()
        self._run_automated()

    def _refresh(self, step_id: str) -> None:
        step = next(s for s in self.rotation.steps if s.id == step_id)
        self.query_one("#steps", OptionList).replace_option_prompt(step_id, self._prompt(step))
        self.refresh_bindings()

    def _highlight_next(self) -> None:
        steps = self.query_one("#steps", OptionList)
        for index, step in enumerate(self.rotation.steps):
            if self.states[step.id] != "done" and not step.is_store:
                steps.highlighted = index
                return

    def _say(self, text: str, *, error: bool = False) -> None:
        message = self.query_one("#note-line", Static)
        message.update(text)
        message.set_class(error, "-error")

    # -- workers ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="followups-auto", exit_on_error=False)
    def _run_automated(self) -> None:
        for step in self.rotation.steps:
            if step.is_store or step.manual or self.states[step.id] == "done":
                continue
            self._run_one(step.id, manual=False)

    @work(thread=True, group="followups-step", exit_on_error=False)
    def _run_step_worker(self, step_id: str, manual: bool) -> None:
        self._run_one(step_id, manual=manual)

    def _run_one(self, step_id: str, *, manual: bool) -> None:
        """Run one step in the calling worker thread; the lock keeps journal writes in order."""
        rotation = self.rotation
        self.ui(self._set_state, step_id, "running", "")
        with self.wizard.rotation_lock:
            try:
                if manual:
                    rotation.tick(step_id, True)
                rotation.run_step(step_id)
            except Exception as exc:
                if manual:
                    rotation.tick(step_id, False)
                self.ui(self._set_state, step_id, "failed", one_line(exc))
                return
            summary = rotation.record.steps_done.get(step_id, {}).get("summary", "")
        self.ui(self._set_state, step_id, "done", summary)

    @work(thread=True, exclusive=True, group="followups-continue", exit_on_error=False)
    def _propagate(self) -> None:
        try:
            with self.wizard.rotation_lock:
                self.rotation.run_until("propagated")
        except Exception as exc:
            self.ui(self._continue_failed, one_line(exc))
            return
        self.ui(self.dismiss, True)

    # -- results (main thread) ------------------------------------------------------------------

    def _set_state(self, step_id: str, state: str, note: str) -> None:
        self.states[step_id] = state
        self.notes[step_id] = note
        self._refresh(step_id)
        if state == "done":
            self._highlight_next()
        if all(s == "done" for s in self.states.values()):
            self._say("Every step is done: Ctrl+S continues to retiring the old token.")
        elif state == "failed":
            self._say(f"✗ {note}", error=True)
        else:
            self._say("")

    def _continue_failed(self, message: str) -> None:
        self.continuing = False
        self._say(f"✗ {message}", error=True)
        self.refresh_bindings()

    # -- actions ------------------------------------------------------------------------------

    @on(OptionList.OptionSelected, "#steps")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_act()

    def action_act(self) -> None:
        option = self.query_one("#steps", OptionList).highlighted_option
        if option is None or option.id is None:
            return
        step = next(s for s in self.rotation.steps if s.id == option.id)
        state = self.states[step.id]
        if step.is_store or state == "running":
            return
        if state == "done":
            self._say(f"{step.title} is recorded as done in the journal; it cannot be unticked.")
            return
        if step.manual or state == "failed":
            self._run_step_worker(step.id, step.manual)

    def action_continue(self) -> None:
        open_steps = [s for s in self.rotation.steps if self.states[s.id] != "done"]
        if open_steps:
            names = ", ".join(s.title for s in open_steps)
            self._say(f"Still to do: {names}. Tick each once it is done (space).", error=True)
            self.app.bell()
            return
        if not self.continuing:
            self.continuing = True
            self._say("⋯ Recording the follow-ups…")
            self._propagate()

    def action_leave(self) -> None:
        self.dismiss(False)
