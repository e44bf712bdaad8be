"""The FastAPI application: factory, lifespan and routers."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.body_limit import MAX_JSON_BODY_BYTES, BodyLimitMiddleware
from api.context import AppContext, TemporalConnection
from api.errors import install_error_handlers
from api.middleware import RequestContextMiddleware
from api.openapi import install_openapi
from api.rate_limit import RateLimiter
from api.routes import (
    accounts,
    ai,
    analytics,
    attachments,
    campaigns,
    contacts,
    conversations,
    flows,
    operations,
    redirects,
    segments,
    templates,
    webhooks,
)
from integrations.llm import LLMClient
from integrations.x import x_client_from_settings
from mktx.logs import configure_logging
from mktx.secrets import SecretBox
from mktx.settings import Settings, get_settings
from mktx.tracing import API_SERVICE, configure_tracing
from models.db import make_engine, make_sessionmaker
from services.contacts import importing as contact_import
from services.ingestion import TriggerRegistry
from services.triggers import build_triggers

BASE_PATH = "/api/v1/mkt-x"

# litellm must never fetch its price map at run time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def build_context(settings: Settings) -> AppContext:
    engine = make_engine(
        settings.require_database_url(),
        pool_size=settings.database_pool_size,
        pool_timeout=settings.database_pool_timeout,
    )
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        temporal=TemporalConnection(settings),
        x=x_client_from_settings(settings),
        secrets=SecretBox.from_settings(settings),
        rate_limiter=RateLimiter(engine, settings.rate_limit_per_minute),
        llm=LLMClient(settings),
    )


def create_app(
    settings: Settings | None = None, *, triggers: TriggerRegistry | None = None
) -> FastAPI:
    """The API; `triggers` replaces the registry `build_triggers` makes (tests)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = build_context(settings)
        app.state.context = context
        # The workflows contact events start: the same registry the worker builds.
        app.state.triggers = (
            triggers if triggers is not None else build_triggers(settings, context.sessions)
        )
        # Everything loaded so far lives as long as the process: keep it out of the garbage
        # collector's full passes (some 60 ms each over the imported libraries' objects).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await context.engine.dispose()

    app = FastAPI(
        title="mkt-x",
        summary="Market to and talk with customers over X direct messages.",
        description=(
            "Accounts, contacts, conversations, templates, campaigns, segments, automation "
            "flows and an AI assistant for merchants on X. Every answer is an envelope "
            "`{success, data, pagination?}` or `{success: false, error, code, details?}`. "
            "A body that cannot be parsed is a 422 `VALIDATION_ERROR` naming `body`; text "
            "holding the NUL character (U+0000) or a lone surrogate, in any field or "
            "parameter, is a 422 naming the field. `OPTIONS` answers 204 with `Allow`."
        ),
        version="1.0.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_openapi(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[
                "X-Request-ID",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "Retry-After",
            ],
        )
    # X's deliveries skip the router (see DeliveryFastPath), inside the request context.
    app.add_middleware(webhooks.DeliveryFastPath, path=f"{BASE_PATH}/webhooks/twitter")
    # Every body is weighed before anything reads it (the import takes files of its own size).
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=MAX_JSON_BODY_BYTES,
        path_limits={f"{BASE_PATH}/contacts/import": contact_import.MAX_BODY_BYTES},
    )
    app.add_middleware(RequestContextMiddleware)
    app.include_router(operations.probes)
    app.include_router(operations.router, prefix=BASE_PATH)
    for router in (
        accounts.router,
        contacts.router,
        conversations.router,
        attachments.router,
        webhooks.router,
        templates.router,
        segments.router,
        campaigns.router,
        flows.router,
        ai.router,
        analytics.router,
    ):
        app.include_router(router, prefix=BASE_PATH)
    app.include_router(redirects.router)  # /r/{code}: short public links, no base path
    if (tracing := configure_tracing(API_SERVICE)) is not None:  # OTEL_EXPORTER_OTLP_ENDPOINT
        tracing.instrument_app(app)
    return app


def main_app() -> FastAPI:
    """Entry for `uvicorn api.app:main_app --factory` outside the CLI."""
    configure_logging(get_settings().log_level)
    return create_app()
