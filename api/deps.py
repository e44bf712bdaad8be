"""Dependencies as named types: handlers read `session: SessionDep, principal: AdminDep`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.context import AppContext
from services.core.auth import Permission, Principal, decode_token
from services.core.errors import RateLimited, Unauthorized
from services.core.temporal import TemporalSource


async def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_session(context: ContextDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, rolled back if it raises."""
    async with context.sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="JWT issued by the platform's IAM service")


async def authenticate(
    request: Request,
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    principal = decode_token(context.settings, credentials.credentials)
    limit = await context.rate_limiter.hit(principal.merchant_id)
    request.state.rate_limit = limit  # the middleware copies it into the response headers
    request.state.merchant_id = principal.merchant_id
    if limit.exceeded:
        raise RateLimited(
            f"rate limit of {limit.limit} requests per minute exceeded",
            retry_after=limit.retry_after,
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require(permission: Permission) -> Callable[[Principal], Principal]:
    def dependency(principal: PrincipalDep) -> Principal:
        principal.require(permission)
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  # api/openapi.py: a 403
    return dependency


ReaderDep = Annotated[Principal, Depends(require(Permission.read))]
AccountAdminDep = Annotated[Principal, Depends(require(Permission.manage_accounts))]
MarketingDep = Annotated[Principal, Depends(require(Permission.manage_marketing))]


async def get_temporal(context: ContextDep) -> Client:
    return await context.temporal.client()


TemporalDep = Annotated[Client, Depends(get_temporal)]


async def get_temporal_source(context: ContextDep) -> TemporalSource:
    """The client to connect on first use, for a route whose work is accepted while Temporal
    is away (a campaign start: the maintenance schedule carries it out later), where
    `TemporalDep` would answer 503 before the handler runs."""
    return context.temporal.client


TemporalSourceDep = Annotated[TemporalSource, Depends(get_temporal_source)]
