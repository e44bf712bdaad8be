"""Tracked campaign links: `GET /r/{code}` → 302 to the original URL, counting the click.

Mounted at the root (outside /api/v1/mkt-x) and without authentication: the people clicking are
the merchant's contacts. `services.campaign_links.redirect_base` builds the links on
`MKTX_PUBLIC_URL` (or the API's own address)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import RedirectResponse

from api.deps import SessionDep
from services.campaigns import links as campaign_links
from services.core.errors import NotFound

router = APIRouter(tags=["campaigns"])


@router.get("/r/{code}", status_code=302, response_class=RedirectResponse)
async def follow_link(
    code: Annotated[str, Path(min_length=4, max_length=32, pattern=r"^[0-9A-Za-z]+$")],
    session: SessionDep,
) -> RedirectResponse:
    """Redirect to the campaign link's URL; the recipient's first click marks it clicked."""
    url = await campaign_links.follow(session, code)
    if url is None:
        raise NotFound("link", code)
    return RedirectResponse(url, status_code=302)
