"""The sandbox's OpenAI-compatible LLM endpoint over real HTTP and through litellm: the AI
assistant's answer contract, `response_format`, token usage, streaming, the test script (invalid
JSON, exact replies), the record of what was asked, and latency and provider errors."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import litellm
import pytest
from pydantic import BaseModel

from sandbox.admin import SandboxAdmin
from sandbox.app import SandboxConfig
from sandbox.llm import INVALID_CONTENT
from sandbox.server import RunningSandbox, start_sandbox_thread

CONFIG = SandboxConfig(
    consumer_key="llm-test-key",
    consumer_secret="llm-test-secret",
    webhook_id="llm-test-webhook",
    webhook_url="http://127.0.0.1:9/nowhere",
    seed_demo=False,
)
SYSTEM = "You are GoodGo's assistant. Answer with one JSON object."
CONTRACT_KEYS = {"intent", "confidence", "response", "slots", "requiresEscalation"}


class AssistantAnswer(BaseModel):
    """The contract as the product may hand it to litellm (a pydantic model as response_format)."""

    intent: str
    confidence: float
    response: str
    slots: dict[str, str]
    requiresEscalation: bool  # noqa: N815 - the contract's field name


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningSandbox]:
    with start_sandbox_thread(CONFIG) as running:
        yield running


@pytest.fixture
async def admin(emulator: RunningSandbox) -> AsyncIterator[SandboxAdmin]:
    admin = emulator.admin
    await admin.clear_llm_requests()
    yield admin
    await admin.clear_faults()  # faults and the LLM script are global: never leak one


async def chat(emulator: RunningSandbox, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(
            f"{emulator.url}/v1/chat/completions", json={"model": "mktx-sandbox", **body}
        )


def ask(text: str, system: str = SYSTEM) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


async def content_of(emulator: RunningSandbox, **body: Any) -> str:
    response = await chat(emulator, **body)
    assert response.status_code == 200, response.text
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


async def acompletion(emulator: RunningSandbox, text: str, **kwargs: Any) -> Any:
    """One call the way the product makes it."""
    options: dict[str, Any] = {"response_format": {"type": "json_object"}, "timeout": 5} | kwargs
    return await litellm.acompletion(
        model="openai/mktx-sandbox",
        api_base=f"{emulator.url}/v1",
        api_key="x",
        messages=ask(text),
        num_retries=0,
        **options,
    )


# The contract ---------------------------------------------------------------------------------


async def test_an_order_number_is_an_order_status_query(emulator: RunningSandbox) -> None:
    answer = json.loads(
        await content_of(
            emulator,
            messages=ask("Hi, where is my order #12345?"),
            response_format={"type": "json_object"},
        )
    )

    assert answer == {
        "intent": "order_status_query",
        "confidence": 0.95,
        "response": answer["response"],
        "slots": {"orderId": "12345"},
        "requiresEscalation": False,
    }
    assert "#12345" in answer["response"]


@pytest.mark.parametrize(
    "text",
    ["I want to talk to a HUMAN", "Can I speak to an agent?", "a real person please", "Manager!"],
)
async def test_asking_for_a_human_is_a_human_request(emulator: RunningSandbox, text: str) -> None:
    answer = json.loads(
        await content_of(emulator, messages=ask(text), response_format={"type": "json_object"})
    )

    assert answer["intent"] == "human_request"
    assert answer["confidence"] == 0.9
    assert answer["requiresEscalation"] is True
    assert answer["slots"] == {}
    assert answer["response"]


@pytest.mark.parametrize("text", ["Do you sell gift cards?", "humanity is great", "agents007"])
async def test_anything_else_is_other_with_low_confidence(
    emulator: RunningSandbox, text: str
) -> None:
    answer = json.loads(
        await content_of(emulator, messages=ask(text), response_format={"type": "json_object"})
    )

    assert set(answer) == CONTRACT_KEYS
    assert answer["intent"] == "other"
    assert answer["confidence"] == 0.3
    assert answer["requiresEscalation"] is False
    assert answer["slots"] == {} and answer["response"]


async def test_only_the_last_user_message_decides(emulator: RunningSandbox) -> None:
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Where is order #555?"},
        {"role": "assistant", "content": "Order #555 was shipped."},
        {"role": "user", "content": "Thanks, and can I get a manager?"},
    ]
    answer = json.loads(
        await content_of(emulator, messages=messages, response_format={"type": "json_object"})
    )

    assert answer["intent"] == "human_request"


async def test_without_response_format_a_system_message_asking_for_json_gets_json(
    emulator: RunningSandbox,
) -> None:
    asked_json = await content_of(emulator, messages=ask("order #777", system="Reply in JSON."))
    plain = await content_of(emulator, messages=ask("order #777", system="Be kind."))
    text_format = await content_of(
        emulator,
        messages=ask("order #777", system="Reply in JSON."),
        response_format={"type": "text"},
    )

    assert json.loads(asked_json)["slots"] == {"orderId": "777"}
    assert plain == text_format == json.loads(asked_json)["response"]
    assert "#777" in plain and not plain.startswith("{")


async def test_a_json_schema_shapes_the_answer_by_its_property_names(
    emulator: RunningSandbox,
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "reply": {"type": "string"},
            "shouldEscalate": {"type": "boolean"},
            "confidence": {"type": "number"},
            "slots": {"type": "object"},
            "requiresEscalation": {"type": "boolean"},
            "language": {"type": "string"},
            "tags": {"type": "array"},
        },
    }
    response = await chat(
        emulator,
        messages=[{"role": "user", "content": [{"type": "text", "text": "order 98765"}]}],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )

    content = json.loads(response.json()["choices"][0]["message"]["content"])
    assert content == {
        "reply": content["reply"],
        "shouldEscalate": False,
        "confidence": 0.95,
        "slots": {"orderId": "98765"},
        "requiresEscalation": False,
        "language": "",
        "tags": [],
    }
    assert "#98765" in content["reply"]


async def test_the_contract_schema_answers_the_contract(emulator: RunningSandbox) -> None:
    schema = AssistantAnswer.model_json_schema()
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "assistant_answer", "schema": schema, "strict": True},
    }
    answer = json.loads(
        await content_of(emulator, messages=ask("get me an agent"), response_format=response_format)
    )

    assert AssistantAnswer.model_validate(answer).intent == "human_request"
    assert set(answer) == CONTRACT_KEYS and answer["requiresEscalation"] is True


async def test_usage_counts_tokens_and_answers_are_deterministic(emulator: RunningSandbox) -> None:
    body: dict[str, Any] = {
        "messages": ask("Where is order #12345?"),
        "response_format": {"type": "json_object"},
    }
    first, second = (await chat(emulator, **body)).json(), (await chat(emulator, **body)).json()

    usage = first["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert first["choices"] == second["choices"] and first["id"] == second["id"]


# Through litellm ------------------------------------------------------------------------------


async def test_litellm_json_mode_parses_into_the_contract(emulator: RunningSandbox) -> None:
    order = await acompletion(emulator, "Hi, where is my order #12345?")
    human = await acompletion(emulator, "I want to talk to a human")

    answer = json.loads(order.choices[0].message.content)
    assert answer["intent"] == "order_status_query" and answer["slots"] == {"orderId": "12345"}
    assert answer["requiresEscalation"] is False
    assert order.usage.total_tokens == order.usage.prompt_tokens + order.usage.completion_tokens
    assert order.usage.completion_tokens > 0
    assert json.loads(human.choices[0].message.content)["intent"] == "human_request"


async def test_litellm_with_a_pydantic_response_format(emulator: RunningSandbox) -> None:
    response = await acompletion(emulator, "order #4242 please", response_format=AssistantAnswer)

    answer = AssistantAnswer.model_validate_json(response.choices[0].message.content)
    assert answer.intent == "order_status_query" and answer.slots == {"orderId": "4242"}


async def test_litellm_streams_the_same_answer(emulator: RunningSandbox) -> None:
    whole = await acompletion(emulator, "order #31337")
    stream = await acompletion(
        emulator, "order #31337", stream=True, stream_options={"include_usage": True}
    )
    parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]

    assert "".join(parts) == whole.choices[0].message.content


# The script: invalid JSON and exact replies ---------------------------------------------------


async def test_invalid_json_for_the_next_n_completions_then_the_contract_again(
    emulator: RunningSandbox, admin: SandboxAdmin
) -> None:
    await admin.set_llm_script(invalid=2)
    first = await acompletion(emulator, "order #12345")
    second = await acompletion(emulator, "order #12345")
    third = await acompletion(emulator, "order #12345")

    for broken in (first, second):
        content = broken.choices[0].message.content
        assert content == INVALID_CONTENT
        with pytest.raises(ValueError):
            json.loads(content)
    assert json.loads(third.choices[0].message.content)["intent"] == "order_status_query"


async def test_a_repair_attempt_is_answered_for_the_customers_text(
    emulator: RunningSandbox, admin: SandboxAdmin
) -> None:
    await admin.set_llm_script(invalid=1)
    messages = ask("Where is my order #12345?")
    broken = await content_of(emulator, messages=messages, response_format={"type": "json_object"})
    repair = [
        *messages,
        {"role": "assistant", "content": broken},
        {"role": "user", "content": "That answer was invalid: expected one object. Try again."},
    ]
    repaired = json.loads(
        await content_of(emulator, messages=repair, response_format={"type": "json_object"})
    )
    # A repair note that names JSON is skipped even without the broken answer before it.
    noted = json.loads(
        await content_of(
            emulator,
            messages=[*messages, {"role": "user", "content": "Not valid JSON: field required"}],
            response_format={"type": "json_object"},
        )
    )

    assert broken == INVALID_CONTENT
    assert repaired["intent"] == noted["intent"] == "order_status_query"
    assert repaired["slots"] == {"orderId": "12345"}


async def test_invalid_zero_resets_the_script(
    emulator: RunningSandbox, admin: SandboxAdmin
) -> None:
    await admin.set_llm_script(invalid=3, replies=[{"intent": "x"}])
    await admin.set_llm_script(invalid=0)

    response = await acompletion(emulator, "hello")
    assert json.loads(response.choices[0].message.content)["intent"] == "other"


async def test_scripted_replies_are_answered_exactly_in_order_after_the_invalid_ones(
    emulator: RunningSandbox, admin: SandboxAdmin
) -> None:
    low = {
        "intent": "order_status_query",
        "confidence": 0.2,
        "response": "Maybe?",
        "slots": {},
        "requiresEscalation": False,
    }
    unknown = {**low, "intent": "weather_forecast", "confidence": 0.99}
    await admin.set_llm_script(invalid=1, replies=[low, unknown])

    contents = [
        (await acompletion(emulator, "order #1234")).choices[0].message.content for _ in range(4)
    ]

    assert contents[0] == INVALID_CONTENT
    assert [json.loads(c) for c in contents[1:3]] == [low, unknown]
    assert json.loads(contents[3])["confidence"] == 0.95


async def test_clearing_faults_and_reset_clear_the_script(
    emulator: RunningSandbox, admin: SandboxAdmin
) -> None:
    await admin.set_llm_script(invalid=5)
    await admin.clear_faults()
    after_clear = (await acompletion(emulator, "hi")).choices[0].message.content

    assert json.loads(after_clear)["intent"] == "other"
    async with httpx.AsyncClient() as client:
        script = (await client.get(f"{emulator.url}/_sandbox/llm/script")).json()
    assert script == {"invalid": 0, "replies": []}


async def test_the_script_is_validated(emulator: RunningSandbox) -> None:
    async with httpx.AsyncClient() as client:
        negative = await client.put(f"{emulator.url}/_sandbox/llm/script", json={"invalid": -1})
        not_objects = await client.put(
            f"{emulator.url}/_sandbox/llm/script", json={"replies": ["text"]}
        )
    assert negative.status_code == not_objects.status_code == 422


# What was asked -------------------------------------------------------------------------------


async def test_the_requests_received_are_recorded_oldest_first(
    emulator: RunningSandbox, admin: SandboxAdmin
) -> None:
    await acompletion(emulator, "Where is order #12345?", temperature=0.7, max_tokens=500)
    await chat(
        emulator,
        messages=[{"role": "user", "content": [{"type": "text", "text": "agent please"}]}],
    )

    first, second = await admin.llm_requests()
    assert first["model"] == "mktx-sandbox"
    assert first["messages"] == ask("Where is order #12345?")
    assert first["response_format"] == {"type": "json_object"}
    assert first["temperature"] == 0.7 and first["max_tokens"] == 500
    system = [m["content"] for m in first["messages"] if m["role"] == "system"]
    assert all("#12345" not in content for content in system)
    assert second["messages"] == [{"role": "user", "content": "agent please"}]
    assert second["response_format"] is None and second["temperature"] is None
    assert first["at"] <= second["at"]

    await admin.clear_llm_requests()
    assert await admin.llm_requests() == []


async def test_reset_clears_the_llm_script_and_requests() -> None:
    with start_sandbox_thread(CONFIG) as sandbox:
        admin = sandbox.admin
        await admin.set_llm_script(invalid=1)
        await content_of(sandbox, messages=ask("hi"))

        await admin.reset()

        assert await admin.llm_requests() == []
        assert json.loads(await content_of(sandbox, messages=ask("hi")))["intent"] == "other"


# Latency and provider errors ------------------------------------------------------------------


async def test_latency_delays_the_chat_endpoint_only(
    emulator: RunningSandbox, admin: SandboxAdmin
) -> None:
    await admin.set_faults(latency_ms=300, path_prefix="/v1/chat/completions")

    started = time.monotonic()
    slow = await acompletion(emulator, "order #12345")
    slow_seconds = time.monotonic() - started
    started = time.monotonic()
    async with httpx.AsyncClient() as client:
        models = await client.get(f"{emulator.url}/v1/models")
    other_seconds = time.monotonic() - started

    assert slow_seconds >= 0.3
    assert json.loads(slow.choices[0].message.content)["intent"] == "order_status_query"
    assert models.status_code == 200 and other_seconds < 0.3


async def test_a_latency_beyond_the_timeout_is_a_litellm_timeout(
    emulator: RunningSandbox, admin: SandboxAdmin
) -> None:
    await admin.set_faults(latency_ms=2000, path_prefix="/v1/chat/completions")

    started = time.monotonic()
    with pytest.raises(litellm.Timeout):
        await acompletion(emulator, "order #12345", timeout=0.5)
    assert time.monotonic() - started < 1.9


@pytest.mark.parametrize(
    ("status", "kind", "error"),
    [
        (500, "server_error", litellm.InternalServerError),
        (503, "server_error", litellm.ServiceUnavailableError),
        (429, "rate_limit_error", litellm.RateLimitError),
        (401, "invalid_request_error", litellm.AuthenticationError),
    ],
)
async def test_provider_errors_are_openai_shaped(
    emulator: RunningSandbox,
    admin: SandboxAdmin,
    status: int,
    kind: str,
    error: type[Exception],
) -> None:
    await admin.set_faults(error_rate=1.0, error_status=status, path_prefix="/v1/chat/completions")

    raw = await chat(emulator, messages=ask("order #12345"))
    started = time.monotonic()
    with pytest.raises(error) as raised:
        await acompletion(emulator, "order #12345")
    seconds = time.monotonic() - started

    assert raw.status_code == status
    assert raw.json() == {
        "error": {"message": "injected fault", "type": kind, "param": None, "code": str(status)}
    }
    assert getattr(raised.value, "status_code", None) == status
    assert seconds < 2  # num_retries=0: no retry, whatever retry-after says
    assert await admin.llm_requests() == []  # a refused request never reached the model
    logged = await admin.requests(path_prefix="/v1/chat/completions")
    assert logged[-1].status == status and logged[-1].fault == f"error{status}"
