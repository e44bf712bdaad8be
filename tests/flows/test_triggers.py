"""Flow triggers over HTTP: signed webhooks (follows, DMs, echoes) and the contacts API start
runs through ingestion's durable follow-ups, on the real Temporal dev server and worker; the
sandbox's DM log and the executions API are the judges.

A trigger that must not fire is checked next to one that must: the control event goes in
after the one under test, and once the control's run has ended, the one under test had every
chance to start its own."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from models.db import SessionMaker
from sandbox.admin import SandboxAdmin, SandboxUser
from tests.conftest import Api
from tests.flows.conftest import activate, create_flow, create_template, executions
from tests.webhooks.conftest import (
    Shop,
    connect,
    dm_event,
    dm_payload,
    eventually,
    follow_payload,
    follow_ups_of,
    inbound,
    post_signed,
    users_of,
    v1_user,
    x_user,
)

WELCOME = "Hi {{name}}, thanks for following!"
TIMEOUT = 30.0


def one_send(
    template_id: str, trigger: dict[str, Any], *, name: str = "One DM", **extra: Any
) -> dict[str, Any]:
    """A flow of one send_message node."""
    return {
        "name": name,
        "trigger": trigger,
        "nodes": [{"id": "send", "type": "send_message", "config": {"templateId": template_id}}],
        "connections": [],
        **extra,
    }


async def active_flow(
    api: Api, trigger: dict[str, Any], content: str = WELCOME, **extra: Any
) -> dict[str, Any]:
    template_id = await create_template(api, content)
    flow = await create_flow(api, one_send(template_id, trigger, **extra))
    await activate(api, flow["id"])
    return flow


async def dms_to(x_admin: SandboxAdmin, fan: SandboxUser, count: int = 1) -> list[str]:
    """The texts the fan received, once there are `count` (or the timeout passed)."""
    dms = await eventually(
        lambda: x_admin.dms(recipient_id=fan.id), lambda d: len(d) >= count, TIMEOUT
    )
    return [dm.text for dm in dms]


async def settled(api: Api, flow_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The flow's runs, once there are `count` and none is running (or the timeout passed)."""
    return await eventually(
        lambda: executions(api, flow_id),
        lambda runs: len(runs) >= count and all(r["status"] != "running" for r in runs),
        TIMEOUT,
    )


async def contact_id_of(api: Api, fan: SandboxUser) -> str:
    response = await api.get("/contacts", params={"search": fan.username})
    assert response.status_code == 200, response.text
    (contact,) = [c for c in response.json()["data"] if c["twitterUserId"] == fan.id]
    return str(contact["id"])


async def contact_ids_of(api: Api, fans: list[SandboxUser]) -> list[str]:
    return [await contact_id_of(api, fan) for fan in fans]


def shop_follows(shop: Shop, someone: SandboxUser) -> dict[str, Any]:
    """A follow event whose source is the shop: the account followed someone."""
    payload = follow_payload(shop, someone)
    event = payload["follow_events"][0]
    event["source"] = v1_user(shop.x_id, shop.user.username, shop.user.name)
    event["target"] = v1_user(someone.id, someone.username, someone.name)
    return payload


async def post_ok(app_client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    response = await post_signed(app_client, payload)
    assert response.status_code == 200, response.text


# new_follower ---------------------------------------------------------------------------------


async def test_new_follower_a_follow_enrols_the_follower_and_sends_the_dm(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    flow = await active_flow(api, {"type": "new_follower", "config": {}})
    fan = await x_user(x_admin, "fan", name="Lan")

    await post_ok(app_client, follow_payload(shop, fan))

    assert await dms_to(x_admin, fan) == ["Hi Lan, thanks for following!"]
    (run,) = await settled(api, flow["id"])
    assert run["status"] == "completed"
    assert run["contactId"] == await contact_id_of(api, fan)


async def test_new_follower_an_unfollow_does_not_enrol(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    flow = await active_flow(api, {"type": "new_follower", "config": {}})
    leaver, control = await x_user(x_admin, "leaver"), await x_user(x_admin, "control")

    await post_ok(app_client, follow_payload(shop, leaver, "unfollow"))
    await post_ok(app_client, follow_payload(shop, control))

    assert len(await dms_to(x_admin, control)) == 1
    (run,) = await settled(api, flow["id"])
    assert run["contactId"] == await contact_id_of(api, control)
    assert await x_admin.dms(recipient_id=leaver.id) == []


async def test_new_follower_the_shop_following_someone_does_not_enrol(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    flow = await active_flow(api, {"type": "new_follower", "config": {}})
    followed, control = await x_user(x_admin, "followed"), await x_user(x_admin, "control")

    await post_ok(app_client, shop_follows(shop, followed))
    await post_ok(app_client, follow_payload(shop, control))

    assert len(await dms_to(x_admin, control)) == 1
    (run,) = await settled(api, flow["id"])
    assert run["contactId"] == await contact_id_of(api, control)
    assert await x_admin.dms(recipient_id=followed.id) == []


async def test_flow_of_one_account_is_not_triggered_by_another_account_of_the_merchant(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    this_shop = await connect(api, await x_user(x_admin, "shop"))
    other_shop = await connect(api, await x_user(x_admin, "other"))
    flow = await active_flow(
        api, {"type": "new_follower", "config": {}}, accountId=str(this_shop.account_id)
    )
    assert flow["accountId"] == str(this_shop.account_id)
    elsewhere, here = await x_user(x_admin, "elsewhere"), await x_user(x_admin, "here")

    await post_ok(app_client, follow_payload(other_shop, elsewhere))
    await post_ok(app_client, follow_payload(this_shop, here))

    dms = await eventually(lambda: x_admin.dms(recipient_id=here.id), bool, TIMEOUT)
    assert [dm.sender_id for dm in dms] == [this_shop.x_id]
    (run,) = await settled(api, flow["id"])
    assert run["contactId"] == await contact_id_of(api, here)
    assert await x_admin.dms(recipient_id=elsewhere.id) == []


# message_received -----------------------------------------------------------------------------


async def test_message_received_contains_by_default_case_and_accent_insensitive(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    flow = await active_flow(
        api,
        {"type": "message_received", "config": {"keywords": ["promo", "café"]}},
        "Here is your code, {{name}}",
    )
    assert flow["trigger"]["config"]["match"] == "contains"
    shouting = await x_user(x_admin, "shouting", name="Mai")
    unaccented = await x_user(x_admin, "unaccented", name="Binh")
    chatty = await x_user(x_admin, "chatty", name="Tuan")

    await post_ok(app_client, inbound(shop, chatty, "hello, is anyone there?"))
    await post_ok(app_client, inbound(shop, shouting, "Any PROMO today?"))
    await post_ok(app_client, inbound(shop, unaccented, "one CAFE please"))

    assert await dms_to(x_admin, shouting) == ["Here is your code, Mai"]
    assert await dms_to(x_admin, unaccented) == ["Here is your code, Binh"]
    runs = await settled(api, flow["id"], 2)
    assert sorted(r["contactId"] for r in runs) == sorted(
        await contact_ids_of(api, [shouting, unaccented])
    )
    assert await x_admin.dms(recipient_id=chatty.id) == []


async def test_message_received_exact_takes_the_whole_trimmed_dm_only(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    flow = await active_flow(
        api,
        {"type": "message_received", "config": {"keywords": ["promo"], "match": "exact"}},
        "Here is your code",
    )
    longer, exact = await x_user(x_admin, "longer"), await x_user(x_admin, "exact")

    await post_ok(app_client, inbound(shop, longer, "promo please"))
    await post_ok(app_client, inbound(shop, exact, "  Promo "))

    assert await dms_to(x_admin, exact) == ["Here is your code"]
    (run,) = await settled(api, flow["id"])
    assert run["contactId"] == await contact_id_of(api, exact)
    assert await x_admin.dms(recipient_id=longer.id) == []


async def test_message_received_without_keywords_takes_any_inbound_dm(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    flow = await active_flow(
        api, {"type": "message_received", "config": {}}, "Thanks for writing, {{name}}"
    )
    assert flow["trigger"]["config"]["keywords"] == []
    fan = await x_user(x_admin, "fan", name="Lan")

    await post_ok(app_client, inbound(shop, fan, "what time do you open?"))

    assert await dms_to(x_admin, fan) == ["Thanks for writing, Lan"]
    (run,) = await settled(api, flow["id"])
    assert run["status"] == "completed"
    assert run["contactId"] == await contact_id_of(api, fan)


async def test_message_received_never_triggered_by_the_opt_out_or_opt_in_keyword(
    api: Api,
    app_client: httpx.AsyncClient,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    flow = await active_flow(api, {"type": "message_received", "config": {}}, "Thanks for writing")
    quitter, joiner = await x_user(x_admin, "quitter"), await x_user(x_admin, "joiner")
    control = await x_user(x_admin, "control")

    await post_ok(app_client, inbound(shop, quitter, "STOP"))
    await post_ok(app_client, inbound(shop, joiner, "START"))  # opted in already: no answer
    await post_ok(app_client, inbound(shop, control, "hello"))

    assert await dms_to(x_admin, control) == ["Thanks for writing"]
    (run,) = await settled(api, flow["id"])
    assert run["contactId"] == await contact_id_of(api, control)
    assert await x_admin.dms(recipient_id=joiner.id) == []
    # The quitter hears only the opt-out confirmation, never the flow.
    quitter_dms = [dm.text for dm in await x_admin.dms(recipient_id=quitter.id)]
    assert "Thanks for writing" not in quitter_dms
    # (An opted-out contact could not have begun a run anyway: the trigger itself passed.)
    decided = {
        f.payload["text"]: f.outcome
        for f in await follow_ups_of(sessions, api.merchant.id)
        if f.target == "flows.message_received"
    }
    assert decided == {"STOP": "skipped", "START": "skipped", "hello": "started"}


async def test_message_received_never_triggered_by_our_own_echo(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    flow = await active_flow(api, {"type": "message_received", "config": {}}, "Thanks for writing")
    written_to, control = await x_user(x_admin, "written"), await x_user(x_admin, "control")

    echo = dm_payload(
        shop.x_id,
        dm_event(shop.x_id, written_to.id, "hello from the shop"),
        users=users_of(written_to, shop.user),
    )
    await post_ok(app_client, echo)
    await post_ok(app_client, inbound(shop, control, "hello"))

    assert await dms_to(x_admin, control) == ["Thanks for writing"]
    (run,) = await settled(api, flow["id"])
    assert run["contactId"] == await contact_id_of(api, control)
    assert await x_admin.dms(recipient_id=written_to.id) == []


# Deliveries and several flows ----------------------------------------------------------------


async def test_the_same_webhook_delivered_twice_enrols_once(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    flow = await active_flow(api, {"type": "new_follower", "config": {}})
    fan = await x_user(x_admin, "fan", name="Lan")
    payload = follow_payload(shop, fan)

    await post_ok(app_client, payload)
    await post_ok(app_client, payload)

    assert await dms_to(x_admin, fan) == ["Hi Lan, thanks for following!"]
    (run,) = await settled(api, flow["id"])
    assert run["status"] == "completed"
    await asyncio.sleep(0.5)  # a second run would have started by now
    assert len(await executions(api, flow["id"])) == 1
    assert len(await x_admin.dms(recipient_id=fan.id)) == 1


async def test_two_active_flows_with_the_same_trigger_both_enrol_the_contact(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    welcome = await active_flow(api, {"type": "new_follower", "config": {}}, "Welcome, {{name}}")
    coupon = await active_flow(
        api, {"type": "new_follower", "config": {}}, "{{name}}, here is a coupon"
    )
    fan = await x_user(x_admin, "fan", name="Lan")

    await post_ok(app_client, follow_payload(shop, fan))

    assert sorted(await dms_to(x_admin, fan, 2)) == ["Lan, here is a coupon", "Welcome, Lan"]
    contact_id = await contact_id_of(api, fan)
    for flow in (welcome, coupon):
        (run,) = await settled(api, flow["id"])
        assert (run["contactId"], run["status"]) == (contact_id, "completed")


async def test_a_burst_of_follows_enrols_each_follower_once(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    """Deliveries answered together have their follow-ups decided and carried out together
    (services/ingestion/relay.py): each follower is still enrolled once, a repeat follow
    within the burst and one of a follower who ran through already enrol nobody again."""
    shop = await connect(api, await x_user(x_admin, "shop"))
    flow = await active_flow(api, {"type": "new_follower", "config": {}})
    fans = [await x_user(x_admin, f"fan{i}", name=f"Fan {i}") for i in range(12)]
    await post_ok(app_client, follow_payload(shop, fans[0], at_ms=1_700_000_000_000))
    await settled(api, flow["id"])

    burst = [follow_payload(shop, fan) for fan in fans]
    burst += [follow_payload(shop, fans[1], at_ms=1_700_000_000_500)]  # fans[1] twice
    await asyncio.gather(*(post_ok(app_client, payload) for payload in burst))

    runs = await settled(api, flow["id"], len(fans))
    assert sorted(r["contactId"] for r in runs) == sorted(await contact_ids_of(api, fans))
    assert {r["status"] for r in runs} == {"completed"}
    for fan in fans:
        assert await dms_to(x_admin, fan) == [f"Hi {fan.name}, thanks for following!"]
    await asyncio.sleep(0.5)  # a second run or DM would be there by now
    assert len(await executions(api, flow["id"])) == len(fans)
    assert len(await x_admin.dms(sender_id=shop.x_id)) == len(fans)


# tag_added ------------------------------------------------------------------------------------


async def test_tag_added_through_the_contacts_api_enrols_the_contact(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    fan = await x_user(x_admin, "fan", name="Lan")
    await post_ok(app_client, inbound(shop, fan, "hi"))  # the contact, before any flow
    contact_id = await contact_id_of(api, fan)
    flow = await active_flow(api, {"type": "tag_added", "config": {"tag": "vip"}}, "VIP {{name}}")

    other = await api.post(f"/contacts/{contact_id}/tags", json={"tags": ["newsletter"]})
    assert other.status_code == 200, other.text
    added = await api.post(f"/contacts/{contact_id}/tags", json={"tags": ["VIP"]})
    assert added.status_code == 200, added.text
    assert added.json()["data"]["tags"] == ["newsletter", "vip"]

    assert await dms_to(x_admin, fan) == ["VIP Lan"]
    (run,) = await settled(api, flow["id"])
    assert (run["contactId"], run["status"]) == (contact_id, "completed")


async def test_tag_added_by_a_flow_node_enrols_into_a_tag_added_flow(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    tagging = await create_flow(
        api,
        {
            "name": "Tag followers",
            "trigger": {"type": "new_follower", "config": {}},
            "nodes": [{"id": "tag", "type": "add_tag", "config": {"tags": ["Follower"]}}],
        },
    )
    await activate(api, tagging["id"])
    tagged = await active_flow(
        api, {"type": "tag_added", "config": {"tag": "follower"}}, "Tagged, {{name}}"
    )
    fan = await x_user(x_admin, "fan", name="Lan")

    await post_ok(app_client, follow_payload(shop, fan))

    assert await dms_to(x_admin, fan) == ["Tagged, Lan"]
    contact_id = await contact_id_of(api, fan)
    (first,) = await settled(api, tagging["id"])
    (second,) = await settled(api, tagged["id"])
    assert (first["contactId"], first["status"]) == (contact_id, "completed")
    assert (second["contactId"], second["status"]) == (contact_id, "completed")
    contact = (await api.get(f"/contacts/{contact_id}")).json()["data"]
    assert contact["tags"] == ["follower"]


async def test_tag_added_through_an_import_enrols_the_contacts_that_gained_it(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    had_it, gains_it, new_one, without = [
        await x_user(x_admin, "fan", name=name) for name in ("Had", "Gains", "New", "Without")
    ]
    await post_ok(app_client, inbound(shop, had_it, "hi"))
    await post_ok(app_client, inbound(shop, gains_it, "hi"))
    had_id = await contact_id_of(api, had_it)
    tagged = await api.post(f"/contacts/{had_id}/tags", json={"tags": ["vip"]})
    assert tagged.status_code == 200, tagged.text
    flow = await active_flow(api, {"type": "tag_added", "config": {"tag": "vip"}}, "VIP {{name}}")

    csv = "twitterUserId,username,displayName,tags\n" + "\n".join(
        f"{user.id},{user.username},{user.name},{tags}"
        for user, tags in (
            (had_it, "vip"),
            (gains_it, "vip;promo"),
            (new_one, "VIP"),
            (without, "promo"),
        )
    )
    response = await api.post(
        "/contacts/import",
        params={"accountId": str(shop.account_id)},
        content=csv.encode(),
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == 200, response.text

    # The two that gained the tag are enrolled; the one who had it already and the one
    # without it are not.
    assert await dms_to(x_admin, gains_it) == ["VIP Gains"]
    assert await dms_to(x_admin, new_one) == ["VIP New"]
    runs = await settled(api, flow["id"], count=2)
    enrolled = {run["contactId"] for run in runs}
    assert enrolled == set(await contact_ids_of(api, [gains_it, new_one]))
    assert await x_admin.dms(recipient_id=had_it.id) == []
    assert await x_admin.dms(recipient_id=without.id) == []


# manual ---------------------------------------------------------------------------------------


async def test_a_manual_flow_is_not_enrolled_by_a_follow(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    manual = await active_flow(api, {"type": "manual", "config": {}}, "Picked by hand")
    control = await active_flow(api, {"type": "new_follower", "config": {}})
    fan = await x_user(x_admin, "fan", name="Lan")

    await post_ok(app_client, follow_payload(shop, fan))

    assert await dms_to(x_admin, fan) == ["Hi Lan, thanks for following!"]
    await settled(api, control["id"])
    assert await executions(api, manual["id"]) == []

    # Only the endpoint enrols into it.
    contact_id = await contact_id_of(api, fan)
    enrolled = await api.post(
        f"/automation/flows/{manual['id']}/enroll", json={"contactIds": [contact_id]}
    )
    assert enrolled.status_code == 200, enrolled.text
    assert enrolled.json()["data"] == {"enrolled": 1, "skipped": []}
    assert await dms_to(x_admin, fan, 2) == ["Hi Lan, thanks for following!", "Picked by hand"]
