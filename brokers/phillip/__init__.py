"""PhillipCapital over its REST API (docs/brokers/phillip.md), split as brokers.ibkr is:

- `broker`: `PhillipBroker`, the Broker interface — what is asked and what the answers mean;
- `transport`: the HTTP session, OAuth token, retries and structured, scrubbed errors;
- `parsing`: strict reading of the JSON answers into domain objects (pure);
- `credentials`: `PhillipCredentialsSerializer`, the connect-broker payload (needs Django).

The names other modules use are re-exported here, so `from brokers.phillip import ...` keeps working.
"""
from brokers.phillip.broker import QUOTES_PER_REQUEST, PhillipBroker
from brokers.phillip.credentials import EXCHANGES, PhillipCredentialsSerializer
from brokers.phillip.transport import (
    BROKER_NAME,
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_READ_TIMEOUT_SECONDS,
    MAX_WAIT_SECONDS,
    TOKEN_PATH,
)

__all__ = [
    "BROKER_NAME",
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "DEFAULT_READ_TIMEOUT_SECONDS",
    "EXCHANGES",
    "MAX_WAIT_SECONDS",
    "QUOTES_PER_REQUEST",
    "TOKEN_PATH",
    "PhillipBroker",
    "PhillipCredentialsSerializer",
]
