"""The demo's world outlives the demo: a persisted sandbox (``Sandbox(D, persist=True)``) and ``run_demo``.

A rotation left unfinished in one demo must resume in the next against services that saw its first half; so
the emulators' records, the CA, the Flux repo and the config are kept with the journal in one folder.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import ssl
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from app.config import load_config
from app.errors import KeyturnError
from app.journal import RotationJournal
from app.sandbox import DEVOPS_RESOURCE, Sandbox
from app.sandbox.persist import LOCK_FILE, WORLD_FILE, SandboxBusyError, WorldUnreadableError
from app.sandbox.sandbox import rewrite_ports
from tests.e2e.support.targets import daily_checks, keda

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_CLIENT = "872cd9fa-d31f-45e0-9eab-6e460a02d1f1"
PAT_API = {"api-version": "7.2-preview.1"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def user_token(sb: Sandbox, http: httpx.Client) -> str:
    email, password = sb.state.bot_credentials
    resp = http.post(
        f"{sb.urls['entra']}/{sb.state.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "password",
            "client_id": PUBLIC_CLIENT,
            "username": email,
            "password": password,
            "scope": f"{DEVOPS_RESOURCE}/.default openid profile offline_access",
        },
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def create_pat(sb: Sandbox, http: httpx.Client, token: str, name: str) -> dict[str, Any]:
    valid_to = (datetime.now(UTC) + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    resp = http.post(
        f"{sb.urls['vssps']}/{sb.state.org}/_apis/tokens/pats",
        params=PAT_API,
        headers={"Authorization": f"Bearer {token}"},
        json={"displayName": name, "scope": "vso.build", "validTo": valid_to, "allOrgs": False},
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["patToken"])


def world_of(sb: Sandbox) -> dict[str, Any]:
    """What a restart must not change (values included: they are the emulated world's fakes)."""
    st = sb.state
    assert sb.buildkite.seeded is not None and sb.jenkins.seeded is not None and sb.conductorone.seeded is not None
    return {
        "tenant": st.tenant_id,
        "sp": (st.sp_client_id, st.sp_client_secret),
        "bot": st.bot_credentials,
        "pats": [(p.authorization_id, p.value, p.revoked) for p in st.pats()],
        "kv": {n: [v.value for v in st.secret_versions("cftptl-intsvc", n)] for n in st.secret_names("cftptl-intsvc")},
        "bk": (sb.buildkite.seeded, [(t.uuid, t.value) for t in sb.buildkite.cluster_tokens(include_revoked=True)]),
        "jenkins": (sb.jenkins.seeded, [(t.uuid, t.value, t.revoked) for t in sb.jenkins.tokens()]),
        "c1": (sb.conductorone.seeded, sb.conductorone.connector()),
        "offset": st.clock_offset,
    }


# -- the world survives a restart ------------------------------------------------------------------------


def test_a_persisted_world_comes_back_as_it_was_left(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    with Sandbox(d, persist=True) as sb:
        assert not sb.loaded
        ca = sb.ca_path.read_bytes()
        old_urls = dict(sb.urls)
        sb.state.advance_clock(timedelta(days=2))  # the emulators' clock offset is part of the world
        with httpx.Client(verify=sb.client_ssl_context(), timeout=10) as http:
            token = user_token(sb, http)
            pat = create_pat(sb, http, token, "made-over-http")
        sb.state.set_secret("cftptl-intsvc", "azure-devops-token", "a-new-version")  # through the state, saved at stop
        cluster = sb.buildkite.cluster("Default cluster")
        assert cluster is not None
        sb.buildkite.add_cluster_token(cluster.uuid, "made-by-hand", created_by=None)
        sb.jenkins.generate("keyturn-bot", "made-by-hand", sb.jenkins.today() + timedelta(days=30))
        before = world_of(sb)
        saved = sb.store.saves if sb.store else 0
    assert saved >= 2  # at start, and after the requests that changed something
    assert mode(d) == 0o700 and mode(d / WORLD_FILE) == 0o600
    assert pat["token"].encode() in (d / WORLD_FILE).read_bytes()  # a fake value of the world, in a 0600 file

    with Sandbox(d, persist=True) as again:
        assert again.loaded
        assert world_of(again) == before  # nothing re-seeded: the old seeded tokens are the same
        assert again.state.pats_named("made-over-http")[0].value == pat["token"]
        assert again.ca_path.read_bytes() == ca  # the same CA: a ca_bundle read earlier still verifies
        assert set(again.urls) == set(old_urls)
        config = load_config(again.config_path)  # the kept config, with this run's ports
        assert config.vaults["cftptl-intsvc"].url == again.urls["vault:cftptl-intsvc"]
        text = again.config_path.read_text()
        assert all(url not in text for name, url in old_urls.items() if url != again.urls[name])
        with httpx.Client(verify=ssl.create_default_context(cafile=again.ca_path), timeout=10) as http:
            # the Entra token of the last run is still valid, and the PAT it made authenticates
            listed = http.get(
                f"{again.urls['vssps']}/{again.state.org}/_apis/tokens/pats",
                params={**PAT_API, "$top": "100"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert listed.status_code == 200, listed.text
            used = http.get(f"{again.urls['devops']}/{again.state.org}/_apis/connectionData", auth=("", pat["token"]))
            assert used.status_code == 200
        assert again.state.internal_errors == []


def test_fresh_starts_a_new_world_and_keeps_what_is_not_the_sandboxs(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    with Sandbox(d, persist=True) as sb:
        before = world_of(sb)
    (d / "journal").mkdir()
    (d / "journal" / "r1.jsonl").write_text("{}\n")
    (d / "notes.txt").write_text("mine")
    with Sandbox(d, persist=True, fresh=True) as sb:
        assert not sb.loaded
        after = world_of(sb)
        assert after["tenant"] != before["tenant"] and after["pats"] != before["pats"]
        assert not (d / "journal").exists()  # the old world's journal went with it
    assert (d / "notes.txt").read_text() == "mine"
    with Sandbox(d, persist=True) as sb:
        assert sb.loaded and world_of(sb)["tenant"] == after["tenant"]
    with pytest.raises(ValueError, match="persist=True"):
        Sandbox(d, fresh=True)


def test_without_persist_nothing_is_kept(tmp_path: Path) -> None:
    d = tmp_path / "sb"
    with Sandbox(d) as sb:
        assert sb.store is None and sb.state.after_request is None
        tenant = sb.state.tenant_id
    assert not (d / WORLD_FILE).exists() and not (d / LOCK_FILE).exists()
    with Sandbox(d) as sb:
        assert sb.state.tenant_id != tenant


def test_one_process_drives_a_world_at_a_time(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    with Sandbox(d, persist=True):
        with pytest.raises(SandboxBusyError, match=f"in use by pid {os.getpid()}"):
            Sandbox(d, persist=True)
    Sandbox(d, persist=True).close()  # free again once the first stopped


def test_the_world_is_saved_before_the_answer_leaves(tmp_path: Path) -> None:
    """The demo crashes (SIGKILL) right after the emulator handed out a PAT: the next demo knows that PAT."""
    d = tmp_path / "demo"
    code = (
        "import json; from app.sandbox import serve\n"
        "def ready(sb):\n"
        "    st = sb.state\n"
        "    print(json.dumps({'urls': sb.urls, 'ca': str(sb.ca_path), 'tenant': st.tenant_id, 'org': st.org,\n"
        "                      'bot': st.bot_credentials}), flush=True)\n"
        f"serve({str(d)!r}, ready=ready, persist=True)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
        remote = SimpleNamespace(
            urls=info["urls"],
            state=SimpleNamespace(tenant_id=info["tenant"], org=info["org"], bot_credentials=tuple(info["bot"])),
        )
        with httpx.Client(verify=ssl.create_default_context(cafile=info["ca"]), timeout=10) as http:
            pat = create_pat(remote, http, user_token(remote, http), "handed-out")  # type: ignore[arg-type]
    finally:
        child.send_signal(signal.SIGKILL)  # no stop(), no last save: only what was saved before the answer
        child.wait(timeout=10)
    with Sandbox(d, persist=True) as sb:  # the lock died with the child
        assert sb.loaded
        (rec,) = sb.state.pats_named("handed-out")
        assert rec.value == pat["token"] and rec.authorization_id == pat["authorizationId"]


def test_an_unreadable_or_foreign_world_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    with Sandbox(d, persist=True):
        pass
    world = d / WORLD_FILE
    world.write_bytes(b"not a pickle")
    with pytest.raises(WorldUnreadableError, match="cannot be read") as info:
        Sandbox(d, persist=True)
    assert "--fresh" in str(info.value)

    marker = tmp_path / "still-here"
    marker.write_text("x")

    class Evil:
        def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
            return (os.remove, (str(marker),))

    world.write_bytes(pickle.dumps({"format": 1, "state": Evil()}))
    with pytest.raises(WorldUnreadableError):
        Sandbox(d, persist=True)
    assert marker.exists(), "a saved world must never run code"

    world.write_bytes(pickle.dumps({"format": 99}))
    with pytest.raises(WorldUnreadableError, match="format 99"):
        Sandbox(d, persist=True)
    os.chmod(world, 0o666)
    with pytest.raises(WorldUnreadableError, match="not yours alone"):
        Sandbox(d, persist=True)
    with Sandbox(d, persist=True, fresh=True) as sb:  # the way out the message names
        assert not sb.loaded


def test_rewrite_ports_maps_each_old_port_once() -> None:
    text = 'a = "https://127.0.0.1:4433"\nb = "https://127.0.0.1:44331/v1"\nc = "http://127.0.0.1:5000"\n'
    old = {"a": "https://127.0.0.1:4433", "b": "https://127.0.0.1:44331", "gone": "http://127.0.0.1:5000"}
    new = {"a": "https://127.0.0.1:44331", "b": "https://127.0.0.1:4433"}
    assert rewrite_ports(text, old, new) == (
        'a = "https://127.0.0.1:44331"\nb = "https://127.0.0.1:4433/v1"\nc = "http://127.0.0.1:5000"\n'
    )


# -- resuming in the next demo is honest -------------------------------------------------------------------


def keyturn(
    config: Path, home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    child_env.update({"HOME": str(home), "PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("target", "point", "check"),
    [("daily-checks", "after:step_done", daily_checks), ("keda", "flux:committed", keda)],
    ids=["daily-checks", "keda-flux"],
)
def test_a_rotation_cut_short_resumes_in_the_next_demo(
    tmp_path: Path, target: str, point: str, check: Callable[[Sandbox], tuple[str, str]]
) -> None:
    d, home = tmp_path / "demo", tmp_path / "home"
    with Sandbox(d, persist=True) as sb:
        crashed = keyturn(sb.config_path, home, "rotate", target, "--no-input", env={"KEYTURN_TEST_KILL_AT": point})
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        minted = [p.authorization_id for p in sb.state.pats() if p.display_name.startswith(target.split("-")[0])]
    # the demo is quit; the next one starts from the same folder, on other ports
    with Sandbox(d, persist=True) as sb:
        assert sb.loaded
        assert [
            p.authorization_id for p in sb.state.pats() if p.display_name.startswith(target.split("-")[0])
        ] == minted
        from app.sandbox.consumers import consumers_follow_promptly

        consumers_follow_promptly(sb)  # the Flux pull request merges as it is pushed; the gates pass in the resume
        resumed = keyturn(sb.config_path, home, "resume", "--no-input", "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert [r["state"] for r in json.loads(resumed.stdout)["resumed"]] == ["done"]
        check(sb)  # one live new token (the one minted before the quit), in every store, the old one revoked
        assert list(RotationJournal(d / "journal").unfinished()) == []
        assert sb.state.internal_errors == []


# -- run_demo ---------------------------------------------------------------------------------------------


def test_run_demo_keeps_its_world_in_the_user_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.tui
    from app.sandbox.demo import demo_directory, run_demo

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    seen: list[tuple[str, str, bool]] = []

    def wizard(config: Any, *, sandbox: Sandbox, start_target: str | None = None) -> None:
        assert config.path == sandbox.config_path and sandbox.state.auto_approve_device_code == 3.0
        seen.append((sandbox.state.tenant_id, str(sandbox.directory), sandbox.loaded))

    monkeypatch.setattr(app.tui, "run_wizard", wizard)
    folder = demo_directory()
    assert folder == tmp_path / "state" / "keyturn" / "demo"
    run_demo(None, False)
    assert mode(folder) == 0o700 and mode(folder.parent) == 0o700
    run_demo(None, False)
    run_demo(None, True)
    (first, second, third) = seen
    assert first[1] == str(folder) and not first[2]
    assert second[0] == first[0] and second[2]  # the same world, loaded
    assert third[0] != first[0] and not third[2]  # --fresh: a new one


def test_run_demo_refuses_a_journal_without_its_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.tui
    from app.sandbox.demo import run_demo

    monkeypatch.setattr(app.tui, "run_wizard", lambda config, **kw: None)
    d = tmp_path / "old-demo"  # what `keyturn demo --dir D` left before the world was kept
    (d / "journal").mkdir(parents=True)
    (d / "journal" / "r1.jsonl").write_text("{}\n")
    with pytest.raises(KeyturnError, match="no saved sandbox world") as info:
        run_demo(d, False)
    assert "--fresh" in str(info.value)
    run_demo(d, True)
    assert (d / WORLD_FILE).exists() and not (d / "journal").exists()
