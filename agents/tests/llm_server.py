"""A loopback server speaking the chat-completions protocol, scripted by each test.

`POST /v1/chat/completions` answers with the next scripted reply: text (`Say`), tool calls
(`CallTools`), a raw body of any status (`Raw`: garbage, a 500), or nothing for a while (`Hang`).
A `stream: true` request gets server-sent events, chunk by chunk as OpenAI sends them; otherwise
one JSON completion. It records every request body and its headers so a test can check the tools
offered, the messages sent and the key used.
"""
from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Say:
    text: str
    finish_reason: str = "stop"
    chunk_chars: int = 7
    pause_seconds: float = 0.0  # between streamed chunks
    ignore_stream: bool = False  # a plain completion even when a stream was asked for


@dataclass(frozen=True)
class CallTools:
    calls: tuple[tuple[str, str], ...]  # (tool name, arguments as the model writes them)


@dataclass(frozen=True)
class Raw:
    body: bytes
    status: int = 200
    content_type: str = "application/json"


@dataclass(frozen=True)
class Hang:
    seconds: float  # or until the server stops


Reply = Say | CallTools | Raw | Hang


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def _stream_chunks(reply: Say | CallTools, model: str) -> list[dict[str, Any]]:
    if isinstance(reply, Say):
        pieces = [reply.text[i:i + reply.chunk_chars] for i in range(0, len(reply.text), reply.chunk_chars)]
        chunks = [_chunk(model, {"role": "assistant", "content": ""})]
        chunks += [_chunk(model, {"content": piece}) for piece in pieces]
        return chunks + [_chunk(model, {}, reply.finish_reason)]
    chunks = []
    for index, (name, arguments) in enumerate(reply.calls):
        chunks.append(_chunk(model, {"role": "assistant", "tool_calls": [
            {"index": index, "id": f"call_{index}", "type": "function",
             "function": {"name": name, "arguments": ""}}]}))
        middle = len(arguments) // 2
        for piece in (arguments[:middle], arguments[middle:]):
            chunks.append(_chunk(model, {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    return chunks + [_chunk(model, {}, "tool_calls")]


def _completion(reply: Say | CallTools, model: str) -> dict[str, Any]:
    if isinstance(reply, Say):
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        finish_reason = reply.finish_reason
    else:
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{index}", "type": "function", "function": {"name": name, "arguments": arguments}}
            for index, (name, arguments) in enumerate(reply.calls)]}
        finish_reason = "tool_calls"
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        try:
            self._answer()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout or deadline): what the test is about

    def _answer(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        owner = self.server.owner
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = owner.record(path=self.path, headers=headers, body=body)
        if self.path != "/v1/chat/completions":
            return self._send(404, b'{"error": {"message": "not found"}}')
        if isinstance(reply, Hang):
            owner.released.wait(reply.seconds)
            return None
        if isinstance(reply, Raw):
            return self._send(reply.status, reply.body, reply.content_type)
        model = body.get("model", "")
        if not body.get("stream") or (isinstance(reply, Say) and reply.ignore_stream):
            return self._send(200, json.dumps(_completion(reply, model)).encode())
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for chunk in _stream_chunks(reply, model):
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            if isinstance(reply, Say) and reply.pause_seconds and owner.released.wait(reply.pause_seconds):
                return None
        self.wfile.write(b"data: [DONE]\n\n")
        return None

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedLLMServer


class ScriptedLLMServer:
    """`script(...)` queues replies; `always` answers every request once the queue is empty
    (without either, a request gets a 500)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.always: Reply | None = None
        self.released = threading.Event()
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        # A short poll interval: shutdown() waits up to one interval, and every test stops a server.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def record(self, *, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            if self._replies:
                return self._replies.popleft()
        return self.always or Raw(b'{"error": {"message": "the test scripted no more replies"}}', status=500)

    def start(self) -> ScriptedLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()


def scripted_llm(settings) -> Iterator[ScriptedLLMServer]:
    """For a test module's fixture: a scripted model the chat uses (LLM_BASE_URL points at it),
    with short caps, stopped at the end of the test."""
    server = ScriptedLLMServer().start()
    settings.LLM_BASE_URL = server.base_url
    settings.LLM_MODEL = "scripted-model"
    settings.LLM_API_KEY = "sk-test-secret"
    settings.LLM_TIMEOUT_SECONDS = 2
    settings.LLM_MAX_TOOL_ROUNDS = 3
    settings.LLM_MAX_TOKENS = 200
    try:
        yield server
    finally:
        server.stop()
