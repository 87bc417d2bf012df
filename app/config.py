"""The configuration file: vaults, accounts, targets, follow-ups, presets.

Validated with pydantic; every error names the file, the key and the fix, on one line.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# pydantic-free, so the wizard's start can use them before this module is imported; kept importable from here
from app.config_view import default_config_path, read_config  # noqa: F401
from app.errors import ConfigError

SECRET_REF = re.compile(r"^(vault:[A-Za-z0-9-]+/[A-Za-z0-9-]+|keyring:[^/\s]+/\S+|env:[A-Za-z_][A-Za-z0-9_]*|file:\S+|prompt)$")
DURATION = re.compile(r"^(\d+)([smhd])$")
ADO_PUBLIC_CLIENT = "872cd9fa-d31f-45e0-9eab-6e460a02d1f1"  # Visual Studio: may sign in to Azure DevOps


def parse_duration(text: str) -> timedelta:
    """'0', '90s', '30m', '24h', '7d' -> timedelta."""
    if text in ("0", ""):
        return timedelta(0)
    m = DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration; write e.g. '0', '30m', '24h' or '7d'")
    n, unit = int(m.group(1)), m.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})


def _check_ref(value: str) -> str:
    if not SECRET_REF.match(value):
        # never echo the value: a pasted token here is exactly what must not reach a terminal or a log
        raise ValueError(
            "this value is not a secret reference; use vault:VAULT/SECRET, keyring:SERVICE/USER, "
            "env:VAR, file:PATH or prompt"
        )
    return value


SecretRef = Annotated[str, Field(description="vault:NAME/SECRET | keyring:SERVICE/USER | env:VAR | file:PATH | prompt")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(_Model):
    journal_dir: Path | None = None  # default: the user state dir (platformdirs)
    ca_bundle: Path | None = None  # extra CA certificates to trust (the sandbox's own CA)
    clipboard_clear_seconds: int = Field(30, ge=0, le=3600)
    warn_days: int = Field(14, ge=0, le=365)  # `status` flags tokens expiring within this many days
    sandbox: bool = False  # set by `keyturn sandbox up`; the wizard says so
    # the wizard's Textual theme (None: Textual's default); the wizard checks the name, since the themes it knows are
    # only known once Textual is imported, which a headless command never does
    theme: str | None = None


class Vault(_Model):
    kind: Literal["azure-keyvault"] = "azure-keyvault"
    url: str | None = None  # default https://NAME.vault.azure.net (override for the sandbox)
    auth: Literal["default", "cli", "client-secret"] = "default"
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretRef | None = None
    authority: str | None = None  # default https://login.microsoftonline.com

    _ref = field_validator("client_secret")(lambda cls, v: v if v is None else _check_ref(v))

    @model_validator(mode="after")
    def _client_secret_needs_ids(self) -> Vault:
        if self.auth == "client-secret" and not (self.tenant_id and self.client_id and self.client_secret):
            raise ValueError("auth = 'client-secret' needs tenant_id, client_id and client_secret")
        return self


class Account(_Model):
    platform: Literal["azure-devops", "buildkite", "jenkins"]
    organization: str
    sign_in: Literal["device-code", "azure-cli", "password"] = "device-code"
    tenant_id: str = "organizations"
    client_id: str = ADO_PUBLIC_CLIENT
    email: SecretRef | None = None
    password: SecretRef | None = None
    authority: str | None = None  # default https://login.microsoftonline.com
    base_url: str | None = None  # default https://dev.azure.com
    vssps_url: str | None = None  # default https://vssps.dev.azure.com
    # Buildkite: the API access token keyturn manages agent tokens with (GraphQL access + agent scopes)
    api_token: SecretRef | None = None
    graphql_url: str | None = None  # default https://graphql.buildkite.com/v1
    rest_url: str | None = None  # default https://api.buildkite.com
    # Jenkins / CloudBees CI: base_url is the controller (or Operations Center); the user whose tokens rotate
    user: str | None = None

    _refs = field_validator("email", "password", "api_token")(lambda cls, v: v if v is None else _check_ref(v))

    @model_validator(mode="after")
    def _password_flow_needs_secrets(self) -> Account:
        if self.sign_in == "password" and not (self.email and self.password):
            raise ValueError("sign_in = 'password' needs email and password secret references")
        return self


class FluxSopsSecret(_Model):
    kind: Literal["flux-sops-secret"]
    name: str | None = None
    repo: Path  # a local clone of the config repository
    files: list[str] = Field(min_length=1)  # SOPS-encrypted Kubernetes Secrets, relative to repo
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$")  # the Secret's key to set
    field: Literal["data", "stringData"] = "data"  # data: the value is base64-encoded first
    push: bool = False
    remote: str = "origin"
    # the branch Flux reconciles (its GitRepository's spec.ref.branch): the old token is revoked only once every file
    # there decrypts to the new value; default the remote's default branch
    reconcile_branch: str | None = Field(None, pattern=r"^[^\s~^:?*\[\\]+$")
    age_key_file: Path | None = None  # else sops' usual sources (SOPS_AGE_KEY_FILE, ~/.config/sops/age/keys.txt, Key Vault keys)
    sops: str | None = None  # path of the sops binary (default: the one on PATH or beside this Python)


class KeyVaultSecretVersion(_Model):
    kind: Literal["keyvault-secret-version"]
    name: str | None = None
    vault: str
    secret: str = Field(pattern=r"^[0-9A-Za-z-]{1,127}$")
    content_type: str | None = None
    disable_previous: bool = False  # disable the version holding the old token once it is revoked


class AwsSsmParameter(_Model):
    kind: Literal["aws-ssm-parameter"]
    name: str | None = None
    parameter: str = Field(pattern=r"^/?[a-zA-Z0-9_.\-/]{1,2000}$")  # e.g. /buildkite/agent-token
    region: str = "us-east-1"
    kms_key_id: str | None = None  # default: the account's aws/ssm key
    profile: str | None = None  # an AWS profile; default: boto3's usual credential chain
    credentials_file: Path | None = None  # another shared credentials file (the sandbox's)
    endpoint_url: str | None = None  # override (the sandbox's moto server)


class ConductorOneConnector(_Model):
    kind: Literal["conductorone-connector"]
    name: str | None = None
    tenant: str  # https://TENANT.conductor.one
    app_id: str
    connector_id: str
    client_id: str
    client_secret: SecretRef
    organization: str | None = None  # the connector's `organization` setting (default: the target account's)
    base_url: str | None = None  # override of https://TENANT.conductor.one (the sandbox)
    self_hosted: bool = False  # then the step is manual: update the connector deployment's secret
    deployment_secret: str | None = None  # e.g. "k8s secret baton-buildkite/api-token", for the manual text
    sync_timeout_s: int = Field(300, ge=10, le=3600)

    _ref = field_validator("client_secret")(lambda cls, v: _check_ref(v))

    # ConductorOne's Go SDK (ConductorOne/conductorone-sdk-go, extra_sdk_options.go, commit 2eb88f849f45):
    # NormalizeTenant (lines 315-349) and ParseClientID (lines 351-374). The token host, and the JWT's aud, come
    # from the client id ``<name>@<host>/pcc``; the tenant must name the same host. base_url only moves requests.
    @staticmethod
    def normalize_tenant(raw: str) -> str:
        """NormalizeTenant's host[:port], or "": lower-cased; "acme" -> "acme.conductor.one"; "https://h:p" -> "h:p"."""
        from urllib.parse import urlsplit

        text = raw.lower()
        if "://" in text:
            host = urlsplit(text).netloc.rpartition("@")[2]
        else:
            host = text if "." in text else text + ".conductor.one"
        parts = host.split(".")
        if len(parts) == 3 and parts[1:] == ["conductor", "one"] and not parts[0]:
            return ""  # the SDK's empty tenant: no server URL
        return host if re.fullmatch(r"(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?", host) else ""

    @classmethod
    def client_id_host(cls, client_id: str) -> str:
        """ParseClientID's host: ``<name>@<host>/<rest>`` (split at the first @, then the first /), or "" (invalid)."""
        _, at, rest = client_id.partition("@")
        host, slash, _ = rest.partition("/")
        return cls.normalize_tenant(host) if at and slash else ""

    @model_validator(mode="after")
    def _client_id_names_the_tenant(self) -> ConductorOneConnector:
        tenant_host = self.normalize_tenant(self.tenant)
        if not tenant_host:
            raise ValueError(f"tenant = {self.tenant!r} is not a ConductorOne tenant; write it as 'acme' "
                             "(for https://acme.conductor.one) or as the tenant's https:// address")
        client_host = self.client_id_host(self.client_id)
        if not client_host:
            raise ValueError(f"client_id = {self.client_id!r} is not a ConductorOne client id (NAME@TENANT.conductor.one/pcc); "
                             "copy it whole from the API client ConductorOne created")
        if client_host != tenant_host:
            raise ValueError(f"client_id {self.client_id!r} is an API client of {client_host}, but tenant = {self.tenant!r} "
                             f"is {tenant_host}; set tenant to {client_host.removesuffix('.conductor.one')!r}, "
                             f"or use an API client of {tenant_host}")
        return self


class AzurePipelinesRun(_Model):
    """A consumer check: once the stores hold the new token, queue a run of an Azure Pipelines pipeline that uses it
    (Runs - Run Pipeline, api-version 7.1); the old token is revoked only once a run queued after that succeeded."""

    kind: Literal["azure-pipelines-run"]
    name: str | None = None  # the pipeline's name, for messages (default: its id)
    organization: str  # https://dev.azure.com/ORGANIZATION (Azure DevOps Server: the collection)
    project: str  # the project's name or id
    pipeline_id: int = Field(ge=1, le=2**31 - 1)  # the pipeline's definitionId (its URL shows it)
    branch: str | None = Field(None, pattern=r"^[^\s~^:?*\[\\]+$")  # "main" or "refs/heads/main"; default: the pipeline's
    # a PAT allowed to queue the pipeline: Build: Read & execute (vso.build_execute), and 'Queue builds' on the pipeline
    token: SecretRef
    base_url: str | None = None  # default https://dev.azure.com (the sandbox; Azure DevOps Server: https://HOST/tfs)
    # a variable the pipeline lets users set at queue time: keyturn sets it to the rotation id, and after a crash
    # finds the run it queued by it instead of queueing another
    rotation_variable: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")
    timeout_s: int = Field(900, ge=0, le=3600)  # how long the step waits for its run (0: queue it; the gate waits)

    _ref = field_validator("token")(lambda cls, v: _check_ref(v))


class KeyringStore(_Model):
    kind: Literal["keyring"]
    name: str | None = None
    service: str
    username: str


class Manual(_Model):
    kind: Literal["manual"]
    name: str | None = None
    text: str
    # false: a reminder (KEDA may keep the old credential until its operator restarts): offered to tick, listed as still
    # to do when not ticked, never holding up the rotation; true (default): the rotation waits for the tick
    required: bool = True


FollowUp = Annotated[
    FluxSopsSecret | KeyVaultSecretVersion | AwsSsmParameter | ConductorOneConnector | AzurePipelinesRun | KeyringStore | Manual,
    Field(discriminator="kind"),
]
STORE_KINDS = frozenset({"keyvault-secret-version", "aws-ssm-parameter", "keyring"})


class Target(_Model):
    account: str
    token_name: str = Field(min_length=1, max_length=100)
    description: str | None = None
    # what kind of token (the platform's default when omitted): Azure DevOps "pat"; Buildkite
    # "cluster-agent-token", "unclustered-agent-token" or "api-access-token"
    token_type: Literal["pat", "cluster-agent-token", "unclustered-agent-token", "api-access-token"] | None = None
    scopes: list[str] | None = None
    preset: str | None = None
    validity_days: int | None = Field(90, ge=1, le=365)  # None: no expiry (Buildkite agent tokens)
    all_orgs: bool = False
    cluster: str | None = None  # Buildkite cluster (name or id) of a cluster agent token
    allowed_ips: list[str] = Field(default_factory=list)  # Buildkite: CIDRs an agent token may register from
    old_token: SecretRef | None = None  # Buildkite API access token: the current value (revoked with itself)
    new_token: SecretRef | None = None  # a token made by hand (no API mints it): where --no-input reads it
    token_uuid: str | None = None  # Jenkins: the uuid of the current token (no API lists them; keyturn keeps it)
    revoke_after: str = "0"
    runbook: str | None = None  # Markdown, or a path to a Markdown file
    follow_ups: list[FollowUp] = Field(default_factory=list)

    @field_validator("revoke_after")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    _refs = field_validator("old_token", "new_token")(lambda cls, v: v if v is None else _check_ref(v))

    @model_validator(mode="before")
    @classmethod
    def _no_default_expiry_for_buildkite(cls, data: Any) -> Any:
        # 90 days is Azure DevOps' habit; Buildkite tokens never expire unless asked to
        if isinstance(data, dict) and data.get("token_type") not in (None, "pat") and "validity_days" not in data:
            data = {**data, "validity_days": None}
        return data

    @model_validator(mode="after")
    def _scopes_or_preset(self) -> Target:
        # whether scopes are required depends on the platform: Config._references checks that
        if self.scopes is not None and self.preset is not None:
            raise ValueError("give scopes or preset, not both")
        if self.token_type == "cluster-agent-token" and not self.cluster:  # noqa: S105 (a type name)
            raise ValueError("a cluster agent token needs cluster = 'NAME or id'")
        return self

    @property
    def revoke_delay(self) -> timedelta:
        return parse_duration(self.revoke_after)


class Preset(_Model):
    label: str | None = None
    scopes: list[str] = Field(min_length=1)


_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def unsafe_target_name(name: str) -> str | None:
    """Why a target name cannot name a lock file, a journal entry and a git branch (``git check-ref-format``), or None."""
    if not _TARGET_NAME.fullmatch(name):
        return "must start with a letter or digit and hold at most 63 letters, digits, '.', '_' or '-'"
    if ".." in name or name.endswith((".", ".lock")):
        return "may not contain '..' or end with '.' or '.lock'"
    return None


class Config(_Model):
    settings: Settings = Settings()
    keymap: dict[str, str] = Field(default_factory=dict)
    vaults: dict[str, Vault] = Field(default_factory=dict)
    accounts: dict[str, Account] = Field(default_factory=dict)
    targets: dict[str, Target] = Field(default_factory=dict)
    presets: dict[str, Preset] = Field(default_factory=dict)
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _references(self) -> Config:
        for name, target in self.targets.items():
            if problem := unsafe_target_name(name):
                raise _RefError(f"targets.{name}", f"the target name {problem}; use letters, digits, '.', '_' and '-' (it names files and git branches)")
            if target.account not in self.accounts:
                raise _RefError(f"targets.{name}.account", f"no account {target.account!r}; define [accounts.{target.account}] or fix the name")
            platform = self.accounts[target.account].platform
            agent = target.token_type in ("cluster-agent-token", "unclustered-agent-token")
            # a Jenkins API token carries all of its user's permissions: no scopes to choose
            if target.scopes is None and target.preset is None and not agent and platform != "jenkins":
                raise _RefError(f"targets.{name}", "give scopes = [...] or preset = 'NAME'")
            for i, step in enumerate(target.follow_ups):
                if isinstance(step, KeyVaultSecretVersion) and step.vault not in self.vaults:
                    raise _RefError(f"targets.{name}.follow_ups.{i}.vault", f"no vault {step.vault!r}; define [vaults.{step.vault}]")
        for where, ref in self._secret_refs():
            if ref.startswith("vault:") and ref[6:].split("/")[0] not in self.vaults:
                raise _RefError(where, f"secret reference {ref!r} names no configured vault; define [vaults.{ref[6:].split('/')[0]}]")
        return self

    def _secret_refs(self) -> list[tuple[str, str]]:
        refs = []
        for name, acc in self.accounts.items():
            for key in ("email", "password", "api_token"):
                if (v := getattr(acc, key)) is not None:
                    refs.append((f"accounts.{name}.{key}", v))
        for name, vault in self.vaults.items():
            if vault.client_secret:
                refs.append((f"vaults.{name}.client_secret", vault.client_secret))
        for name, target in self.targets.items():
            for key in ("old_token", "new_token"):
                if (v := getattr(target, key)) is not None:
                    refs.append((f"targets.{name}.{key}", v))
            for i, step in enumerate(target.follow_ups):
                if isinstance(step, ConductorOneConnector):
                    refs.append((f"targets.{name}.follow_ups.{i}.client_secret", step.client_secret))
                elif isinstance(step, AzurePipelinesRun):
                    refs.append((f"targets.{name}.follow_ups.{i}.token", step.token))
        return refs

    def resolve_path(self, p: Path | str) -> Path:
        """Relative paths in the file are relative to the file's folder."""
        path = Path(p).expanduser()
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        return path


class _RefError(ValueError):
    def __init__(self, key: str, msg: str) -> None:
        self.key = key
        super().__init__(msg)


def _loc(loc: tuple[Any, ...]) -> str:
    # drop pydantic's union-member tags ("flux-sops-secret") and function names from the key path
    parts: list[str] = []
    for i, p in enumerate(loc):
        after_index = i > 0 and isinstance(loc[i - 1], int)
        if isinstance(p, str) and ((after_index and p in _KIND_TAGS) or p.startswith("function-")):
            continue
        parts.append(str(p))
    return ".".join(parts) or "(top level)"


_KIND_TAGS = {
    "flux-sops-secret", "keyvault-secret-version", "aws-ssm-parameter", "conductorone-connector", "keyring", "manual", "azure-pipelines-run",
}


def _friendly(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling"
    if kind == "missing":
        return "missing; add it"
    if kind == "union_tag_invalid":
        return f"unknown follow-up kind; use one of {', '.join(sorted(_KIND_TAGS))}"
    if kind == "union_tag_not_found":
        return "follow-up without kind; add kind = '...'"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def load_config(path: Path) -> Config:
    """Read and validate a config file, or raise ConfigError with a one-line message."""
    return parse_config(read_config(path), path)


def parse_config(data: dict[str, Any], path: Path | None = None) -> Config:
    where = str(path) if path else "<config>"
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_err = err.get("ctx", {}).get("error")
        if isinstance(ctx_err, _RefError):
            raise ConfigError(f"{where}: {ctx_err.key}: {ctx_err}") from None
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{where}: {_loc(err['loc'])}: {_friendly(err)}{more}") from None
    return config.model_copy(update={"path": path.resolve() if path else None})
