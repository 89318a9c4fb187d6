"""A chat turn with a language model behind any OpenAI-compatible chat-completions endpoint.

The model phrases the answer and chooses tools from the ToolSession it is given (read-only tools
and one that drafts a proposal). The turn is bounded: at most `max_tool_rounds` rounds of tool
calls, `max_tokens` per completion, and a wall-clock deadline of `timeout_seconds` for the whole
turn (each request's timeout is what is left of it, and a stream is abandoned once it passes).
Every completion is streamed and the answer buffered: nothing is shown before the model has
finished, so no text is ever shown and then disowned.

Whatever goes wrong (an HTTP error, a timeout, a body that is not the protocol, an answer cut at
the token cap, tool calls past the round cap) raises LLMFailure; the caller answers
deterministically instead.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai

# Tool calls one completion may ask for; more is treated as a runaway model.
MAX_TOOL_CALLS_PER_ROUND = 8
# A completion's text (answer or tool arguments) longer than this many characters per allowed token
# means the server ignored max_tokens.
MAX_CHARS_PER_TOKEN = 8
# OpenAI-compatible servers run locally often need no key, but the SDK insists on one.
KEYLESS_API_KEY = "no-key"


@dataclass(frozen=True, slots=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str
    timeout_seconds: float
    max_tool_rounds: int
    max_tokens: int


class LLMFailure(Exception):
    """The model's answer cannot be used; `reason` is a short code, `detail` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ToolCaller(Protocol):
    def schemas(self) -> list[dict[str, Any]]: ...

    def call_from_model(self, name: str, raw_arguments: str) -> str: ...


@dataclass(slots=True)
class _ToolCall:
    call_id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(slots=True)
class _Completion:
    content: str = ""
    finish_reason: str | None = None
    tool_calls: dict[int, _ToolCall] = field(default_factory=dict)


def _streamed_completion(*, client: openai.OpenAI, config: LLMConfig, messages: list[dict[str, Any]],
                         tools: list[dict[str, Any]], deadline: float) -> _Completion:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise LLMFailure("deadline", f"the turn took more than {config.timeout_seconds:g} s")
    completion = _Completion()
    max_chars = config.max_tokens * MAX_CHARS_PER_TOKEN
    size = 0
    with client.chat.completions.create(model=config.model, messages=messages, tools=tools,
                                        tool_choice="auto", max_tokens=config.max_tokens, stream=True,
                                        timeout=remaining) as stream:
        for chunk in stream:
            if time.monotonic() > deadline:
                raise LLMFailure("deadline", f"the turn took more than {config.timeout_seconds:g} s")
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            delta = choice.delta
            if delta.content:
                completion.content += delta.content
                size += len(delta.content)
            for piece in delta.tool_calls or ():
                call = completion.tool_calls.setdefault(piece.index, _ToolCall(call_id=f"call_{piece.index}"))
                call.call_id = piece.id or call.call_id
                if piece.function is not None:
                    call.name += piece.function.name or ""
                    call.arguments += piece.function.arguments or ""
                    size += len(piece.function.arguments or "")
            if size > max_chars:
                raise LLMFailure("over_cap", f"the completion exceeded {config.max_tokens} tokens")
            if choice.finish_reason:
                completion.finish_reason = choice.finish_reason
    return completion


def _round(*, client: openai.OpenAI, config: LLMConfig, conversation: list[dict[str, Any]], tools: ToolCaller,
           deadline: float, last: bool) -> str | None:
    """One completion: the answer, or None after running the tool calls it asked for."""
    completion = _streamed_completion(client=client, config=config, messages=conversation,
                                      tools=tools.schemas(), deadline=deadline)
    if completion.finish_reason == "length":
        raise LLMFailure("over_cap", f"the completion was cut at {config.max_tokens} tokens")
    calls = [completion.tool_calls[index] for index in sorted(completion.tool_calls)]
    if not calls:
        answer = completion.content.strip()
        if not answer:
            raise LLMFailure("empty", "the model returned no answer")
        return answer
    if last:
        raise LLMFailure("tool_rounds", f"the model still called tools after {config.max_tool_rounds} rounds")
    if len(calls) > MAX_TOOL_CALLS_PER_ROUND:
        raise LLMFailure("tool_calls", f"{len(calls)} tool calls in one round")
    conversation.append({
        "role": "assistant", "content": completion.content or None,
        "tool_calls": [{"id": call.call_id, "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments}} for call in calls],
    })
    for call in calls:
        conversation.append({"role": "tool", "tool_call_id": call.call_id,
                             "content": tools.call_from_model(call.name, call.arguments)})
    return None


def llm_answer(*, config: LLMConfig, messages: list[dict[str, Any]], tools: ToolCaller) -> str:
    """The model's answer to the conversation in `messages` (system prompt first), using `tools`."""
    deadline = time.monotonic() + config.timeout_seconds
    conversation = list(messages)
    try:
        client = openai.OpenAI(base_url=config.base_url, api_key=config.api_key or KEYLESS_API_KEY,
                               timeout=config.timeout_seconds, max_retries=0)
        try:
            rounds_left = config.max_tool_rounds
            while True:
                answer = _round(client=client, config=config, conversation=conversation, tools=tools,
                                deadline=deadline, last=rounds_left == 0)
                if answer is not None:
                    return answer
                rounds_left -= 1
        finally:
            client.close()
    except LLMFailure:
        raise
    except openai.APITimeoutError as exc:
        raise LLMFailure("timeout", "the model did not answer in time") from exc
    except openai.APIStatusError as exc:
        raise LLMFailure("http_error", f"HTTP {exc.status_code}") from exc
    except openai.OpenAIError as exc:
        raise LLMFailure("api_error", type(exc).__name__) from exc
    except Exception as exc:
        # A body that is not the protocol surfaces as whatever the parser raises.
        raise LLMFailure("invalid_response", f"{type(exc).__name__}: {str(exc)[:200]}") from exc
