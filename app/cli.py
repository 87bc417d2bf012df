"""The command line's entry point, and what its commands share. Headless paths (status, rotate --no-input, resume,
sandbox) never import Textual.

`keyturn` and `keyturn --config FILE` (the wizard) are recognised here and start the wizard without importing click
or the command tree (app.commands): on the way to the first frame only the config file (read as TOML; the wizard
validates it after its first frame, app/config_view.py) and the wizard load. Every other
command line goes to click.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from app.errors import KeyturnError

if TYPE_CHECKING:
    import click


def __getattr__(name: str) -> Any:
    """`app.cli.cli`, the click group (tests and CliRunner use it), loaded when first asked for."""
    if name == "cli":
        from app.commands import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _fail(message: str, code: int = 2) -> NoReturn:
    import click

    click.echo(f"keyturn: error: {message}", err=True)
    sys.exit(code)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User errors become one line and a non-zero exit; never a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyturnError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail(_interrupted(), 130)
        except Exception as exc:
            if os.environ.get("KEYTURN_DEBUG"):
                raise
            _fail(f"unexpected {exc.__class__.__name__}; rerun with KEYTURN_DEBUG=1 for details", 3)

    return wrapper


def _interrupted() -> str:
    """What an interrupt (Ctrl-C, SIGTERM) left: `resume` is offered only when a rotation was journaled."""
    from app.journal import touched

    left = touched()
    if not left:
        return "interrupted; nothing was changed"
    ids = " ".join(f"`keyturn resume {rid[:8]}`" for rid in left)
    return f"interrupted; {ids} continues from the last journaled step"


def _terminate_like_interrupt() -> None:
    """SIGTERM (CI cancellation, `timeout`, systemd) ends a headless run like Ctrl-C: one line, resumable state."""
    import signal

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)


def _load(ctx: click.Context) -> Any:
    return _load_file(ctx.obj.get("config_path"))


def _load_file(config_path: Path | None) -> Any:
    """The whole file validated (every model, every reference), or a ConfigError: nothing starts on a bad config."""
    from app.config import default_config_path, load_config

    return load_config(Path(config_path or default_config_path()))


def _wizard(config_path: Path | None) -> None:
    """`keyturn [--config FILE]`: the file read (TOML, and the structure the first frame draws) before the wizard is
    imported, so a file that is not even that never starts it; the wizard validates the rest in a worker after its
    first frame, before any engine, provider or rotation, and exits with the same one-line error if that fails."""
    from app.config_view import default_config_path, open_config

    _run_wizard(open_config(Path(config_path or default_config_path())))


def _run_wizard(config: Any, *, start_target: str | None = None) -> None:
    from app.tui import run_wizard

    run_wizard(config, start_target=start_target)


def _stderr(kind: str, text: str) -> None:
    import logging

    logging.getLogger("keyturn.cli").info("%s: %s", kind, text)
    import click

    prefix = {"warning": "warning: ", "notice": "note: ", "step": "  done: ", "progress": "  ... ", "waiting": "waiting: "}.get(kind, "")
    click.echo(f"{prefix}{text}", err=True)


def _interaction() -> Any:
    import click

    from providers.base import DeviceCodePrompt, Interaction

    def device_code(p: DeviceCodePrompt) -> None:
        click.echo(f"sign in: open {p.verification_uri} and enter the code {p.user_code}", err=True)

    return Interaction(on_device_code=device_code, on_warning=lambda t: _stderr("warning", t), on_progress=lambda t: _stderr("progress", t))


def _engine(config: Any, *, no_input: bool) -> Any:
    import click

    from app.engine import Engine, journal_dir
    from app.logs import log_path, setup_logging

    _terminate_like_interrupt()
    setup_logging(log_path(journal_dir(config) if config.settings.journal_dir else None))
    prompt = None if no_input else (lambda what: click.prompt(f"{what}", hide_input=True, err=True))
    return Engine(config, interaction=_interaction(), prompt=prompt, on_event=_stderr)


def _wizard_only(args: list[str]) -> tuple[bool, Path | None]:
    """(True, the --config value or None) when ARGS are `keyturn`'s wizard: no arguments, `--config FILE` or
    `--config=FILE`. Whatever else, or a value click would look at twice (empty, option-like, a folder, which
    click.Path(dir_okay=False) refuses), and shell completion, go to click, so its answers stay the only ones."""
    if os.environ.get("_KEYTURN_COMPLETE"):
        return False, None
    if not args:
        return True, None
    if len(args) == 2 and args[0] == "--config":
        value = args[1]
    elif len(args) == 1 and args[0].startswith("--config="):
        value = args[0].removeprefix("--config=")
    else:
        return False, None
    if not value or value.startswith("-") or os.path.isdir(value):
        return False, None
    return True, Path(value)


def main() -> None:
    wizard, config_path = _wizard_only(sys.argv[1:])
    if wizard:  # the same call the click group makes for these arguments, without importing click and the commands
        _guard(_wizard)(config_path)
        sys.exit(0)
    import click

    from app.commands import cli

    # click's own usage errors (unknown option, missing argument, bad value) follow keyturn's rule too:
    # one `keyturn: error:` line and exit 2, with the help command to run instead of the usage block
    try:
        code = cli.main(prog_name="keyturn", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "keyturn"
        _fail(KeyturnError(exc.format_message(), hint=f"see `{where} --help`").__str__(), exc.exit_code)
    except click.ClickException as exc:
        _fail(KeyturnError(exc.format_message()).__str__(), exc.exit_code)
    except click.Abort:
        _fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
