"""The aws-ssm-parameter follow-up in the sandbox (moto's server mode), headless."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.sandbox import Sandbox

pytest.importorskip("moto.server")
ROOT = Path(__file__).resolve().parents[2]


def test_daily_checks_also_lands_in_ssm(tmp_path: Path) -> None:
    import boto3

    with Sandbox(tmp_path / "sb", aws=True) as sb:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYTURN_", "AWS_"))}
        env["PYTHONPATH"] = str(ROOT)
        run = subprocess.run(
            [sys.executable, "-m", "app.cli", "--config", str(sb.config_path), "rotate", "daily-checks", "--no-input", "--json"],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
        )
        assert run.returncode == 0, run.stderr
        new = sb.state.pat(__import__("json").loads(run.stdout)["token"]["id"])
        ssm = boto3.client("ssm", region_name="eu-west-2", endpoint_url=sb.urls["aws"], aws_access_key_id="sandbox", aws_secret_access_key="sandbox")
        param = ssm.get_parameter(Name="/ci/azure-devops-token", WithDecryption=True)["Parameter"]
        assert param["Type"] == "SecureString"
        assert new is not None and param["Value"] == new.value
        assert new.value not in run.stdout + run.stderr
