"""A small validator of JSON values against Swagger 2.0 definitions.

Enough of JSON Schema for the vendored contracts: ``$ref`` to ``#/definitions/X``, ``allOf``,
``type`` (object, array, string, integer, number, boolean), ``properties``,
``additionalProperties``, ``required``, ``enum``, ``minimum``/``maximum``, ``minLength``/``maxLength``,
``readOnly`` and the formats ``uuid``, ``date-time``, ``int32`` and ``unixtime``.

Unknown properties are flagged (the real services mostly ignore them; the sandbox is stricter so
that a client bug shows up in tests). The emulators validate both what they receive (requests,
``direction="request"``: readOnly properties are errors) and what they send (responses,
``direction="response"``).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

CONTRACTS = Path(__file__).with_name("contracts")
TOKENS_SPEC = CONTRACTS / "azure-devops" / "tokens-7.2" / "tokens.json"
SECRETS_SPEC = CONTRACTS / "azure-keyvault" / "secrets.7.5.json"

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE_TIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:\d{2})$"
)

Direction = Literal["request", "response"]


def parse_date_time(text: str) -> datetime:
    """Parse an RFC 3339 date-time (as .NET writes it too: up to 7 fraction digits) to an aware UTC datetime.

    Raises ValueError for anything else, including a date-time without a time zone.
    """
    m = _DATE_TIME.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time with a time zone (e.g. 2026-01-31T12:00:00Z)")
    frac = (m.group("frac") or "0")[:6].ljust(6, "0")
    tz = m.group("tz").upper()
    tz = "+00:00" if tz == "Z" else tz
    value = datetime.fromisoformat(f"{m.group('date')}T{m.group('time')}.{frac}{tz}")
    return value.astimezone(UTC)


def format_date_time(value: datetime) -> str:
    """A UTC datetime as Azure DevOps writes it: 7 fraction digits trimmed of trailing zeros, then Z."""
    value = value.astimezone(UTC)
    frac = f"{value.microsecond:06d}0".rstrip("0")
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


class SwaggerSpec:
    """One Swagger 2.0 document; ``validate(definition, value)`` returns a list of problems (empty = valid)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8-sig"))
        self.definitions: dict[str, Any] = self.doc.get("definitions", {})

    def validate(
        self, definition: str, value: Any, *, direction: Direction = "request", nullable: bool = False
    ) -> list[str]:
        """Check ``value`` against ``#/definitions/<definition>``.

        ``nullable``: accept JSON null wherever a value is allowed (the Azure DevOps examples
        return ``"token": null``, ``"targetAccounts": null`` and ``"patToken": null``).
        """
        if definition not in self.definitions:
            raise KeyError(f"{self.path.name} has no definition {definition!r}")
        errors: list[str] = []
        self._check({"$ref": f"#/definitions/{definition}"}, value, "$", direction, nullable, errors)
        return errors

    def schema(self, definition: str) -> dict[str, Any]:
        return self._resolve({"$ref": f"#/definitions/{definition}"})

    # -- internals ----------------------------------------------------------------------------

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/definitions/"):
                raise ValueError(f"unsupported $ref {ref!r}")
            extra = {k: v for k, v in schema.items() if k not in ("$ref", "description")}
            schema = dict(self.definitions[ref.removeprefix("#/definitions/")])
            schema.update(extra)
            seen += 1
            if seen > 50:
                raise ValueError(f"$ref loop at {ref!r}")
        if "allOf" in schema:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            props = dict(merged.get("properties", {}))
            required = list(merged.get("required", []))
            for part in schema["allOf"]:
                sub = self._resolve(part)
                props.update(sub.get("properties", {}))
                required.extend(sub.get("required", []))
                merged.setdefault("type", sub.get("type"))
            merged["properties"] = props
            if required:
                merged["required"] = required
            schema = merged
        return schema

    def _check(
        self, schema: dict[str, Any], value: Any, where: str, direction: Direction, nullable: bool, errors: list[str]
    ) -> None:
        schema = self._resolve(schema)
        if value is None:
            if not nullable:
                errors.append(f"{where}: null is not allowed here")
            return
        kind = schema.get("type")
        if kind is None and "properties" in schema:
            kind = "object"
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
            return
        if kind == "object":
            self._check_object(schema, value, where, direction, nullable, errors)
        elif kind == "array":
            if not isinstance(value, list):
                errors.append(f"{where}: expected an array, got {_json_type(value)}")
                return
            items = schema.get("items", {})
            for i, item in enumerate(value):
                self._check(items, item, f"{where}[{i}]", direction, nullable, errors)
        elif kind == "string":
            if not isinstance(value, str):
                errors.append(f"{where}: expected a string, got {_json_type(value)}")
                return
            self._check_string(schema, value, where, errors)
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                errors.append(f"{where}: expected an integer, got {_json_type(value)}")
                return
            self._check_number(schema, value, where, errors)
            if schema.get("format") == "int32" and not -(2**31) <= value < 2**31:
                errors.append(f"{where}: {value} does not fit in int32")
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors.append(f"{where}: expected a number, got {_json_type(value)}")
                return
            self._check_number(schema, value, where, errors)
        elif kind == "boolean":
            if not isinstance(value, bool):
                errors.append(f"{where}: expected a boolean, got {_json_type(value)}")

    def _check_object(
        self, schema: dict[str, Any], value: Any, where: str, direction: Direction, nullable: bool, errors: list[str]
    ) -> None:
        if not isinstance(value, dict):
            errors.append(f"{where}: expected an object, got {_json_type(value)}")
            return
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: required property {name!r} is missing")
        for name, item in value.items():
            sub_where = f"{where}.{name}"
            if name in props:
                sub = props[name]
                if direction == "request" and (sub.get("readOnly") or self._resolve(sub).get("readOnly")):
                    errors.append(f"{sub_where}: read-only property; a client must not send it")
                    continue
                self._check(sub, item, sub_where, direction, nullable, errors)
            elif isinstance(extra, dict):
                self._check(extra, item, sub_where, direction, nullable, errors)
            elif extra is True:
                continue
            else:
                errors.append(f"{sub_where}: unknown property (the contract defines {sorted(props)})")

    @staticmethod
    def _check_string(schema: dict[str, Any], value: str, where: str, errors: list[str]) -> None:
        fmt = schema.get("format")
        if fmt == "uuid" and not _UUID.match(value):
            errors.append(f"{where}: {value!r} is not a uuid")
        elif fmt == "date-time":
            try:
                parse_date_time(value)
            except ValueError as exc:
                errors.append(f"{where}: {exc}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{where}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: does not match {schema['pattern']!r}")

    @staticmethod
    def _check_number(schema: dict[str, Any], value: float, where: str, errors: list[str]) -> None:
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} is above the maximum {schema['maximum']}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@cache
def tokens_spec() -> SwaggerSpec:
    """The Azure DevOps PAT Lifecycle API 7.2 swagger (vendored)."""
    return SwaggerSpec(TOKENS_SPEC)


@cache
def secrets_spec() -> SwaggerSpec:
    """The Key Vault secrets 7.5 swagger (vendored)."""
    return SwaggerSpec(SECRETS_SPEC)
