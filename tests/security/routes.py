"""The app's route table as the security tests walk it: every (method, path) FastAPI serves,
the routers' prefixes applied, documented or not, so that a route added tomorrow is in
tomorrow's matrix without anyone listing it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import FastAPI, routing
from fastapi.routing import APIRoute

from api.app import create_app
from mktx.settings import Settings

_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with its {placeholders}, as the router declares them
    takes_body: bool  # a JSON body is declared (the import and the webhook read theirs by hand)

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.path)

    def url(self, values: dict[str, str]) -> str:
        return _PARAM.sub(lambda m: values[m.group(1)], self.path)


def route_table(app: FastAPI) -> list[Route]:
    table = []
    for context in routing.iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or context.path is None:
            continue
        for method in sorted(context.methods or ()):
            table.append(Route(method, context.path, route.body_field is not None))
    assert table, "no routes found: has FastAPI changed how it keeps them?"
    return table


def the_apps_routes(settings: Settings) -> list[Route]:
    """The routes of the app these settings make (no lifespan needed to read them)."""
    return route_table(create_app(settings))
