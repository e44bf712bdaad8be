"""One answer of the assistant: one model call (and at most one repair), validated against
the contract and recorded.

The call's record (`llm_calls`) has the merchant, the conversation, the model, the tokens, the
cost where litellm prices the model, the latency and the outcome; the logs have the same,
never the prompt or the answer's text.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from integrations.llm import Completion, LLMClient, LLMUnavailable
from mktx import metrics
from models.ai import HUMAN_REQUEST, AIAnswer, AISettings, LLMCall
from models.db import SessionMaker
from services.assistant.prompt import InvalidAnswer, messages_for, parse_answer, response_format

logger = logging.getLogger(__name__)


class AIServiceError(Exception):
    """No usable answer: the provider failed, or answered twice outside the contract."""


LOW_CONFIDENCE = "low_confidence"
MODEL_REQUESTED = "model_requested"
AI_UNAVAILABLE = "ai_unavailable"


@dataclass(frozen=True, slots=True)
class Answered:
    answer: AIAnswer
    escalation: str | None  # why a person should take over (None: the bot may answer)


def escalation_reason(answer: AIAnswer, settings: AISettings) -> str | None:
    """Asked of the model's own answer (its `requiresEscalation` as it said it)."""
    if answer.intent == HUMAN_REQUEST:
        return HUMAN_REQUEST
    if answer.requires_escalation:
        return MODEL_REQUESTED
    if answer.confidence < settings.auto_escalation_threshold:
        return LOW_CONFIDENCE
    return None


async def answer(
    llm: LLMClient,
    sessions: SessionMaker,
    settings: AISettings,
    *,
    merchant_id: str,
    conversation_id: uuid.UUID | None,
    turns: list[dict[str, Any]],
    text: str,
) -> Answered:
    """The model's answer to `text` after `turns`, with `requiresEscalation` as the rules say
    (a request for a person, the model's word, low confidence) and the reason it says so.
    AIServiceError otherwise."""
    model = settings.model or llm.default_model
    schema = llm.supports_schema(model)
    messages = messages_for(settings, turns, text, schema_in_text=not schema)
    for attempt in (1, 2):
        try:
            completion = await llm.complete(
                model,
                messages,
                temperature=settings.temperature,
                max_tokens=settings.max_tokens,
                response_format=response_format(schema),
            )
        except LLMUnavailable as exc:
            await _record(
                sessions, merchant_id, conversation_id, model, None, exc.outcome, exc.latency_ms
            )
            raise AIServiceError(f"the model did not answer: {exc}") from exc
        try:
            parsed = parse_answer(completion.content, settings)
        except InvalidAnswer as exc:
            await _record(sessions, merchant_id, conversation_id, model, completion, "invalid")
            if attempt == 2:
                raise AIServiceError(f"the model's answer is not usable: {exc}") from exc
            # One repair: the same call, told what was wrong with its answer.
            messages = [
                *messages,
                {"role": "assistant", "content": completion.content[:10_000]},
                {
                    "role": "user",
                    "content": f"That answer is invalid ({exc}). Answer again with only the "
                    "JSON object described in the instructions.",
                },
            ]
            continue
        await _record(sessions, merchant_id, conversation_id, model, completion, "ok")
        reason = escalation_reason(parsed, settings)
        return Answered(
            parsed.model_copy(update={"requires_escalation": reason is not None}), reason
        )
    raise AssertionError("unreachable")


async def _record(
    sessions: SessionMaker,
    merchant_id: str,
    conversation_id: uuid.UUID | None,
    model: str,
    completion: Completion | None,
    outcome: str,
    latency_ms: int | None = None,
) -> None:
    call = LLMCall(
        merchant_id=merchant_id,
        conversation_id=conversation_id,
        model=model,
        prompt_tokens=completion.prompt_tokens if completion else None,
        completion_tokens=completion.completion_tokens if completion else None,
        cost=completion.cost if completion else None,
        latency_ms=completion.latency_ms if completion else (latency_ms or 0),
        outcome=outcome,
    )
    async with sessions() as session, session.begin():
        session.add(call)
    metrics.LLM_CALLS.inc(outcome=outcome)
    metrics.LLM_DURATION.observe(call.latency_ms / 1000)
    for kind, tokens in (("prompt", call.prompt_tokens), ("completion", call.completion_tokens)):
        if tokens:
            metrics.LLM_TOKENS.inc(tokens, kind=kind)
    logger.info(
        "ai.model_call",
        extra={
            "conversation_id": str(conversation_id) if conversation_id else None,
            "model": model,
            "prompt_tokens": call.prompt_tokens,
            "completion_tokens": call.completion_tokens,
            "cost": call.cost,
            "latency_ms": call.latency_ms,
            "outcome": outcome,
        },
    )
