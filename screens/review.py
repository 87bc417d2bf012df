"""Review the plan before anything changes: the dry run's lines, exactly, plus its warnings.

Planning signs in and lists the account's tokens (read-only), so it runs in a worker; Enter mints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, LoadingIndicator, Static

from screens import Cancelled, WizardScreen, one_line, wait_abandonable

if TYPE_CHECKING:
    from app.engine import MintOptions, RotationPlan


def plan_table(lines: list[str]) -> Table:
    """The numbered plan lines with a hanging indent, so a wrapped line stays under its text."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, justify="right")
    grid.add_column(ratio=1)
    for line in lines:
        number, _, text = line.partition(" ")
        grid.add_row(number, Text(text))
    return grid


class ReviewScreen(WizardScreen["RotationPlan | None"]):
    """Shows ``engine.plan(target, options)``; dismisses with the plan to mint, or None to go back."""

    CSS_PATH = "review.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "enter", "confirm", "Mint", id="review.confirm", tooltip="Start the rotation: mint the new token as planned"
        ),
        Binding("escape", "back", "Back", id="review.back", tooltip="Back to the token options; nothing has changed"),
        Binding("r", "retry", "Plan again", id="review.retry", tooltip="Sign in and list the tokens again"),
    ]

    def __init__(self, target_name: str, options: MintOptions) -> None:
        super().__init__()
        self.target_name = target_name
        self.options = options
        self.plan: RotationPlan | None = None
        self.failed: str | None = None

    def compose(self) -> ComposeResult:
        # the rotation id joins the title once the plan has one, as on every later step ("<step> · <target> · rotation <id8>")
        yield Static(f"Review · {self.target_name}", id="review-title", classes="title-bar", markup=False)
        yield Static(
            "Nothing has changed yet. The plan, exactly as the dry run prints it:",
            id="lead",
            markup=False,
        )
        with VerticalScroll(id="plan"):
            yield Static("", id="plan-lines", markup=False)
            yield Static("", id="warnings", markup=False)
        with Horizontal(id="planning"):
            yield LoadingIndicator(id="spinner")
            yield Static("Planning: signing in and listing the account's tokens…", markup=False)
        yield Static("", id="error", classes="error-line", markup=False)
        yield Static("", id="confirm-hint", classes="hint", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._start()

    def _start(self) -> None:
        self.failed = None
        self.query_one("#error").display = False
        self.query_one("#planning").display = True
        self.query_one("#confirm-hint").display = False
        self.refresh_bindings()
        self._make_plan()

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def _make_plan(self) -> None:
        engine = self.wizard.engine
        try:
            plan = wait_abandonable(lambda: engine.plan(self.target_name, self.options))
        except Cancelled:
            return
        except Exception as exc:
            self.ui(self._failed, one_line(exc))
            return
        self.ui(self._show, plan)

    def _show(self, plan: RotationPlan) -> None:
        self.wizard.pending_device_code = None
        self.plan = plan
        self.query_one("#review-title", Static).update(f"Review · {self.target_name} · rotation {plan.rotation_id[:8]}")
        self.query_one("#planning").display = False
        self.query_one("#plan-lines", Static).update(plan_table(plan.lines()))
        warnings = self.query_one("#warnings", Static)
        warnings.update("\n".join(f"⚠ warning: {w}" for w in plan.warnings))
        warnings.display = bool(plan.warnings)
        hint = self.query_one("#confirm-hint", Static)
        hint.update(f"Enter mints the new token (rotation {plan.rotation_id[:8]}); Esc goes back to the options.")
        hint.display = True
        self.query_one("#plan").focus()
        self.refresh_bindings()

    def _failed(self, message: str) -> None:
        self.failed = message
        self.query_one("#planning").display = False
        error = self.query_one("#error", Static)
        error.update(f"✗ {message}  (r plans again, Esc goes back)")
        error.display = True
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm":
            return self.plan is not None or None
        if action == "retry":
            return self.failed is not None
        return True

    def action_confirm(self) -> None:
        if self.plan is not None:
            self.dismiss(self.plan)

    def action_back(self) -> None:
        self.dismiss(None)

    def action_retry(self) -> None:
        if self.failed is not None:
            self._start()
