"""The assistant's tests: a merchant with the AI on, a shop, and a customer who wrote (so
that a conversation exists)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sandbox.admin import SandboxAdmin, SandboxUser
from tests.conftest import Api
from tests.webhooks.conftest import Shop, connect, eventually, inbound, post_signed, x_user


@dataclass
class Chat:
    shop: Shop
    customer: SandboxUser
    conversation_id: str


async def ai_on(api: Api, **settings: Any) -> dict[str, Any]:
    response = await api.put("/ai/settings", json={"enabled": True, **settings})
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def open_chat(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin, text: str = "hello"
) -> Chat:
    """A shop and a customer whose DM opened a conversation."""
    shop = await connect(api, await x_user(x_admin, "shop", name="Shop"))
    customer = await x_user(x_admin, "cust", name="Customer")
    response = await post_signed(app_client, inbound(shop, customer, text))
    assert response.status_code == 200, response.text

    async def conversations() -> list[dict[str, Any]]:
        answer = await api.get("/conversations", params={"accountId": str(shop.account_id)})
        return answer.json()["data"]  # type: ignore[no-any-return]

    (conversation,) = await eventually(conversations, bool)
    return Chat(shop, customer, conversation["id"])


SHOP_INTENTS = [
    {"name": "order_status_query", "description": "where an order is, when it arrives"},
    {"name": "store_hours", "description": "when the shop is open"},
]


@pytest.fixture
async def chat(api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin) -> Chat:
    await ai_on(api, intents=SHOP_INTENTS)
    return await open_chat(api, app_client, x_admin)
