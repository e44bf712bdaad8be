"""X API v2 media upload (the chunked flow: initialize, append, finalize, status) on its real
paths, and the sandbox's own media routes: sample media to fetch, and the uploads X holds."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import Field
from starlette.responses import Response

from sandbox.admin_api import PREFIX, CamelModel
from sandbox.media import (
    EXTENSION_TYPES,
    MAX_BYTES,
    VIDEO,
    MediaRejected,
    Upload,
    sample_media,
)
from sandbox.oauth import UserContext
from sandbox.problems import XProblem, invalid_request
from sandbox.state import EP_MEDIA_UPLOAD
from sandbox.x_api import StateDep, json_body, user_context

router = APIRouter()
admin_router = APIRouter(prefix=PREFIX)
UserDep = Annotated[UserContext, Depends(user_context(EP_MEDIA_UPLOAD))]
MAX_SAMPLE_BYTES = MAX_BYTES[VIDEO] + 1


def _rejected(exc: MediaRejected) -> XProblem:
    return invalid_request(exc.message, exc.parameter)


def _media_json(upload: Upload, now: float, *, processing: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": upload.id,
        "media_key": upload.key,
        "expires_after_secs": max(0, int(upload.expires_at - now)),
    }
    if upload.finalized_at is not None:
        data["size"] = upload.size
    info = upload.processing_info(now) if processing else None
    if info is not None:
        data["processing_info"] = info
    return data


async def multipart_fields(request: Request) -> dict[str, bytes]:
    """The fields of a multipart/form-data body, byte for byte (files and plain fields alike)."""
    content_type = request.headers.get("content-type", "")
    boundary = next(
        (
            part.strip().partition("=")[2].strip('"')
            for part in content_type.split(";")[1:]
            if part.strip().lower().startswith("boundary=")
        ),
        "",
    )
    if not content_type.lower().startswith("multipart/form-data") or not boundary:
        raise invalid_request("media: send the segment as multipart/form-data", "media")
    body = await request.body()
    fields: dict[str, bytes] = {}
    delimiter = b"--" + boundary.encode()
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            continue
        name = None
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                for param in line.split(";")[1:]:
                    key, _, value = param.strip().partition("=")
                    if key.lower() == "name":
                        name = value.strip('"')
        if name is not None:
            fields[name] = content.removesuffix(b"\r\n")
    return fields


# X's endpoints ------------------------------------------------------------------------------


@router.post("/2/media/upload/initialize")
async def initialize(request: Request, state: StateDep, context: UserDep) -> dict[str, Any]:
    body = await json_body(request)
    media_type, total_bytes = body.get("media_type"), body.get("total_bytes")
    category, shared = body.get("media_category"), body.get("shared", False)
    if not isinstance(media_type, str):
        raise invalid_request("media_type: required", "media_type")
    if not isinstance(total_bytes, int) or isinstance(total_bytes, bool):
        raise invalid_request("total_bytes: must be an integer", "total_bytes")
    if category is not None and not isinstance(category, str):
        raise invalid_request("media_category: must be a string", "media_category")
    if not isinstance(shared, bool):
        raise invalid_request("shared: must be a boolean", "shared")
    now = time.time()
    try:
        upload = state.media.initialize(
            context.user_id, media_type, total_bytes, category, shared, now
        )
    except MediaRejected as exc:
        raise _rejected(exc) from None
    return {"data": _media_json(upload, now)}


@router.post("/2/media/upload/{media_id}/append")
async def append(
    media_id: str, request: Request, state: StateDep, context: UserDep
) -> dict[str, Any]:
    fields = await multipart_fields(request)
    try:
        index = int(fields.get("segment_index", b"").decode())
    except ValueError:
        raise invalid_request("segment_index: required, an integer", "segment_index") from None
    if "media" not in fields:
        raise invalid_request("media: required", "media")
    now = time.time()
    try:
        upload = state.media.append(context.user_id, media_id, index, fields["media"], now)
    except MediaRejected as exc:
        raise _rejected(exc) from None
    return {"data": {"expires_at": int(upload.expires_at)}}


@router.post("/2/media/upload/{media_id}/finalize")
def finalize(media_id: str, state: StateDep, context: UserDep) -> dict[str, Any]:
    now = time.time()
    try:
        upload = state.media.finalize(context.user_id, media_id, now)
    except MediaRejected as exc:
        raise _rejected(exc) from None
    return {"data": _media_json(upload, now)}


@router.get("/2/media/upload")
def status(
    state: StateDep,
    context: UserDep,
    media_id: str,
    command: str = "STATUS",
) -> dict[str, Any]:
    if command != "STATUS":
        raise invalid_request("command: must be STATUS", "command")
    now = time.time()
    try:
        upload = state.media.status(context.user_id, media_id, now)
    except MediaRejected as exc:
        raise _rejected(exc) from None
    return {"data": _media_json(upload, now)}


# The sandbox's own routes -------------------------------------------------------------------


@admin_router.get("/media/{name}")
def sample(
    name: str,
    state: StateDep,
    media_type: Annotated[str | None, Query(alias="type")] = None,
    size: Annotated[int, Query(ge=0, le=MAX_SAMPLE_BYTES)] = 1024,
    status_code: Annotated[int, Query(alias="status", ge=200, le=599)] = 200,
    content_type: Annotated[str | None, Query(alias="contentType")] = None,
) -> Response:
    """Deterministic media for a test to use as a merchant's URL: `size` bytes of `type`
    (default from the name's extension), answered with `status` and a Content-Type of
    `contentType` (default `type`)."""
    kind = media_type or EXTENSION_TYPES.get(name.rpartition(".")[2].lower())
    if kind is None:
        raise HTTPException(422, "give ?type= or a name ending in a media extension")
    status_code = state.sample_media_status.get(name, status_code)
    if status_code != 200:
        return Response(f"sandbox answered {status_code}", status_code, media_type="text/plain")
    return Response(sample_media(name, kind, size), media_type=content_type or kind)


class SampleStatusIn(CamelModel):
    status: int | None = Field(None, ge=200, le=599)


@admin_router.put("/media/{name}/status")
def set_sample_status(name: str, body: SampleStatusIn, state: StateDep) -> SampleStatusIn:
    """From now on, sample media `name` answers with `status` whatever its URL asks (a
    merchant's media host down, say); null: as its URL asks again."""
    if body.status is None:
        state.sample_media_status.pop(name, None)
    else:
        state.sample_media_status[name] = body.status
    return body


class UploadOut(CamelModel):
    id: str
    media_key: str
    owner_id: str
    media_type: str
    category: str
    total_bytes: int
    size: int
    sha256: str | None
    shared: bool
    state: str
    dm_uses: int
    created_at: datetime
    expires_at: datetime
    expired: bool = Field(description="no longer usable (24 h passed, or expired by a test)")


@admin_router.get("/uploads")
def list_uploads(
    state: StateDep, user_id: Annotated[str | None, Query(alias="userId")] = None
) -> list[UploadOut]:
    now = time.time()
    return [
        UploadOut(
            id=u.id,
            media_key=u.key,
            owner_id=u.owner_id,
            media_type=u.media_type,
            category=u.category,
            total_bytes=u.total_bytes,
            size=u.size,
            sha256=u.sha256,
            shared=u.shared,
            state=u.state(now),
            dm_uses=u.dm_uses,
            created_at=datetime.fromtimestamp(u.created_at, UTC),
            expires_at=datetime.fromtimestamp(u.expires_at, UTC),
            expired=now >= u.expires_at,
        )
        for u in sorted(state.media.snapshot(user_id), key=lambda u: int(u.id))
    ]


@admin_router.post("/uploads/{media_id}/expire")
def expire_upload(media_id: str, state: StateDep) -> dict[str, bool]:
    """Make a media id expire now, as 24 h later: X then refuses it."""
    if not state.media.expire(media_id, time.time()):
        raise HTTPException(404, f"no upload {media_id}")
    return {"expired": True}
