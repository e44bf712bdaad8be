"""Media for direct messages: a merchant's media URL fetched, checked the way X checks it, and
uploaded to X, whose media id a DM then attaches.

X attaches one media (an image, a GIF or a video) to a DM, by the id its upload answered; the
id works for DMs of the account that uploaded it, for 24 h. Uploads here are `shared`, so that
one upload serves every recipient of a campaign. The X calls run in a thread (tweepy is
synchronous); inside an activity, the wait heartbeats so that a long video upload is not taken
for a dead worker.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import httpx
from temporalio import activity

from integrations.x import XClient, XCredentials, XError
from mktx.settings import Environment, Settings
from workflows.contracts.messaging import MEDIA_REFRESH_MARGIN, MediaKind, MediaRef

logger = logging.getLogger(__name__)

T = TypeVar("T")

MB = 1024 * 1024


# What X attaches to a DM, by content type, and X's size limit for each kind.
CONTENT_TYPES: dict[str, MediaKind] = {
    "image/jpeg": MediaKind.image,
    "image/png": MediaKind.image,
    "image/webp": MediaKind.image,
    "image/gif": MediaKind.gif,
    "video/mp4": MediaKind.video,
    "video/quicktime": MediaKind.video,
}
MAX_BYTES = {MediaKind.image: 5 * MB, MediaKind.gif: 15 * MB, MediaKind.video: 512 * MB}
CATEGORIES = {
    MediaKind.image: "dm_image",
    MediaKind.gif: "dm_gif",
    MediaKind.video: "dm_video",
}
SUPPORTED = "JPEG, PNG, WEBP, GIF, MP4 or MOV"
# A Content-Type that says nothing: the bytes decide.
_UNLABELLED = frozenset({"", "application/octet-stream", "binary/octet-stream"})

FETCH_TIMEOUT = httpx.Timeout(30.0, connect=10.0)  # per connect / read
FETCH_DEADLINE_SECONDS = 300.0  # the whole download
MAX_REDIRECTS = 5
# A media id this close to its expiry is not attached any more: the media is uploaded again.
REFRESH_MARGIN = MEDIA_REFRESH_MARGIN
HEARTBEAT_SECONDS = 5.0


class MediaUnavailable(Exception):
    """The media at `url` cannot be sent; `reason` says why, for the merchant."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url} {reason}")
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.url} {self.reason}"


@dataclass(frozen=True)
class FetchedMedia:
    url: str
    content_type: str
    data: bytes = field(repr=False)

    @property
    def kind(self) -> MediaKind:
        return CONTENT_TYPES[self.content_type]

    @property
    def category(self) -> str:
        return CATEGORIES[self.kind]


def refuses_media(exc: XError) -> bool:
    """X's 400 on a DM is about its attached media (the id unknown or expired), not the DM."""
    return exc.status == 400 and "media" in exc.reason.lower()


def allow_private_hosts(settings: Settings) -> bool:
    """Outside production media may come from loopback and private networks (the sandbox);
    in production a merchant's URL must not reach the service's own network."""
    return settings.env != Environment.production


def sniff(data: bytes) -> str | None:
    """The content type the bytes themselves show, among those X attaches."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/quicktime" if data[8:10] == b"qt" else "video/mp4"
    return None


def _too_big(
    url: str, size: int, kind: MediaKind | None, *, at_least: bool = False
) -> MediaUnavailable:
    limit_kind = kind or MediaKind.video
    what = {MediaKind.image: "images", MediaKind.gif: "GIFs", MediaKind.video: "videos"}
    return MediaUnavailable(
        url,
        f"is {'over ' if at_least else ''}{size} bytes; X attaches {what[limit_kind]} of up to "
        f"{MAX_BYTES[limit_kind] // MB} MB",
    )


async def _public_only(request: httpx.Request) -> None:
    """Refuse a URL (or a redirect) whose host resolves to a non-public address."""
    host = request.url.host
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    except OSError:
        raise MediaUnavailable(str(request.url), "could not be reached (unknown host)") from None
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_global:
            raise MediaUnavailable(str(request.url), "is on a private network address")


async def fetch_media(url: str, *, allow_private: bool = False) -> FetchedMedia:
    """Download the media at `url` and check it as X will: a JPEG, PNG, WEBP, GIF, MP4 or MOV
    (by its bytes) within X's size limit for its kind. MediaUnavailable says what is wrong."""
    try:
        scheme = httpx.URL(url).scheme
    except httpx.InvalidURL:
        raise MediaUnavailable(url, "is not a valid URL") from None
    if scheme not in ("http", "https"):
        raise MediaUnavailable(url, "is not an http(s) URL")
    hooks = {} if allow_private else {"request": [_public_only]}
    chunks: list[bytes] = []
    header_type = ""
    beat = _Heartbeat()
    try:
        async with (
            asyncio.timeout(FETCH_DEADLINE_SECONDS),
            httpx.AsyncClient(
                timeout=FETCH_TIMEOUT,
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                event_hooks=hooks,  # type: ignore[arg-type]
            ) as client,
            client.stream("GET", url, headers={"Accept": "image/*, video/*"}) as response,
        ):
            if response.status_code != 200:
                raise MediaUnavailable(url, f"answered HTTP {response.status_code}")
            header_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            header_kind = CONTENT_TYPES.get(header_type)
            if header_kind is None and header_type not in _UNLABELLED:
                raise MediaUnavailable(url, f"is {header_type}, not a {SUPPORTED} file")
            limit = MAX_BYTES[header_kind] if header_kind else max(MAX_BYTES.values())
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise _too_big(url, int(length), header_kind)
            received = 0
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > limit:
                    raise _too_big(url, limit, header_kind, at_least=True)
                chunks.append(chunk)
                beat()
    except TimeoutError:
        raise MediaUnavailable(
            url, f"did not arrive within {int(FETCH_DEADLINE_SECONDS)} seconds"
        ) from None
    except httpx.TimeoutException:
        raise MediaUnavailable(url, "did not answer in time") from None
    except httpx.TooManyRedirects:
        raise MediaUnavailable(url, f"redirects more than {MAX_REDIRECTS} times") from None
    except (httpx.HTTPError, OSError) as exc:
        raise MediaUnavailable(url, f"could not be reached ({type(exc).__name__})") from None
    data = b"".join(chunks)
    content_type = sniff(data)
    if content_type is None:
        label = f" (served as {header_type})" if header_type else ""
        raise MediaUnavailable(url, f"is not a {SUPPORTED} file{label}")
    kind = CONTENT_TYPES[content_type]
    if len(data) > MAX_BYTES[kind]:
        raise _too_big(url, len(data), kind)
    logger.info(
        "media.fetched", extra={"url": url, "content_type": content_type, "bytes": len(data)}
    )
    return FetchedMedia(url=url, content_type=content_type, data=data)


async def upload_media(x: XClient, creds: XCredentials, media: FetchedMedia) -> MediaRef:
    """Upload fetched media for one account's DMs (shared: any number of DMs may attach it).
    X's refusals and outages come out as XError."""
    uploaded = await keep_alive(
        asyncio.to_thread(x.upload_media, creds, media.data, media.content_type, media.category)
    )
    return MediaRef(
        media_id=uploaded.media_id,
        url=media.url,
        content_type=media.content_type,
        kind=media.kind,
        size=len(media.data),
        expires_at=uploaded.expires_at,
    )


class _Heartbeat:
    """Heartbeat the current activity (if any), at most every HEARTBEAT_SECONDS."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= HEARTBEAT_SECONDS and activity.in_activity():
            self._last = now
            activity.heartbeat()


async def keep_alive(awaitable: Awaitable[T]) -> T:
    """Await, heartbeating the current activity meanwhile."""
    task = asyncio.ensure_future(awaitable)
    beat = _Heartbeat()
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_SECONDS)
        if done:
            return task.result()
        beat()


class MediaUploads:
    """The one way media reaches X for a set of DMs: each URL fetched at most once, uploaded
    at most once per account, an upload the caller already holds reused while X still takes
    it. A URL that cannot be had, or that X refuses, is remembered as `MediaUnavailable` for
    every DM that wants it (none goes out without its media)."""

    def __init__(
        self, x: XClient, settings: Settings, held: dict[str, MediaRef] | None = None
    ) -> None:
        self._x = x
        self._allow_private = allow_private_hosts(settings)
        self._held = dict(held or {})
        self._fetched: dict[str, FetchedMedia | MediaUnavailable] = {}
        self.uploaded: dict[str, MediaRef] = {}  # new uploads, by account id
        self.dropped: set[str] = set()  # accounts whose upload X refused

    def drop(self, account_id: str) -> None:
        """X no longer takes this account's upload: the next DM uploads again."""
        self._held.pop(account_id, None)
        self.uploaded.pop(account_id, None)
        self.dropped.add(account_id)

    async def for_account(
        self, account_id: str, credentials: XCredentials, url: str, now: datetime
    ) -> MediaRef:
        """The account's usable upload of `url`. Raises MediaUnavailable (cannot be fetched)
        and XError (X refused or failed the upload)."""
        held = self._held.get(account_id)
        if held is not None and held.usable_for(url, now):
            return held
        fetched = self._fetched.get(url)
        if fetched is None:
            try:
                fetched = await fetch_media(url, allow_private=self._allow_private)
            except MediaUnavailable as exc:
                fetched = exc
            self._fetched[url] = fetched
        if isinstance(fetched, MediaUnavailable):
            raise fetched
        ref = await upload_media(self._x, credentials, fetched)
        logger.info(
            "media.uploaded",
            extra={"account_id": account_id, "media_id": ref.media_id, "bytes": ref.size},
        )
        self._held[account_id] = self.uploaded[account_id] = ref
        return ref
