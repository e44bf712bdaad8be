"""Contact Management: list, read, edit, tag, import and erase contacts."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request

from api.deps import ContextDep, ReaderDep, SessionDep, require
from api.envelope import Envelope, Page, error_responses, ok
from api.follow_ups import carry_out_follow_ups_soon
from api.pagination import PageDep
from api.storable import StorableTextRoute
from models.account import XAccount
from models.contact import (
    Contact,
    ContactAttributesReplace,
    ContactConversation,
    ContactDetail,
    ContactErased,
    ContactImportResult,
    ContactPublic,
    ContactTagsAdd,
    ContactUpdate,
)
from models.conversation import ConversationStatus
from services.contacts import contacts as contact_service
from services.contacts import erasure as contact_erasure
from services.contacts import importing as contact_import
from services.contacts import listing as contact_list
from services.contacts import tag_events
from services.core.auth import Permission, Principal
from services.core.errors import ValidationFailed
from services.core.tenancy import get_owned

router = APIRouter(prefix="/contacts", tags=["contacts"], route_class=StorableTextRoute)

EditorDep = Annotated[Principal, Depends(require(Permission.manage_contacts))]
ContactIdPath = Annotated[uuid.UUID, Path(alias="contactId")]


async def load_contact(
    principal: ReaderDep, session: SessionDep, contact_id: ContactIdPath
) -> Contact:
    return await contact_service.get_contact(session, principal.merchant_id, contact_id)


async def load_contact_for_update(
    principal: EditorDep, session: SessionDep, contact_id: ContactIdPath
) -> Contact:
    return await contact_service.get_contact(
        session, principal.merchant_id, contact_id, for_update=True
    )


ContactDep = Annotated[Contact, Depends(load_contact)]
LockedContactDep = Annotated[Contact, Depends(load_contact_for_update)]


@router.get("", response_model=Page[ContactPublic], responses=error_responses(401, 422))
async def list_contacts(
    principal: ReaderDep,
    session: SessionDep,
    page: PageDep,
    account_id: Annotated[
        uuid.UUID | None, Query(alias="accountId", description="only this X account's")
    ] = None,
    tags: Annotated[
        str | None,
        Query(description="comma-separated; contacts having ALL of them: vip,customer"),
    ] = None,
    search: Annotated[
        str | None,
        Query(description="words starting username or display name, any case: 'jo cust'"),
    ] = None,
) -> Page[ContactPublic]:
    """List contacts, most recent interaction first."""
    filters = contact_list.contact_filter(account_id=account_id, tags=tags, search=search)
    rows, total = await contact_list.list_contacts(
        session, principal.merchant_id, filters, skip=page.skip, take=page.take
    )
    return page.page([ContactPublic.model_validate(row) for row in rows], total)


@router.post(
    "/import",
    response_model=Envelope[ContactImportResult],
    responses=error_responses(401, 403, 404, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_contacts(
    request: Request,
    principal: EditorDep,
    session: SessionDep,
    background: BackgroundTasks,
    account_id: Annotated[uuid.UUID, Query(alias="accountId", description="the X account")],
) -> Envelope[ContactImportResult]:
    """Import contacts from CSV (header row) or JSON lines: created, updated or rejected per row.

    Fields: `twitterUserId` (required, digits), `username`, `displayName`, `tags` (CSV: separated
    by `;` or `|`; JSON: a list), `attributes` (a JSON object; in CSV also `attributes.<key>`
    columns, stored as text). Existing contacts are merged into: tags added, attributes merged.
    Rejected rows are numbered from 1 = the first record (the CSV header and blank lines are
    not counted).
    """
    fmt = contact_import.import_format(request.headers.get("content-type"))
    await get_owned(session, XAccount, principal.merchant_id, account_id, resource="account")
    body = await _read_body(request, contact_import.MAX_BODY_BYTES)
    records = contact_import.parse_records(body, fmt)
    result = await contact_import.import_contacts(
        session, merchant_id=principal.merchant_id, account_id=account_id, records=records
    )
    # Tags the import gave may enrol contacts into flows (recorded with each chunk).
    carry_out_follow_ups_soon(background, request)
    return ok(result)


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = ValidationFailed("body", f"must be at most {limit // (1024 * 1024)} MB", status=413)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@router.get(
    "/{contactId}", response_model=Envelope[ContactDetail], responses=error_responses(401, 404)
)
async def get_contact(contact: ContactDep, session: SessionDep) -> Envelope[ContactDetail]:
    """One contact with its engagement: messages each way and the average response time."""
    engagement = await contact_service.engagement(session, contact)
    public = ContactPublic.model_validate(contact)
    return ok(ContactDetail(**public.model_dump(), engagement=engagement))


@router.put(
    "/{contactId}",
    response_model=Envelope[ContactPublic],
    responses=error_responses(401, 403, 404, 422),
)
async def update_contact(
    body: ContactUpdate, contact: LockedContactDep, session: SessionDep
) -> Envelope[ContactPublic]:
    """Change the display name; attributes sent are merged into the existing ones."""
    contact_service.update_contact(contact, body)
    await session.flush()
    return ok(ContactPublic.model_validate(contact))


@router.post(
    "/{contactId}/tags",
    response_model=Envelope[ContactPublic],
    responses=error_responses(401, 403, 404, 422),
)
async def add_tags(
    body: ContactTagsAdd,
    contact: LockedContactDep,
    session: SessionDep,
    background: BackgroundTasks,
    request: Request,
) -> Envelope[ContactPublic]:
    """Add tags (trimmed, lowercased, deduplicated); new ones follow the existing ones. A tag
    the contact gains may enrol it into a flow triggered by that tag."""
    before = set(contact.tags)
    contact_service.add_tags(contact, body.tags)
    added = [tag for tag in contact.tags if tag not in before]
    if await tag_events.tags_added(
        session, contact.merchant_id, [(contact.id, contact.account_id, added)]
    ):
        carry_out_follow_ups_soon(background, request)
    await session.flush()
    return ok(ContactPublic.model_validate(contact))


@router.delete(
    "/{contactId}/tags/{tagName}",
    response_model=Envelope[ContactPublic],
    responses=error_responses(401, 403, 404, 422),
)
async def remove_tag(
    contact: LockedContactDep,
    session: SessionDep,
    tag_name: Annotated[str, Path(alias="tagName")],
) -> Envelope[ContactPublic]:
    """Remove one tag; 404 when the contact does not have it."""
    contact_service.remove_tag(contact, tag_name)
    await session.flush()
    return ok(ContactPublic.model_validate(contact))


@router.put(
    "/{contactId}/attributes",
    response_model=Envelope[ContactPublic],
    responses=error_responses(401, 403, 404, 422),
)
async def replace_attributes(
    body: ContactAttributesReplace, contact: LockedContactDep, session: SessionDep
) -> Envelope[ContactPublic]:
    """Replace all custom attributes with the ones sent."""
    contact_service.replace_attributes(contact, body.attributes)
    await session.flush()
    return ok(ContactPublic.model_validate(contact))


@router.get(
    "/{contactId}/conversations",
    response_model=Page[ContactConversation],
    responses=error_responses(401, 404, 422),
)
async def list_contact_conversations(
    contact: ContactDep,
    session: SessionDep,
    page: PageDep,
    status: Annotated[ConversationStatus | None, Query(description="open or closed")] = None,
) -> Page[ContactConversation]:
    """The contact's conversations, most recent activity first."""
    statement = contact_service.conversations_statement(contact, status)
    rows, total = await page.fetch(session, statement)
    return page.page([ContactConversation.model_validate(row) for row in rows], total)


@router.delete(
    "/{contactId}",
    response_model=Envelope[ContactErased],
    responses=error_responses(401, 403, 404),
)
async def delete_contact(
    principal: EditorDep, contact: LockedContactDep, session: SessionDep, context: ContextDep
) -> Envelope[ContactErased]:
    """Erase a contact (GDPR): its conversations, messages, raw events and running workflows."""
    erasure = await contact_erasure.erase_contact(session, contact, deleted_by=principal.user_id)
    # Workflows are stopped only once the erasure is committed: a stopped workflow whose
    # contact came back after a rollback could not be restarted.
    await session.commit()
    stopped = await contact_erasure.stop_contact_workflows(context.temporal.client, erasure)
    return ok(
        ContactErased(
            contact_id=erasure.deletion.contact_id,
            removed=erasure.deletion.removed,
            workflows_stopped=stopped,
        )
    )
