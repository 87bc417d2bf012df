"""aws-ssm-parameter against moto's server mode over loopback, with the real boto3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.config import parse_config
from app.errors import FollowUpError, KeyturnError
from app.followups import StepContext
from app.followups.aws_ssm import AwsSsmStep
from app.secret import SecretValue
from providers.base import Interaction, TokenInfo

moto_server = pytest.importorskip("moto.server")  # the test extra installs moto; a bare install skips

CANARY = "canary-ssm-0123456789"


@pytest.fixture(scope="module")
def moto_url():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    path = tmp_path / "aws-credentials"
    path.write_text("[keyturn-sandbox]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    return path


def make(tmp_path: Path, url: str, creds: Path, parameter: str, value: str = CANARY) -> tuple[AwsSsmStep, StepContext]:
    spec = {"kind": "aws-ssm-parameter", "parameter": parameter, "endpoint_url": url, "profile": "keyturn-sandbox", "credentials_file": str(creds)}
    data = {
        "accounts": {"bot": {"platform": "azure-devops", "organization": "o"}},
        "targets": {"t": {"account": "bot", "token_name": "t", "preset": "keda", "follow_ups": [spec]}},
    }
    config = parse_config(data, tmp_path / "keyturn.toml")
    target = config.targets["t"]
    step = AwsSsmStep("1-aws-ssm-parameter", target.follow_ups[0])  # type: ignore[arg-type]
    token = TokenInfo("tok-1", "t", datetime.now(UTC) + timedelta(days=30))
    return step, StepContext(config, "rot-1", "t", target, token, SecretValue(value), Interaction(), {})


def test_put_find_recover_and_undo(tmp_path: Path, moto_url: str, creds: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    name = "/buildkite/agent-token-a"
    old_step, old_ctx = make(tmp_path, moto_url, creds, name, value="previous-value")
    old_step.run(old_ctx)
    step, ctx = make(tmp_path, moto_url, creds, name)
    step.preflight(ctx.config)
    assert step.find_done(ctx) is None
    result = step.run(ctx)
    assert result.detail == {"parameter": name, "version": 2}
    assert step.find_done(ctx) == result
    assert step.recover_value(ctx, ctx.value.fingerprint) == ctx.value  # type: ignore[union-attr]
    said = step.undo(ctx, result.detail)
    assert "restored the previous value as version 3" in said
    assert step.recover_value(ctx, SecretValue("previous-value").fingerprint) == SecretValue("previous-value")
    assert CANARY not in caplog.text and CANARY not in said


def test_no_credentials_is_one_line(tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    spec = {"kind": "aws-ssm-parameter", "parameter": "/x", "endpoint_url": moto_url}
    data = {"accounts": {"b": {"platform": "azure-devops", "organization": "o"}}, "targets": {"t": {"account": "b", "token_name": "t", "preset": "keda", "follow_ups": [spec]}}}
    config = parse_config(data, tmp_path / "k.toml")
    step = AwsSsmStep("1", config.targets["t"].follow_ups[0])  # type: ignore[arg-type]
    with pytest.raises(FollowUpError, match="no AWS credentials"):
        step.preflight(config)


def test_plain_http_refused_off_loopback(tmp_path: Path, creds: Path) -> None:
    step, ctx = make(tmp_path, "http://ssm.example.com", creds, "/x")
    with pytest.raises(KeyturnError, match="plain HTTP"):
        step.preflight(ctx.config)
