"""The OpenAPI document, complete: every error status a route can answer, and the links that
carry an id from where it is made to where it is used.

Routes declare their own errors (`responses=error_responses(...)`: 400, 409, 415, 502, ...).
The statuses that follow from how a route is built are added here, in one place, so that no
route can forget one:

- 401 and 429 where the route authenticates (`authenticate`: bearer token, rate limit);
- 403 where it requires a permission (`require`: a token whose roles lack it);
- 404 where the path holds an id (no such resource for this merchant);
- 413 where it takes a body (api/body_limit.py), 422 where it takes any input;
- 503 where it needs Temporal (`TemporalDep`) or the database (a session, or the rate limit
  its authentication keeps there: api/errors.py), 500 everywhere (api/middleware.py).

Links follow one rule: a path parameter `{fooId}` is an id of the collection `/…/foos` whose
item route is `/…/foos/{fooId}`: a `POST` there answers `data.id`, a `GET` there (a page)
`data[0].id`, and each links to every operation with `{fooId}` in its path."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from api.deps import authenticate, get_session, get_temporal
from api.envelope import ErrorBody

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}

_DESCRIPTIONS = {
    401: "Missing, malformed or expired bearer token",
    403: "The token's roles do not allow this",
    404: "No such resource for this merchant",
    413: "The body is over the size limit",
    422: "Invalid input, named in `details.field` (a body that is not valid JSON included)",
    429: "Rate limit exceeded: retry after `Retry-After` seconds",
    500: "Unexpected error: quote `details.requestId` when reporting it",
    503: "A service it needs (the database, or the workflow service Temporal) is unavailable or "
    "every database connection is busy: retry later (after `Retry-After` seconds when given)",
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds until the rate limit window frees a request",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}

_METHODS = ("get", "put", "post", "delete", "patch")


def install_openapi(app: FastAPI) -> None:
    """`app.openapi()` (`/openapi.json`, `/docs`) answers the completed document, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            complete(document, app.routes)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], routes: list[Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
    for context in iter_route_contexts(routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not context.include_in_schema:
            continue
        for method in context.methods or ():
            operation = document["paths"].get(context.path_format, {}).get(method.lower())
            if operation is not None:
                _add_errors(operation, _statuses(route, operation))
    _add_links(document["paths"])


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _statuses(route: APIRoute, operation: dict[str, Any]) -> set[int]:
    calls = set(_calls(route.dependant))
    where = {parameter["in"] for parameter in operation.get("parameters", [])}
    statuses = {500}
    if authenticate in calls:
        statuses |= {401, 429}
    if any(getattr(call, "permission", None) is not None for call in calls):
        statuses.add(403)
    if calls & {get_temporal, get_session, authenticate}:
        statuses.add(503)
    if "path" in where:
        statuses |= {404, 422}
    if where:
        statuses.add(422)
    if "requestBody" in operation:
        statuses |= {413, 422}
    return statuses


def _add_errors(operation: dict[str, Any], statuses: set[int]) -> None:
    responses = operation.setdefault("responses", {})
    for status in sorted(statuses):
        answer = responses.setdefault(
            str(status),
            {
                "description": _DESCRIPTIONS[status],
                "content": {"application/json": {"schema": _ERROR_REF}},
            },
        )
        if status == 429:
            answer.setdefault("headers", _RETRY_AFTER)


_PARAMETER = re.compile(r"\{([^}]+)\}")
_FIRST_ROW = "$response.body#/data/0/id"


def _add_links(paths: dict[str, Any]) -> None:
    collections = _collections(paths)
    for collection, parameter in collections.items():
        # A POST's created resource; a page's first row.
        for method, source in (("post", "$response.body#/data/id"), ("get", _FIRST_ROW)):
            producer = paths[collection].get(method)
            if producer is None:
                continue
            links = _links_to(paths, collection, parameter, source)
            if links:
                ok = producer.get("responses", {}).get("200")
                if ok is not None:
                    ok.setdefault("links", {}).update(links)


def _collections(paths: dict[str, Any]) -> dict[str, str]:
    """`/templates` -> `templateId`: collection paths whose item route exists."""
    found: dict[str, str] = {}
    for path in paths:
        match = re.fullmatch(r"(.*/([A-Za-z]+)s)/\{([A-Za-z]+Id)\}", path)
        if match and match.group(3) == match.group(2) + "Id" and match.group(1) in paths:
            found[match.group(1)] = match.group(3)
    return found


def _links_to(
    paths: dict[str, Any], collection: str, parameter: str, source: str
) -> dict[str, Any]:
    producer_parameters = set(_PARAMETER.findall(collection))
    links: dict[str, Any] = {}
    for path, item in paths.items():
        names = _PARAMETER.findall(path)
        if parameter not in names:
            continue
        for method in _METHODS:
            target = item.get(method)
            if target is None or "operationId" not in target:
                continue
            values = {parameter: source}
            # The collection's own ids (`/automation/flows/{flowId}/executions`) carry over.
            values |= {
                name: f"$request.path.{name}" for name in names if name in producer_parameters
            }
            links[target["operationId"]] = {
                "operationId": target["operationId"],
                "parameters": values,
            }
    return links
