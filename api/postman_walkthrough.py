"""The walkthrough the Postman collection runs: which requests, in which order, with which bodies.

api/postman.py takes each request's method, path, parameters and documented answers from the
OpenAPI document; this module adds what a schema cannot say: an order in which creators come
before their users and deletes come last, the bodies (api/postman_examples.py), and which ids
each answer leaves in collection variables for the requests after it. "Run collection" with
only `token` set then goes top to bottom against `make dev` and its sandbox.

Keys are "METHOD /path" as the OpenAPI names the path, without the `/api/v1/mkt-x` base.
"""

from __future__ import annotations

from api.postman_examples import (
    CHECK_CRC,
    FLOW_CONNECTIONS,
    FLOW_NODES,
    IMPORT_CSV,
    INBOUND_DM,
    JOHN,
    LAST_30_DAYS,
    PHOTO_DM,
    RECURRING_TOMORROW,
    SEGMENT_CONDITIONS,
    SIGN_DELIVERY,
    TEMPLATE,
    TOMORROW,
    Step,
    status_is,
)

WALKTHROUGH: list[tuple[str, list[Step]]] = [
    (
        "operations",
        [Step("GET /healthz"), Step("GET /readyz", status=200), Step("GET /metrics")],
    ),
    (
        "accounts",
        [
            # Disconnecting (the last request) revokes the token at X: each run asks the
            # sandbox for a new one, so that the collection can run again.
            Step(
                "POST /_sandbox/users/{id}/tokens",
                name="Sandbox (make dev only): a new OAuth token for the demo X account",
                url="{{sandboxUrl}}/_sandbox/users/{{shopXId}}/tokens",
                status=201,
                saves={
                    "xOauthToken": "body.accessToken",
                    "xOauthTokenSecret": "body.accessTokenSecret",
                },
            ),
            Step(
                "POST /accounts",
                name="Connect the sandbox's demo X account",
                body={"oauthToken": "{{xOauthToken}}", "oauthTokenSecret": "{{xOauthTokenSecret}}"},
                saves={"accountId": "body.data.id", "twitterUserId": "body.data.twitterUserId"},
            ),
            Step("GET /accounts"),
            Step("GET /accounts/{accountId}"),
            Step(
                "PUT /accounts/{accountId}",
                body={
                    "autoReplyEnabled": True,
                    "businessHours": {
                        "enabled": True,
                        "timezone": "Asia/Ho_Chi_Minh",
                        "schedule": {
                            "monday": {"start": "09:00", "end": "18:00"},
                            "tuesday": {"start": "09:00", "end": "18:00"},
                        },
                    },
                },
            ),
        ],
    ),
    (
        "webhooks",
        [
            Step("GET /webhooks/verify", query={"crc_token": "challenge-123"}, checks=CHECK_CRC),
            Step("GET /webhooks/twitter", query={"crc_token": "challenge-123"}, checks=CHECK_CRC),
            Step(
                "POST /webhooks/twitter",
                name="Receive a signed DM from the sandbox's demo customer",
                body=INBOUND_DM,
                prerequest=SIGN_DELIVERY,
                checks='pm.test("one event received", () => pm.expect(body.data.received).to.eql(1));',
            ),
            Step(
                "POST /_sandbox/simulate/dm",
                name="Sandbox (make dev only): the customer sends a photo, delivered by X's webhook",
                url="{{sandboxUrl}}/_sandbox/simulate/dm",
                body={
                    "fromUserId": "{{customerXId}}",
                    "toUserId": "{{twitterUserId}}",
                    "text": "Here is my receipt",
                    "media": "image",
                },
                status=200,
                checks='pm.test("X delivered it: 200", () => pm.expect(body.webhookStatus).to.eql(200));',
            ),
        ],
    ),
    (
        "contacts",
        [
            Step(
                "POST /contacts/import",
                name="Import contacts (CSV)",
                query={"accountId": "{{accountId}}"},
                body=IMPORT_CSV,
                content_type="text/csv",
            ),
            Step(
                "GET /contacts",
                query={"accountId": "{{accountId}}", "search": "john"},
                saves={"contactId": JOHN},
            ),
            Step("GET /contacts/{contactId}"),
            Step(
                "PUT /contacts/{contactId}",
                body={
                    "displayName": "John Doe (VIP)",
                    "attributes": {"preferredLanguage": "en", "notes": "Premium customer"},
                },
            ),
            Step("POST /contacts/{contactId}/tags", body={"tags": ["vip", "premium"]}),
            Step("DELETE /contacts/{contactId}/tags/{tagName}"),
            Step(
                "PUT /contacts/{contactId}/attributes",
                body={
                    "attributes": {
                        "purchaseCount": 6,
                        "totalSpent": 1500000,
                        "lastPurchaseDate": "2026-01-18",
                        "membershipTier": "gold",
                    }
                },
            ),
            Step(
                "GET /contacts/{contactId}/conversations",
                saves={"conversationId": "body.data[0].id"},
            ),
        ],
    ),
    (
        "templates",
        [
            Step("POST /templates", body=TEMPLATE, saves={"templateId": "body.data.id"}),
            Step(
                "POST /templates",
                name="Create a second template (the one deleted at the end)",
                body={"name": "Spring teaser", "content": "Spring is coming to {{shop_name}}!"},
                saves={"spareTemplateId": "body.data.id"},
            ),
            Step("GET /templates", query={"search": "welcome"}),
            Step("GET /templates/{templateId}"),
            Step(
                "PUT /templates/{templateId}",
                body={**TEMPLATE, "name": "Updated Welcome Message"},
            ),
            Step(
                "POST /templates/{templateId}/preview",
                body={
                    "variables": {
                        "name": "John",
                        "shop_name": "GoodGo Shop",
                        "discount_code": "WELCOME10",
                    }
                },
            ),
        ],
    ),
    (
        "segments",
        [
            Step(
                "POST /segments",
                body={"name": "VIP Customers", "conditions": SEGMENT_CONDITIONS},
                saves={"segmentId": "body.data.id"},
            ),
            Step(
                "POST /segments",
                name="Create a second segment (the one deleted at the end)",
                body={
                    "name": "Lapsed customers",
                    "conditions": [
                        {"field": "lastInteractionAt", "operator": "before", "value": "2025-01-01"}
                    ],
                },
                saves={"spareSegmentId": "body.data.id"},
            ),
            Step("GET /segments"),
            Step("GET /segments/{segmentId}"),
            Step(
                "PUT /segments/{segmentId}",
                body={"name": "Updated VIP Customers", "conditions": SEGMENT_CONDITIONS},
            ),
            Step("POST /segments/{segmentId}/preview", query={"limit": "10"}),
        ],
    ),
    (
        "campaigns",
        [
            Step(
                "POST /campaigns",
                name="Create a campaign (daily from tomorrow)",
                body={
                    "name": "January Promotion",
                    "type": "promotional",
                    "templateId": "{{templateId}}",
                    "segmentIds": ["{{segmentId}}"],
                    "variables": {"shop_name": "GoodGo Shop", "discount_code": "WELCOME10"},
                    "schedule": RECURRING_TOMORROW,
                },
                prerequest=TOMORROW,
                saves={"campaignId": "body.data.id"},
            ),
            Step("GET /campaigns"),
            Step("GET /campaigns/{campaignId}"),
            Step(
                "PUT /campaigns/{campaignId}",
                body={"name": "Updated Campaign Name", "schedule": RECURRING_TOMORROW},
            ),
            Step("POST /campaigns/{campaignId}/start", checks=status_is("scheduled")),
            Step("POST /campaigns/{campaignId}/pause", checks=status_is("paused")),
            Step("POST /campaigns/{campaignId}/resume", checks=status_is("scheduled")),
            Step("GET /campaigns/{campaignId}/metrics"),
            Step("GET /campaigns/{campaignId}/recipients"),
            Step(
                "POST /campaigns/{campaignId}/test",
                body={"contactIds": ["{{contactId}}"], "variables": {"discount_code": "TEST10"}},
                saves={"linkCode": "body.data[0].rendered.match(/\\/r\\/([0-9A-Za-z]+)/)[1]"},
            ),
            Step("GET /r/{code}", name="Follow the test DM's tracked link", follow_redirects=False),
        ],
    ),
    (
        "automation flows",
        [
            Step(
                "POST /automation/flows",
                body={
                    "name": "Welcome Flow",
                    "trigger": {"type": "new_follower", "config": {}},
                    "nodes": FLOW_NODES,
                    "connections": FLOW_CONNECTIONS,
                },
                saves={"flowId": "body.data.id"},
            ),
            Step("GET /automation/flows"),
            Step("GET /automation/flows/{flowId}"),
            Step(
                "PUT /automation/flows/{flowId}",
                body={
                    "name": "Updated Welcome Flow",
                    "nodes": FLOW_NODES,
                    "connections": FLOW_CONNECTIONS,
                },
            ),
            Step("POST /automation/flows/{flowId}/activate", checks=status_is("active")),
            Step("POST /automation/flows/{flowId}/enroll", body={"contactIds": ["{{contactId}}"]}),
            Step(
                "GET /automation/flows/{flowId}/executions",
                until="body.data.length > 0",
                saves={"executionId": "body.data[0].id"},
            ),
            Step("GET /automation/flows/{flowId}/executions/{executionId}"),
            Step("POST /automation/flows/{flowId}/deactivate"),
        ],
    ),
    (
        "ai chatbot",
        [
            Step("GET /ai/settings"),
            Step(
                "PUT /ai/settings",
                body={
                    # The spec's "model": "gpt-4" is left out: the service's configured model
                    # (litellm's name for it) answers, the sandbox's under `make dev`.
                    "enabled": True,
                    "temperature": 0.7,
                    "maxTokens": 500,
                    "autoEscalationThreshold": 0.6,
                    "systemPrompt": "You are a helpful customer service assistant for GoodGo Shop.",
                    # The sandbox's model answers an order number with this intent.
                    "intents": [{"name": "order_status_query", "description": "where an order is"}],
                },
            ),
            Step(
                "POST /ai/conversations/{conversationId}/message",
                body={"message": "What's the status of my order #12345?"},
            ),
            Step("GET /ai/conversations/{conversationId}/context"),
            Step(
                "POST /ai/conversations/{conversationId}/escalate", body={"reason": "complex_query"}
            ),
        ],
    ),
    (
        "conversations",
        [
            Step("GET /conversations", query={"accountId": "{{accountId}}", "status": "open"}),
            Step("GET /conversations/{conversationId}", saves={"messageId": PHOTO_DM}),
            Step(
                "GET /conversations/{conversationId}/messages/{messageId}/attachments/{n}",
                name="Download the photo the customer sent",
            ),
            Step(
                "POST /conversations/{conversationId}/messages",
                body={"content": "Your order #12345 has been shipped!", "type": "text"},
            ),
            Step("POST /conversations/{conversationId}/assign", body={"userId": "agent-0001"}),
            Step("PUT /conversations/{conversationId}/close", body={"reason": "resolved"}),
        ],
    ),
    (
        "analytics",
        [
            Step(
                "GET /analytics/overview",
                query={"startDate": "{{startDate}}", "endDate": "{{endDate}}"},
                prerequest=LAST_30_DAYS,
            ),
            Step(
                "GET /analytics/contacts",
                query={"startDate": "{{startDate}}", "endDate": "{{endDate}}", "groupBy": "day"},
            ),
            Step(
                "GET /analytics/conversations",
                query={"startDate": "{{startDate}}", "endDate": "{{endDate}}"},
            ),
            Step(
                "GET /analytics/campaigns",
                query={
                    "campaignId": "{{campaignId}}",
                    "startDate": "{{startDate}}",
                    "endDate": "{{endDate}}",
                },
            ),
            Step(
                "GET /analytics/automation",
                query={"startDate": "{{startDate}}", "endDate": "{{endDate}}"},
            ),
        ],
    ),
    (
        "cleanup",
        [
            Step("DELETE /automation/flows/{flowId}"),
            # The campaign, still scheduled, keeps the first template and segment in use (409).
            Step(
                "DELETE /templates/{templateId}",
                name="Delete the second template",
                path={"templateId": "{{spareTemplateId}}"},
            ),
            Step(
                "DELETE /segments/{segmentId}",
                name="Delete the second segment",
                path={"segmentId": "{{spareSegmentId}}"},
            ),
            Step("DELETE /contacts/{contactId}", name="Erase the contact (GDPR)"),
            Step("DELETE /accounts/{accountId}", name="Disconnect the account"),
        ],
    ),
]
