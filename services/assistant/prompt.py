"""What the model is asked and how its answer is read.

The system message is built here, from the merchant's settings only: its `systemPrompt`, its
intents with their descriptions, the knowledge base as the only source of facts, and the
answer format. The customer's words never go into it: they are `user` messages, the session's
earlier turns included, so that a customer cannot rewrite the assistant's instructions.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from models.ai import HUMAN_REQUEST, OTHER, AIAnswer, AISettings

# The answer every model call must come back with.
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "response": {"type": "string", "minLength": 1, "maxLength": 10000},
        "slots": {"type": "object", "additionalProperties": {"type": "string"}},
        "requiresEscalation": {"type": "boolean"},
    },
    "required": ["intent", "confidence", "response", "slots", "requiresEscalation"],
    "additionalProperties": False,
}

_FORMAT = (
    "Answer with one JSON object and nothing else, exactly of this form: "
    '{"intent": <one of the intents above>, "confidence": <0 to 1>, "response": <your reply '
    'to the customer>, "slots": {<name>: <value>, ...}, "requiresEscalation": <true|false>}. '
    "JSON schema: "
)


def intent_names(settings: AISettings) -> list[str]:
    return [i.name for i in settings.intents] + [HUMAN_REQUEST, OTHER]


def system_message(settings: AISettings, *, schema_in_text: bool) -> str:
    parts: list[str] = []
    if settings.system_prompt.strip():
        parts.append(settings.system_prompt.strip())
    lines = [f"- {i.name}: {i.description}".rstrip(": ") for i in settings.intents]
    lines.append(f"- {HUMAN_REQUEST}: the customer asks for a person")
    lines.append(f"- {OTHER}: anything else")
    parts.append("Classify the customer's message into one of these intents:\n" + "\n".join(lines))
    if settings.knowledge_base:
        facts = "\n".join(f"Q: {k.question}\nA: {k.answer}" for k in settings.knowledge_base)
        parts.append(
            "Use only these facts; when they do not answer the question, say so and set a "
            "low confidence:\n" + facts
        )
    else:
        parts.append("You know no facts about the shop: do not invent any; set a low confidence.")
    parts.append(
        "Set requiresEscalation when a person should take over. Put what you learned "
        "(an order number, a date) in slots."
    )
    parts.append(_FORMAT + (json.dumps(ANSWER_SCHEMA) if schema_in_text else "see the format."))
    return "\n\n".join(parts)


def messages_for(
    settings: AISettings, turns: list[dict[str, Any]], text: str, *, schema_in_text: bool
) -> list[dict[str, str]]:
    """The system message, the session's recent turns, then the customer's text as `user`."""
    history = [
        {"role": str(t["role"]), "content": str(t["content"])}
        for t in turns
        if t.get("role") in ("user", "assistant")
    ]
    return [
        {"role": "system", "content": system_message(settings, schema_in_text=schema_in_text)},
        *history,
        {"role": "user", "content": text},
    ]


def response_format(supports_schema: bool) -> dict[str, Any]:
    if supports_schema:
        return {
            "type": "json_schema",
            "json_schema": {"name": "assistant_answer", "schema": ANSWER_SCHEMA, "strict": True},
        }
    return {"type": "json_object"}


class InvalidAnswer(ValueError):
    """The content is not the contract's object; `str()` says why (sent back for a repair)."""


def parse_answer(content: str, settings: AISettings) -> AIAnswer:
    try:
        data = json.loads(content)
    except ValueError:
        raise InvalidAnswer("the answer is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidAnswer("the answer is not a JSON object")
    try:
        answer = AIAnswer.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        place = ".".join(str(p) for p in error["loc"]) or "answer"
        raise InvalidAnswer(f"{place}: {error['msg']}") from None
    if answer.intent not in intent_names(settings):
        raise InvalidAnswer(
            f"intent '{answer.intent}' is not one of {', '.join(intent_names(settings))}"
        )
    return answer
