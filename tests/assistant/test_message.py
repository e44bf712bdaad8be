"""`POST /ai/conversations/{id}/message` against the sandbox as the model (over litellm)."""

from __future__ import annotations

from sandbox.admin import SandboxAdmin
from tests.assistant.conftest import Chat
from tests.conftest import Api


async def test_the_spec_example_order_status(api: Api, chat: Chat, x_admin: SandboxAdmin) -> None:
    await x_admin.clear_llm_requests()
    response = await api.post(
        f"/ai/conversations/{chat.conversation_id}/message",
        json={"message": "What's the status of my order #12345?"},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["intent"] == "order_status_query"
    assert data["slots"] == {"orderId": "12345"}
    assert data["requiresEscalation"] is False
    assert 0 <= data["confidence"] <= 1 and data["response"]
    (request,) = await x_admin.llm_requests()
    system = [m for m in request["messages"] if m["role"] == "system"]
    assert len(system) == 1 and "#12345" not in system[0]["content"]
    assert request["messages"][-1] == {
        "role": "user",
        "content": "What's the status of my order #12345?",
    }
    context = (await api.get(f"/ai/conversations/{chat.conversation_id}/context")).json()["data"]
    assert context["currentIntent"] == "order_status_query"
    assert context["slots"] == {"orderId": "12345"}
    assert [t["role"] for t in context["context"]] == ["user", "assistant"]
    assert context["escalation"] is None and context["botPaused"] is False
