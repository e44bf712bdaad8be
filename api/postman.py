"""A Postman v2.1 collection generated from the service's own OpenAPI schema."""

from __future__ import annotations

import json
from typing import Any

SCHEMA_V21 = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"


def _example(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """A plausible example body from a JSON schema (enough to edit, not a faithful generator)."""
    if depth > 6:
        return None
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _example(components.get(name, {}), components, depth + 1)
    if "examples" in schema and schema["examples"]:
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _example(options[0], components, depth + 1) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        if not props and isinstance(schema.get("additionalProperties"), dict):
            return {}
        return {name: _example(sub, components, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return [_example(schema.get("items", {}), components, depth + 1)]
    return {"string": "string", "integer": 0, "number": 0, "boolean": True}.get(kind or "")


def _url(path: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    segments = [
        f":{seg[1:-1]}" if seg.startswith("{") and seg.endswith("}") else seg
        for seg in path.strip("/").split("/")
    ]
    query = [
        {"key": p["name"], "value": "", "disabled": not p.get("required", False)}
        for p in parameters
        if p.get("in") == "query"
    ]
    variables = [{"key": p["name"], "value": ""} for p in parameters if p.get("in") == "path"]
    url: dict[str, Any] = {
        "raw": "{{baseUrl}}/" + "/".join(segments),
        "host": ["{{baseUrl}}"],
        "path": segments,
    }
    if query:
        url["query"] = query
    if variables:
        url["variable"] = variables
    return url


def postman_collection(openapi: dict[str, Any], base_url: str) -> dict[str, Any]:
    components = openapi.get("components", {}).get("schemas", {})
    folders: dict[str, list[dict[str, Any]]] = {}
    for path, operations in openapi.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            request: dict[str, Any] = {
                "method": method.upper(),
                "header": [{"key": "Content-Type", "value": "application/json"}],
                "url": _url(path, operation.get("parameters", [])),
                "description": operation.get("description") or operation.get("summary", ""),
            }
            body_schema = (
                operation.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema")
            )
            if body_schema:
                request["body"] = {
                    "mode": "raw",
                    "raw": json.dumps(_example(body_schema, components), indent=2),
                    "options": {"raw": {"language": "json"}},
                }
            if not operation.get("security") and "security" in operation:
                request["auth"] = {"type": "noauth"}
            tag = (operation.get("tags") or ["default"])[0]
            folders.setdefault(tag, []).append(
                {"name": operation.get("summary", f"{method.upper()} {path}"), "request": request}
            )
    return {
        "info": {
            "name": openapi.get("info", {}).get("title", "mkt-x"),
            "description": openapi.get("info", {}).get("description", ""),
            "schema": SCHEMA_V21,
        },
        "auth": {
            "type": "bearer",
            "bearer": [{"key": "token", "value": "{{token}}", "type": "string"}],
        },
        "variable": [
            {"key": "baseUrl", "value": base_url},
            {"key": "token", "value": ""},
        ],
        "item": [{"name": tag, "item": items} for tag, items in sorted(folders.items())],
    }
