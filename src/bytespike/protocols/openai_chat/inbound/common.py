"""What every part of the Chat -> Messages translation shares: the caveats and the request error."""

from __future__ import annotations

from typing import Final

CAVEATS: Final[list[str]] = [
    "n > 1 is rejected (one choice per request).",
    "logprobs, top_logprobs, logit_bias, seed, presence_penalty, frequency_penalty, prediction, store, "
    "service_tier, verbosity, prompt_cache_key, web_search_options and metadata are dropped.",
    "temperature is clamped into [0, 1]; when both temperature and top_p are set, top_p is dropped.",
    "system and developer messages anywhere in the conversation are hoisted, in order, into the top-level system.",
    "message `name` fields are dropped; tool call ids outside [a-zA-Z0-9_-] are rewritten identically "
    "on calls and results.",
    "a tool result answering no call of the preceding assistant turn is sent as user text.",
    "response_format json_object becomes a system instruction; json_schema becomes output_config.format "
    "(strict and name are dropped).",
    "reasoning_effort becomes thinking with a fixed budget (low 1024, medium 2048, high 4096, xhigh 8192, "
    "max 16384), max_tokens is raised above the budget when needed, temperature/top_p are dropped; thinking is "
    "left off when a tool is forced, while a tool loop is in progress, or after an assistant prefill, since "
    "earlier thinking blocks cannot be replayed from Chat history.",
    "thinking comes back as the non-standard `reasoning_content`; its signature and redacted thinking are dropped.",
    "server tool blocks (web search, code execution) and citations are not returned.",
    "finish_reason cannot say which stop sequence matched; pause_turn maps to stop, "
    "model_context_window_exceeded to length, refusal to content_filter.",
    "audio input and output, and file_id references, are rejected.",
]


class ChatRequestError(ValueError):
    """An invalid Chat Completions request; ``param`` names the offending field as OpenAI errors do."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
