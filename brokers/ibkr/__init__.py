"""Interactive Brokers through ib_async.

`IBKRBroker` (construct with `IBKRConfig` or `IBKRBroker.from_credentials(validated)`);
`brokers.ibkr.credentials.IBKRCredentialsSerializer` validates the connect-broker payload (kept
in its own module because it needs Django settings to validate).
"""
from brokers.ibkr.broker import IBKRBroker, IBKRConfig
from brokers.ibkr.errors import IB_ERRORS, broker_error_from_ib

__all__ = ["IB_ERRORS", "IBKRBroker", "IBKRConfig", "broker_error_from_ib"]
