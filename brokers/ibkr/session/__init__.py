"""One long-lived TWS / IB Gateway session per IB account, in a process of its own.

Why: a fresh connection per call cannot hear 1100/1101/1102, cannot keep IB's pacing (each
connection paces only itself), and learns of fills only by asking. The session process
(`python manage.py ibkr_sessions`, supervised by `make run`, the `ibkr-sessions` compose service)
holds one connected ib_async `IB` per account, follows order status and fills from IB's events,
reconnects with backoff, and serves the web and the workers over Redis:

- `protocol`: the Redis keys, the session key of a set of credentials, the request / reply shape;
- `codec`: the broker dataclasses to JSON and back;
- `proxy.IBKRSessionBroker`: the `Broker` the platform builds for an IBKR client (a thin RPC
  client with one deadline per call);
- `server`: the process (sessions, journal, request loop).
"""
