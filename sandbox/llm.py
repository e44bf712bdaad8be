"""An OpenAI-compatible chat endpoint whose answers follow from the last user message, always the same.

Tests of the AI assistant need an LLM that is fast, free and predictable: an order number gets an
order-status answer with high confidence, asking for a human gets a low-confidence escalation.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from sandbox.problems import openai_error

MODEL = "mktx-sandbox"
ENDPOINT = "chat"

router = APIRouter()

_ORDER_NUMBER = re.compile(r"#\s?(\d{3,})|\border\s*(?:number|no\.?|id)?\s*:?\s*(\d{4,})", re.I)
_ESCALATION = re.compile(
    r"\b(human|agent|person|manager|complain\w*|refund|angry|terrible|lawyer|speak to someone)\b",
    re.I,
)


@dataclass(frozen=True)
class Answer:
    intent: str
    confidence: float
    reply: str
    escalate: bool = False
    order_number: str | None = None
    sentiment: str = "neutral"


def answer_for(text: str) -> Answer:
    """The sandbox's whole "model": keyword intents, checked most urgent first."""
    lowered = text.lower()
    if _ESCALATION.search(text):
        return Answer(
            "escalation",
            0.2,
            "I'm sorry about that. I'm passing your conversation to a member of our team, "
            "who will reply here shortly.",
            escalate=True,
            sentiment="negative",
        )
    if match := _ORDER_NUMBER.search(text):
        number = match.group(1) or match.group(2)
        return Answer(
            "order_status",
            0.92,
            f"Thanks! Order #{number} has shipped and should arrive within 2 business days.",
            order_number=number,
        )
    if "order" in lowered:
        return Answer(
            "order_status", 0.6, "Happy to check! Could you share your order number (e.g. #12345)?"
        )
    if re.search(r"\b(hours|open|close|closing)\b", lowered):
        return Answer("store_hours", 0.9, "We're open every day from 9am to 9pm.")
    if re.search(r"\b(price|cost|how much)\b", lowered):
        return Answer("pricing", 0.8, "You'll find current prices on our website and in store.")
    if re.search(r"\b(thanks|thank you)\b", lowered):
        return Answer(
            "thanks", 0.95, "You're welcome! Anything else we can do?", sentiment="positive"
        )
    if re.search(r"\b(hi|hello|hey)\b", lowered):
        return Answer("greeting", 0.95, "Hi! How can we help you today?", sentiment="positive")
    return Answer("general", 0.5, "Thanks for your message! A member of our team will follow up.")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


# Field names a caller's JSON schema may use for each part of the answer.
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
    "order_number": "order_number",
    "ordernumber": "order_number",
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


def _json_content(answer: Answer, response_format: dict[str, Any]) -> str:
    values = {
        "intent": answer.intent,
        "confidence": answer.confidence,
        "reply": answer.reply,
        "escalate": answer.escalate,
        "order_number": answer.order_number,
        "sentiment": answer.sentiment,
    }
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return json.dumps(values)
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

    answer = answer_for(_last_user_text(messages))
    response_format = body.get("response_format")
    wants_json = isinstance(response_format, dict) and response_format.get("type") in {
        "json_object",
        "json_schema",
    }
    content = _json_content(answer, response_format) if wants_json else answer.reply
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
