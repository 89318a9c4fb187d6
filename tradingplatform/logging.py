"""Structured JSON log lines with the request context (request id, client, user) on every line.

The context lives in contextvars so that it follows a request into sync and async code alike;
Celery tasks and websocket handlers set the same variables through `log_context`.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
client_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("client_id", default="")
user_var: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="")

_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@contextlib.contextmanager
def log_context(**values: str) -> Iterator[None]:
    variables = {"request_id": request_id_var, "client_id": client_id_var, "user": user_var}
    tokens = [(variables[name], variables[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # django.request logs a failed request after the middleware has returned: its record
        # carries the request itself, which carries the id.
        # Every handler runs this filter on the same record: it must be idempotent.
        request = getattr(record, "request", None)
        record.request_id = (
            getattr(record, "request_id", "") or request_id_var.get() or getattr(request, "request_id", "")
        )
        record.client_id = getattr(record, "client_id", "") or client_id_var.get()
        record.user = getattr(record, "user", "") or user_var.get()
        if request is not None and not isinstance(request, str):
            record.request = f"{getattr(request, 'method', '')} {getattr(request, 'path', '')}"
        return True


class JsonFormatter(_BaseJsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault(
            "fmt", "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(client_id)s %(user)s"
        )
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("datefmt", "%Y-%m-%dT%H:%M:%S%z")
        super().__init__(*args, **kwargs)


class RequestContextMiddleware:
    """Gives every request an id (the caller's `X-Request-ID` when well formed) and echoes it."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        with log_context(request_id=request_id, client_id="", user=""):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
