"""Sending media in a conversation: an image, video or GIF attachment is fetched from its URL,
uploaded to X and attached to the DM (X takes one media per DM: the first; further ones and
`link`/`file` attachments go as links in the text). An attachment that cannot be had fails the
message with the reason. Media is served by the sandbox; what the customer received is read
from the sandbox's DM log."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest

from models.conversation import Message, MessageStatus
from models.db import SessionMaker
from sandbox.admin import ReceivedDM, SandboxAdmin
from sandbox.media import sample_media
from services.messaging.media import MediaUnavailable, fetch_media
from services.messaging.quota import quota_usage
from tests.conftest import Api
from tests.conversations.inbox import Shop, Thread, connect_shop, open_thread

UNREACHABLE = "http://127.0.0.1:9/receipt.png"


def digest(name: str, media_type: str, size: int) -> str:
    return hashlib.sha256(sample_media(name, media_type, size)).hexdigest()


async def _thread(api: Api, x_admin: SandboxAdmin, sessions: SessionMaker) -> tuple[Shop, Thread]:
    shop = await connect_shop(api, x_admin)
    return shop, await open_thread(sessions, x_admin, api.merchant.id, shop)


async def _received(x_admin: SandboxAdmin, thread: Thread) -> list[ReceivedDM]:
    return await x_admin.dms(recipient_id=thread.customer.id)


async def test_an_image_attachment_reaches_the_customer_as_media(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop, thread = await _thread(api, x_admin, sessions)
    attachment = {"type": "image", "url": x_admin.media_url("receipt.png", size=30_000)}

    response = await api.post(
        f"/conversations/{thread.id}/messages",
        json={"content": "Your receipt", "type": "image", "attachments": [attachment]},
    )

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "sent" and data["attachments"] == [attachment]
    [dm] = await _received(x_admin, thread)
    assert dm.id == data["twitterMessageId"] and dm.text == "Your receipt"
    assert dm.media is not None
    assert (dm.media.media_type, dm.media.category, dm.media.size) == (
        "image/png",
        "dm_image",
        30_000,
    )
    assert dm.media.sha256 == digest("receipt.png", "image/png", 30_000)
    [upload] = await x_admin.uploads(user_id=shop.user.id)
    assert upload.id == dm.media.media_id


async def test_one_media_per_dm_the_rest_go_as_links(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    _, thread = await _thread(api, x_admin, sessions)
    link = {"type": "link", "url": "https://shop.example/order/1"}
    clip = {"type": "video", "url": x_admin.media_url("unbox.mp4", size=50_000)}
    extra = {"type": "image", "url": x_admin.media_url("extra.png", size=100)}
    attachments = [link, clip, extra]

    response = await api.post(
        f"/conversations/{thread.id}/messages",
        json={"content": "", "attachments": attachments},  # text may be empty with media
    )

    assert response.status_code == 200, response.text
    assert response.json()["data"]["attachments"] == attachments
    [dm] = await _received(x_admin, thread)
    assert dm.text == f"{link['url']}\n{extra['url']}"
    assert dm.media is not None and dm.media.category == "dm_video"
    assert dm.media.sha256 == digest("unbox.mp4", "video/mp4", 50_000)


async def test_an_image_only_message_needs_no_text(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop, thread = await _thread(api, x_admin, sessions)
    gif = {"type": "gif", "url": x_admin.media_url("thanks.gif", size=2_000)}

    response = await api.post(
        f"/conversations/{thread.id}/messages", json={"content": "", "attachments": [gif]}
    )

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["content"] == "" and data["status"] == "sent"
    [dm] = await _received(x_admin, thread)
    assert dm.id == data["twitterMessageId"] and dm.text == ""
    assert dm.media is not None and dm.media.category == "dm_gif"
    assert dm.media.sha256 == digest("thanks.gif", "image/gif", 2_000)
    [upload] = await x_admin.uploads(user_id=shop.user.id)
    assert upload.id == dm.media.media_id
    # A link alone is text; a blank message with neither media nor text is still refused.
    empty = await api.post(
        f"/conversations/{thread.id}/messages",
        json={"content": "", "attachments": [{"type": "link", "url": "https://a.example/"}]},
    )
    assert empty.status_code == 200, empty.text
    blank = await api.post(f"/conversations/{thread.id}/messages", json={"content": " "})
    assert blank.status_code == 400 and blank.json()["details"]["field"] == "content"
    # What X got: the GIF alone, then the link as the DM's text; nothing for the blank one.
    first, second = await _received(x_admin, thread)
    assert first.id == dm.id
    assert (second.text, second.media) == ("https://a.example/", None)
    async with sessions() as session:
        assert await quota_usage(session, uuid.UUID(shop.account_id)) == 2


async def test_an_unreachable_attachment_fails_the_message_with_the_reason(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop, thread = await _thread(api, x_admin, sessions)

    response = await api.post(
        f"/conversations/{thread.id}/messages",
        json={"content": "Receipt", "attachments": [{"type": "image", "url": UNREACHABLE}]},
    )

    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "BAD_REQUEST"
    reason = body["details"]["reason"]
    assert reason.startswith(f"attachments[0].url: {UNREACHABLE} could not be reached")
    async with sessions() as session:
        message = await session.get(Message, uuid.UUID(body["details"]["messageId"]))
        assert message is not None and message.status == MessageStatus.failed
        assert message.error == reason
        assert await quota_usage(session, uuid.UUID(shop.account_id)) == 0
    assert await _received(x_admin, thread) == []
    assert await x_admin.uploads(user_id=shop.user.id) == []


@pytest.mark.parametrize(
    ("name", "query", "expected"),
    [
        ("page.png", {"content_type": "text/html"}, "is text/html, not a JPEG, PNG"),
        ("gone.png", {"status": 404}, "answered HTTP 404"),
        ("big.jpg", {"size": 5 * 1024 * 1024 + 1}, "X attaches images of up to 5 MB"),
    ],
)
async def test_attachments_x_would_not_take_are_refused_before_any_upload(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    name: str,
    query: dict[str, object],
    expected: str,
) -> None:
    shop, thread = await _thread(api, x_admin, sessions)
    url = x_admin.media_url(name, **query)  # type: ignore[arg-type]

    response = await api.post(
        f"/conversations/{thread.id}/messages",
        json={"content": "See", "attachments": [{"type": "image", "url": url}]},
    )

    assert response.status_code == 400, response.text
    assert expected in response.json()["details"]["reason"]
    assert await _received(x_admin, thread) == []
    assert await x_admin.uploads(user_id=shop.user.id) == []


async def test_an_upload_outage_is_retried_and_the_dm_still_carries_the_media(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop, thread = await _thread(api, x_admin, sessions)
    image = {"type": "image", "url": x_admin.media_url("retry.png", size=1_000)}
    await x_admin.set_faults(error_rate=1.0, error_status=503, path_prefix="/2/media/upload")

    send = asyncio.create_task(
        api.post(
            f"/conversations/{thread.id}/messages",
            json={"content": "Here", "attachments": [image]},
        )
    )
    await asyncio.sleep(1.5)
    await x_admin.clear_faults()
    response = await send

    assert response.status_code == 200, response.text
    faulted = [r for r in await x_admin.requests("/2/media", user_id=shop.user.id) if r.fault]
    assert faulted  # X was down for the first tries
    [dm] = await _received(x_admin, thread)
    assert dm.media is not None and dm.media.sha256 == digest("retry.png", "image/png", 1_000)


# Fetching ----------------------------------------------------------------------------------


async def test_fetch_takes_unlabelled_media_by_its_bytes(x_admin: SandboxAdmin) -> None:
    url = x_admin.media_url("blob.bin", "image/jpeg", 700, content_type="application/octet-stream")

    media = await fetch_media(url, allow_private=True)

    assert (media.content_type, media.category) == ("image/jpeg", "dm_image")
    assert media.data == sample_media("blob.bin", "image/jpeg", 700)


async def test_fetch_refuses_private_addresses_unless_allowed(x_admin: SandboxAdmin) -> None:
    url = x_admin.media_url("inside.png", size=100)  # the sandbox listens on 127.0.0.1

    with pytest.raises(MediaUnavailable) as refused:
        await fetch_media(url, allow_private=False)

    assert refused.value.reason == "is on a private network address"
    assert (await fetch_media(url, allow_private=True)).content_type == "image/png"


async def test_a_media_id_x_no_longer_takes_is_uploaded_again(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop, thread = await _thread(api, x_admin, sessions)
    image = {"type": "image", "url": x_admin.media_url("late.png", size=1_000)}
    # The DM reaches X late: the media id expires meanwhile, and X refuses it.
    await x_admin.set_faults(latency_ms=1500, path_prefix="/2/dm_conversations")
    send = asyncio.create_task(
        api.post(
            f"/conversations/{thread.id}/messages",
            json={"content": "Here", "attachments": [image]},
        )
    )
    while not (
        ready := [u for u in await x_admin.uploads(user_id=shop.user.id) if u.state == "succeeded"]
    ):
        await asyncio.sleep(0.02)
    await x_admin.expire_media(ready[0].id)
    await x_admin.clear_faults()
    response = await send

    assert response.status_code == 200, response.text
    first, second = await x_admin.uploads(user_id=shop.user.id)
    assert first.expired and first.dm_uses == 0 and second.dm_uses == 1
    [dm] = await _received(x_admin, thread)
    assert dm.media is not None and dm.media.media_id == second.id
