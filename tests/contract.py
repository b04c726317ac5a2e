"""Check response bodies against Adobe's OpenAPI description (shared/reference/aep-segmentation-openapi.yaml).

A small validator of the OpenAPI schema subset the document uses (type, properties, required, items,
additionalProperties, ``$ref``, ``oneOf``): every property the schema declares must have the declared type; extra
properties (our documented extensions) are allowed, as OpenAPI allows them by default.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "reference" / "aep-segmentation-openapi.yaml"
_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


@functools.cache
def spec() -> dict[str, Any]:
    for candidate in (SPEC_PATH, Path("/work/shared/reference/aep-segmentation-openapi.yaml")):
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text())
    raise FileNotFoundError(f"Adobe's OpenAPI description not found at {SPEC_PATH}")


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec()
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    schema = _resolve(schema)
    if "oneOf" in schema:
        options = [errors(value, s, where) for s in schema["oneOf"]]
        return [] if any(not o for o in options) else min(options, key=len)
    kind = schema.get("type") or ("object" if "properties" in schema else None)
    if kind is None:
        return []
    expected = _TYPES[kind]
    if isinstance(value, bool) and kind in ("integer", "number"):
        return [f"{where}: expected {kind}, got a boolean"]
    if not isinstance(value, expected):
        return [f"{where}: expected {kind}, got {type(value).__name__} {value!r:.60}"]
    out: list[str] = []
    if kind == "object":
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{where}: missing required '{name}'")
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                out += errors(value[name], sub, f"{where}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in (schema.get("properties") or {}):
                    out += errors(item, extra, f"{where}.{name}")
    elif kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            out += errors(item, schema["items"], f"{where}[{i}]")
    return out


def response_schema(path: str, method: str = "post", status: str = "200") -> dict[str, Any]:
    response = spec()["paths"][path][method]["responses"][status]
    return response["content"]["application/json"]["schema"]


def request_schema(path: str, method: str = "post") -> dict[str, Any]:
    return spec()["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def assert_matches(value: Any, path: str, method: str = "post", status: str = "200") -> None:
    found = errors(value, response_schema(path, method, status))
    assert not found, f"{method.upper()} {path} {status} does not match Adobe's OpenAPI: {found}"


def assert_schema(value: Any, component: str) -> None:
    found = errors(value, {"$ref": f"#/components/schemas/{component}"})
    assert not found, f"not a {component} of Adobe's OpenAPI: {found}"
