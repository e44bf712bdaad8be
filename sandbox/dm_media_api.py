"""X's media hosts for DMs, on the sandbox: the files of simulated inbound DMs' media, a photo
only for a request signed by one of the DM's participants (as ton.twitter.com serves it)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from sandbox.dm_media import media_object, tco_link
from sandbox.media import GIF, IMAGE, VIDEO, sample_media
from sandbox.oauth import verify_oauth1
from sandbox.problems import XProblem
from sandbox.state import EP_DM_MEDIA, SandboxState
from sandbox.x_api import StateDep, rate_limit

# What the sandbox serves for each kind of simulated inbound media.
SAMPLE_TYPES = {IMAGE: "image/jpeg", GIF: "video/mp4", VIDEO: "video/mp4"}
SAMPLE_BYTES = 2048


def inbound_media(
    state: SandboxState, dm_id: str, kind: str, text: str, participants: frozenset[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A simulated DM's media (`message_data.attachment`) and its t.co link, with sample
    files served at the paths the media names."""
    if kind not in SAMPLE_TYPES:
        raise ValueError(f"media must be one of {sorted(SAMPLE_TYPES)}")
    link = tco_link(dm_id, text)
    media, paths = media_object(dm_id, state.next_id(), kind, link)
    for path in paths:
        content_type = "image/jpeg" if path.endswith(".jpg") else SAMPLE_TYPES[kind]
        data = sample_media(path, content_type, SAMPLE_BYTES)
        state.keep_dm_media(path, content_type, data, participants)
    return {"type": "media", "media": media}, link


# Serving ----------------------------------------------------------------------------------

router = APIRouter()


def _file(state: SandboxState, path: str) -> tuple[str, bytes, frozenset[str]]:
    found = state.dm_media_file(path)
    if found is None:
        raise XProblem(404, "Sorry, that page does not exist", title="Not Found")
    return found


async def _participant(request: Request, state: StateDep) -> str:
    request.state.endpoint = EP_DM_MEDIA
    context = await verify_oauth1(request, state)
    request.state.user_id = context.user_id
    rate_limit(request, state, EP_DM_MEDIA, context.user_id)
    return context.user_id


@router.get("/1.1/ton/data/dm/{dm_id}/{media_id}/{name}")
def ton_media(
    dm_id: str,
    media_id: str,
    name: str,
    request: Request,
    state: StateDep,
    user_id: Annotated[str, Depends(_participant)],
) -> Response:
    """A DM's photo: only for a request signed by one of the DM's participants."""
    content_type, data, participants = _file(state, request.url.path)
    if user_id not in participants:
        raise XProblem(403, "You are not a participant of this conversation", title="Forbidden")
    return Response(data, media_type=content_type)


@router.get("/dm_gif/{media_id}/{name}")
@router.get("/dm_gif_preview/{media_id}/{name}")
@router.get("/dm_video_preview/{media_id}/img/{name}")
@router.get("/dm_video/{media_id}/vid/{size}/{name}")
def cdn_media(request: Request, state: StateDep) -> Response:
    request.state.endpoint = EP_DM_MEDIA
    content_type, data, _ = _file(state, request.url.path)
    return Response(data, media_type=content_type)
