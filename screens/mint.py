"""Mint, store, verify: the steps with side effects, in a worker, each shown as it happens.

The engine owns the order (persist before reveal, verify before revoke) and journals each step
before the next, so a retry re-runs the sequence and every step that already happened is skipped.
A failed step shows one line and offers retry or abort (abort revokes a token minted here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Log, ProgressBar, Static

from screens import ICONS, WizardScreen, one_line

if TYPE_CHECKING:
    from app.engine import Rotation, RotationPlan


class _Stopped(Exception):
    """The engineer asked to stop before the next step."""


class MintScreen(WizardScreen["Rotation | None"]):
    """Runs mint -> store -> verify; dismisses with the Rotation, or None when aborted or left."""

    CSS_PATH = "mint.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape",
            "stop",
            "Stop",
            id="mint.stop",
            tooltip="Stop after the running step; then abort, continue or leave",
        ),
        Binding(
            "r",
            "retry",
            "Retry",
            id="mint.retry",
            tooltip="Run the stopped or failed step again (safe: each step reads state first)",
        ),
        Binding("a", "abort", "Abort", id="mint.abort", tooltip="Abort the rotation; a token it minted is revoked"),
        Binding(
            "l",
            "leave",
            "Leave",
            id="mint.leave",
            tooltip="Leave it unfinished; resume it later from the targets screen",
        ),
    ]

    def __init__(self, *, plan: RotationPlan | None = None, rotation: Rotation | None = None) -> None:
        super().__init__()
        assert plan is not None or rotation is not None
        self.plan = plan
        self.rotation = rotation
        self.running = False
        self.halted: str | None = None  # why the worker stopped early: a one-line error, or "stopped"
        self._stop_requested = False
        if rotation is not None:
            self.target_name = rotation.record.target
            self.store_steps = [(s.id, s.title) for s in rotation.steps if s.is_store]
        else:
            assert plan is not None
            self.target_name = plan.target_name
            self.store_steps = [(s.id, s.title) for s in plan.steps if s.is_store]

    @property
    def rotation_id(self) -> str:
        return self.rotation.id if self.rotation else self.plan.rotation_id if self.plan else ""

    @property
    def step_ids(self) -> list[str]:
        return ["mint", *(sid for sid, _ in self.store_steps), "verify"]

    def compose(self) -> ComposeResult:
        rid = self.rotation_id[:8]
        yield Static(f"Mint · {self.target_name} · rotation {rid}", classes="title-bar")
        with Vertical(id="steps"):
            yield Static(self._line("mint", "pending"), id="step-mint", markup=False)
            for sid, _ in self.store_steps:
                yield Static(self._line(sid, "pending"), id=f"step-{sid}", markup=False)
            yield Static(self._line("verify", "pending"), id="step-verify", markup=False)
        yield ProgressBar(total=len(self.step_ids), show_eta=False, id="progress")
        yield Static("", id="error", classes="error-line", markup=False)
        yield Log(id="log", max_lines=200, auto_scroll=True)
        yield Footer()

    def _line(self, step_id: str, state: str, note: str = "") -> str:
        titles = {"mint": "mint the new token", "verify": "verify: use the new token once"}
        titles.update({sid: f"store: {title}" for sid, title in self.store_steps})
        text = f"{ICONS[state]} {titles[step_id]}"
        return f"{text}\n    {note}" if note else text

    def on_mount(self) -> None:
        self.query_one("#error").display = False
        self._start()

    def _start(self) -> None:
        self.halted = None
        self._stop_requested = False
        self.running = True
        self.query_one("#error").display = False
        self.refresh_bindings()
        self._run()

    # -- the worker (side effects: never abandoned; a quit waits for the running step) ----------

    def _checkpoint(self) -> None:
        if self._stop_requested:
            raise _Stopped()

    @work(thread=True, exclusive=True, group="mint", exit_on_error=False)
    def _run(self) -> None:
        wizard = self.wizard
        engine = wizard.engine
        current = "mint"
        try:
            with wizard.rotation_lock:
                if self.rotation is None:
                    assert self.plan is not None
                    self.rotation = engine.begin(self.plan)
                rotation = self.rotation

                def before(step: str) -> None:  # the engine's sequence says what comes next; this shows it
                    nonlocal current
                    if step != "mint":
                        self._checkpoint()
                    ids = [sid for sid, _ in self.store_steps] if step == "store" else [step]
                    current = ids[0] if ids else step
                    for sid in ids:
                        self.ui(self._step, sid, "running")

                def after(step: str) -> None:
                    if step == "mint" and (token := rotation.new_token) is not None:
                        self.ui(self._step, "mint", "done", f"{token.name} ({token.shown_id})")
                    elif step == "store":
                        for sid, _ in self.store_steps:
                            self.ui(self._step, sid, "done", rotation.record.steps_done.get(sid, {}).get("summary", ""))
                    elif step == "verify":
                        self.ui(self._step, "verify", "done", rotation.verified_detail())

                self.ui(self._step, "mint", "running")
                rotation.run_until("verified", before=before, after=after)
                if rotation.new_token is not None:  # a resumed rotation past minting: its steps were done before
                    token = rotation.new_token
                    self.ui(self._step, "mint", "done", f"{token.name} ({token.shown_id})")
                    for sid, _ in self.store_steps:
                        self.ui(self._step, sid, "done", rotation.record.steps_done.get(sid, {}).get("summary", ""))
                    self.ui(self._step, "verify", "done", rotation.verified_detail())
        except _Stopped:
            self.ui(self._halt, current, "stopped", "Stopped.")
            return
        except Exception as exc:
            self.ui(self._halt, current, "failed", one_line(exc))
            return
        self.ui(self._finished)

    @work(thread=True, exclusive=True, group="mint", exit_on_error=False)
    def _abort(self) -> None:
        try:
            undone: list[str] = []
            with self.wizard.rotation_lock:
                if self.rotation is not None:
                    undone = self.rotation.abort("aborted in the wizard")
        except Exception as exc:
            self.ui(self._halt, "mint", "failed", f"abort failed: {one_line(exc)}")
            return
        self.ui(self._aborted, undone)

    # -- results (main thread) --------------------------------------------------------------------

    def engine_event(self, kind: str, text: str) -> None:
        self.query_one("#log", Log).write_line(f"{kind}: {text}")

    def _step(self, step_id: str, state: str, note: str = "") -> None:
        self.query_one(f"#step-{step_id}", Static).update(self._line(step_id, state, note))
        if state == "done":
            bar = self.query_one("#progress", ProgressBar)
            bar.update(progress=self.step_ids.index(step_id) + 1)

    def _halt(self, step_id: str, state: str, message: str) -> None:
        self.running = False
        self.halted = message
        self._step(step_id, state)
        error = self.query_one("#error", Static)
        if state == "stopped":
            error.update(
                "‖ Stopped before the next step.  r continues · a aborts (revokes a new token) · l leaves it to resume later"
            )
        else:
            error.update(f"✗ {message}\n  r retries · a aborts (revokes a new token) · l leaves it to resume later")
        error.display = True
        self.refresh_bindings()

    def _finished(self) -> None:
        self.running = False
        self.wizard.pending_device_code = None
        self.dismiss(self.rotation)

    def _aborted(self, undone: list[str]) -> None:
        self.running = False
        rid = self.rotation.id[:8] if self.rotation else ""
        extra = "".join(f" {line}." for line in undone)
        self.notify(
            f"Rotation {rid} aborted: a token it minted was revoked; the old token is untouched.{extra}", timeout=10
        )
        self.dismiss(None)

    # -- actions ------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.running
        if action in ("retry", "abort", "leave"):
            return not self.running and self.halted is not None
        return True

    def action_stop(self) -> None:
        if self.running:
            self._stop_requested = True
            self.query_one("#error", Static).update("‖ Stopping after the running step…")
            self.query_one("#error").display = True

    def action_retry(self) -> None:
        if not self.running:
            self._start()

    def action_abort(self) -> None:
        if not self.running:
            self.running = True
            self.refresh_bindings()
            self._abort()

    def action_leave(self) -> None:
        if not self.running:
            self.dismiss(None)
