"""The LLM client: every model call goes through litellm, to the configured endpoint
(`MKTX_LLM_API_BASE`, the sandbox in development and tests; a provider's in production).

One call, one attempt: `num_retries` 0, because the caller (a Temporal activity, or a request
that answers 502) decides about retrying. litellm must not fetch its price map from the network:
`LITELLM_LOCAL_MODEL_COST_MAP=True` is set before it is imported.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

from mktx.settings import Settings

logger = logging.getLogger(__name__)


@cache
def _litellm() -> ModuleType:
    """litellm, imported on the first model call: it weighs some 170 MiB and 4 s at import,
    which a worker or API that never calls the model need not pay."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


@dataclass(frozen=True, slots=True)
class Completion:
    content: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None  # None where litellm has no price for the model
    latency_ms: int


class LLMUnavailable(Exception):
    """The provider did not answer (timeout, refusal, error); `outcome` says which, for the
    record of the call."""

    def __init__(self, message: str, *, outcome: str, latency_ms: int) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.latency_ms = latency_ms


class LLMClient:
    def __init__(self, settings: Settings) -> None:
        self.default_model = settings.llm_model
        self._api_base = settings.llm_api_base
        self._api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        self._timeout = settings.llm_timeout_seconds

    def supports_schema(self, model: str) -> bool:
        """Whether the model takes a JSON schema as `response_format` (else JSON mode)."""
        try:
            return bool(_litellm().supports_response_schema(model=model))
        except Exception:  # a model litellm does not know
            return False

    async def complete(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        max_tokens: int,
        response_format: dict[str, Any] | None,
    ) -> Completion:
        litellm = _litellm()
        started = time.perf_counter()
        try:
            response: Any = await litellm.acompletion(
                model=model,
                messages=messages,
                temperature=temperature,
                max_tokens=max_tokens,
                response_format=response_format,
                api_base=self._api_base,
                api_key=self._api_key,
                timeout=self._timeout,
                num_retries=0,
            )
        except Exception as exc:
            latency = _ms(started)
            timed_out = isinstance(exc, litellm.exceptions.Timeout | TimeoutError)
            raise LLMUnavailable(
                f"{type(exc).__name__}: {str(exc)[:300]}",
                outcome="timeout" if timed_out else "error",
                latency_ms=latency,
            ) from exc
        latency = _ms(started)
        content = response.choices[0].message.content or ""
        usage = getattr(response, "usage", None)
        return Completion(
            content=content,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            cost=_cost(response),
            latency_ms=latency,
        )


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _cost(response: Any) -> float | None:
    try:
        cost = _litellm().completion_cost(completion_response=response)
    except Exception:  # no price for this model
        return None
    return float(cost) if cost is not None else None
