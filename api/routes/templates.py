"""Template Management: create, list, get, update, delete and preview message templates."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.deps import MarketingDep, ReaderDep, SessionDep
from api.envelope import Envelope, Page, error_responses, ok
from api.pagination import PageDep
from api.storable import StorableTextRoute
from models.template import (
    Template,
    TemplateCreate,
    TemplatePreview,
    TemplatePreviewRequest,
    TemplatePublic,
    TemplateType,
    TemplateUpdate,
)
from services.templates import templates as template_service

router = APIRouter(prefix="/templates", tags=["templates"], route_class=StorableTextRoute)


async def load_template(
    principal: ReaderDep,
    session: SessionDep,
    template_id: Annotated[uuid.UUID, Path(alias="templateId")],
) -> Template:
    return await template_service.get_template(session, principal.merchant_id, template_id)


async def load_template_for_change(
    principal: MarketingDep,
    session: SessionDep,
    template_id: Annotated[uuid.UUID, Path(alias="templateId")],
) -> Template:
    # Locked: a campaign starting with this template waits for the change, or sees it refused.
    return await template_service.get_template(
        session, principal.merchant_id, template_id, for_update=True
    )


TemplateDep = Annotated[Template, Depends(load_template)]
TemplateForChangeDep = Annotated[Template, Depends(load_template_for_change)]


@router.post("", response_model=Envelope[TemplatePublic], responses=error_responses(401, 403, 422))
async def create_template(
    body: TemplateCreate, principal: MarketingDep, session: SessionDep
) -> Envelope[TemplatePublic]:
    """Create a template; `variables` must list exactly the `{{placeholders}}` it uses."""
    template = await template_service.create_template(session, principal.merchant_id, body)
    return ok(TemplatePublic.model_validate(template))


@router.get("", response_model=Page[TemplatePublic], responses=error_responses(401, 403, 422))
async def list_templates(
    principal: ReaderDep,
    session: SessionDep,
    page: PageDep,
    type: Annotated[TemplateType | None, Query(description="text, quick_reply or card")] = None,
    search: Annotated[
        str | None, Query(max_length=200, description="part of the template name")
    ] = None,
) -> Page[TemplatePublic]:
    """List the merchant's templates, newest first."""
    statement = template_service.list_statement(principal.merchant_id, type, search)
    rows, total = await page.fetch(session, statement)
    return page.page([TemplatePublic.model_validate(row) for row in rows], total)


@router.get(
    "/{templateId}", response_model=Envelope[TemplatePublic], responses=error_responses(401, 404)
)
async def get_template(template: TemplateDep) -> Envelope[TemplatePublic]:
    """One template."""
    return ok(TemplatePublic.model_validate(template))


@router.put(
    "/{templateId}",
    response_model=Envelope[TemplatePublic],
    responses=error_responses(401, 403, 404, 409, 422),
)
async def update_template(
    body: TemplateUpdate, template: TemplateForChangeDep, session: SessionDep
) -> Envelope[TemplatePublic]:
    """Update a template (409 while an active campaign uses it)."""
    template = await template_service.update_template(session, template, body)
    return ok(TemplatePublic.model_validate(template))


@router.delete(
    "/{templateId}", response_model=Envelope[None], responses=error_responses(401, 403, 404, 409)
)
async def delete_template(template: TemplateForChangeDep, session: SessionDep) -> Envelope[None]:
    """Delete a template (409 while an active campaign uses it)."""
    await template_service.delete_template(session, template)
    return ok(None)


@router.post(
    "/{templateId}/preview",
    response_model=Envelope[TemplatePreview],
    responses=error_responses(401, 404, 422),
)
async def preview_template(
    template: TemplateDep, body: TemplatePreviewRequest | None = None
) -> Envelope[TemplatePreview]:
    """Render the template with sample values, exactly as the direct message would read."""
    rendered = template_service.preview(template, (body or TemplatePreviewRequest()).variables)
    return ok(TemplatePreview(rendered=rendered.text, media_url=rendered.media_url))
