"""Verify and retire: the verification result, then revoke the old token now or after the target's delay.

Verify before revoke is the engine's rule: this screen only offers the choice once the rotation is
verified and propagated. A deferred revocation is journaled and done by a later resume.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Footer, Static

from screens import ICONS, WizardScreen, one_line
from screens.prompt import ConfirmPrompt

if TYPE_CHECKING:
    from app.engine import Rotation


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
        Binding(
            "enter",
            "choose_default",
            "Default",
            id="retire.default",
            tooltip="Do the recommended thing (shown on screen)",
        ),
        Binding("n", "retire(True)", "Revoke now", id="retire.now", tooltip="Revoke the old token now"),
        Binding(
            "d",
            "retire(False)",
            "After delay",
            id="retire.later",
            tooltip="Revoke the old token after the target's delay (a later resume does it)",
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

    def compose(self) -> ComposeResult:
        rotation = self.rotation
        yield Static(f"Verify and retire · {rotation.record.target} · rotation {rotation.id[:8]}", classes="title-bar")
        with Vertical(id="retire-main"):
            yield Static(f"{ICONS['running']} Checking the verification…", id="verified", markup=False)
            yield Static("Old tokens of this target", classes="section")
            yield Static(self._old_tokens(), id="old", markup=False)
            yield Static("", id="choice", markup=False)
            yield Static("", id="error", classes="error-line", markup=False)
        yield Footer()

    @property
    def old_unknown(self) -> bool:
        """Jenkins without a readable security page or a token_uuid: the old token cannot be named."""
        provider = self.rotation.provider
        return not self.rotation.plan.old_tokens and provider.CAN_REVOKE_ALL_EXCEPT and not provider.lists_tokens()

    def _old_tokens(self) -> str:
        olds = self.rotation.plan.old_tokens
        if not olds and self.old_unknown:
            text = self.rotation.provider.unknown_old_token_help()
            return f"  not known: {text.replace('rotate with --revoke-all-other-tokens', 'press a')}"
        if not olds:
            return "  none found: nothing to revoke"
        lines = []
        for t in olds:
            exp = f", expires {t.expires_at:%Y-%m-%d}" if t.expires_at else ""
            lines.append(f"  • {t.name}{exp}\n    id {t.id}")
        # what revocation does and does not do on this platform (Buildkite: running agents), before Enter
        if text := self.rotation.provider.retire_notice():
            lines.append(f"\n  ⓘ {text}")
        return "\n".join(lines)

    def _choice_text(self) -> str:
        if self.rotation.revoke_all_others:
            return "Enter revokes every other API token of the user now; the new one stays."
        if not self.rotation.plan.old_tokens:
            return "Enter finishes the rotation (nothing revoked)" + ("; a revokes every other token first." if self.old_unknown else ".")
        if self.delay:
            return (
                f"This target keeps the old token for {human_delay(self.delay)} after propagation, so every consumer "
                "picks up the new one first.\n"
                f"Enter (or d) revokes it after the delay; n revokes it now."
            )
        return "Enter (or n) revokes the old token now."

    def on_mount(self) -> None:
        self.query_one("#error").display = False
        self.query_one("#choice").display = False
        self._prepare()

    @work(thread=True, exclusive=True, group="retire", exit_on_error=False)
    def _prepare(self) -> None:
        try:
            with self.wizard.rotation_lock:
                self.rotation.run_until("propagated")  # already done by the checklist, or nothing to propagate
                detail = self.rotation.verified_detail()
        except Exception as exc:
            self.ui(self._failed, one_line(exc))
            return
        self.ui(self._ready, detail)

    @work(thread=True, exclusive=True, group="retire", exit_on_error=False)
    def _retire(self, now: bool) -> None:
        try:
            with self.wizard.rotation_lock:
                outcome = self.rotation.run_until("done", revoke_now=now)
        except Exception as exc:
            self.ui(self._failed, one_line(exc))
            return
        self.ui(self.dismiss, outcome)

    def _ready(self, detail: str) -> None:
        self.ready = True
        self.query_one("#verified", Static).update(f"{ICONS['done']} Verified: {detail}")
        choice = self.query_one("#choice", Static)
        choice.update(self._choice_text())
        choice.display = True
        self.refresh_bindings()

    def _failed(self, message: str) -> None:
        self.busy = False
        error = self.query_one("#error", Static)
        error.update(f"✗ {message}")
        error.display = True
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retire":
            if not self.rotation.plan.old_tokens:
                return False
            if parameters and parameters[0] is False and not self.delay:
                return False
            return (self.ready and not self.busy) or None
        if action == "choose_default":
            return (self.ready and not self.busy) or None
        if action == "revoke_all_others":
            if not self.old_unknown or self.rotation.revoke_all_others:
                return False  # hidden: only for an old token that cannot be named
            return (self.ready and not self.busy) or None
        return True

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
            else:
                self.notify("Nothing revoked.", markup=False)

        self.app.push_screen(ConfirmPrompt(question), answered)

    def action_choose_default(self) -> None:
        self.action_retire(not self.delay)

    def action_retire(self, now: bool) -> None:
        if not self.ready or self.busy:
            return
        self.busy = True
        self.query_one("#error").display = False
        self.refresh_bindings()
        self._retire(now)

    def action_leave(self) -> None:
        self.dismiss(None)

