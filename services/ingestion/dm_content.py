"""What a DM says, as X delivers it: its text, its attachments and a quick-reply answer.

A DM with media carries it once, in `message_data.attachment.media`, and X also writes the
media's own t.co link into `text` and `entities.urls` (expanded to
`twitter.com/messages/media/{dm id}`). That link is the media again, not something the contact
wrote: the message keeps one attachment for it and its text without the link. Attachments use
the words outbound messages use (models.conversation.AttachmentIn): `image`, `video`, `gif`
for media (X says `photo`, `video`, `animated_gif`), `link` for any other URL.

Media in DMs is served by X only to requests signed for a participant (`ton.twitter.com`):
`url` is where X keeps it, fetched through the conversation's attachment route.
"""

from __future__ import annotations

import re
from typing import Any

# X's media types, in the words of outbound attachments.
MEDIA_KINDS = {"photo": "image", "animated_gif": "gif", "video": "video"}
_OWN_KINDS = frozenset({"image", "gif", "video"})
# Where X's link to a DM's own media points.
_MEDIA_PAGE = re.compile(r"^https?://(?:mobile\.)?(?:twitter|x)\.com/messages/media/\d+")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _media_of(message_data: dict[str, Any]) -> dict[str, Any] | None:
    attachment = message_data.get("attachment")
    if not isinstance(attachment, dict):
        return None
    media = attachment.get("media")
    return media if isinstance(media, dict) else attachment


def _best_video(media: dict[str, Any]) -> str | None:
    """The mp4 of highest bitrate among a GIF's or video's variants (the playable file; the
    media_url is only its still preview)."""
    info = _dict(media.get("video_info"))
    variants = [
        v
        for v in info.get("variants") or []
        if isinstance(v, dict) and v.get("content_type") == "video/mp4" and v.get("url")
    ]
    best = max(variants, key=lambda v: v.get("bitrate") or 0, default=None)
    return str(best["url"]) if best else None


def media_attachment(media: dict[str, Any], fallback_type: Any = None) -> dict[str, Any]:
    raw = str(media.get("type") or fallback_type or "")
    kind = MEDIA_KINDS.get(raw) or (raw if raw in _OWN_KINDS else "file")
    url = None
    if kind in ("gif", "video"):
        url = _best_video(media)
    url = url or media.get("media_url_https") or media.get("media_url") or media.get("url")
    item: dict[str, Any] = {"type": kind}
    if url:
        item["url"] = str(url)
    media_id = media.get("id_str") or media.get("id")
    if media_id:
        item["mediaId"] = str(media_id)
    return item


def _media_links(media: dict[str, Any] | None) -> set[str]:
    if media is None:
        return set()
    return {str(media[k]) for k in ("url", "expanded_url") if isinstance(media.get(k), str)}


def attachments(message_data: dict[str, Any]) -> list[dict[str, Any]]:
    """The DM's media (one at most: X attaches one) and its other links, `[{"type", "url",
    ...}]`."""
    found: list[dict[str, Any]] = []
    media = _media_of(message_data)
    if media is not None:
        attachment = message_data["attachment"]
        found.append(media_attachment(media, attachment.get("type")))
    own = _media_links(media)
    entities = _dict(message_data.get("entities"))
    for link in entities.get("urls") or []:
        if not isinstance(link, dict):
            continue
        short, expanded = link.get("url"), link.get("expanded_url")
        if short in own or expanded in own:
            continue
        if media is not None and isinstance(expanded, str) and _MEDIA_PAGE.match(expanded):
            continue  # the media's page under another spelling
        if expanded or short:
            found.append({"type": "link", "url": str(expanded or short)})
    return found


def text(message_data: dict[str, Any]) -> str:
    """The DM's text without the t.co link X adds for its media."""
    value = str(message_data.get("text") or "").replace("\x00", "")
    media = _media_of(message_data)
    link = media.get("url") if media is not None else None
    if isinstance(link, str) and link and link in value:
        return re.sub(rf"[ \t]*{re.escape(link)}[ \t]*", " ", value).strip()
    return value


def quick_reply(message_data: dict[str, Any]) -> dict[str, str] | None:
    """The option a quick reply's answer chose, `{"type", "metadata"}` (X sends the chosen
    option's label as the text)."""
    response = message_data.get("quick_reply_response")
    if not isinstance(response, dict):
        return None
    answer = {k: str(response[k]) for k in ("type", "metadata") if response.get(k) is not None}
    return answer or None
