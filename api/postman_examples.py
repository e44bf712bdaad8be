"""What the Postman collection's walkthrough (api/postman_walkthrough.py) is made of: its steps'
shape, the collection variables' defaults, the bodies (the API specification's examples,
adapted so that this service and `make dev`'s sandbox accept them) and the scripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mktx.settings import DEV_X_CONSUMER_SECRET

# The sandbox's seeded demo users (sandbox/state.py; tests/api/test_postman_newman.py checks
# the copies): the api package may not import the sandbox.
DEMO_BUSINESS_TOKEN = "demo-goodgo-token"
DEMO_BUSINESS_TOKEN_SECRET = "demo-goodgo-secret"
DEMO_BUSINESS_ID = "1000000001"
DEMO_CUSTOMER_ID = "2000000001"

# Collection variables with a value before anything runs; `make dev`'s defaults, overridable
# in Postman or with `newman --env-var`.
DEFAULTS: dict[str, str] = {
    "token": "",
    "consumerSecret": DEV_X_CONSUMER_SECRET,
    "xOauthToken": DEMO_BUSINESS_TOKEN,
    "xOauthTokenSecret": DEMO_BUSINESS_TOKEN_SECRET,
    "shopXId": DEMO_BUSINESS_ID,
    "customerXId": DEMO_CUSTOMER_ID,
    "tagName": "premium",
    "attachmentIndex": "0",
}

# A path parameter is filled from the collection variable of its own name, except these.
PATH_VARIABLES = {"n": "attachmentIndex", "code": "linkCode"}


@dataclass(frozen=True)
class Step:
    """One request of the walkthrough."""

    key: str  # "METHOD /path" of an OpenAPI operation
    name: str | None = None  # else the operation's summary
    body: Any = None  # JSON-encoded unless a str
    content_type: str = "application/json"
    query: dict[str, str] = field(default_factory=dict)  # values; these parameters are enabled
    path: dict[str, str] = field(default_factory=dict)  # path parameter -> value
    # Collection variable -> JavaScript expression on `body` (the parsed answer).
    saves: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # one of the documented answers, when only one is right here
    prerequest: str = ""
    checks: str = ""  # more JavaScript, run after the status check
    # A JavaScript condition on `body`: the request is sent again (up to 40 times, 250 ms
    # apart) until it holds, for what a workflow writes a moment after the answer.
    until: str | None = None
    follow_redirects: bool = True
    url: str | None = None  # a request outside the OpenAPI (the sandbox's), with its method


# X signs a delivery's raw body with the app's consumer secret (services/ingestion/
# signatures.py): the body is resolved first so that the bytes signed are the bytes sent.
SIGN_DELIVERY = """
pm.variables.set("dmEventId", String(Date.now()) + String(Math.floor(Math.random() * 1000)));
pm.variables.set("dmTimestamp", String(Date.now()));
const raw = pm.variables.replaceIn(pm.request.body.raw);
const secret = pm.variables.get("consumerSecret");
const signature = CryptoJS.HmacSHA256(raw, secret).toString(CryptoJS.enc.Base64);
pm.request.body.update(raw);
pm.request.headers.upsert({key: "x-twitter-webhooks-signature", value: "sha256=" + signature});
"""

CHECK_CRC = """
pm.test("response_token is sha256=base64(HMAC-SHA256(consumerSecret, crc_token))", () => {
  const expected = CryptoJS.HmacSHA256("challenge-123", pm.variables.get("consumerSecret"))
    .toString(CryptoJS.enc.Base64);
  pm.expect(body.response_token).to.eql("sha256=" + expected);
});
"""

# Dates relative to today, so the requests stay valid whenever they run.
TOMORROW = """
pm.collectionVariables.set("campaignStartAt", new Date(Date.now() + 86400000).toISOString());
"""
LAST_30_DAYS = """
const today = new Date();
pm.collectionVariables.set("endDate", today.toISOString().slice(0, 10));
pm.collectionVariables.set(
  "startDate", new Date(today.getTime() - 30 * 86400000).toISOString().slice(0, 10));
"""


def status_is(wanted: str) -> str:
    return f'pm.test("status is {wanted}", () => pm.expect(body.data.status).to.eql("{wanted}"));'


TEMPLATE = {
    "name": "Welcome Message",
    "type": "text",
    "content": "Hi {{name}}, welcome to {{shop_name}}! Use code {{discount_code}} for 10% off "
    "your first order: https://goodgo.example/welcome",
    "variables": ["name", "shop_name", "discount_code"],
}
SEGMENT_CONDITIONS = [
    {"field": "tags", "operator": "contains", "value": "vip"},
    {"field": "attributes.purchaseCount", "operator": "greaterThan", "value": 5},
    {"field": "lastInteractionAt", "operator": "withinLastDays", "value": 30},
]
RECURRING_TOMORROW = {
    "startAt": "{{campaignStartAt}}",
    "endAt": None,
    "recurrence": {"frequency": "daily", "time": "10:00", "timezone": "Asia/Ho_Chi_Minh"},
}
FLOW_VARIABLES = {"shop_name": "GoodGo Shop", "discount_code": "WELCOME10"}
FLOW_NODES = [
    {
        "id": "node-1",
        "type": "send_message",
        "config": {"templateId": "{{templateId}}", "variables": FLOW_VARIABLES},
    },
    {"id": "node-2", "type": "wait", "config": {"duration": 86400}},
    {
        "id": "node-3",
        "type": "send_message",
        "config": {"templateId": "{{spareTemplateId}}", "variables": FLOW_VARIABLES},
    },
]
FLOW_CONNECTIONS = [
    {"fromNodeId": "node-1", "toNodeId": "node-2"},
    {"fromNodeId": "node-2", "toNodeId": "node-3"},
]
INBOUND_DM = {
    "for_user_id": "{{twitterUserId}}",
    "direct_message_events": [
        {
            "type": "message_create",
            "id": "{{dmEventId}}",
            "created_timestamp": "{{dmTimestamp}}",
            "message_create": {
                "sender_id": "{{customerXId}}",
                "target": {"recipient_id": "{{twitterUserId}}"},
                "message_data": {"text": "Hello! Where is my order #12345?", "entities": {}},
            },
        }
    ],
    "users": {
        "{{customerXId}}": {
            "id": "{{customerXId}}",
            "screen_name": "customer_john",
            "name": "John Doe",
        }
    },
}
IMPORT_CSV = (
    "twitterUserId,username,displayName,tags,attributes.city\n"
    "2000000002,customer_mai,Mai Tran,customer;newsletter,Hanoi\n"
)
JOHN = 'body.data.find((c) => c.twitterUserId === pm.variables.get("customerXId")).id'
PHOTO_DM = (
    'body.data.messages.find((m) => m.direction === "inbound" && m.attachments.length > 0).id'
)
