"""STOP and START: the contact's consent changes, and one confirmation DM says so."""

from __future__ import annotations

import asyncio

from mktx.settings import Settings
from models.db import SessionMaker
from sandbox.admin import ReceivedDM, SandboxAdmin, SandboxUser
from tests.conftest import Api
from tests.webhooks.conftest import (
    Shop,
    contacts_of,
    eventually,
    inbound,
    messages_of,
    post_signed,
)

# Long enough for a second (wrong) confirmation to have been sent too.
SETTLE_SECONDS = 1.5


async def _confirmations(
    x_admin: SandboxAdmin, shop: Shop, customer: SandboxUser
) -> list[ReceivedDM]:
    return await x_admin.dms(recipient_id=customer.id, sender_id=shop.x_id)


async def test_stop_opts_out_once_and_start_opts_back_in(
    live_api: str,
    api: Api,
    shop: Shop,
    customer: SandboxUser,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
) -> None:
    await x_admin.simulate_dm(customer.id, shop.x_id, "hi, I have a question")
    # Exactly the keyword, whatever its case and the spaces around it; delivered twice by X.
    stop = inbound(shop, customer, "  stop ")
    for _ in range(2):
        assert (await post_signed(api.client, stop)).status_code == 200

    (contact,) = await contacts_of(sessions, shop.account_id)
    assert contact.opted_out is True and contact.opted_out_at is not None
    shown = (await api.get(f"/contacts/{contact.id}")).json()["data"]
    assert shown["optedOut"] is True

    first = await eventually(
        lambda: _confirmations(x_admin, shop, customer), lambda dms: len(dms) >= 1
    )
    assert [dm.text for dm in first] == [settings.opt_out_confirmation]
    await asyncio.sleep(SETTLE_SECONDS)  # X's second delivery confirms nothing more
    assert await _confirmations(x_admin, shop, customer) == first

    # STOP again (a new message, not a retry): already opted out, no second confirmation.
    assert (await post_signed(api.client, inbound(shop, customer, "STOP"))).status_code == 200
    await asyncio.sleep(SETTLE_SECONDS)
    assert len(await _confirmations(x_admin, shop, customer)) == 1

    # START, through X's real delivery.
    delivery = await x_admin.simulate_dm(customer.id, shop.x_id, "Start")
    assert delivery.webhook_status == 200
    (contact,) = await contacts_of(sessions, shop.account_id)
    assert contact.opted_out is False and contact.opted_out_at is None
    both = await eventually(
        lambda: _confirmations(x_admin, shop, customer), lambda dms: len(dms) >= 2
    )
    assert [dm.text for dm in both] == [
        settings.opt_out_confirmation,
        settings.opt_in_confirmation,
    ]
    await asyncio.sleep(SETTLE_SECONDS)
    assert await _confirmations(x_admin, shop, customer) == both

    # The confirmations are outbound messages of the conversation, like any other send.
    conversation_id = (await api.get("/conversations")).json()["data"][0]["id"]
    detail = await api.get(f"/conversations/{conversation_id}", params={"includeMessages": "true"})
    messages = detail.json()["data"]["messages"]
    assert [(m["direction"], m["content"].strip()) for m in messages] == [
        ("inbound", "hi, I have a question"),
        ("inbound", "stop"),
        ("outbound", settings.opt_out_confirmation),
        ("inbound", "STOP"),
        ("inbound", "Start"),
        ("outbound", settings.opt_in_confirmation),
    ]


async def test_a_message_merely_containing_stop_changes_nothing(
    api: Api,
    shop: Shop,
    customer: SandboxUser,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
) -> None:
    texts = ("please stop sending me the catalogue", "STOP!", "stopp")
    for text in texts:
        assert (await post_signed(api.client, inbound(shop, customer, text))).status_code == 200
    (contact,) = await contacts_of(sessions, shop.account_id)
    assert contact.opted_out is False and contact.opted_out_at is None
    shown = (await api.get(f"/contacts/{contact.id}")).json()["data"]
    assert shown["optedOut"] is False
    # Stored as the customer's messages, and no confirmation DM went out for any of them...
    assert [m.content for m in await messages_of(sessions, shop.account_id)] == list(texts)
    await asyncio.sleep(SETTLE_SECONDS)
    assert await _confirmations(x_admin, shop, customer) == []

    # ... where the keyword itself gets one (so the wait above was not in vain).
    assert (await post_signed(api.client, inbound(shop, customer, "STOP"))).status_code == 200
    confirmed = await eventually(lambda: _confirmations(x_admin, shop, customer), bool)
    assert [dm.text for dm in confirmed] == [settings.opt_out_confirmation]
