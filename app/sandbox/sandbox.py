"""The Sandbox: every emulated remote party on 127.0.0.1 over real HTTPS, plus the config that points at them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import ssl
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from app.journal import make_private_dirs
from app.sandbox.runbooks import (
    BUILDKITE_CLUSTER_RUNBOOK,
    BUILDKITE_CONDUCTORONE_RUNBOOK,
    BUILDKITE_UNCLUSTERED_RUNBOOK,
    DAILY_CHECKS_RUNBOOK,
    JENKINS_RUNBOOK,
    KEDA_RUNBOOK,
)
from app.sandbox.state import SandboxState, seed

if TYPE_CHECKING:
    from app.sandbox.buildkite import BuildkiteWorld
    from app.sandbox.conductorone import ConductorOneWorld
    from app.sandbox.flux import FluxRepo
    from app.sandbox.http import TLSServer
    from app.sandbox.jenkins import JenkinsWorld
    from app.sandbox.persist import WorldStore
    from app.sandbox.tls import SandboxTLS

VAULTS = ("rpe-prod", "cftptl-intsvc")

_LOOPBACK_URL = re.compile(r"(https?://127\.0\.0\.1:)(\d+)")


def rewrite_ports(text: str, old_urls: dict[str, str], new_urls: dict[str, str]) -> str:
    """``text`` with each service's old loopback port replaced by its new one (all at once, so no chains)."""
    from urllib.parse import urlsplit

    ports = {
        urlsplit(url).port: urlsplit(new_urls[name]).port for name, url in old_urls.items() if name in new_urls
    }
    return _LOOPBACK_URL.sub(lambda m: m.group(1) + str(ports.get(int(m.group(2))) or m.group(2)), text)


def _q(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML escapes)."""
    return json.dumps(value)


def _literal_block(text: str) -> str:
    if "'''" in text:
        raise ValueError("runbook text must not contain '''")
    return "'''\n" + text + "'''"


class Sandbox:
    """Every remote party keyturn talks to, emulated on 127.0.0.1 over HTTPS, with a ready-made config.

    ``Sandbox(directory, page_size=2, auto_approve_device_code=0.0)``; ``start()`` / ``stop()`` or use it as
    a context manager. After ``start()``: ``urls`` (entra, vssps, devops, vault:rpe-prod, vault:cftptl-intsvc),
    ``config_path`` (D/keyturn.toml), ``ca_path`` (D/ca.pem), ``secret_path`` (D/sandbox-sp.secret) and
    ``client_ssl_context()``. ``state`` (a seeded :class:`SandboxState`) is there from construction on.

    ``auto_approve_device_code``: seconds after which a device code is approved as the bot (negative: never
    automatically; approve on the /devicelogin page or with ``state.approve_device_code``).

    ``persist=True`` (the demo): the world (every emulator's records, the clock offset, the CA, the Flux repo
    and age key, keyturn.toml) outlives the process. A world saved in D is loaded instead of seeding a new
    one (``loaded``), saved after every request before its answer is sent and at ``stop()``, and locked
    against a second process; each run gets new ports, written into the kept keyturn.toml. ``fresh=True``
    removes the old world (and its journal) first. Without it nothing is written but what is written today.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        page_size: int = 2,
        auto_approve_device_code: float = 0.0,
        org: str = "contoso-sandbox",
        aws: bool = False,
        jenkins_version: str | None = None,
        persist: bool = False,
        fresh: bool = False,
    ) -> None:
        self.directory = Path(directory)
        # AWS SSM through moto's server mode (the `sandbox-aws` extra): opt-in, its import costs ~0.7 s
        self.aws = aws
        self._moto: Any = None
        self.aws_credentials_path = self.directory / "aws-credentials"
        self.buildkite_token_path = self.directory / "sandbox-buildkite.token"
        self.jenkins_token_path = self.directory / "sandbox-jenkins.token"
        self.jenkins_password_path = self.directory / "sandbox-jenkins.password"
        self.c1_secret_path = self.directory / "sandbox-c1.secret"
        self.config_path = self.directory / "keyturn.toml"
        self.ca_path = self.directory / "ca.pem"
        self.secret_path = self.directory / "sandbox-sp.secret"
        self.urls: dict[str, str] = {}
        self._servers: list[TLSServer] = []
        self._tls: SandboxTLS | None = None
        self.flux: FluxRepo | None = None
        # persist: the world lives in D/sandbox-world.pickle, saved before every answer (app.sandbox.persist)
        self.persist = persist
        self.store: WorldStore | None = None
        self.loaded = False  # True when the world came from an earlier run's file
        self._saved: dict[str, Any] = {}
        if fresh and not persist:
            raise ValueError("fresh=True starts a persisted world afresh: pass persist=True too")
        if persist:
            from app.sandbox.persist import WorldStore, discard_world

            make_private_dirs(self.directory)
            self.store = WorldStore(self.directory)
            self.store.lock()
            try:
                if fresh:
                    discard_world(self.directory)
                if self.store.exists():
                    self._saved = self.store.load()
            except BaseException:
                self.store.unlock()
                raise
        if self._saved:
            self.state: SandboxState = self._saved["state"]
            self.state.page_size = page_size
            self.state.auto_approve_device_code = auto_approve_device_code
            self.buildkite: BuildkiteWorld = self._saved["buildkite"]
            self.conductorone: ConductorOneWorld = self._saved["conductorone"]
            self.jenkins: JenkinsWorld = self._saved["jenkins"]
            self.loaded = True
        else:
            self._seed(org=org, page_size=page_size, auto_approve_device_code=auto_approve_device_code, jenkins_version=jenkins_version)

    def _seed(self, *, org: str, page_size: int, auto_approve_device_code: float, jenkins_version: str | None) -> None:
        """A new world: the seeded state, Buildkite, ConductorOne and Jenkins."""
        self.state = SandboxState(org=org, page_size=page_size, auto_approve_device_code=auto_approve_device_code)
        seed(self.state, VAULTS)
        from app.sandbox.buildkite import seed_buildkite
        from app.sandbox.conductorone import seed_conductorone

        self.buildkite = seed_buildkite(self.state, organization=org)
        assert self.buildkite.seeded is not None
        self.conductorone = seed_conductorone(self.state, organization=org, api_token=self.buildkite.seeded.connector_token)
        # the connector's Buildkite token is kept in Key Vault: the rotation reads the old one there, writes the new
        self.state.set_secret(
            "cftptl-intsvc", "buildkite-conductorone-token", self.buildkite.seeded.connector_token,
            tags={"created-by": "hand"}, content_type="buildkite-api-access-token",
        )
        self.conductorone.token_check = self.buildkite.connector_token_check  # a sync fails with a bad token
        from app.sandbox.jenkins import NEW_VERSION, seed_jenkins

        # Jenkins: the bot's current API token is kept in Key Vault; the rotation reads it there and writes the new one
        self.jenkins = seed_jenkins(self.state, version=jenkins_version or NEW_VERSION)
        assert self.jenkins.seeded is not None
        self.state.set_secret(
            "cftptl-intsvc", "jenkins-api-token", self.jenkins.seeded.token_value,
            tags={"created-by": "hand"}, content_type="jenkins-api-token",
        )

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._servers)

    def start(self) -> Sandbox:
        if self._servers:
            raise RuntimeError("the sandbox is already running")
        if self.store is None:
            return self._start()
        self.store.lock()  # again, when a stopped sandbox starts once more
        try:
            return self._start()
        except BaseException:
            with contextlib.suppress(Exception):  # the error that stopped the start is the one to report
                self.stop()  # a persisted world is let go of (saved, unlocked) when it cannot start
            raise

    def _start(self) -> Sandbox:
        from app.sandbox.azure_devops import DevOpsService, VsspsService
        from app.sandbox.buildkite import BuildkiteGraphQLService, BuildkiteRestService
        from app.sandbox.conductorone import ConductorOneService
        from app.sandbox.entra import EntraService
        from app.sandbox.http import TLSServer
        from app.sandbox.jenkins import JenkinsService
        from app.sandbox.keyvault import KeyVaultService
        from app.sandbox.tls import SandboxTLS, write_private

        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        saved_tls = self._saved.get("tls")
        self._tls = SandboxTLS.from_pem(saved_tls) if saved_tls else SandboxTLS()
        if self._tls.valid_for() < timedelta(days=1):  # a world saved a month ago: new certificates, same world
            self._tls = SandboxTLS()
        self._tls_pem = self._tls.to_pem() if self.store is not None else {}
        self._tls.write_ca(self.ca_path)
        ctx = self._tls.server_context(self.directory)
        servers: list[TLSServer] = []
        try:
            entra = TLSServer(EntraService(self.state), ctx)
            servers.append(entra)
            servers.append(TLSServer(VsspsService(self.state), ctx))
            servers.append(TLSServer(DevOpsService(self.state), ctx))
            for vault in VAULTS:
                servers.append(TLSServer(KeyVaultService(self.state, vault, entra.url), ctx))
            servers.append(TLSServer(ConductorOneService(self.state, self.conductorone), ctx))
            servers.append(TLSServer(BuildkiteGraphQLService(self.state, self.buildkite), ctx))
            servers.append(TLSServer(BuildkiteRestService(self.state, self.buildkite), ctx))
            servers.append(TLSServer(JenkinsService(self.state, self.jenkins), ctx))
        except BaseException:
            for s in servers:
                s.server_close()
            raise
        for s in servers:
            s.start()
        self._servers = servers
        self.urls = {s.service.name: s.url for s in servers}
        if self.aws:
            try:
                from moto.server import ThreadedMotoServer
            except ImportError:
                raise RuntimeError("the AWS sandbox needs moto: pip install 'keyturn[sandbox-aws]'") from None
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self.urls["aws"] = f"http://{host}:{port}"  # plain HTTP: loopback only
            write_private(self.aws_credentials_path, b"[keyturn-sandbox]\naws_access_key_id = sandbox\naws_secret_access_key = sandbox\n")
        from app.sandbox.flux import create_flux_repo, open_flux_repo

        self.flux = open_flux_repo(self.directory) if self.loaded else None  # the repo as the last run left it
        if self.flux is None:
            keda = self.state.pats_named("keda-agent-pools")[0]
            self.flux = create_flux_repo(self.directory, keda.value)  # the real git and sops
        write_private(self.secret_path, self.state.sp_client_secret.encode("utf-8"))
        assert self.conductorone.seeded is not None
        write_private(self.c1_secret_path, self.conductorone.seeded.client_secret.encode("utf-8"))
        assert self.buildkite.seeded is not None
        write_private(self.buildkite_token_path, self.buildkite.seeded.keyturn_token.encode("utf-8"))
        assert self.jenkins.seeded is not None
        write_private(self.jenkins_token_path, self.jenkins.seeded.token_value.encode("utf-8"))
        write_private(self.jenkins_password_path, self.jenkins.seeded.password.encode("utf-8"))
        old_urls = self._saved.get("urls")
        if self.loaded and old_urls and self.config_path.exists():
            # keep the config as the last run (or a rotation: Jenkins records its token's uuid) left it; new ports
            text = rewrite_ports(self.config_path.read_text("utf-8"), old_urls, self.urls)
        else:
            text = self.config_text()
        write_private(self.config_path, text.encode("utf-8"))
        if self.store is not None:
            self.state.after_request = self.save
            self.save()
        return self

    def stop(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        servers, self._servers = self._servers, []
        threads = [threading.Thread(target=s.stop, daemon=True) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=3)
        if self.store is not None:
            if self.urls:
                self.save()  # what a test (or the wizard) changed through the state API since the last request
            self.state.after_request = None
            self.store.unlock()

    def close(self) -> None:
        """Let go of a persisted world that was loaded but never started (``stop`` does it too)."""
        if self.store is not None and not self._servers:
            self.store.unlock()

    def save(self) -> bool:
        """Write the persisted world now if it changed (done after every request; True when written)."""
        if self.store is None:
            raise RuntimeError("only a persisted sandbox (persist=True) saves its world")
        from app.sandbox.persist import WORLD_FORMAT

        assert self._tls is not None
        world = {
            "format": WORLD_FORMAT,
            "state": self.state,
            "buildkite": self.buildkite,
            "conductorone": self.conductorone,
            "jenkins": self.jenkins,
            "tls": self._tls_pem,
            "urls": dict(self.urls),
        }
        # the order the emulators nest their locks in (ConductorOne's sync checks the Buildkite token)
        locks = [self.conductorone.lock, self.buildkite.lock, self.jenkins.lock, self.state.lock]
        return self.store.save(world, locks)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------------------

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context trusting only the sandbox CA (e.g. ``httpx.Client(verify=sb.client_ssl_context())``)."""
        if self._tls is None:
            raise RuntimeError("start the sandbox first")
        return self._tls.client_context()

    def config_text(self) -> str:
        """The keyturn.toml that points keyturn at this sandbox (needs the ports: call after start())."""
        st = self.state
        u = self.urls
        assert self.flux is not None, "start the sandbox first"
        flux_files = self.flux.files
        lines = [
            "# keyturn sandbox: everything below listens on 127.0.0.1 while the sandbox runs.",
            "# Relative paths are relative to this file's folder.",
            "[settings]",
            "sandbox = true",
            'ca_bundle = "ca.pem"',
            'journal_dir = "journal"',
            "",
        ]
        for vault in VAULTS:
            lines += [
                f"[vaults.{vault}]",
                f"url = {_q(u['vault:' + vault])}",
                'auth = "client-secret"',
                f"tenant_id = {_q(st.tenant_id)}",
                f"client_id = {_q(st.sp_client_id)}",
                'client_secret = "file:sandbox-sp.secret"',
                f"authority = {_q(u['entra'])}",
                "",
            ]
        lines += [
            "[accounts.ado-bot]",
            'platform = "azure-devops"',
            f"organization = {_q(st.org)}",
            'sign_in = "device-code"',
            f"tenant_id = {_q(st.tenant_id)}",
            'email = "vault:rpe-prod/rpe-azure-devops-email"',
            'password = "vault:rpe-prod/rpe-azure-devops-password"',
            f"authority = {_q(u['entra'])}",
            f"base_url = {_q(u['devops'])}",
            f"vssps_url = {_q(u['vssps'])}",
            "",
            "[targets.keda]",
            'account = "ado-bot"',
            'token_name = "keda-agent-pools"',
            'description = "KEDA azure-pipelines scaler: reads agent pools and job requests"',
            'preset = "keda"',
            "validity_days = 90",
            f"runbook = {_literal_block(KEDA_RUNBOOK)}",
            "",
        ]
        lines += [
            "# The pipeline-auth Secret of KEDA in both environments of the flux-config clone, set with sops",
            "# (age key age.key) on a new branch, one commit, pushed to the clone's origin (flux-config.git).",
            "[[targets.keda.follow_ups]]",
            'kind = "flux-sops-secret"',
            'name = "Flux pipeline-auth secret (cft, sds)"',
            'repo = "flux-config"',
            f"files = [{', '.join(_q(f) for f in flux_files)}]",
            'key = "personalAccessToken"',
            'field = "data"',
            "push = true",
            'age_key_file = "age.key"',
            "",
        ]
        lines += [
            "[targets.daily-checks]",
            'account = "ado-bot"',
            'token_name = "daily-checks"',
            'description = "daily-checks pipeline: agent pools, builds, pipeline resources, releases"',
            'preset = "daily-checks"',
            "validity_days = 90",
            f"runbook = {_literal_block(DAILY_CHECKS_RUNBOOK)}",
            "",
            "[[targets.daily-checks.follow_ups]]",
            'kind = "keyvault-secret-version"',
            'vault = "cftptl-intsvc"',
            'secret = "azure-devops-token"',
            "",
            "# The consumer check: a run of the daily-checks pipeline, which reads azure-devops-token from Key Vault. It runs",
            "# once the store above holds the new PAT and it is verified; the old PAT is revoked only once such a run succeeded.",
            "[[targets.daily-checks.follow_ups]]",
            'kind = "azure-pipelines-run"',
            'name = "daily-checks"',
            f"organization = {_q(st.org)}",
            'project = "platops"',
            "pipeline_id = 12",
            'branch = "main"',
            'token = "vault:rpe-prod/daily-checks-runner-pat"',
            f"base_url = {_q(u['devops'])}",
            'rotation_variable = "KEYTURN_ROTATION"',
            "timeout_s = 60",
            "",
        ]
        from app.sandbox.buildkite import GRAPHQL_PATH

        # Buildkite (GraphQL executed on Buildkite's published schema, and REST /v2/access-token);
        # its targets come with the Buildkite provider
        lines.append(self.buildkite.follow_up_toml(graphql_url=u["buildkite-graphql"] + GRAPHQL_PATH, rest_url=u["buildkite-rest"]))
        lines += [
            "[targets.buildkite-cluster]",
            'account = "buildkite"',
            'token_type = "cluster-agent-token"',
            'token_name = "Default cluster agents"',
            'cluster = "Default cluster"',
            'description = "Agents of the Default cluster read their token from Key Vault at boot"',
            f"runbook = {_literal_block(BUILDKITE_CLUSTER_RUNBOOK)}",
            "",
            "[[targets.buildkite-cluster.follow_ups]]",
            'kind = "keyvault-secret-version"',
            'vault = "cftptl-intsvc"',
            'secret = "buildkite-agent-token"',
            "",
            "[targets.buildkite-unclustered]",
            'account = "buildkite"',
            'token_type = "unclustered-agent-token"',
            'token_name = "Legacy macOS agents"',
            'description = "Unclustered (deprecated) agent token of the legacy macOS agents"',
            f"runbook = {_literal_block(BUILDKITE_UNCLUSTERED_RUNBOOK)}",
            "",
            "[[targets.buildkite-unclustered.follow_ups]]",
            'kind = "keyvault-secret-version"',
            'vault = "cftptl-intsvc"',
            'secret = "buildkite-legacy-agent-token"',
            "",
            "[targets.buildkite-conductorone]",
            'account = "buildkite"',
            'token_type = "api-access-token"',
            'token_name = "ConductorOne Buildkite connector"',
            'description = "The API access token ConductorOne reads Buildkite with"',
            'preset = "conductorone"',
            'old_token = "vault:cftptl-intsvc/buildkite-conductorone-token"',
            f"runbook = {_literal_block(BUILDKITE_CONDUCTORONE_RUNBOOK)}",
            "",
            "[[targets.buildkite-conductorone.follow_ups]]",
            'kind = "keyvault-secret-version"',
            'vault = "cftptl-intsvc"',
            'secret = "buildkite-conductorone-token"',
            "",
            self.conductorone.follow_up_toml("buildkite-conductorone", base_url=u["conductorone"]),
            f"# Jenkins {self.jenkins.version} (token expiry from 2.548): the bot signs in with its password (a session:",
            "# Jenkins counts no token use for it, so the use counts on its security page are the jobs' alone, in every",
            "# run); api_token names the current API token",
            self.jenkins.config_toml(
                u["jenkins"], api_token_ref="vault:cftptl-intsvc/jenkins-api-token", password_ref="file:sandbox-jenkins.password",  # noqa: S106
            ).rstrip("\n"),
            "validity_days = 90",
            'description = "The API token the deploy jobs call Jenkins with"',
            f"runbook = {_literal_block(JENKINS_RUNBOOK)}",
            "",
            "[[targets.jenkins.follow_ups]]",
            'kind = "keyvault-secret-version"',
            'vault = "cftptl-intsvc"',
            'secret = "jenkins-api-token"',
            "",
        ]
        if "aws" in u:
            lines += [
                "# AWS SSM (moto on 127.0.0.1): a second store for the daily-checks token",
                "[[targets.daily-checks.follow_ups]]",
                'kind = "aws-ssm-parameter"',
                'parameter = "/ci/azure-devops-token"',
                'region = "eu-west-2"',
                'profile = "keyturn-sandbox"',
                'credentials_file = "aws-credentials"',
                f"endpoint_url = {_q(u['aws'])}",
                "",
            ]
        return "\n".join(lines)


def serve(
    directory: Path | str,
    *,
    ready: Callable[[Sandbox], None] | None = None,
    stop: threading.Event | None = None,
    **options: Any,
) -> None:
    """Start a sandbox in ``directory``, call ``ready(sandbox)``, block until SIGINT/SIGTERM (or ``stop`` is set), stop.

    ``options`` go to :class:`Sandbox` (page_size, auto_approve_device_code, org). Signal handlers are only
    installed when called from the main thread; they are restored afterwards.
    """
    done = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        with Sandbox(directory, **options) as sandbox:
            if ready is not None:
                ready(sandbox)
            while not done.wait(0.2):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
