"""A Postman v2.1 collection generated from the service's own OpenAPI document at run time.

The OpenAPI gives each request its method, path, parameters, security and documented answers;
api/postman_walkthrough.py gives the order, the bodies and the ids carried from one answer to
the requests after it. An operation the walkthrough does not name still appears (in a folder
of its tag, after the walkthrough, its body sketched from its schema), and a step whose
operation is gone is left out, so the collection follows the OpenAPI as it changes.
"""

from __future__ import annotations

import json
from typing import Any

from api.postman_examples import DEFAULTS, PATH_VARIABLES, Step
from api.postman_walkthrough import WALKTHROUGH
from mktx.settings import get_settings

SCHEMA_V21 = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
BASE_PATH = "/api/v1/mkt-x"
METHODS = ("get", "post", "put", "patch", "delete")
RETRIES = 40  # a step's `until`: at most this many more tries, 250 ms apart

DESCRIPTION = """\
{summary}

{description}

Generated from the service's OpenAPI document (`GET {base}/postman-collection.json`, or
`mkt-x postman`). Set `token` (the bearer token `make dev` prints) and run the collection from
top to bottom: connecting an account, creating templates, segments, campaigns and flows, and
receiving webhook deliveries store the ids the later requests use (`accountId`,
`contactId`, `conversationId`, `templateId`, `segmentId`, `campaignId`, `flowId`, ...); the
last folder deletes what the run created and disconnects the account. Every request checks
the status the OpenAPI documents for it.

Against `make dev` nothing else is needed: `xOauthToken` / `xOauthTokenSecret` are the
sandbox's demo X account, `consumerSecret` is the development consumer secret that signs the
webhook deliveries (pre-request script: `x-twitter-webhooks-signature: sha256=` +
base64(HMAC-SHA256(consumerSecret, raw body))), and one request talks to the X sandbox itself
(`sandboxUrl`) to have X deliver a DM with a photo. `baseUrl` is the server's origin; every
request's path starts with `{base}` (the probes and `/r/{{code}}` are at the root). The API
takes {rate} requests a minute per merchant (`MKTX_RATE_LIMIT_PER_MINUTE`) and the collection
sends most of that: leave a minute between two runs.
"""


def _key(method: str, path: str) -> str:
    return f"{method.upper()} {path.removeprefix(BASE_PATH) or '/'}"


def _example(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """A plausible body from a JSON schema, for operations the walkthrough does not name."""
    if depth > 6:
        return None
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _example(components.get(name, {}), components, depth + 1)
    if schema.get("examples"):
        return schema["examples"][0]
    for key in ("example", "default", "const"):
        if key in schema:
            return schema[key]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _example(options[0], components, depth + 1) if options else None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _example(sub, components, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return [_example(schema.get("items", {}), components, depth + 1)]
    return {"string": "", "integer": 0, "number": 0, "boolean": True}.get(kind or "")


def _documented(operation: dict[str, Any]) -> list[int]:
    """The answers that mean success: documented 2xx and 3xx (FastAPI's default is 200)."""
    codes = [int(c) for c in operation.get("responses", {}) if c.isdigit() and 200 <= int(c) < 400]
    return sorted(codes) or [200]


def _parameters(operation: dict[str, Any], openapi: dict[str, Any]) -> list[dict[str, Any]]:
    """The operation's parameters, `$ref`s to components/parameters resolved."""
    shared = openapi.get("components", {}).get("parameters", {})
    found = []
    for param in operation.get("parameters") or []:
        if "$ref" in param:
            param = shared.get(param["$ref"].rsplit("/", 1)[-1], {})
        if "name" in param and "in" in param:
            found.append(param)
    return found


def _url(path: str, parameters: list[dict[str, Any]], step: Step) -> dict[str, Any]:
    segments = [
        f":{seg[1:-1]}" if seg.startswith("{") and seg.endswith("}") else seg
        for seg in path.strip("/").split("/")
    ]
    query = []
    for param in parameters:
        if param.get("in") != "query":
            continue
        name = param["name"]
        value = step.query.get(name)
        entry = {"key": name, "value": value or "", "disabled": value is None}
        if param.get("description"):
            entry["description"] = param["description"]
        query.append(entry)
    variables = [
        {
            "key": p["name"],
            "value": step.path.get(
                p["name"], f"{{{{{PATH_VARIABLES.get(p['name'], p['name'])}}}}}"
            ),
        }
        for p in parameters
        if p.get("in") == "path"
    ]
    raw_query = "&".join(f"{q['key']}={q['value']}" for q in query if not q["disabled"])
    url: dict[str, Any] = {
        "raw": "{{baseUrl}}/" + "/".join(segments) + (f"?{raw_query}" if raw_query else ""),
        "host": ["{{baseUrl}}"],
        "path": segments,
    }
    if query:
        url["query"] = query
    if variables:
        url["variable"] = variables
    return url


def _js(source: str) -> list[str]:
    return [line for line in source.strip("\n").splitlines()]


def _tests(label: str, codes: list[int], step: Step) -> str:
    """The test script: the documented status, then the ids saved for the later requests."""
    lines = [
        "let body;",
        "try { body = pm.response.json(); } catch (e) { body = undefined; }",
        f"pm.test({json.dumps(f'{label} answers as documented: {codes}')}, () => "
        f"pm.expect(pm.response.code).to.be.oneOf({json.dumps(codes)}));",
    ]
    saves = [
        f"pm.test({json.dumps('saves ' + name)}, () => {{\n"
        f"  const value = {expression};\n"
        f"  pm.expect(value, {json.dumps(name)}).to.exist;\n"
        f"  pm.collectionVariables.set({json.dumps(name)}, String(value));\n"
        "});"
        for name, expression in step.saves.items()
    ]
    checks = [*saves, *_js(step.checks)]
    if step.until is None:
        return "\n".join(lines + checks)
    # Sent again until it holds: the same request, by id, after a pause. The count lives in a
    # collection variable: local ones do not outlive one request.
    tries = json.dumps(f"tries: {label}")
    return "\n".join(
        [
            *lines,
            f"const tries = Number(pm.collectionVariables.get({tries}) || 0);",
            "let ready = false;",
            f"try {{ ready = Boolean({step.until}); }} catch (e) {{ ready = false; }}",
            f"if (!ready && tries < {RETRIES}) {{",
            f"  pm.collectionVariables.set({tries}, tries + 1);",
            "  postman.setNextRequest(pm.info.requestId);",
            "  setTimeout(() => {}, 250);",
            "} else {",
            f"  pm.collectionVariables.unset({tries});",
            f"  pm.test({json.dumps(f'{label}: {step.until}')}, () => pm.expect(ready).to.be.true);",
            *("  " + line for line in "\n".join(checks).splitlines()),
            "}",
        ]
    )


def _body(step: Step, operation: dict[str, Any], components: dict[str, Any]) -> str | None:
    if step.body is not None:
        return step.body if isinstance(step.body, str) else json.dumps(step.body, indent=2)
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return json.dumps(_example(schema, components), indent=2) if schema else None


def _script(listen: str, source: str) -> dict[str, Any]:
    return {"listen": listen, "script": {"type": "text/javascript", "exec": _js(source)}}


def _item(
    step: Step, method: str, path: str, operation: dict[str, Any], components: dict[str, Any]
) -> dict[str, Any]:
    label = _key(method, path)
    codes = [step.status] if step.status is not None else _documented(operation)
    if step.url is not None:  # outside this API: the sandbox's control API
        url: dict[str, Any] | str = step.url
    else:
        url = _url(path, operation.get("parameters", []), step)
    request: dict[str, Any] = {
        "method": method.upper(),
        "header": [],
        "url": url,
        "description": operation.get("description") or operation.get("summary", ""),
    }
    raw = _body(step, operation, components)
    if raw is not None:
        request["header"].append({"key": "Content-Type", "value": step.content_type})
        request["body"] = {"mode": "raw", "raw": raw}
        if step.content_type == "application/json":
            request["body"]["options"] = {"raw": {"language": "json"}}
    if not operation.get("security"):
        request["auth"] = {"type": "noauth"}
    events = [_script("test", _tests(label, codes, step))]
    if step.prerequest:
        events.insert(0, _script("prerequest", step.prerequest))
    item: dict[str, Any] = {
        "name": step.name or operation.get("summary") or label,
        "request": request,
        "event": events,
    }
    if not step.follow_redirects:
        item["protocolProfileBehavior"] = {"followRedirects": False}
    return item


def _sandbox_url() -> str:
    """Where `make dev` runs the X sandbox (MKTX_SANDBOX_PORT, inherited by the API)."""
    return f"http://127.0.0.1:{get_settings().sandbox_port}"


def _operations(openapi: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for path, operations in openapi.get("paths", {}).items():
        for method, operation in operations.items():
            if method in METHODS and isinstance(operation, dict):
                resolved = {**operation, "parameters": _parameters(operation, openapi)}
                found.setdefault(_key(method, path), (method, path, resolved))
    return found


def postman_collection(
    openapi: dict[str, Any], base_url: str, variables: dict[str, str] | None = None
) -> dict[str, Any]:
    """The collection; `base_url` is the server's origin (the paths carry the base path),
    `variables` override the collection variables' defaults (e.g. `sandboxUrl`)."""
    components = openapi.get("components", {}).get("schemas", {})
    operations = _operations(openapi)
    named: set[str] = set()
    folders: list[dict[str, Any]] = []
    for folder, steps in WALKTHROUGH:
        items = []
        for step in steps:
            if step.url is not None:
                method, path = step.key.split(" ", 1)
                items.append(_item(step, method.lower(), path, {"summary": step.name}, {}))
            elif step.key in operations:
                named.add(step.key)
                items.append(_item(step, *operations[step.key], components))
        if items:
            folders.append({"name": folder, "item": items})
    rest: dict[str, list[dict[str, Any]]] = {}
    for key, (method, path, operation) in operations.items():
        if key not in named:
            tag = (operation.get("tags") or ["other"])[0]
            rest.setdefault(tag, []).append(_item(Step(key), method, path, operation, components))
    # Not in the walkthrough: before the cleanup folder, which must stay last.
    cleanup = folders.pop() if folders and folders[-1]["name"] == "cleanup" else None
    folders += [
        {"name": f"{tag} (not in the walkthrough)", "item": items} for tag, items in rest.items()
    ]
    if cleanup is not None:
        folders.append(cleanup)
    info = openapi.get("info", {})
    # The route hands over its own base (origin + base path): the paths carry the base path.
    origin = base_url.rstrip("/").removesuffix(BASE_PATH)
    values = {"baseUrl": origin, "sandboxUrl": _sandbox_url(), **DEFAULTS, **(variables or {})}
    saved = sorted({name for _, steps in WALKTHROUGH for step in steps for name in step.saves})
    return {
        "info": {
            "name": info.get("title", "mkt-x"),
            "description": DESCRIPTION.format(
                summary=info.get("summary", ""),
                description=info.get("description", ""),
                base=BASE_PATH,
                rate=get_settings().rate_limit_per_minute,
            ),
            "schema": SCHEMA_V21,
        },
        "auth": {
            "type": "bearer",
            "bearer": [{"key": "token", "value": "{{token}}", "type": "string"}],
        },
        "variable": [{"key": k, "value": v} for k, v in values.items()]
        + [{"key": name, "value": ""} for name in saved if name not in values],
        "item": folders,
    }
