"""X's media uploads as the sandbox keeps them: chunked upload sessions (initialize, append,
finalize, status), X's type and size limits per media category, the 24 h expiry, and their use
in direct messages. Plus deterministic sample media, served for tests to fetch as a merchant's
media URL.

Only a digest of an upload's bytes is kept once it is finalized: enough for a test to check that
a customer received exactly the bytes the merchant's URL served.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

MB = 1024 * 1024
MEDIA_TTL_SECONDS = 24 * 60 * 60  # a media id is usable for 24 h after its upload begins
PROCESSING_SECONDS = 1.0  # GIFs and videos are "processed" this long after FINALIZE
MAX_SEGMENT_INDEX = 999
MAX_SEGMENT_BYTES = 5 * MB

IMAGE = "image"
GIF = "gif"
VIDEO = "video"

IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/pjpeg", "image/png", "image/webp", "image/bmp", "image/tiff"}
)
GIF_TYPES = frozenset({"image/gif"})
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/mp2t"})

# What each media_category takes, and X's size limit for it.
CATEGORY_KINDS = {
    "dm_image": IMAGE,
    "tweet_image": IMAGE,
    "dm_gif": GIF,
    "tweet_gif": GIF,
    "dm_video": VIDEO,
    "tweet_video": VIDEO,
    "amplify_video": VIDEO,
}
DM_CATEGORIES = frozenset({"dm_image", "dm_gif", "dm_video"})
MAX_BYTES = {IMAGE: 5 * MB, GIF: 15 * MB, VIDEO: 512 * MB}
_KEY_PREFIX = {IMAGE: "3", GIF: "16", VIDEO: "7"}  # X's media_key prefixes
_V1_TYPE = {IMAGE: "photo", GIF: "animated_gif", VIDEO: "video"}


def kind_of(media_type: str) -> str | None:
    if media_type in IMAGE_TYPES:
        return IMAGE
    if media_type in GIF_TYPES:
        return GIF
    if media_type in VIDEO_TYPES:
        return VIDEO
    return None


# Sample media -------------------------------------------------------------------------------

_SIGNATURES: dict[str, Callable[[int], bytes]] = {
    "image/png": lambda size: b"\x89PNG\r\n\x1a\n",
    "image/jpeg": lambda size: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "image/gif": lambda size: b"GIF89a",
    "image/webp": lambda size: b"RIFF" + max(size - 8, 0).to_bytes(4, "little") + b"WEBP",
    "video/mp4": lambda size: b"\x00\x00\x00\x18ftypmp42",
    "video/quicktime": lambda size: b"\x00\x00\x00\x14ftypqt  ",
}
EXTENSION_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "mov": "video/quicktime",
}


def sample_media(name: str, media_type: str, size: int) -> bytes:
    """`size` bytes that begin like a real file of `media_type` (so X's checks take them), the
    rest derived from `name`: the same arguments always give the same bytes."""
    header = _SIGNATURES.get(media_type, lambda size: b"")(size)
    seed = hashlib.sha256(name.encode()).digest()
    filler = seed * ((max(size - len(header), 0) // len(seed)) + 1)
    return (header + filler)[:size]


def looks_like(media_type: str, data: bytes) -> bool:
    """Whether the bytes start the way a file of `media_type` does (types without a known
    signature are taken as they are)."""
    if media_type in ("image/jpeg", "image/pjpeg"):
        return data.startswith(b"\xff\xd8\xff")
    if media_type == "image/png":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    if media_type == "image/gif":
        return data.startswith((b"GIF87a", b"GIF89a"))
    if media_type == "image/webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if media_type in ("video/mp4", "video/quicktime"):
        return data[4:8] == b"ftyp"
    return True


# Uploads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentMedia:
    """The media a DM sent through the API carries: what the customer received."""

    media_id: str
    media_key: str
    media_type: str  # the content type it was uploaded as
    category: str
    size: int
    sha256: str


class MediaRejected(Exception):
    """X refuses the call (400); `parameter` names what it refuses."""

    def __init__(self, message: str, parameter: str) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter


@dataclass
class Upload:
    id: str
    owner_id: str
    media_type: str
    category: str
    total_bytes: int
    shared: bool
    created_at: float
    expires_at: float
    segments: dict[int, bytes] = field(default_factory=dict, repr=False)
    size: int = 0
    sha256: str | None = None
    finalized_at: float | None = None
    ready_at: float | None = None
    dm_uses: int = 0

    @property
    def kind(self) -> str:
        return CATEGORY_KINDS[self.category]

    @property
    def key(self) -> str:
        return f"{_KEY_PREFIX[self.kind]}_{self.id}"

    @property
    def v1_type(self) -> str:
        return _V1_TYPE[self.kind]

    def as_sent(self) -> SentMedia:
        return SentMedia(
            self.id, self.key, self.media_type, self.category, self.size, self.sha256 or ""
        )

    def state(self, now: float) -> str:
        if self.finalized_at is None:
            return "uploading"
        if self.ready_at is not None and now < self.ready_at:
            return "in_progress"
        return "succeeded"

    def processing_info(self, now: float) -> dict[str, object] | None:
        """X's processing_info: only for media X processes after FINALIZE (GIFs, videos)."""
        if self.ready_at is None or self.finalized_at is None:
            return None
        if now >= self.ready_at:
            return {"state": "succeeded", "progress_percent": 100}
        return {"state": "in_progress", "check_after_secs": 1, "progress_percent": 50}


class MediaStore:
    """Every upload, under its own lock (uploads and DM sends arrive on many threads)."""

    def __init__(self, next_id: Callable[[], str]) -> None:
        self._next_id = next_id
        self._lock = threading.Lock()
        self._uploads: dict[str, Upload] = {}

    def initialize(
        self,
        owner_id: str,
        media_type: str,
        total_bytes: int,
        category: str | None,
        shared: bool,
        now: float,
    ) -> Upload:
        kind = kind_of(media_type)
        if kind is None:
            raise MediaRejected(
                f"media_type: {media_type} is not a supported media type", "media_type"
            )
        if category is None:  # X's default: a Post's media of that kind
            category = {IMAGE: "tweet_image", GIF: "tweet_gif", VIDEO: "tweet_video"}[kind]
        if category not in CATEGORY_KINDS:
            raise MediaRejected(
                f"media_category: {category} is not a media category", "media_category"
            )
        if CATEGORY_KINDS[category] != kind:
            raise MediaRejected(
                f"media_category: {category} does not take {media_type}", "media_category"
            )
        limit = MAX_BYTES[kind]
        if total_bytes <= 0:
            raise MediaRejected("total_bytes: must be positive", "total_bytes")
        if total_bytes > limit:
            raise MediaRejected(
                f"total_bytes: {total_bytes} bytes is over the {limit} bytes allowed for "
                f"{category}",
                "total_bytes",
            )
        upload = Upload(
            id=self._next_id(),
            owner_id=owner_id,
            media_type=media_type,
            category=category,
            total_bytes=total_bytes,
            shared=shared,
            created_at=now,
            expires_at=now + MEDIA_TTL_SECONDS,
        )
        with self._lock:
            self._uploads[upload.id] = upload
        return upload

    def _own(self, owner_id: str, media_id: str, now: float) -> Upload:
        upload = self._uploads.get(media_id)
        if upload is None or upload.owner_id != owner_id or now >= upload.expires_at:
            raise MediaRejected(
                f"media_id: [{media_id}] is not a valid media id (unknown or expired)", "media_id"
            )
        return upload

    def append(self, owner_id: str, media_id: str, index: int, chunk: bytes, now: float) -> Upload:
        with self._lock:
            upload = self._own(owner_id, media_id, now)
            if upload.finalized_at is not None:
                raise MediaRejected(f"media_id: [{media_id}] is already finalized", "media_id")
            if not 0 <= index <= MAX_SEGMENT_INDEX:
                raise MediaRejected(
                    f"segment_index: must be between 0 and {MAX_SEGMENT_INDEX}", "segment_index"
                )
            if not chunk or len(chunk) > MAX_SEGMENT_BYTES:
                raise MediaRejected(
                    f"media: a segment must hold 1 to {MAX_SEGMENT_BYTES} bytes", "media"
                )
            received = sum(len(s) for i, s in upload.segments.items() if i != index)
            if received + len(chunk) > upload.total_bytes:
                raise MediaRejected(
                    f"media: more than the {upload.total_bytes} bytes declared at initialize",
                    "media",
                )
            upload.segments[index] = chunk
            return upload

    def finalize(self, owner_id: str, media_id: str, now: float) -> Upload:
        with self._lock:
            upload = self._own(owner_id, media_id, now)
            if upload.finalized_at is not None:
                return upload
            data = b"".join(upload.segments[i] for i in sorted(upload.segments))
            if len(data) != upload.total_bytes:
                raise MediaRejected(
                    f"total_bytes: {upload.total_bytes} declared, {len(data)} received",
                    "total_bytes",
                )
            if not looks_like(upload.media_type, data):
                raise MediaRejected(
                    f"media: the uploaded bytes are not a valid {upload.media_type}", "media"
                )
            upload.segments = {}
            upload.size = len(data)
            upload.sha256 = hashlib.sha256(data).hexdigest()
            upload.finalized_at = now
            if upload.kind != IMAGE:
                upload.ready_at = now + PROCESSING_SECONDS
            return upload

    def status(self, owner_id: str, media_id: str, now: float) -> Upload:
        with self._lock:
            return self._own(owner_id, media_id, now)

    def take_for_dm(self, sender_id: str, media_id: str, now: float) -> Upload:
        """The media a DM attaches, checked as X checks it, and counted as used."""
        with self._lock:
            upload = self._uploads.get(media_id)
            if upload is None or upload.owner_id != sender_id or now >= upload.expires_at:
                raise MediaRejected(
                    f"attachments.media_id: [{media_id}] is not a valid media id "
                    "(unknown, expired or uploaded by another user)",
                    "attachments",
                )
            if upload.state(now) != "succeeded":
                raise MediaRejected(
                    f"attachments.media_id: [{media_id}] is not ready ({upload.state(now)})",
                    "attachments",
                )
            if upload.category not in DM_CATEGORIES:
                raise MediaRejected(
                    f"attachments.media_id: [{media_id}] was uploaded as {upload.category}; a "
                    "direct message takes dm_image, dm_gif or dm_video",
                    "attachments",
                )
            if upload.dm_uses and not upload.shared:
                raise MediaRejected(
                    f"attachments.media_id: [{media_id}] is already attached to a direct "
                    "message; upload it with shared=true to attach it to several",
                    "attachments",
                )
            upload.dm_uses += 1
            return upload

    def expire(self, media_id: str, now: float) -> bool:
        with self._lock:
            upload = self._uploads.get(media_id)
            if upload is None:
                return False
            upload.expires_at = min(upload.expires_at, now)
            return True

    def snapshot(self, owner_id: str | None = None) -> list[Upload]:
        with self._lock:
            return [u for u in self._uploads.values() if owner_id in (None, u.owner_id)]
