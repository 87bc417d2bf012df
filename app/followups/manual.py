"""``manual``: a checklist item with templated text, ticked by hand."""

from __future__ import annotations

from app.config import Manual
from app.errors import FollowUpError
from app.followups import StepContext, StepDefaults, StepResult


def render(text: str, ctx: StepContext) -> str:
    expires = ctx.token.expires_at.strftime("%Y-%m-%d %H:%M UTC") if ctx.token.expires_at else "never"
    fields = {
        "target": ctx.target_name,
        "expires_at": expires,
        "token_id": ctx.token.id,
        "rotation_id": ctx.rotation_id,
    }
    try:
        return text.format(**fields)
    except (KeyError, IndexError, ValueError):
        return text  # an unknown placeholder stays as written


class ManualStep(StepDefaults):
    kind = "manual"
    is_store = False
    needs_value = False
    manual = True

    def __init__(self, step_id: str, spec: Manual) -> None:
        self.id = step_id
        self.spec = spec
        self.title = spec.name or "Manual step"
        self.manual = spec.required  # a reminder (required = false) needs no tick: it is said, never waited for

    def describe(self) -> str:
        return f"manual: {self.spec.text}" if self.spec.required else f"reminder (by hand, not waited for): {self.spec.text}"

    def find_done(self, ctx: StepContext) -> StepResult | None:
        return None  # only a person can say it is done

    def run(self, ctx: StepContext) -> StepResult:
        text = render(self.spec.text, ctx)
        if ctx.options.get("ticked", {}).get(self.id):
            return StepResult(f"done by hand: {text}", {"ticked": True})
        if not self.spec.required:
            return StepResult(f"to do by hand (keyturn cannot check it): {text}", {"reminder": True})
        if ctx.options.get("skip_manual"):
            return StepResult(f"SKIPPED (--skip-manual), still to do: {text}", {"skipped": True})
        raise FollowUpError(
            f"manual step {self.title!r} is not ticked: {text}",
            hint="tick it in the wizard, or pass --skip-manual and do it yourself",
        )
