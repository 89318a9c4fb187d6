"""The HTTP side of the PhillipCapital adapter: session, OAuth token, retries, errors.

Retries are a small explicit loop rather than urllib3's `Retry`: urllib3 cannot parse a fractional
`Retry-After`, reports exhaustion as an exception that has lost the status and attempt count, and
knows nothing of the one token refresh a 401 earns. The loop retries timeouts, connection
failures, 429 and 5xx, including on `POST` — safe here only because every `POST` of the contract
is idempotent (`POST /orders` by `client_order_id`). Nothing else is retried.

Every error is a structured BrokerError whose text is scrubbed of the client secret and tokens.
The server's own words (its error body, a TLS or socket failure's text) are never in it: callers
of the API see our short code and a generic message; the full text goes to the log (WARNING,
`brokers.phillip`, with the request id the error's context carries), for operators only. The
base URL is owner-settable: an echo would let an owner read what an internal address answers.
"""
from __future__ import annotations

import base64
import collections
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import requests
from requests.adapters import HTTPAdapter

from brokers.domain import BrokerError
from brokers.phillip.parsing import Fields, Malformed, decode_json, parse_retry_after, reject_non_finite

# The adapter's records are under "brokers.phillip", the package's name, wherever they are logged.
logger = logging.getLogger("brokers.phillip")

BROKER_NAME = "phillip"
DEFAULT_CONNECT_TIMEOUT_SECONDS = 3.05
DEFAULT_READ_TIMEOUT_SECONDS = 10.0
# No single wait (backoff or Retry-After) may hold a worker longer than this; a server asking for
# more gets a retryable failure at once and the caller decides when to come back.
MAX_WAIT_SECONDS = 30.0
TOKEN_PATH = "/oauth/token"

_EXHAUSTED_CODES = {"read_timeout": "timeout", "connection": "unavailable", 429: "rate_limited"}
_MAX_SERVER_TEXT = 200


class PhillipTransport:
    """Authenticated, retried calls to one PhillipCapital account's REST API.

    The token is shared under a lock, so the instance may be used from several threads.
    `close()` forgets the token and closes pooled connections; a later call reconnects.
    """

    name = BROKER_NAME

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        request_retries: int,
        request_backoff_seconds: float,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if connect_timeout_seconds <= 0 or read_timeout_seconds <= 0:
            raise ValueError("timeouts must be positive: an unbounded wait is never acceptable")
        self.base_url = base_url.rstrip("/")
        self._client_secret = client_secret
        self.retries = request_retries
        self._backoff = request_backoff_seconds
        self._timeouts = (connect_timeout_seconds, read_timeout_seconds)
        self._clock = clock
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_lock = threading.Lock()
        # Every token this instance held recently, so that server text echoing one is scrubbed.
        self._recent_tokens: collections.deque[str] = collections.deque(maxlen=4)
        self._basic_credentials = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self._session = self._new_session()

    def close(self) -> None:
        with self._token_lock:
            self._token = None
        self._session.close()
        self._session = self._new_session()

    @contextlib.contextmanager
    def parsing(self, operation: str, path: str, response: requests.Response | None) -> Iterator[None]:
        try:
            yield
        except Malformed as malformed:
            context: dict[str, Any] = {"path": path, "field": malformed.field}
            if response is not None:
                context["status"] = response.status_code
            raise self.error(
                operation, "malformed_response", f"unexpected answer: {malformed}", False, context
            ) from None

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=0)  # retries are ours, see the module docstring
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update({"Accept": "application/json", "User-Agent": "tradingplatform-phillip/1"})
        return session

    def access_token(self, operation: str, *, force_new: bool = False) -> str:
        with self._token_lock:
            if not force_new and self._token is not None and self._clock() < self._token_refresh_at:
                return self._token
            self._token = None
            request_id = uuid.uuid4().hex
            response, attempts = self._send(
                operation,
                "POST",
                TOKEN_PATH,
                request_id=request_id,
                retries=self.retries,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {self._basic_credentials}"},
            )
            if response.status_code != 200:
                if response.status_code in (400, 401):
                    raise self.error(
                        operation,
                        "auth_failed",
                        "the token request was refused",
                        False,
                        self._answer_context("POST", TOKEN_PATH, response, attempts, request_id),
                    )
                self._raise_for_answer(
                    operation, "POST", TOKEN_PATH, response, attempts=attempts, request_id=request_id
                )
            with self.parsing(operation, TOKEN_PATH, response):
                fields = Fields(decode_json(response.content), "")
                token = fields.text("access_token")
                if fields.text("token_type").lower() != "bearer":
                    raise Malformed("token_type", "Bearer")
                lifetime = fields.integer("expires_in", minimum=1)
            self._recent_tokens.append(token)
            self._token = token
            # Refresh a little early so that a token never expires in flight.
            self._token_refresh_at = self._clock() + lifetime - min(60.0, lifetime / 10.0)
            return token

    def _forget_token(self, token: str) -> None:
        with self._token_lock:
            if self._token == token:
                self._token = None

    def request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | list[tuple[str, str]] | None = None,
        json_body: dict[str, Any] | None = None,
        accept: tuple[int, ...] = (200,),
        retries: int | None = None,
    ) -> requests.Response:
        """One authenticated call: retried per the contract, one token refresh on 401."""
        request_id = uuid.uuid4().hex
        retries = self.retries if retries is None else retries
        refreshed = False
        while True:
            token = self.access_token(operation)
            response, attempts = self._send(
                operation,
                method,
                path,
                request_id=request_id,
                retries=retries,
                params=params,
                json=json_body,
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code == 401:
                self._forget_token(token)
                if refreshed:
                    raise self.error(
                        operation,
                        "auth_failed",
                        "the access token was refused after a refresh",
                        False,
                        self._answer_context(method, path, response, 2, request_id),
                    )
                refreshed = True
                continue
            if response.status_code in accept:
                return response
            self._raise_for_answer(
                operation, method, path, response, attempts=attempts, request_id=request_id
            )

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        request_id: str,
        retries: int,
        **request_arguments: Any,
    ) -> tuple[requests.Response, int]:
        """The HTTP exchange with retries: the first answer not worth retrying, and the attempts made."""
        url = f"{self.base_url}{path}"
        headers = {"X-Request-ID": request_id, **request_arguments.pop("headers", {})}
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            response: requests.Response | None = None
            try:
                response = self._session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=self._timeouts,
                    allow_redirects=False,
                    **request_arguments,
                )
            except requests.exceptions.ReadTimeout:
                failure: str | int = "read_timeout"
            except requests.exceptions.SSLError as error:
                # A certificate or TLS failure is configuration, not weather: retrying cannot help.
                self._upstream_log(operation, method, path, request_id, failure=f"TLS failed: {error}")
                raise self.error(
                    operation,
                    "tls_error",
                    "the TLS handshake with the broker failed",
                    False,
                    {"method": method, "path": path, "attempts": attempt, "request_id": request_id},
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError):
                failure = "connection"  # includes connect timeouts, refusals and resets
            except requests.exceptions.RequestException as error:
                self._upstream_log(operation, method, path, request_id, failure=f"request failed: {error}")
                raise self.error(
                    operation,
                    "request_failed",
                    "the request could not be sent",
                    False,
                    {"method": method, "path": path, "attempts": attempt, "request_id": request_id},
                ) from None
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response, attempt
                failure = response.status_code
                retry_after = parse_retry_after(response.headers.get("Retry-After"))

            context: dict[str, Any] = {
                "method": method,
                "path": path,
                "attempts": attempt,
                "request_id": request_id,
            }
            if response is not None:
                context = self._answer_context(method, path, response, attempt, request_id)
            if retry_after is not None:
                context["retry_after_seconds"] = retry_after
            if method == "POST" and path != TOKEN_PATH:
                context["outcome_unknown"] = True
            too_long = retry_after is not None and retry_after > MAX_WAIT_SECONDS
            if attempt > retries or too_long:
                code = _EXHAUSTED_CODES.get(failure, "server_error")
                reason = f"HTTP {failure}" if isinstance(failure, int) else failure.replace("_", " ")
                message = f"{reason} after {attempt} attempt{'s' if attempt > 1 else ''}"
                if too_long:
                    message = f"{reason}: the server asked to wait {retry_after:.0f} s"
                raise self.error(operation, code, message, True, context)

            wait = (
                retry_after
                if retry_after is not None
                else min(self._backoff * 2 ** (attempt - 1), MAX_WAIT_SECONDS)
            )
            logger.warning(
                "phillip %s %s attempt %d/%d failed (%s); retrying in %.2f s",
                method,
                path,
                attempt,
                retries + 1,
                failure,
                wait,
                extra={"broker": self.name, "operation": operation, "broker_request_id": request_id},
            )
            time.sleep(wait)

    def _answer_context(
        self, method: str, path: str, response: requests.Response, attempts: int, request_id: str = ""
    ) -> dict[str, Any]:
        context: dict[str, Any] = {
            "method": method,
            "path": path,
            "attempts": attempts,
            "status": response.status_code,
        }
        if request_id:
            context["request_id"] = request_id
        broker_code, broker_message = self._error_body(response)
        if response.status_code >= 400:
            self._upstream_log("", method, path, request_id, status=response.status_code, broker_code=broker_code,
                               broker_message=broker_message)
        return context

    def _upstream_log(self, operation: str, method: str, path: str, request_id: str, **details: Any) -> None:
        """What the broker (or the network) said, in full but scrubbed of secrets: for the log only,
        never in an error a caller sees."""
        details = {key: self.scrub(value) if isinstance(value, str) else value for key, value in details.items()}
        logger.warning(
            "phillip %s %s (request %s) answered: %s", method, path, request_id, details,
            extra={"broker": self.name, "operation": operation, "broker_request_id": request_id,
                   "upstream": details},
        )

    def _error_body(self, response: requests.Response) -> tuple[str, str]:
        """The server's error code and message, from either error shape, scrubbed; blanks if none."""
        try:
            body = json.loads(response.content, parse_constant=reject_non_finite)
        except (ValueError, RecursionError):
            return "", ""
        if not isinstance(body, dict):
            return "", ""
        error = body.get("error")
        if isinstance(error, dict):  # the API's shape
            code, message = error.get("code"), error.get("message")
        else:  # the RFC 6749 shape of the token endpoint
            code, message = error, body.get("error_description")
        return (
            self.scrub(code) if isinstance(code, str) else "",
            self.scrub(message) if isinstance(message, str) else "",
        )

    def _raise_for_answer(
        self,
        operation: str,
        method: str,
        path: str,
        response: requests.Response,
        *,
        attempts: int,
        request_id: str,
    ) -> NoReturn:
        status = response.status_code
        context = self._answer_context(method, path, response, attempts, request_id)
        broker_code = self._error_body(response)[0]  # read to classify, never echoed
        if status == 403:
            code = "forbidden"
        elif status == 404:
            code = "order_not_found" if broker_code == "order_not_found" else "not_found"
        elif status == 409 and broker_code == "client_order_id_conflict":
            code = "duplicate_client_order_id"
        elif status == 409 and broker_code == "order_not_cancellable":
            code = "order_not_cancellable"
        elif status in (400, 409, 422):
            code = "invalid_request"
        else:
            code = "unexpected_status"
        raise self.error(operation, code, f"the broker refused the request (HTTP {status})", False, context)

    def scrub(self, text: str) -> str:
        for secret in (self._client_secret, self._basic_credentials, *self._recent_tokens):
            if secret:
                text = text.replace(secret, "***")
        return text[:_MAX_SERVER_TEXT]

    def error(
        self, operation: str, code: str, message: str, retryable: bool, context: dict[str, Any]
    ) -> BrokerError:
        return BrokerError(
            operation=operation,
            broker=self.name,
            code=code,
            message=self.scrub(message),
            retryable=retryable,
            context=context,
        )
