"""An OpenAI-compatible chat endpoint answering the AI assistant's contract, always the same way.

Tests of the AI assistant need an LLM that is fast, free and predictable. The customer's text (the
last `user` message) decides the answer: an order number gets `order_status_query` with the
number in `slots.orderId`, asking for a human gets `human_request` with an escalation, anything
else gets `other` with a low confidence. When the caller asks for JSON (`response_format`
`json_object` or `json_schema`, or no `response_format` and a system message that mentions JSON),
the first choice's content is one JSON object

    {"intent": str, "confidence": number, "response": str, "slots": {str: str},
     "requiresEscalation": bool}

shaped by the property names of a JSON schema when one is given; otherwise it is the reply text.
Tests script what comes next through the admin API (`SandboxState.set_llm_script`): content that
is not JSON, or exact objects; every completion asked is recorded (`SandboxState.llm_requests`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from sandbox.problems import openai_error
from sandbox.state import LLMRequest, SandboxState

MODEL = "mktx-sandbox"
ENDPOINT = "chat"

# What a completion scripted as invalid answers: prose around an answer, the usual way a model
# breaks JSON mode.
INVALID_CONTENT = "Sure! Here is your answer: order shipped"

router = APIRouter()

_ORDER_NUMBER = re.compile(r"#\s?(\d{3,})|\border\s*(?:number|no\.?|id)?\s*:?\s*(\d{4,})", re.I)
_HUMAN = re.compile(r"\b(?:human|agent|person|manager)s?\b", re.I)
_JSON_WORD = re.compile(r"\bjson\b", re.I)


@dataclass(frozen=True)
class Answer:
    intent: str
    confidence: float
    reply: str
    escalate: bool = False
    slots: dict[str, str] = field(default_factory=dict)
    sentiment: str = "neutral"

    @property
    def order_number(self) -> str | None:
        return self.slots.get("orderId")

    def contract(self) -> dict[str, Any]:
        """The assistant's answer object, as the product validates it."""
        return {
            "intent": self.intent,
            "confidence": self.confidence,
            "response": self.reply,
            "slots": dict(self.slots),
            "requiresEscalation": self.escalate,
        }


def answer_for(text: str) -> Answer:
    """The sandbox's whole "model": an order number, then a request for a human, else `other`."""
    if match := _ORDER_NUMBER.search(text):
        number = match.group(1) or match.group(2)
        return Answer(
            "order_status_query",
            0.95,
            f"Let me check that for you. Order #{number} was shipped and should arrive within "
            "2 business days.",
            slots={"orderId": number},
        )
    if _HUMAN.search(text):
        return Answer(
            "human_request",
            0.9,
            "Of course! I'm passing your conversation to a member of our team, who will reply "
            "here shortly.",
            escalate=True,
        )
    return Answer(
        "other",
        0.3,
        "Thanks for your message! Could you tell me a little more about what you need?",
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _is_repair_note(messages: list[dict[str, Any]], index: int) -> bool:
    """Whether the user message at `index` asks to repair an answer rather than comes from the
    customer: it follows the model's raw answer (the sandbox's invalid content or a JSON object;
    a session's earlier assistant turns are reply text) or it talks about JSON."""
    if _JSON_WORD.search(_text_of(messages[index].get("content"))):
        return True
    if index == 0 or messages[index - 1].get("role") != "assistant":
        return False
    previous = _text_of(messages[index - 1].get("content")).strip()
    return previous == INVALID_CONTENT or _is_json_object(previous)


def customer_text(messages: list[Any]) -> str:
    """The last user message that is not a repair note (the last user message if all are)."""
    turns = [m for m in messages if isinstance(m, dict)]
    users = [i for i, m in enumerate(turns) if m.get("role") == "user"]
    for index in reversed(users):
        if not _is_repair_note(turns, index):
            return _text_of(turns[index].get("content"))
    return _text_of(turns[users[-1]].get("content")) if users else ""


def _wants_json(response_format: Any, messages: list[Any]) -> bool:
    if isinstance(response_format, dict):
        return response_format.get("type") in {"json_object", "json_schema"}
    if response_format is not None:
        return False
    return any(
        isinstance(m, dict)
        and m.get("role") in {"system", "developer"}
        and _JSON_WORD.search(_text_of(m.get("content")))
        for m in messages
    )


# Field names a caller's JSON schema may use for each part of the answer (compared lower-cased).
_SYNONYMS: dict[str, str] = {
    "reply": "reply",
    "response": "reply",
    "answer": "reply",
    "message": "reply",
    "text": "reply",
    "intent": "intent",
    "category": "intent",
    "confidence": "confidence",
    "score": "confidence",
    "escalate": "escalate",
    "should_escalate": "escalate",
    "shouldescalate": "escalate",
    "needs_human": "escalate",
    "needshuman": "escalate",
    "requiresescalation": "escalate",
    "requires_escalation": "escalate",
    "slots": "slots",
    "entities": "slots",
    "order_number": "order_number",
    "ordernumber": "order_number",
    "orderid": "order_number",
    "order_id": "order_number",
    "sentiment": "sentiment",
}
_EMPTY_BY_TYPE: dict[str, Any] = {
    "string": "",
    "number": 0,
    "integer": 0,
    "boolean": False,
    "array": [],
    "object": {},
}


def _json_content(answer: Answer, response_format: Any) -> str:
    """The contract object, or, when a JSON schema is given, an object of its properties."""
    values = {
        "intent": answer.intent,
        "confidence": answer.confidence,
        "reply": answer.reply,
        "escalate": answer.escalate,
        "slots": dict(answer.slots),
        "order_number": answer.order_number,
        "sentiment": answer.sentiment,
    }
    json_schema = response_format.get("json_schema") if isinstance(response_format, dict) else None
    schema = (json_schema.get("schema") if isinstance(json_schema, dict) else None) or {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return json.dumps(answer.contract())
    shaped: dict[str, Any] = {}
    for name, spec in properties.items():
        known = _SYNONYMS.get(name.lower())
        if known is not None:
            shaped[name] = values[known]
        else:
            kind = spec.get("type") if isinstance(spec, dict) else None
            shaped[name] = _EMPTY_BY_TYPE.get(kind) if isinstance(kind, str) else None
    return json.dumps(shaped)


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _completion_id(messages: list[Any]) -> str:
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode())
    return "chatcmpl-" + digest.hexdigest()[:24]


def _stream(completion: dict[str, Any], include_usage: bool) -> Iterator[str]:
    base = {k: completion[k] for k in ("id", "created", "model")} | {
        "object": "chat.completion.chunk"
    }
    content = completion["choices"][0]["message"]["content"]
    deltas: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "assistant", "content": ""}, None),
        ({"content": content}, None),
        ({}, "stop"),
    ]
    for delta, finish in deltas:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        yield f"data: {json.dumps(base | {'choices': [choice]})}\n\n"
    if include_usage:
        yield f"data: {json.dumps(base | {'choices': [], 'usage': completion['usage']})}\n\n"
    yield "data: [DONE]\n\n"


def _content(state: SandboxState, response_format: Any, messages: list[Any]) -> str:
    """The first choice's content: the script's next answer, else the deterministic one."""
    scripted = state.take_llm_scripted()
    if scripted is not None:
        return INVALID_CONTENT if scripted.invalid else json.dumps(scripted.reply)
    answer = answer_for(customer_text(messages))
    return (
        _json_content(answer, response_format)
        if _wants_json(response_format, messages)
        else answer.reply
    )


@router.post("/v1/chat/completions")
@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    request.state.endpoint = ENDPOINT
    try:
        body = await request.json()
    except ValueError:
        return openai_error(400, "Request body is not valid JSON")
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        return openai_error(400, "'messages' must be a non-empty array")

    state: SandboxState = request.app.state.sandbox
    state.log_llm_request(
        LLMRequest(
            at=datetime.now(UTC),
            model=body.get("model"),
            messages=tuple(
                {"role": str(m.get("role", "")), "content": _text_of(m.get("content"))}
                for m in messages
                if isinstance(m, dict)
            ),
            response_format=body.get("response_format"),
            temperature=body.get("temperature"),
            max_tokens=body.get("max_tokens", body.get("max_completion_tokens")),
        )
    )
    content = _content(state, body.get("response_format"), messages)
    prompt_tokens = sum(
        _tokens(_text_of(m.get("content"))) for m in messages if isinstance(m, dict)
    )
    completion_tokens = _tokens(content)
    completion = {
        "id": _completion_id(messages),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or MODEL,
        "system_fingerprint": "mktx-sandbox",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if body.get("stream"):
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return StreamingResponse(_stream(completion, include_usage), media_type="text/event-stream")
    return JSONResponse(completion)


@router.get("/v1/models")
def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "mkt-x"}]}
