"""Auto-reply as the customer and the merchant see it: the DMs the sandbox received, the
conversation's messages and its AI context, with the sandbox as the model."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from mktx.settings import Settings
from models.ai import DEFAULT_HANDOFF
from sandbox.admin import ReceivedDM, SandboxAdmin
from sandbox.llm import answer_for
from tests.assistant.conftest import Chat
from tests.conftest import Api
from tests.webhooks.conftest import (
    dm_event,
    dm_payload,
    eventually,
    inbound,
    post_signed,
    users_of,
)

CHAT_PATH = "/v1/chat/completions"
# Long enough for a second (wrong) DM, or an answer that should not be, to have been sent too.
SETTLE_SECONDS = 1.5


def reply_to(text: str) -> str:
    """What the sandbox's model answers to `text`."""
    return answer_for(text).reply


async def auto_reply_on(api: Api, chat: Chat, enabled: bool = True) -> None:
    response = await api.put(
        f"/accounts/{chat.shop.account_id}", json={"autoReplyEnabled": enabled}
    )
    assert response.status_code == 200, response.text


async def say(app_client: httpx.AsyncClient, chat: Chat, text: str) -> None:
    response = await post_signed(app_client, inbound(chat.shop, chat.customer, text))
    assert response.status_code == 200, response.text


async def shop_dms(x_admin: SandboxAdmin, chat: Chat) -> list[ReceivedDM]:
    """Every DM the shop sent the customer, as X received them."""
    return await x_admin.dms(recipient_id=chat.customer.id, sender_id=chat.shop.x_id)


async def dms_after_settling(x_admin: SandboxAdmin, chat: Chat, count: int = 1) -> list[str]:
    """The texts of the shop's DMs once `count` arrived and a second wave had time to."""
    await eventually(lambda: shop_dms(x_admin, chat), lambda dms: len(dms) >= count, 20)
    await asyncio.sleep(SETTLE_SECONDS)
    return [dm.text for dm in await shop_dms(x_admin, chat)]


async def model_requests(x_admin: SandboxAdmin, text: str | None = None) -> list[dict[str, Any]]:
    """The completions asked of the model (since the last clear) whose user messages
    mention `text` (all of them when None)."""
    return [
        r
        for r in await x_admin.llm_requests()
        if text is None or any(m["role"] == "user" and text in m["content"] for m in r["messages"])
    ]


async def context(api: Api, conversation_id: str) -> dict[str, Any]:
    response = await api.get(f"/ai/conversations/{conversation_id}/context")
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def messages(api: Api, conversation_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/conversations/{conversation_id}", params={"includeMessages": True})
    assert response.status_code == 200, response.text
    return response.json()["data"]["messages"]  # type: ignore[no-any-return]


def shown(rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    return [(m["direction"], m["content"], m["isFromBot"]) for m in rows]


async def test_one_dm_is_answered_once_by_a_bot_message(
    api: Api, app_client: httpx.AsyncClient, chat: Chat, x_admin: SandboxAdmin
) -> None:
    await auto_reply_on(api, chat)
    question = "where is my order #41011?"

    await say(app_client, chat, question)

    assert await dms_after_settling(x_admin, chat) == [reply_to(question)]
    assert shown(await messages(api, chat.conversation_id)) == [
        ("inbound", "hello", False),
        ("inbound", question, False),
        ("outbound", reply_to(question), True),
    ]
    ai = await context(api, chat.conversation_id)
    assert ai["context"] == [
        {"role": "user", "content": question},
        {"role": "assistant", "content": reply_to(question)},
    ]
    assert ai["currentIntent"] == "order_status_query" and ai["slots"] == {"orderId": "41011"}
    assert ai["botPaused"] is False and ai["escalation"] is None


async def test_an_echo_of_our_own_dm_is_not_answered(
    api: Api, app_client: httpx.AsyncClient, chat: Chat, x_admin: SandboxAdmin
) -> None:
    await auto_reply_on(api, chat)
    question = "where is my order #42011?"
    await say(app_client, chat, question)
    assert await dms_after_settling(x_admin, chat) == [reply_to(question)]

    # The merchant wrote from X's own app (an order number in it, which the bot would answer).
    ours = "Your order #42022 left our warehouse this morning."
    echo = dm_payload(
        chat.shop.x_id,
        dm_event(chat.shop.x_id, chat.customer.id, ours),
        users=users_of(chat.customer, chat.shop.user),
    )
    assert (await post_signed(app_client, echo)).status_code == 200
    await asyncio.sleep(SETTLE_SECONDS)

    assert [dm.text for dm in await shop_dms(x_admin, chat)] == [reply_to(question)]
    assert await model_requests(x_admin, "#42022") == []
    assert shown(await messages(api, chat.conversation_id))[-1] == ("outbound", ours, False)
    assert [t["content"] for t in (await context(api, chat.conversation_id))["context"]] == [
        question,
        reply_to(question),
    ]


async def test_stop_gets_only_the_opt_out_confirmation(
    api: Api,
    app_client: httpx.AsyncClient,
    chat: Chat,
    x_admin: SandboxAdmin,
    settings: Settings,
) -> None:
    await auto_reply_on(api, chat)
    await x_admin.clear_llm_requests()

    await say(app_client, chat, "STOP")

    assert await dms_after_settling(x_admin, chat) == [settings.opt_out_confirmation]
    assert await model_requests(x_admin, "STOP") == []
    ai = await context(api, chat.conversation_id)
    assert ai["context"] == [] and ai["escalation"] is None


async def test_dms_arriving_while_an_answer_is_prepared_are_answered_together_once(
    api: Api, app_client: httpx.AsyncClient, chat: Chat, x_admin: SandboxAdmin
) -> None:
    await auto_reply_on(api, chat)
    await x_admin.clear_llm_requests()
    await x_admin.set_faults(path_prefix=CHAT_PATH, latency_ms=1500)
    first, second = "where is my order #43011?", "it is order #43022 actually"

    await say(app_client, chat, first)
    await say(app_client, chat, second)

    async def answered() -> tuple[list[dict[str, Any]], list[ReceivedDM]]:
        return await model_requests(x_admin), await shop_dms(x_admin, chat)

    def second_answered(seen: tuple[list[dict[str, Any]], list[ReceivedDM]]) -> bool:
        requests, dms = seen
        last_user = [m for m in requests[-1]["messages"] if m["role"] == "user"] if requests else []
        return bool(dms) and len(dms) == len(requests) and second in last_user[-1]["content"]

    await eventually(answered, second_answered, 20)
    await asyncio.sleep(SETTLE_SECONDS + 1.5)  # one more (wrong) answer would take 1.5 s
    requests, dms = await answered()

    assert 1 <= len(requests) <= 2, [r["messages"][-1] for r in requests]
    assert len(dms) == len(requests)
    last_user = [m for m in requests[-1]["messages"] if m["role"] == "user"][-1]
    assert second in last_user["content"]  # no DM left unanswered
    if len(requests) == 2:  # the first alone, then the second with the first turn as context
        first_user = [m for m in requests[0]["messages"] if m["role"] == "user"][-1]
        assert first in first_user["content"] and second not in first_user["content"]
    else:  # both in one answer
        assert first in last_user["content"]
    said = [t["content"] for t in (await context(api, chat.conversation_id))["context"]]
    assert any(first in t for t in said[::2]) and any(second in t for t in said[::2])
    bot = [m for m in await messages(api, chat.conversation_id) if m["isFromBot"]]
    assert len(bot) == len(dms)


async def test_a_human_agents_reply_pauses_the_bot(
    api: Api, app_client: httpx.AsyncClient, chat: Chat, x_admin: SandboxAdmin
) -> None:
    await auto_reply_on(api, chat)
    question = "where is my order #44011?"
    await say(app_client, chat, question)
    assert await dms_after_settling(x_admin, chat) == [reply_to(question)]

    agent = "Hi, Sam from the team here: let me look into it."
    sent = await api.post(
        f"/conversations/{chat.conversation_id}/messages", json={"content": agent}
    )
    assert sent.status_code == 200, sent.text
    await say(app_client, chat, "thanks! and order #44022?")
    await asyncio.sleep(SETTLE_SECONDS)

    assert [dm.text for dm in await shop_dms(x_admin, chat)] == [reply_to(question), agent]
    assert await model_requests(x_admin, "#44022") == []
    assert (await context(api, chat.conversation_id))["botPaused"] is True
    assert shown(await messages(api, chat.conversation_id))[-2:] == [
        ("outbound", agent, False),
        ("inbound", "thanks! and order #44022?", False),
    ]


async def test_a_closed_conversations_next_dm_starts_afresh(
    api: Api, app_client: httpx.AsyncClient, chat: Chat, x_admin: SandboxAdmin
) -> None:
    await auto_reply_on(api, chat)
    before, after = "where is my order #45011?", "hi again, where is order #45022?"
    await say(app_client, chat, before)
    assert await dms_after_settling(x_admin, chat) == [reply_to(before)]
    old = await context(api, chat.conversation_id)
    closed = await api.put(f"/conversations/{chat.conversation_id}/close")
    assert closed.status_code == 200, closed.text
    await x_admin.clear_llm_requests()

    await say(app_client, chat, after)

    assert await dms_after_settling(x_admin, chat, 2) == [reply_to(before), reply_to(after)]
    listed = await api.get("/conversations", params={"accountId": str(chat.shop.account_id)})
    conversations = listed.json()["data"]
    assert sorted(c["status"] for c in conversations) == ["closed", "open"]
    (new,) = [c for c in conversations if c["status"] == "open"]
    assert new["id"] != chat.conversation_id
    fresh = await context(api, new["id"])
    assert fresh["sessionId"] not in (None, old["sessionId"])
    assert fresh["context"] == [
        {"role": "user", "content": after},
        {"role": "assistant", "content": reply_to(after)},
    ]
    assert fresh["slots"] == {"orderId": "45022"}
    (request,) = await model_requests(x_admin)
    assert not any("45011" in m["content"] for m in request["messages"])
    assert (await context(api, chat.conversation_id))["context"] == old["context"]


async def test_auto_reply_off_on_the_account_sends_no_bot_dm(
    api: Api, app_client: httpx.AsyncClient, chat: Chat, x_admin: SandboxAdmin
) -> None:
    await x_admin.clear_llm_requests()
    await say(app_client, chat, "where is my order #46011?")
    await asyncio.sleep(SETTLE_SECONDS)
    assert await shop_dms(x_admin, chat) == []
    assert await model_requests(x_admin) == []

    # The same conversation answers once the account's auto-reply is on.
    await auto_reply_on(api, chat)
    question = "where is my order #46022?"
    await say(app_client, chat, question)
    assert await dms_after_settling(x_admin, chat) == [reply_to(question)]


async def test_the_model_failing_escalates_and_sends_the_handoff_once(
    api: Api, app_client: httpx.AsyncClient, chat: Chat, x_admin: SandboxAdmin
) -> None:
    await auto_reply_on(api, chat)
    await x_admin.set_faults(path_prefix=CHAT_PATH, error_rate=1.0, error_status=500)

    await say(app_client, chat, "where is my order #47011?")

    assert await dms_after_settling(x_admin, chat) == [DEFAULT_HANDOFF]
    ai = await context(api, chat.conversation_id)
    assert ai["escalation"]["reason"] == "ai_unavailable"
    assert ai["escalation"]["status"] == "open" and ai["botPaused"] is True
    assert shown(await messages(api, chat.conversation_id))[-1] == (
        "outbound",
        DEFAULT_HANDOFF,
        True,
    )
    # The customer writes again, the model still down: no second handoff.
    await say(app_client, chat, "hello? order #47022")
    await asyncio.sleep(SETTLE_SECONDS)
    assert [dm.text for dm in await shop_dms(x_admin, chat)] == [DEFAULT_HANDOFF]
