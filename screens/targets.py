"""The first screen: every configured target, when its token expires, and rotations to resume.

The list is drawn at once from the file's first-frame view (app/config_view.py: no pydantic; the file is validated
right after the first frame); the expiry column fills in when the engine's
status (a sign-in and a token listing per account) returns from a worker. Nothing here imports the
engine: the worker does, so the wizard is on screen as fast as a bare Textual app.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, LoadingIndicator, Static

from app.errors import ConfigError
from screens import Cancelled, PaletteCommand, WizardScreen, one_line, wait_abandonable

if TYPE_CHECKING:
    from app.engine import TargetStatus
    from app.journal import RotationRecord
    from providers.base import DeviceCodePrompt

PLATFORMS = {"azure-devops": "Azure DevOps", "buildkite": "Buildkite", "jenkins": "Jenkins"}
SANDBOX_NOTICE = (
    "SANDBOX: Azure DevOps, Entra sign-in, Key Vault, Buildkite, ConductorOne and Jenkins are emulated on "
    "127.0.0.1 and the Flux repo is a local git clone. Nothing real is touched; rotate away."
)

# state -> (glyph, style): the glyph and the words carry the meaning without colour (NO_COLOR)
URGENCY = {
    "ok": ("", "green"),
    "expiring": ("⚠ ", "bold yellow"),
    "expired": ("✗ ", "bold red"),
    "missing": ("✗ ", "bold red"),
    "unknown": ("? ", "dim"),
}


def expiry_cell(status: TargetStatus | None) -> Text:
    """'39 days', '⚠ 4 days', '✗ expired', '✗ no token', '? unknown' (or '…' while loading)."""
    if status is None:
        return Text("…", style="dim")
    glyph, style = URGENCY.get(status.state, ("", ""))
    if status.state == "expired":
        words = "expired"
    elif status.state == "missing":
        words = "no token"
    elif status.state == "unknown" or status.days_left is None:
        words = "never" if status.state == "ok" else "unknown"
    else:
        words = "today" if status.days_left == 0 else f"{status.days_left} day{'s' if status.days_left != 1 else ''}"
    return Text(glyph + words, style=style)


def _date(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d") if iso else "never"


def _table_bindings(enter: str, enter_id: str, tooltip: str) -> list[BindingType]:
    """A table's keys, declared with ids (DataTable's own have none), Enter named for what it does here."""
    return [
        Binding("enter", "select_cursor", enter, id=enter_id, tooltip=tooltip),
        Binding("up", "cursor_up", "Up", show=False, id="targets.up", tooltip="Highlight the row above"),
        Binding("down", "cursor_down", "Down", show=False, id="targets.down", tooltip="Highlight the row below"),
        Binding("home", "scroll_top", "First", show=False, id="targets.first", tooltip="Highlight the first row"),
        Binding("end", "scroll_bottom", "Last", show=False, id="targets.last", tooltip="Highlight the last row"),
        Binding("pageup", "page_up", "Page up", show=False, id="targets.page_up", tooltip="One page up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="targets.page_down", tooltip="One page down"),
    ]


class TargetTable(DataTable[Any], inherit_bindings=False):
    """The targets; Enter rotates the highlighted one."""

    BINDINGS: ClassVar[list[BindingType]] = _table_bindings("Rotate", "targets.rotate", "Rotate the highlighted target")


class RotationTable(DataTable[Any], inherit_bindings=False):
    """Unfinished rotations; Enter resumes the highlighted one."""

    BINDINGS: ClassVar[list[BindingType]] = _table_bindings(
        "Resume", "targets.resume", "Resume the highlighted rotation from its last durable state"
    )


class TargetsScreen(WizardScreen[None]):
    """Pick a target to rotate, or a rotation to resume."""

    # targets.tcss is loaded by the App (CSS_PATH there): the first screen's styles come with the app's.
    AUTO_FOCUS = "#targets"
    # Narrower than the runbook can sit beside, it goes below the lists, not over them: the highlight
    # stays movable and the pane follows it (screens/runbook.py).
    RUNBOOK_NARROW = "below"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "refresh", "Refresh", id="targets.refresh", tooltip="Read token expiry and the journal again"),
        Binding(
            "escape",
            "stop_waiting",
            "Stop waiting",
            id="targets.stop",
            tooltip="Stop waiting for the token expiry; the list stays usable",
        ),
        Binding("q", "app.quit", "Quit", id="targets.quit", tooltip="Quit keyturn"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[str, TargetStatus] = {}
        self.unfinished: list[RotationRecord] = []
        self.reading = False
        self.status_reads = 0  # how often the expiry was asked for (tests, and the "r" key)
        self._error: str | None = None

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("keyturn · targets", classes="title-bar")
        if self.wizard.is_sandbox:
            yield Static(SANDBOX_NOTICE, id="sandbox", classes="sandbox-banner", markup=False)
        yield TargetTable(id="targets", cursor_type="row")
        yield Static("", id="details", markup=False)
        with Horizontal(id="status-line"):
            yield LoadingIndicator(id="spinner")
            yield Static("", id="status-text", markup=False)
        yield Static("Unfinished rotations (Enter resumes)", id="unfinished-title", classes="section")
        yield RotationTable(id="unfinished", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#targets", DataTable)
        table.add_column("Target", key="target")
        table.add_column("Platform", key="platform")
        table.add_column("Expires in", key="expires")
        table.add_column("Last rotated", key="last")
        table.add_column("Unfinished", key="resume")
        # drawn from the first frame's view: the file may still be being validated (KeyturnApp.config waits for it)
        view = self.wizard.view
        for name, row in view.targets.items():
            table.add_row(name, PLATFORMS.get(row.platform, row.platform), expiry_cell(None), "…", "", key=name)
        self.reading = bool(view.targets)  # the expiry is still to be read (the worker starts after the first frame)
        unfinished = self.query_one("#unfinished", DataTable)
        unfinished.add_column("Rotation", key="id")
        unfinished.add_column("Target", key="target")
        unfinished.add_column("Stopped at", key="state")
        unfinished.add_column("Started", key="started")
        unfinished.add_column("Note", key="note")
        self._show_unfinished()
        if not view.targets:
            where = view.path or "the configuration"
            self._set_status(f"No targets configured: add [targets.NAME] to {where} (see examples/keyturn.toml).")
        # After the first frame: the worker imports the engine and providers, which would delay it.
        self.call_after_refresh(self.refresh_status)
        start = self.wizard.start_target
        if start:
            self.wizard.start_target = None
            if start in view.targets:
                self.wizard.start_rotation(start)
            else:
                known = ", ".join(view.targets) or "none"
                self.notify(f"No target {start!r} in the configuration (known: {known})", severity="error")

    # -- status -------------------------------------------------------------------------------

    def refresh_status(self) -> None:
        if not self.wizard.view.targets:
            self._set_loading(False)
            return
        self.status_reads += 1
        self._set_loading(True, "Reading token expiry (signing in as the bot accounts)…")
        self._load_status()

    @work(thread=True, exclusive=True, group="targets-status", exit_on_error=False)
    def _load_status(self) -> None:
        try:
            try:
                engine = self.wizard.engine  # waits for the config's validation
            except ConfigError:
                return  # the file is invalid: the app is exiting with its one-line error
            with self.wizard.provider_guard:
                for account in dict.fromkeys(t.account for t in self.wizard.config.targets.values()):
                    try:
                        engine.provider(account)  # made here, once, so a sign-in screen shares its sign-in
                    except Exception:  # noqa: S110  (status() reports it per target)
                        pass

            def read() -> tuple[list[TargetStatus], list[RotationRecord]]:
                return engine.status(), engine.journal.unfinished()

            rows, unfinished = wait_abandonable(read)
        except Cancelled:
            return
        except Exception as exc:
            self.ui(self._status_failed, one_line(exc))
            return
        self.ui(self._show_status, rows, unfinished)

    def _show_status(self, rows: list[TargetStatus], unfinished: list[RotationRecord]) -> None:
        self.wizard.pending_device_code = None
        self.statuses = {r.target: r for r in rows}
        self.unfinished = unfinished
        table = self.query_one("#targets", DataTable)
        for r in rows:
            if r.target not in table.rows:
                continue
            table.update_cell(r.target, "expires", expiry_cell(r), update_width=True)
            table.update_cell(r.target, "last", _date(r.last_rotation), update_width=True)
            notes = str(len(r.unfinished)) if r.unfinished else ""
            if r.retire_due:
                notes += " (revoke due)"
            table.update_cell(r.target, "resume", notes, update_width=True)
        self._show_unfinished()
        self._set_loading(False)
        self._show_details()

    def _status_failed(self, message: str) -> None:
        self._set_loading(False)
        self._set_status(f"✗ Could not read token expiry: {message}  (r retries)", error=True)

    def _show_unfinished(self) -> None:
        table = self.query_one("#unfinished", DataTable)
        table.clear()
        now = self.wizard.now()
        if self.unfinished:  # only the status worker fills the list, and it has loaded the engine (not the first frame)
            from app.engine import waiting_for
        for rec in self.unfinished:
            note = rec.error or ""
            if waits := waiting_for(rec):
                note = f"revoke waits for: {'; '.join(waits)}"
            elif rec.state == "propagated" and rec.retire_at:
                due = datetime.fromisoformat(rec.retire_at)
                note = "revoke due now" if due <= now else f"revoke due {due:%Y-%m-%d %H:%M}"
            table.add_row(rec.rotation_id[:8], rec.target, rec.state, _date(rec.started_at), note, key=rec.rotation_id)
        shown = bool(self.unfinished)
        table.display = shown
        self.query_one("#unfinished-title").display = shown

    def _set_loading(self, loading: bool, text: str = "") -> None:
        self.reading = loading
        self.query_one("#spinner").display = loading
        self._set_status(text)
        self.refresh_bindings()

    def _set_status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#status-text", Static)
        status.update(text)
        status.set_class(error, "-error")
        self.query_one("#status-line").display = bool(text)

    def _show_details(self) -> None:
        name = self.highlighted_target()
        details = self.query_one("#details", Static)
        if name is None:
            details.update("")
            return
        target = self.wizard.view.targets[name]
        status = self.statuses.get(name)
        parts = [f"{name}: token {target.token_name}"]
        if status is not None:
            if status.error:
                parts.append(f"✗ {status.error}")
            elif status.state == "missing":
                parts.append("no active token of this target was found")
            elif status.expires_at is not None:
                verb = "expired" if status.state == "expired" else "expires"
                parts.append(f"{verb} {status.expires_at:%Y-%m-%d %H:%M} UTC")
        if target.description:
            parts.append(target.description)
        details.update(" · ".join(parts))

    @on(DataTable.RowHighlighted, "#targets")
    def _highlighted(self) -> None:
        self._show_details()
        self._follow_runbook()

    @on(DataTable.RowHighlighted, "#unfinished")
    def _rotation_highlighted(self) -> None:
        self._follow_runbook()

    def on_descendant_focus(self) -> None:
        # Tab between the lists: the runbook is the one of the list the keys now move in.
        self._follow_runbook()

    def _follow_runbook(self) -> None:
        if self.query("#runbook-pane"):  # open: screens.runbook is loaded (imported only once it is)
            from screens.runbook import show_runbook

            show_runbook(self)

    # -- device codes that arrive while the status is read ---------------------------------------

    def show_device_code(self, prompt: DeviceCodePrompt) -> None:
        from screens.signin import SignInScreen, account_for_prompt

        account = account_for_prompt(self.wizard.config, prompt, self.wizard.current_target)
        self.app.push_screen(
            SignInScreen(account, purpose="so the targets list can show when its tokens expire", prompt=prompt)
        )

    # -- actions ------------------------------------------------------------------------------

    def highlighted_target(self) -> str | None:
        table = self.query_one("#targets", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def highlighted_rotation(self) -> RotationRecord | None:
        table = self.query_one("#unfinished", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return next((r for r in self.unfinished if r.rotation_id == key.value), None)

    @on(DataTable.RowSelected, "#targets")
    def _target_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        name = self.highlighted_target()
        if name is not None:
            self.wizard.start_rotation(name)

    @on(DataTable.RowSelected, "#unfinished")
    def _rotation_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        record = self.highlighted_rotation()
        if record is not None:
            self.wizard.resume_rotation(record.rotation_id, record.target)

    def action_refresh(self) -> None:
        self.refresh_status()

    def action_stop_waiting(self) -> None:
        self.workers.cancel_group(self, "targets-status")
        self._set_loading(False, "Stopped waiting for the token expiry (r tries again).")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_waiting":
            return self.reading
        return True

    def runbook_target(self) -> str | None:
        """The highlighted target, or the highlighted rotation's target while the keys move in that list."""
        unfinished = self.query_one("#unfinished", DataTable)
        if unfinished.has_focus and (record := self.highlighted_rotation()) is not None:
            return record.target
        return self.highlighted_target()

    def palette_commands(self) -> list[PaletteCommand]:
        commands: list[PaletteCommand] = []
        for name in self.wizard.view.targets:
            commands.append(
                (f"Rotate {name}", partial(self.wizard.start_rotation, name), f"Start a rotation of {name}")
            )
        for rec in self.unfinished:
            commands.append(
                (
                    f"Resume {rec.target} rotation {rec.rotation_id[:8]}",
                    partial(self.wizard.resume_rotation, rec.rotation_id, rec.target),
                    f"Continue from {rec.state}",
                )
            )
        commands.append(("Refresh token expiry", self.refresh_status, "Read token expiry and the journal again"))
        return commands
