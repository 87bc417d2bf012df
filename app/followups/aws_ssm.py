"""``aws-ssm-parameter``: the new value as a SecureString parameter (Buildkite's recommendation).

boto3 is heavy (~230 ms to import, ~100 MB with moto): it is an optional extra (`keyturn[aws]`),
imported only when this step runs.
"""

from __future__ import annotations

import logging
from typing import Any

from app.config import AwsSsmParameter, Config
from app.errors import FollowUpError
from app.followups import StepContext, StepDefaults, StepResult
from app.net import check_url
from app.secret import SecretValue, fingerprint


class AwsSsmStep(StepDefaults):
    kind = "aws-ssm-parameter"
    is_store = True
    needs_value = True
    manual = False

    def __init__(self, step_id: str, spec: AwsSsmParameter) -> None:
        self.id = step_id
        self.spec = spec
        self.title = spec.name or f"SSM {spec.parameter}"
        self._ssm: Any = None

    def describe(self) -> str:
        return f"overwrite SecureString parameter {self.spec.parameter} in AWS SSM ({self.spec.region})"

    def _client(self, config: Config) -> Any:
        if self._ssm is not None:
            return self._ssm
        try:
            import boto3
            import botocore.session
        except ImportError:
            raise FollowUpError(f"{self.title}: boto3 is not installed", hint="pip install 'keyturn[aws]'") from None
        # botocore logs request and response bodies (the value) at DEBUG: never let it
        for name in ("botocore", "boto3", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
        core = botocore.session.Session()
        if self.spec.credentials_file:
            core.set_config_variable("credentials_file", str(config.resolve_path(self.spec.credentials_file)))
        if self.spec.profile:
            core.set_config_variable("profile", self.spec.profile)
        session = boto3.Session(botocore_session=core, region_name=self.spec.region)
        kwargs: dict[str, Any] = {}
        if self.spec.endpoint_url:
            kwargs["endpoint_url"] = check_url(self.spec.endpoint_url, f"{self.title}: endpoint_url")
        self._ssm = session.client("ssm", **kwargs)
        return self._ssm

    def _fail(self, exc: Exception, action: str, value: SecretValue | None = None) -> FollowUpError:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"{self.title}: {action}"
        if isinstance(exc, NoCredentialsError):
            return FollowUpError(f"{where}: no AWS credentials", hint="run `aws sso login` or set profile")
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            message = str(err.get("Message", ""))
            if value is not None:  # AWS validation errors may quote the rejected field
                message = message.replace(value.reveal(), "********")
            return FollowUpError(f"{where} refused: {err.get('Code', 'error')}: {' '.join(message.split())[:200]}")
        if isinstance(exc, BotoCoreError):
            return FollowUpError(f"{where} failed: {exc.__class__.__name__}")
        return FollowUpError(f"{where} failed: {exc.__class__.__name__}")

    def _current(self, config: Config) -> dict[str, Any] | None:
        ssm = self._client(config)
        try:
            return dict(ssm.get_parameter(Name=self.spec.parameter, WithDecryption=True)["Parameter"])
        except ssm.exceptions.ParameterNotFound:
            return None
        except Exception as exc:
            raise self._fail(exc, "reading the parameter") from None

    def preflight(self, config: Config) -> None:
        self._current(config)  # credentials, reachability and read permission, before anything is minted

    def _result(self, param: dict[str, Any]) -> StepResult:
        return StepResult(f"AWS SSM {self.spec.parameter} version {param['Version']}", {"parameter": self.spec.parameter, "version": param["Version"]})

    def find_done(self, ctx: StepContext) -> StepResult | None:
        fp = ctx.value.fingerprint if ctx.value is not None else ctx.options.get("fingerprint")
        current = self._current(ctx.config)
        if current and fingerprint(str(current.get("Value", ""))) == fp:
            return self._result(current)
        return None

    def run(self, ctx: StepContext) -> StepResult:
        assert ctx.value is not None
        kwargs: dict[str, Any] = {
            "Name": self.spec.parameter,
            "Value": ctx.value.reveal(),
            "Type": "SecureString",
            "Overwrite": True,
            "Description": f"keyturn rotation {ctx.rotation_id} token {ctx.token.id}",
        }
        if self.spec.kms_key_id:
            kwargs["KeyId"] = self.spec.kms_key_id
        try:
            out = self._client(ctx.config).put_parameter(**kwargs)
        except Exception as exc:
            raise self._fail(exc, "writing the parameter", ctx.value) from None
        return StepResult(f"AWS SSM {self.spec.parameter} version {out['Version']}", {"parameter": self.spec.parameter, "version": out["Version"]})

    reads_back = True

    def current_fingerprint(self, ctx: StepContext, detail: dict[str, Any]) -> str | None:
        current = self._current(ctx.config)
        return fingerprint(str(current.get("Value", ""))) if current else None

    def recover_value(self, ctx: StepContext, fp: str) -> SecretValue | None:
        current = self._current(ctx.config)
        if current and fingerprint(str(current.get("Value", ""))) == fp:
            return SecretValue(str(current["Value"]))
        return None


    def undo(self, ctx: StepContext, detail: dict[str, Any]) -> str:
        """Put the previous version's value back (SSM keeps the history)."""
        ssm = self._client(ctx.config)
        ours = detail.get("version")
        try:
            history = []
            for page in ssm.get_paginator("get_parameter_history").paginate(Name=self.spec.parameter, WithDecryption=True):
                history.extend(page["Parameters"])
            earlier = [h for h in history if h["Version"] != ours]
            if not earlier:
                ssm.delete_parameter(Name=self.spec.parameter)
                return f"AWS SSM {self.spec.parameter}: deleted (there was no earlier version)"
            prev = max(earlier, key=lambda h: h["Version"])
            out = ssm.put_parameter(Name=self.spec.parameter, Value=prev["Value"], Type="SecureString", Overwrite=True, Description=f"restored by keyturn from version {prev['Version']}")
        except Exception as exc:
            raise self._fail(exc, "restoring the previous value") from None
        return f"AWS SSM {self.spec.parameter}: restored the previous value as version {out['Version']}"
