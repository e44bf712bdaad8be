"""The media of DMs as X shows and serves it.

A DM with media carries it in `message_data.attachment` as `{"type": "media", "media": {...}}`
and X adds the media's own t.co link to its `text` and `entities.urls`, expanded to
`https://twitter.com/messages/media/{dm id}`. A photo is kept on `ton.twitter.com`, served only
to requests signed (OAuth 1.0a) for one of the DM's participants; a GIF plays from
`video.twimg.com/dm_gif/...` with a still on `pbs.twimg.com/dm_gif_preview/...`, a video from
`video.twimg.com/dm_video/...` (recorded payloads: tests/fixtures/x/account_activity/dm_photo.json,
dm_gif.json; X's media retrieval guide). The sandbox serves those paths itself: a client pointed
at it sends X's media hosts there (sandbox/dm_media_api.py).
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from sandbox.media import GIF, IMAGE

TON = "https://ton.twitter.com"
VIDEO_HOST = "https://video.twimg.com"
PBS = "https://pbs.twimg.com"
_TCO_ALPHABET = string.ascii_letters + string.digits
_SIZES = {
    "thumb": {"w": 150, "h": 150, "resize": "crop"},
    "small": {"w": 680, "h": 383, "resize": "fit"},
    "medium": {"w": 1200, "h": 675, "resize": "fit"},
    "large": {"w": 1280, "h": 720, "resize": "fit"},
}


def _code(length: int) -> str:
    return "".join(secrets.choice(_TCO_ALPHABET) for _ in range(length))


def tco_link(dm_id: str, text: str) -> dict[str, Any]:
    """The t.co link X writes after a DM's text for its media (t.co links are 23 characters)."""
    short = f"https://t.co/{_code(10)}"
    start = len(text) + 1
    return {
        "url": short,
        "expanded_url": f"https://twitter.com/messages/media/{dm_id}",
        "display_url": f"pic.twitter.com/{short.rsplit('/', 1)[1]}",
        "indices": [start, start + len(short)],
    }


def media_object(
    dm_id: str, media_id: str, kind: str, link: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """X's media object for a DM's photo, GIF or video, and the paths (on X's media hosts) of
    the files it names."""
    key = _code(8) if kind == IMAGE else _code(43)
    media: dict[str, Any] = {
        "id": int(media_id),
        "id_str": media_id,
        "indices": link["indices"],
        "url": link["url"],
        "display_url": link["display_url"],
        "expanded_url": link["expanded_url"],
        "sizes": _SIZES,
    }
    if kind == IMAGE:
        path = f"/1.1/ton/data/dm/{dm_id}/{media_id}/{key}.jpg"
        media.update(type="photo", media_url=TON + path, media_url_https=TON + path)
        return media, [path]
    if kind == GIF:
        still, play = f"/dm_gif_preview/{media_id}/{key}.jpg", f"/dm_gif/{media_id}/{key}.mp4"
        variants = [{"bitrate": 0, "content_type": "video/mp4", "url": VIDEO_HOST + play}]
        media.update(
            type="animated_gif", video_info={"aspect_ratio": [16, 9], "variants": variants}
        )
    else:
        still = f"/dm_video_preview/{media_id}/img/{key}.jpg"
        play = f"/dm_video/{media_id}/vid/1280x720/{key}.mp4"
        variants = [
            {"bitrate": 2176000, "content_type": "video/mp4", "url": VIDEO_HOST + play},
            {
                "content_type": "application/x-mpegURL",
                "url": f"{VIDEO_HOST}/dm_video/{media_id}/pl/{key}.m3u8",
            },
        ]
        info = {"aspect_ratio": [16, 9], "duration_millis": 4000, "variants": variants}
        media.update(type="video", video_info=info)
    media.update(media_url=PBS + still, media_url_https=PBS + still)
    return media, [still, play]
