"""Every GraphQL document the Buildkite provider sends validates against Buildkite's vendored schema."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from graphql import GraphQLSchema, build_schema, parse, validate

import providers.buildkite as pkg
from providers.buildkite.client import OPERATIONS_DIR, operations

SCHEMA = Path(pkg.__file__).with_name("schema.graphql")
ROOT = Path(__file__).resolve().parents[2]


@cache
def schema() -> GraphQLSchema:
    return build_schema(SCHEMA.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted(OPERATIONS_DIR.glob("*.graphql")), ids=lambda p: p.name)
def test_operation_files_validate(path: Path) -> None:
    assert validate(schema(), parse(path.read_text(encoding="utf-8"))) == []


def test_each_sent_operation_validates_alone() -> None:
    ops = operations()
    assert {"ListClusters", "ClusterAgentTokenCreate", "AgentTokenRevoke", "GetOrganizationId"} <= set(ops)
    for name, text in ops.items():
        assert validate(schema(), parse(text)) == [], name


def test_a_field_the_schema_lacks_fails() -> None:
    bad = parse("query Q($slug: ID!) { organization(slug: $slug) { clusters(first: 1) { edges { node { id createdAt } } } } }")
    errors = validate(schema(), bad)
    assert errors and "createdAt" in errors[0].message


def test_schema_is_the_vendored_copy() -> None:
    import hashlib

    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert digest == "da841bfe580f0e1f32812ccdea1021bdd070f3e6deb4fad432cf27fef54f16b3"


def test_import_is_lazy() -> None:
    code = (
        "import sys, providers.buildkite.provider as p, providers.buildkite.cluster_tokens, "
        "providers.buildkite.agent_tokens, providers.buildkite.api_token; "
        "bad = [m for m in ('gql', 'httpx', 'textual', 'graphql') if m in sys.modules]; "
        "assert not bad, bad; assert p.BUILTIN_PRESETS['conductorone'] == ('read_teams', 'read_organizations', 'read_user')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
