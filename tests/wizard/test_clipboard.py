"""app.clipboard: which clipboard, clearing only our own copy, never the value in what it returns."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.clipboard import (
    CANNOT_CHECK,
    CLEARED,
    LEFT_ALONE,
    NOTHING_TO_CLEAR,
    OSC52,
    OSC52_OVERWRITTEN,
    SYSTEM,
    Clipboard,
    ClipboardUnavailableError,
)
from app.secret import SecretValue

TOKEN = SecretValue("clipboard-canary-5f1e0c2a")


class Osc52:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def __call__(self, text: str) -> None:
        self.writes.append(text)


def test_local_clipboard_is_used_when_present(fake_backend) -> None:
    backend, osc = fake_backend("before"), Osc52()
    clip = Clipboard(osc, backend=backend, environ={})
    assert clip.copy(TOKEN) == SYSTEM
    assert backend.text == TOKEN.reveal()
    assert osc.writes == []
    assert clip.pending and clip.method == SYSTEM


def test_probe_is_lazy_and_cached(fake_backend) -> None:
    backend = fake_backend(present=False)
    clip = Clipboard(Osc52(), backend=backend, environ={})
    assert backend.pastes == 0  # nothing asked before the first copy
    clip.copy(TOKEN)
    clip.copy(TOKEN)
    assert backend.pastes == 1


def test_osc52_when_there_is_no_local_clipboard(fake_backend) -> None:
    osc = Osc52()
    clip = Clipboard(osc, backend=fake_backend(present=False), environ={})
    assert clip.copy(TOKEN) == OSC52
    assert osc.writes == [TOKEN.reveal()]


@pytest.mark.parametrize("var", ["SSH_CONNECTION", "SSH_TTY"])
def test_osc52_preferred_over_ssh(var: str, fake_backend) -> None:
    backend, osc = fake_backend("before"), Osc52()
    clip = Clipboard(osc, backend=backend, environ={var: "10.0.0.1 5000 10.0.0.2 22"})
    assert clip.copy(TOKEN) == OSC52
    assert backend.text == "before"  # the server's clipboard is not the engineer's


def test_over_ssh_without_osc52_falls_back_to_local(fake_backend) -> None:
    backend = fake_backend()
    clip = Clipboard(None, backend=backend, environ={"SSH_TTY": "/dev/pts/1"})
    assert clip.copy(TOKEN) == SYSTEM


def test_no_clipboard_at_all_is_a_one_line_error_without_the_value(fake_backend) -> None:
    clip = Clipboard(None, backend=fake_backend(present=False), environ={})
    with pytest.raises(ClipboardUnavailableError) as err:
        clip.copy(TOKEN)
    assert "\n" not in str(err.value)
    assert TOKEN.reveal() not in str(err.value)
    assert not clip.pending


def test_clear_if_ours_clears_our_copy(fake_backend) -> None:
    backend = fake_backend()
    clip = Clipboard(Osc52(), backend=backend, environ={})
    clip.copy(TOKEN)
    assert clip.clear_if_ours() == CLEARED
    assert backend.text == ""
    assert not clip.pending
    assert clip.clear_if_ours() == NOTHING_TO_CLEAR


def test_clear_if_ours_leaves_someone_elses_text(fake_backend) -> None:
    backend = fake_backend()
    clip = Clipboard(Osc52(), backend=backend, environ={})
    clip.copy(TOKEN)
    backend.text = "the engineer copied something else"
    assert clip.clear_if_ours() == LEFT_ALONE
    assert backend.text == "the engineer copied something else"


def test_clear_with_osc52_overwrites_and_says_it_cannot_check(fake_backend) -> None:
    osc = Osc52()
    clip = Clipboard(osc, backend=fake_backend(present=False), environ={})
    clip.copy(TOKEN)
    assert clip.clear_if_ours() == OSC52_OVERWRITTEN
    assert osc.writes == [TOKEN.reveal(), ""]
    assert "cannot" in OSC52_OVERWRITTEN


def test_clipboard_vanishing_before_the_clear_is_reported(fake_backend) -> None:
    backend = fake_backend()
    clip = Clipboard(Osc52(), backend=backend, environ={})
    clip.copy(TOKEN)
    backend.present = False
    assert clip.clear_if_ours() == CANNOT_CHECK


def test_nothing_returned_or_kept_holds_the_value(fake_backend) -> None:
    backend = fake_backend()
    clip = Clipboard(Osc52(), backend=backend, environ={})
    results = [clip.copy(TOKEN), clip.clear_if_ours()]
    assert all(TOKEN.reveal() not in r for r in results)
    state = " ".join(repr(v) for v in vars(clip).values())
    assert TOKEN.reveal() not in state


def test_clipboard_module_imports_no_textual() -> None:
    code = "import sys, app.clipboard; sys.exit(1 if 'textual' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
