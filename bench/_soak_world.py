"""The soak's world: the people X knows (the sandbox, pre-populated), the merchant's rows, what
the merchant sets up through the API (assistant, templates, segment, campaign, flow) and the
signed webhook bodies X would deliver.

One merchant with two accounts: `shop` (a sandbox user with tokens) sends everything — the
campaign, the flow's DMs, the assistant's answers — so the sandbox's DM log of that one sender
is the whole outbound record; `quiet` receives the bulk of the inbound DMs and never sends
(no auto-reply), the ingestion-only share of the webhook load. Each kind of person has its own
range of X ids, so a DM's recipient says which work sent it.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from api.app import BASE_PATH
from mktx.secrets import SecretBox
from mktx.settings import Settings
from sandbox.admin import SandboxUser
from services.core.auth import Role, issue_token
from services.ingestion.signatures import body_signature

CONSUMER_KEY = "bench-consumer-key"
CONSUMER_SECRET = "bench-consumer-secret-0123456789"
LLM_KEY = "sandbox"  # litellm's OpenAI client insists on one

# X id ranges, one per kind of person.
RECIPIENT_BASE = 7_100_000_000  # the campaign's recipients (seeded contacts)
FOLLOWER_BASE = 7_200_000_000  # follow the shop: the flow's trigger
ENROLLED_BASE = 7_300_000_000  # seeded contacts enrolled through the API
CUSTOMER_BASE = 7_400_000_000  # DM the shop: the assistant answers
QUIET_BASE = 7_500_000_000  # DM the quiet account: stored, never answered
CUSTOMERS = 300  # a bounded pool: open assistant sessions stay bounded too (600 s idle each)
QUIET_CUSTOMERS = 500

CAMPAIGN_TEXT = "Hi {{name}}, the soak sale starts now!"
WELCOME_TEXT = "Welcome {{name}}, thanks for following the soak shop!"
WELCOME_MARK = "thanks for following the soak shop"
CAMPAIGN_MARK = "the soak sale starts now"
INTENTS = [
    {"name": "order_status_query", "description": "where an order is, when it arrives"},
    {"name": "store_hours", "description": "when the shop is open"},
]
ENROLL_TAG = "soak-enrol"
CAMPAIGN_TAG = "soak-campaign"


def x_id(base: int, i: int) -> str:
    return str(base + i)


def serve_sandbox(port: int, recipients: int, followers: int, enrolled: int) -> None:
    """`python -m bench.soak --sandbox PORT RECIPIENTS FOLLOWERS ENROLLED`: X and the LLM,
    knowing everyone the run will DM (put straight into its state: tens of thousands of admin
    calls would be the setup's time, not the soak's)."""
    import uvicorn

    from sandbox.app import SandboxConfig, create_sandbox_app
    from sandbox.state import User

    app = create_sandbox_app(
        SandboxConfig(
            consumer_key=CONSUMER_KEY,
            consumer_secret=CONSUMER_SECRET,
            webhook_id="bench-webhook",
            webhook_url="http://127.0.0.1:9/unset",
            seed_demo=False,
        )
    )
    state = app.state.sandbox
    for base, count, kind in (
        (RECIPIENT_BASE, recipients, "reader"),
        (FOLLOWER_BASE, followers, "follower"),
        (ENROLLED_BASE, enrolled, "member"),
        (CUSTOMER_BASE, CUSTOMERS, "customer"),
    ):
        for i in range(count):
            user_id = x_id(base, i)
            state.users[user_id] = User(user_id, f"{kind}_{i}", f"{kind.title()} {i}", None)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


# Rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    shop_account: uuid.UUID
    shop_x_id: str
    shop_username: str
    quiet_x_id: str
    enrolled: list[tuple[str, str]]  # (contact id, X id), in the order they are enrolled
    token: str


def seed(
    url: str, settings: Settings, shop: SandboxUser, recipients: int, enrolled: int
) -> Merchant:
    """The merchant's two accounts and its seeded contacts (the campaign's recipients, the
    contacts enrolled through the API), written directly: their making is not the soak."""
    box = SecretBox.from_settings(settings)
    merchant_id = f"bench-soak-{uuid.uuid4().hex[:8]}"
    shop_account, quiet_account = uuid.uuid4(), uuid.uuid4()
    quiet_x_id = str(4_300_000_000 + uuid.uuid4().int % 10**6)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        account = sa.text(
            """
            INSERT INTO x_accounts (id, merchant_id, created_at, updated_at, twitter_user_id,
                username, display_name, status, subscription_status, auto_reply_enabled,
                connected_at, oauth_token_encrypted, oauth_token_secret_encrypted)
            VALUES (:id, :m, now(), now(), :x_id, :username, :name, 'active', 'subscribed',
                false, now(), :token, :secret)
            """
        )
        conn.execute(
            account,
            {
                "id": shop_account,
                "m": merchant_id,
                "x_id": shop.id,
                "username": shop.username,
                "name": "Soak Shop",
                "token": box.seal(shop.access_token),
                "secret": box.seal(shop.access_token_secret),
            },
        )
        conn.execute(
            account,
            {
                "id": quiet_account,
                "m": merchant_id,
                "x_id": quiet_x_id,
                "username": "soak_quiet",
                "name": "Soak Quiet",
                "token": None,
                "secret": None,
            },
        )
        contacts = sa.text(
            """
            INSERT INTO contacts (id, merchant_id, created_at, updated_at, account_id,
                twitter_user_id, username, display_name, tags, attributes, source, opted_out,
                conversation_count)
            SELECT gen_random_uuid(), :m, now(), now(), :a, CAST(:base + i AS text),
                :kind || '_' || i, initcap(:kind) || ' ' || i, ARRAY[CAST(:tag AS text)],
                '{}'::jsonb, 'manual', false, 0
            FROM generate_series(0, :count - 1) AS i
            RETURNING id, twitter_user_id
            """
        )
        common = {"m": merchant_id, "a": shop_account}
        conn.execute(
            contacts,
            {
                **common,
                "base": RECIPIENT_BASE,
                "kind": "reader",
                "tag": CAMPAIGN_TAG,
                "count": recipients,
            },
        )
        rows = conn.execute(
            contacts,
            {
                **common,
                "base": ENROLLED_BASE,
                "kind": "member",
                "tag": ENROLL_TAG,
                "count": enrolled,
            },
        ).all()
    engine.dispose()
    ordered = [(str(r[0]), str(r[1])) for r in sorted(rows, key=lambda r: int(r[1]))]
    token = issue_token(
        settings,
        merchant_id=merchant_id,
        user_id="bench-soak",
        roles=[Role.admin],
        ttl_seconds=86400,
    )
    return Merchant(merchant_id, shop_account, shop.id, shop.username, quiet_x_id, ordered, token)


# What the merchant sets up through the API ------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    campaign_id: str
    flow_id: str


async def set_up(api_url: str, merchant: Merchant, wait_seconds: int) -> Setup:
    """Auto-reply on the shop, the assistant on, the campaign (draft) and the flow (active):
    a new follower waits `wait_seconds`, then gets the welcome DM."""
    async with httpx.AsyncClient(
        base_url=api_url + BASE_PATH,
        headers={"Authorization": f"Bearer {merchant.token}"},
        timeout=60,
    ) as api:

        async def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
            response = await api.request(method, path, json=body)
            if response.status_code >= 300:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
            return response.json()["data"]

        await call("PUT", f"/accounts/{merchant.shop_account}", {"autoReplyEnabled": True})
        await call("PUT", "/ai/settings", {"enabled": True, "intents": INTENTS})
        sale = await call("POST", "/templates", {"name": "Soak sale", "content": CAMPAIGN_TEXT})
        welcome = await call("POST", "/templates", {"name": "Welcome", "content": WELCOME_TEXT})
        segment = await call(
            "POST",
            "/segments",
            {
                "name": "Soak readers",
                "match": "all",
                "conditions": [{"field": "tags", "operator": "contains", "value": CAMPAIGN_TAG}],
            },
        )
        campaign = await call(
            "POST",
            "/campaigns",
            {"name": "Soak sale", "templateId": sale["id"], "segmentIds": [segment["id"]]},
        )
        flow = await call(
            "POST",
            "/automation/flows",
            {
                "name": "Soak welcome",
                "trigger": {"type": "new_follower", "config": {}},
                "nodes": [
                    {"id": "pause", "type": "wait", "config": {"duration": wait_seconds}},
                    {
                        "id": "welcome",
                        "type": "send_message",
                        "config": {"templateId": welcome["id"]},
                    },
                ],
                "connections": [{"fromNodeId": "pause", "toNodeId": "welcome"}],
            },
        )
        await call("POST", f"/automation/flows/{flow['id']}/activate")
    return Setup(str(campaign["id"]), str(flow["id"]))


def read_paths(setup: Setup) -> list[str]:
    """The reads, in turn: contacts (plain and searched), conversations, the campaign's
    status, the analytics overview of the last week."""
    today = datetime.now(UTC).date()
    week = f"startDate={(today - timedelta(days=7)).isoformat()}&endDate={today.isoformat()}"
    return [
        "/contacts?limit=20",
        "/conversations?limit=20",
        f"/campaigns/{setup.campaign_id}",
        f"/analytics/overview?{week}",
        "/contacts?limit=20&search=follower",
        "/conversations?limit=20&status=open",
        f"/campaigns/{setup.campaign_id}",
        f"/analytics/overview?{week}&timezone=Europe/Paris",
    ]


# Webhook bodies -------------------------------------------------------------------------------

Signed = tuple[bytes, str, str]  # body, X's signature of it, what it is


class Bodies:
    """Signed deliveries as X makes them: a follow of the shop by the next follower, a DM to
    the shop from one of its customers (the assistant answers it), a DM to the quiet account.
    Each comes as (body, signature, what it is: `follow:<X id>`, `customer` or `quiet`)."""

    def __init__(self, merchant: Merchant) -> None:
        self._m = merchant
        self._serial = 0
        self.follows = 0
        self.customer_dms = 0
        self.quiet_dms = 0

    def _signed(self, payload: dict[str, Any], ref: str) -> Signed:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return body, body_signature(CONSUMER_SECRET, body), ref

    def _shop(self) -> dict[str, str]:
        return {"id": self._m.shop_x_id, "name": "Soak Shop", "screen_name": self._m.shop_username}

    def follow(self) -> Signed:
        i = self.follows
        self.follows += 1
        source = {
            "id": x_id(FOLLOWER_BASE, i),
            "name": f"Follower {i}",
            "screen_name": f"follower_{i}",
            "profile_image_url_https": f"https://pbs.example/follower_{i}.jpg",
        }
        event = {
            "type": "follow",
            "created_timestamp": str(int(time.time() * 1000)),
            "source": source,
            "target": self._shop(),
        }
        payload = {"for_user_id": self._m.shop_x_id, "follow_events": [event]}
        return self._signed(payload, f"follow:{source['id']}")

    def customer_dm(self) -> Signed:
        n = self.customer_dms
        self.customer_dms += 1
        sender = x_id(CUSTOMER_BASE, n % CUSTOMERS)
        text = f"Hi! Where is my order #{n}?"
        return self._dm(self._m.shop_x_id, self._shop(), sender, text, "customer")

    def quiet_dm(self) -> Signed:
        n = self.quiet_dms
        self.quiet_dms += 1
        sender = x_id(QUIET_BASE, n % QUIET_CUSTOMERS)
        account = {"id": self._m.quiet_x_id, "name": "Soak Quiet", "screen_name": "soak_quiet"}
        return self._dm(self._m.quiet_x_id, account, sender, f"Is parcel {n} on its way?", "quiet")

    def _dm(self, to_id: str, to_user: dict[str, str], sender: str, text: str, ref: str) -> Signed:
        self._serial += 1
        event = {
            "type": "message_create",
            "id": str(10**18 + int(time.time()) * 10**6 + self._serial),
            "created_timestamp": str(int(time.time() * 1000)),
            "message_create": {
                "target": {"recipient_id": to_id},
                "sender_id": sender,
                "message_data": {"text": text, "entities": {"urls": []}},
            },
        }
        users = {
            sender: {
                "id": sender,
                "name": f"Customer {sender[-4:]}",
                "screen_name": f"customer_{sender}",
                "profile_image_url_https": f"https://pbs.example/{sender}.jpg",
            },
            to_id: to_user,
        }
        payload = {"for_user_id": to_id, "direct_message_events": [event], "users": users}
        return self._signed(payload, ref)
