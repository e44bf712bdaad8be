"""X's media upload as the sandbox emulates it, driven by the service's own X client over real
HTTP: the chunked upload, X's type and size limits, processing, 24 h expiry, one media per DM,
faults; and the sample media the sandbox serves for tests."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import httpx
import pytest
import tweepy

from integrations.x import (
    MEDIA_SEGMENT_BYTES,
    XClient,
    XCredentials,
    XRateLimited,
    XRequestRejected,
    XUnauthorized,
    XUnavailable,
)
from sandbox.admin import SandboxAdmin, SandboxUser
from sandbox.app import SandboxConfig
from sandbox.media import MB, sample_media
from sandbox.server import RunningSandbox, start_sandbox_thread

KEY = "media-test-key"
SECRET = "media-test-secret"
T = TypeVar("T")


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningSandbox]:
    config = SandboxConfig(consumer_key=KEY, consumer_secret=SECRET, seed_demo=False)
    with start_sandbox_thread(config) as running:
        yield running


@pytest.fixture
async def admin(emulator: RunningSandbox) -> AsyncIterator[SandboxAdmin]:
    admin = emulator.admin
    yield admin
    await admin.clear_faults()


@pytest.fixture
def x(emulator: RunningSandbox) -> Iterator[XClient]:
    client = XClient(emulator.url, KEY, SECRET, timeout=5)
    yield client
    client.close()


@pytest.fixture
async def shop(admin: SandboxAdmin) -> SandboxUser:
    return await admin.create_user(f"shop_{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def customer(admin: SandboxAdmin) -> SandboxUser:
    return await admin.create_user(f"cust_{uuid.uuid4().hex[:8]}")


def creds(user: SandboxUser) -> XCredentials:
    return XCredentials(user.access_token, user.access_token_secret)


async def call(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Upload and attach --------------------------------------------------------------------------


async def test_a_chunked_image_upload_is_attached_and_logged_with_its_bytes(
    x: XClient, admin: SandboxAdmin, shop: SandboxUser, customer: SandboxUser
) -> None:
    data = sample_media("promo.png", "image/png", MEDIA_SEGMENT_BYTES + 1000)  # two segments
    uploaded = await call(x.upload_media, creds(shop), data, "image/png", "dm_image")

    sent = await call(x.send_dm, creds(shop), customer.id, "New in!", uploaded.media_id)
    image_only = await call(x.send_dm, creds(shop), customer.id, "", uploaded.media_id)

    assert uploaded.size == len(data)
    dms = {dm.id: dm for dm in await admin.dms(sender_id=shop.id)}
    first, second = dms[sent.dm_event_id], dms[image_only.dm_event_id]
    assert first.text == "New in!" and second.text == ""
    for dm in (first, second):
        assert dm.media is not None
        assert (dm.media.media_id, dm.media.media_type, dm.media.category) == (
            uploaded.media_id,
            "image/png",
            "dm_image",
        )
        assert (dm.media.size, dm.media.sha256) == (len(data), sha(data))
    [upload] = await admin.uploads(user_id=shop.id)
    assert (upload.state, upload.shared, upload.dm_uses) == ("succeeded", True, 2)
    mine = await admin.requests("/2/media", user_id=shop.id)  # the module's emulator is shared
    calls = [(r.method, r.path.rsplit("/", 1)[-1]) for r in mine]
    assert calls == [
        ("POST", "initialize"),
        ("POST", "append"),
        ("POST", "append"),
        ("POST", "finalize"),
    ]


async def test_a_video_is_attached_once_x_has_processed_it(
    x: XClient, admin: SandboxAdmin, shop: SandboxUser, customer: SandboxUser
) -> None:
    data = sample_media("clip.mp4", "video/mp4", 200_000)

    uploaded = await call(x.upload_media, creds(shop), data, "video/mp4", "dm_video")
    await call(x.send_dm, creds(shop), customer.id, "Watch", uploaded.media_id)

    statuses = [r for r in await admin.requests(user_id=shop.id) if r.method == "GET"]
    assert statuses and all(r.path == "/2/media/upload" for r in statuses)
    [dm] = await admin.dms(sender_id=shop.id)
    assert dm.media is not None and dm.media.category == "dm_video"
    assert dm.media.sha256 == sha(data)


async def test_x_limits_by_category_and_checks_the_bytes(x: XClient, shop: SandboxUser) -> None:
    too_big = sample_media("big.png", "image/png", 5 * MB + 1)
    with pytest.raises(XRequestRejected) as over:
        await call(x.upload_media, creds(shop), too_big, "image/png", "dm_image")
    assert over.value.status == 400 and "5242880" in over.value.reason
    # The same size is fine as a GIF (X takes GIFs up to 15 MB).
    gif = sample_media("big.gif", "image/gif", 5 * MB + 1)
    await call(x.upload_media, creds(shop), gif, "image/gif", "dm_gif")
    with pytest.raises(XRequestRejected) as wrong_bytes:
        await call(x.upload_media, creds(shop), b"<html>nope</html>", "image/png", "dm_image")
    assert "not a valid image/png" in wrong_bytes.value.reason
    with pytest.raises(XRequestRejected) as unknown_type:
        await call(x.upload_media, creds(shop), b"%PDF-1.7", "application/pdf", "dm_image")
    assert "media_type" in unknown_type.value.reason
    with pytest.raises(XRequestRejected) as mismatch:
        await call(x.upload_media, creds(shop), gif, "image/gif", "dm_image")
    assert "media_category" in mismatch.value.reason


async def test_dms_refuse_media_ids_x_does_not_hold_for_the_sender(
    x: XClient, admin: SandboxAdmin, shop: SandboxUser, customer: SandboxUser
) -> None:
    data = sample_media("a.jpg", "image/jpeg", 2000)
    once = await call(x.upload_media, creds(shop), data, "image/jpeg", "dm_image", shared=False)
    tweet = await call(x.upload_media, creds(shop), data, "image/jpeg", "tweet_image")
    expiring = await call(x.upload_media, creds(shop), data, "image/jpeg", "dm_image")

    async def refused(sender: SandboxUser, media_id: str) -> str:
        with pytest.raises(XRequestRejected) as caught:
            await call(x.send_dm, creds(sender), customer.id, "hi", media_id)
        assert caught.value.status == 400
        return caught.value.reason

    assert "not a valid media id" in await refused(shop, "1234567890")
    assert "not a valid media id" in await refused(customer, once.media_id)  # not theirs
    assert "dm_image" in await refused(shop, tweet.media_id)
    await call(x.send_dm, creds(shop), customer.id, "first", once.media_id)
    assert "shared=true" in await refused(shop, once.media_id)  # X: one DM unless shared
    await admin.expire_media(expiring.media_id)  # as 24 h later
    assert "not a valid media id" in await refused(shop, expiring.media_id)
    assert [dm.text for dm in await admin.dms(sender_id=shop.id)] == ["first"]


async def test_text_is_required_only_without_media(
    emulator: RunningSandbox, x: XClient, shop: SandboxUser, customer: SandboxUser
) -> None:
    with pytest.raises(XRequestRejected) as empty:
        await call(x.send_dm, creds(shop), customer.id, "")
    assert "text" in empty.value.reason
    with pytest.raises(tweepy.BadRequest) as two:  # tweepy's own call: its own error
        await call(
            x._tweepy(creds(shop)).request,
            "POST",
            f"/2/dm_conversations/with/{customer.id}/messages",
            json={"text": "x", "attachments": [{"media_id": "1"}, {"media_id": "2"}]},
            user_auth=True,
        )
    assert "one media" in two.value.response.text


async def test_upload_calls_need_the_users_oauth_signature(
    emulator: RunningSandbox, x: XClient, shop: SandboxUser
) -> None:
    uploaded_by_nobody = httpx.post(
        f"{emulator.url}/2/media/upload/initialize",
        json={"media_type": "image/png", "total_bytes": 10, "media_category": "dm_image"},
    )
    assert uploaded_by_nobody.status_code == 401
    append_unsigned = httpx.post(
        f"{emulator.url}/2/media/upload/123/append",
        data={"segment_index": "0"},
        files={"media": ("m", b"x")},
    )
    assert append_unsigned.status_code == 401
    wrong_app = XClient(emulator.url, KEY, "not-the-secret", timeout=5)
    with pytest.raises(XUnauthorized):
        await call(wrong_app.upload_media, creds(shop), b"GIF89a", "image/gif", "dm_gif")
    wrong_app.close()


async def test_faults_apply_to_uploads(x: XClient, admin: SandboxAdmin, shop: SandboxUser) -> None:
    data = sample_media("f.png", "image/png", 1000)
    await admin.set_faults(error_rate=1.0, error_status=503, path_prefix="/2/media")
    with pytest.raises(XUnavailable):
        await call(x.upload_media, creds(shop), data, "image/png", "dm_image")
    await admin.set_faults(burst429=1, retry_after_seconds=7, path_prefix="/2/media/upload/")
    with pytest.raises(XRateLimited) as limited:
        await call(x.upload_media, creds(shop), data, "image/png", "dm_image")
    assert 5 <= limited.value.retry_after <= 8
    await admin.clear_faults()
    uploaded = await call(x.upload_media, creds(shop), data, "image/png", "dm_image")
    faulted = [r.fault for r in await admin.requests("/2/media", user_id=shop.id) if r.fault]
    assert faulted == ["error503", "burst429"]
    assert [u.id for u in await admin.uploads(user_id=shop.id) if u.state == "succeeded"] == [
        uploaded.media_id
    ]


# Sample media -------------------------------------------------------------------------------


async def test_sample_media_is_deterministic_with_the_asked_type_size_and_status(
    admin: SandboxAdmin,
) -> None:
    async with httpx.AsyncClient() as client:
        png = await client.get(admin.media_url("shoe.png", size=3000))
        again = await client.get(admin.media_url("shoe.png", size=3000))
        video = await client.get(admin.media_url("clip", "video/mp4", 500))
        labelled = await client.get(
            admin.media_url("x.png", size=10, content_type="application/octet-stream")
        )
        missing = await client.get(admin.media_url("gone.png", status=404))
        await admin.set_media_status("shoe.png", 503)  # its host goes down
        down = await client.get(admin.media_url("shoe.png", size=3000))
        await admin.set_media_status("shoe.png", None)
        back = await client.get(admin.media_url("shoe.png", size=3000))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == again.content == sample_media("shoe.png", "image/png", 3000)
    assert png.content.startswith(b"\x89PNG") and len(png.content) == 3000
    assert video.headers["content-type"] == "video/mp4" and video.content[4:8] == b"ftyp"
    assert labelled.headers["content-type"] == "application/octet-stream"
    assert missing.status_code == 404
    assert down.status_code == 503 and back.content == png.content


async def test_dm_events_list_the_attached_media_key_when_asked(
    x: XClient, shop: SandboxUser, customer: SandboxUser
) -> None:
    data = sample_media("k.png", "image/png", 500)
    uploaded = await call(x.upload_media, creds(shop), data, "image/png", "dm_image")
    await call(x.send_dm, creds(shop), customer.id, "with media", uploaded.media_id)
    await call(x.send_dm, creds(shop), customer.id, "without")

    response = await call(
        x._tweepy(creds(shop)).request,
        "GET",
        f"/2/dm_conversations/with/{customer.id}/dm_events",
        params={"dm_event.fields": "text,attachments"},
        user_auth=True,
    )

    # As X shows a DM with media: its text ends with the media's t.co link.
    events = {e["text"].split(" https://t.co/")[0]: e for e in response.json()["data"]}
    with_media = events["with media"]
    assert re.fullmatch(r"with media https://t\.co/\w{10}", with_media["text"])
    assert with_media["attachments"] == {"media_keys": [uploaded.media_key]}
    assert "attachments" not in events["without"] and events["without"]["text"] == "without"
