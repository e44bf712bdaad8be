"""Every route's input is refused with 422 when it holds text PostgreSQL cannot store (NUL,
lone surrogates: services/core/text.py), before the handler or the database sees it.

One route class for every router (`APIRouter(route_class=StorableTextRoute)`): it checks the
path and query parameters, and a JSON body (every string and key, also inside free-form fields
such as `attributes`), naming the field as validation errors do. The body is the one FastAPI
then validates: `Request.json()` keeps what it parsed. X's webhook deliveries are not routed
here: their signature is checked on the raw body first (api/routes/webhooks.py)."""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from services.core.text import first_unstorable, text_problem


def _is_json(content_type: str | None) -> bool:
    # The media types FastAPI itself parses as JSON (fastapi/routing.py).
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _refusal(loc: tuple[Any, ...], reason: str, value: Any) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "unstorable_text", "loc": loc, "msg": reason, "input": value}]
    )


async def refuse_unstorable_text(request: Request) -> None:
    """Raises RequestValidationError at the first parameter or body text that PostgreSQL
    could not store."""
    parameters = [("path", item) for item in request.path_params.items()]
    parameters += [("query", item) for item in request.query_params.multi_items()]
    for location, (name, value) in parameters:
        if isinstance(value, str) and (reason := text_problem(value)) is not None:
            raise _refusal((location, name), reason, value)
    if not _is_json(request.headers.get("content-type")):
        return
    try:
        body = await request.json()
    except ValueError:  # malformed JSON, not UTF-8: FastAPI's own parsing names it
        return
    found = first_unstorable(body, ("body",))
    if found is not None:
        raise _refusal(found[0], found[1], None)


class StorableTextRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            await refuse_unstorable_text(request)
            return await handler(request)

        return checked
