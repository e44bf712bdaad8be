"""Campaign DMs in the inbox: each DM a campaign (or a test send) delivers is an outbound message
of the contact's open conversation (one is opened when there is none), so an agent sees what the
customer is answering. X's echo of the DM adds nothing; the reply lands next to it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlmodel import col
from temporalio.client import Client

from integrations.x import XClient, XCredentials
from mktx.settings import Settings
from models.campaign import Campaign, CampaignStatus
from models.conversation import Conversation, Message, MessageDirection, MessageStatus
from models.db import SessionMaker, utcnow
from models.quota import SendKind
from models.template import Template
from sandbox.admin import SandboxAdmin, SandboxUser
from services.campaigns import delivery as campaign_delivery
from services.campaigns.batches import claim_batch
from services.messaging import OutgoingDM, queue_messages
from services.messaging.delivery import CLAIM_LEASE
from services.messaging.records import Accepted, mark_attempted, record_accepted
from tests.campaigns.conftest import World, dms_per_person, make_world
from tests.conftest import Api
from tests.webhooks.conftest import Shop, dm_event, dm_payload, inbound, post_signed, users_of
from workflows import ids
from workflows.campaign import CampaignInput, CampaignWorkflow

pytestmark = pytest.mark.usefixtures("worker")


def _shop(world: World) -> Shop:
    return Shop(user=world.shop, account_id=uuid.UUID(world.account_id))


def _echo(world: World, person: SandboxUser, content: str, event_id: str) -> dict[str, Any]:
    """X's Account Activity echo of a DM the shop sent to `person`."""
    return dm_payload(
        world.shop.id,
        dm_event(world.shop.id, person.id, content, event_id=event_id),
        users=users_of(person, world.shop),
    )


async def _conversations(api: Api, contact_id: uuid.UUID) -> list[dict[str, Any]]:
    """The contact's conversations (newest activity first), each read with its messages."""
    listed = await api.get(f"/contacts/{contact_id}/conversations")
    assert listed.status_code == 200, listed.text
    read = []
    for row in listed.json()["data"]:
        detail = await api.get(f"/conversations/{row['id']}")
        assert detail.status_code == 200, detail.text
        read.append(detail.json()["data"])
    return read


async def _contact(api: Api, contact_id: uuid.UUID) -> dict[str, Any]:
    response = await api.get(f"/contacts/{contact_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


async def _signed(client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    response = await post_signed(client, payload)
    assert response.status_code == 200, response.text


async def test_campaign_dms_show_in_the_conversation_the_echo_adds_nothing_the_reply_follows(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=3)
    shop = _shop(world)
    talking, closed, new = world.people
    talking_id, closed_id, new_id = world.contact_ids
    # One customer is talking with the shop; another's conversation was closed.
    await _signed(api.client, inbound(shop, talking, "is the shop open on Sunday?"))
    await _signed(api.client, inbound(shop, closed, "thanks, all good"))
    (old,) = await _conversations(api, closed_id)
    closing = await api.put(f"/conversations/{old['id']}/close", json={"reason": "resolved"})
    assert closing.status_code == 200, closing.text
    (before,) = await _conversations(api, talking_id)

    campaign = await world.campaign()
    await world.start(campaign["id"])
    await world.wait_status(campaign["id"], "completed")
    dms = {dm.recipient_id: dm for dm in await x_admin.dms(sender_id=world.shop.id)}
    assert set(dms) == {p.id for p in world.people}

    async def is_the_campaign_dm(message: dict[str, Any], person: SandboxUser) -> bool:
        dm = dms[person.id]
        return (
            message["direction"] == "outbound"
            and message["status"] == "sent"
            and message["content"] == dm.text
            and message["twitterMessageId"] == dm.id
            and not message["isFromBot"]
            and message["campaignId"] == campaign["id"]
        )

    # The open conversation got the DM after the customer's question, and shows the activity.
    (now_talking,) = await _conversations(api, talking_id)
    assert now_talking["id"] == before["id"] and now_talking["status"] == "open"
    question, sent = now_talking["messages"]
    assert question["content"] == "is the shop open on Sunday?"
    assert await is_the_campaign_dm(sent, talking)
    assert now_talking["messageCount"] == 2
    assert now_talking["lastMessageAt"] == sent["sentAt"]
    assert datetime.fromisoformat(sent["sentAt"]) > datetime.fromisoformat(before["lastMessageAt"])
    # The closed conversation stays closed: the DM opened a new one.
    reopened, still_closed = await _conversations(api, closed_id)
    assert still_closed["id"] == old["id"] and still_closed["status"] == "closed"
    assert still_closed["messageCount"] == 1 and len(still_closed["messages"]) == 1
    assert reopened["status"] == "open" and reopened["messageCount"] == 1
    (dm_closed,) = reopened["messages"]
    assert await is_the_campaign_dm(dm_closed, closed)
    assert (await _contact(api, closed_id))["conversationCount"] == 2
    # A contact who never wrote has a conversation now, with the DM in it.
    (opened,) = await _conversations(api, new_id)
    assert opened["status"] == "open" and opened["messageCount"] == 1
    (dm_new,) = opened["messages"]
    assert await is_the_campaign_dm(dm_new, new)
    assert opened["lastMessageAt"] == opened["messages"][0]["sentAt"]
    assert (await _contact(api, new_id))["conversationCount"] == 1
    listed = await api.get("/conversations", params={"accountId": world.account_id})
    assert {c["id"] for c in listed.json()["data"]} == {
        now_talking["id"],
        reopened["id"],
        still_closed["id"],
        opened["id"],
    }

    # X echoes every DM the account sent to its webhook: that settles the message, adds none.
    for person in world.people:
        await _signed(api.client, _echo(world, person, dms[person.id].text, dms[person.id].id))
    (after_echo,) = await _conversations(api, new_id)
    assert after_echo["messages"] == opened["messages"]
    assert after_echo["messageCount"] == 1
    assert [len(c["messages"]) for c in await _conversations(api, talking_id)] == [2]
    assert [len(c["messages"]) for c in await _conversations(api, closed_id)] == [1, 1]

    # The customer answers: the reply lands in the conversation holding the DM it answers.
    await _signed(api.client, inbound(shop, new, "yes please, send me the deal"))
    (answered,) = await _conversations(api, new_id)
    assert answered["id"] == opened["id"] and answered["messageCount"] == 2
    dm, reply = answered["messages"]
    assert await is_the_campaign_dm(dm, new)
    assert reply["direction"] == "inbound" and reply["content"] == "yes please, send me the deal"
    assert reply["campaignId"] is None
    assert (await _contact(api, new_id))["conversationCount"] == 1
    metrics = (await api.get(f"/campaigns/{campaign['id']}/metrics")).json()["data"]
    assert metrics["delivered"] == 3 and metrics["replied"] == 1


async def test_an_echo_stored_before_the_campaign_recorded_its_dm_becomes_the_campaigns(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
    sandbox_x: XClient,
) -> None:
    """A worker handed a DM to X and died before recording it; X's echo reached the webhook and
    was stored as an outbound message beside the campaign's queued one. The retry finds the DM
    at X (not sent again), and the two become one: the campaign's, counted once."""
    world = await make_world(
        api, x_admin, sessions, recipients=2, content="Hi {{name}}, {{shop}} has a deal"
    )
    first, second = world.people
    campaign = await world.campaign()
    campaign_id = uuid.UUID(campaign["id"])
    workflow_id = ids.campaign_id(campaign["id"])
    # What the first attempt left: the occurrence begun (same run key as the workflow's), the
    # first recipient claimed through the send path and its DM handed to X, never recorded.
    async with sessions() as session, session.begin():
        await session.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id)
            .values(status=CampaignStatus.running)
        )
        begun = await campaign_delivery.begin_occurrence(
            session, api.merchant.id, campaign_id, workflow_id
        )
        assert begun is not None and begun.recipients == 2
        row = await session.get(Campaign, campaign_id)
        template = await session.get(Template, row.template_id)
        claim = await claim_batch(
            session, settings, row, template, occurrence=begun.occurrence, room=2, now=utcnow()
        )
        assert len(claim.message_ids) == 2
        # Only the first contact's DM went to X: the other stays claimed, never attempted.
        attempted = (
            await session.execute(
                select(col(Message.id)).where(
                    col(Message.id).in_(claim.message_ids),
                    col(Message.contact_id) == world.contact_ids[0],
                )
            )
        ).scalar_one()
        # Claimed longer ago than a claim's lease (services/messaging/delivery.py): that
        # attempt is over, so the retry looks for the DM at X at once.
        await mark_attempted(session, [attempted], utcnow() - 2 * CLAIM_LEASE)
    greeting = "Hi Person 0, GoodGo has a deal"
    credentials = XCredentials(world.shop.access_token, world.shop.access_token_secret)
    sent = await asyncio.to_thread(sandbox_x.send_dm, credentials, first.id, greeting)
    await _signed(api.client, _echo(world, first, greeting, sent.dm_event_id))
    (echoed,) = await _conversations(api, world.contact_ids[0])
    queued, echo = echoed["messages"]
    assert queued["status"] == "queued" and queued["campaignId"] == campaign["id"]
    assert echo["twitterMessageId"] == sent.dm_event_id and echo["campaignId"] is None

    handle = await temporal_client.start_workflow(
        CampaignWorkflow.run,
        CampaignInput(merchant_id=api.merchant.id, campaign_id=campaign_id),
        id=workflow_id,
        task_queue=settings.task_queue,
    )
    await asyncio.wait_for(handle.result(), timeout=60)

    assert await dms_per_person(x_admin, world) == {first.id: 1, second.id: 1}
    (conversation,) = await _conversations(api, world.contact_ids[0])
    assert conversation["id"] == echoed["id"] and conversation["messageCount"] == 1
    (message,) = conversation["messages"]
    assert message["twitterMessageId"] == sent.dm_event_id
    assert message["content"] == greeting
    assert message["campaignId"] == campaign["id"]
    assert (await _contact(api, world.contact_ids[0]))["conversationCount"] == 1
    (other,) = await _conversations(api, world.contact_ids[1])
    (message,) = other["messages"]
    assert message["content"] == "Hi Person 1, GoodGo has a deal"
    assert message["campaignId"] == campaign["id"]


async def test_test_sends_are_recorded_in_the_contacts_conversation(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(
        api, x_admin, sessions, recipients=2, content="Code {{code}} for {{name}}"
    )
    person = world.people[0]
    campaign = await world.campaign()
    response = await api.post(
        f"/campaigns/{campaign['id']}/test",
        json={"contactIds": [str(c) for c in world.contact_ids], "variables": {"code": "T10"}},
    )
    assert response.status_code == 200, response.text
    sent, also_sent = response.json()["data"]
    assert sent["status"] == "sent" and also_sent["status"] == "sent"
    # Without the variable the template needs, the test send fails: X gets nothing.
    missing = await api.post(
        f"/campaigns/{campaign['id']}/test", json={"contactIds": [str(world.contact_ids[1])]}
    )
    assert missing.json()["data"][0]["status"] == "failed"

    (dm,) = await x_admin.dms(sender_id=world.shop.id, recipient_id=person.id)
    (conversation,) = await _conversations(api, world.contact_ids[0])
    assert conversation["status"] == "open" and conversation["messageCount"] == 1
    (message,) = conversation["messages"]
    assert message["direction"] == "outbound" and message["status"] == "sent"
    assert message["content"] == sent["rendered"] == dm.text == "Code T10 for Person 0"
    assert message["twitterMessageId"] == sent["dmEventId"] == dm.id
    assert message["campaignId"] == campaign["id"]
    # The second contact's conversation holds its one test DM; the failed one added nothing.
    (other,) = await _conversations(api, world.contact_ids[1])
    assert other["messageCount"] == 1
    assert [m["twitterMessageId"] for m in other["messages"]] == [also_sent["dmEventId"]]

    await _signed(api.client, _echo(world, person, dm.text, dm.id))
    (after,) = await _conversations(api, world.contact_ids[0])
    assert after["messages"] == conversation["messages"] and after["messageCount"] == 1
    metrics = (await api.get(f"/campaigns/{campaign['id']}/metrics")).json()["data"]
    assert metrics["totalSent"] == 0  # test sends never count


async def test_an_echo_committed_while_the_dm_is_recorded_is_not_doubled(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, settings: Settings
) -> None:
    """The webhook stores the echo while the send path records the same DM: the recording
    waits for it, finds the X event id taken, and tries again with the echo in sight: one
    message, counted once."""
    world = await make_world(api, x_admin, sessions, recipients=1)
    campaign = await world.campaign()
    contact_id = world.contact_ids[0]
    account_id = uuid.UUID(world.account_id)
    event_id = str(uuid.uuid4().int % 10**18)
    dm = OutgoingDM(
        kind=SendKind.campaign,
        contact_id=contact_id,
        content="Hi Person 0",
        campaign_id=uuid.UUID(campaign["id"]),
    )
    async with sessions() as session, session.begin():
        queued = await queue_messages(session, settings, api.merchant.id, [dm])
        assert queued.queued == [dm]
    async with sessions() as session:
        conversation = await session.get(
            Conversation,
            (await session.get(Message, dm.message_id)).conversation_id,  # type: ignore[union-attr]
        )
    assert conversation is not None
    async with sessions() as webhook:
        # What ingestion writes for an echo it cannot match, not committed yet.
        await webhook.execute(
            update(Conversation)
            .where(col(Conversation.id) == conversation.id)
            .values(message_count=col(Conversation.message_count) + 1)
        )
        webhook.add(
            Message(
                merchant_id=api.merchant.id,
                conversation_id=conversation.id,
                account_id=account_id,
                contact_id=contact_id,
                direction=MessageDirection.outbound,
                content="Hi Person 0",
                twitter_message_id=event_id,
                status=MessageStatus.sent,
            )
        )
        await webhook.flush()

        async def record() -> None:
            async with sessions() as session, session.begin():
                await record_accepted(
                    session, [Accepted(dm.message_id, account_id, event_id, utcnow())]
                )

        recording = asyncio.create_task(record())
        for _ in range(200):  # until the recording waits for the echo's transaction
            async with sessions() as probe:  # pg_stat_activity is read once per transaction
                waiting = await probe.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
                if waiting.scalar_one():
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the recording never waited for the echo")
        await webhook.commit()
        await asyncio.wait_for(recording, timeout=10)

    (read,) = await _conversations(api, contact_id)
    assert read["id"] == str(conversation.id) and read["messageCount"] == 1
    (message,) = read["messages"]
    assert message["twitterMessageId"] == event_id
    assert message["campaignId"] == campaign["id"]
