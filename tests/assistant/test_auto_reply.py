"""Auto-reply: inbound DMs answered by the assistant's workflow, through the one send path."""

from __future__ import annotations

import httpx

from sandbox.admin import SandboxAdmin
from tests.assistant.conftest import SHOP_INTENTS, ai_on
from tests.conftest import Api
from tests.webhooks.conftest import connect, eventually, inbound, post_signed, x_user


async def test_an_inbound_dm_is_answered_once_by_the_bot(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    await ai_on(api, intents=SHOP_INTENTS)
    shop = await connect(api, await x_user(x_admin, "shop", name="Shop"))
    response = await api.put(f"/accounts/{shop.account_id}", json={"autoReplyEnabled": True})
    assert response.status_code == 200, response.text
    customer = await x_user(x_admin, "cust", name="Customer")

    sent = await post_signed(app_client, inbound(shop, customer, "where is my order #4242?"))
    assert sent.status_code == 200

    dms = await eventually(lambda: x_admin.dms(recipient_id=customer.id), bool, 20)
    assert [dm.text for dm in dms] == [
        "Let me check that for you. Order #4242 was shipped and should arrive within 2 business days."
    ]
