"""daphne as the web role runs it (`python -m tradingplatform.webserver`, daphne's own arguments).

Plain daphne, on SIGTERM, cancels every application and drops its connections: a websocket client
sees the TCP connection cut, not a close, and cannot tell a deploy from a crash. Here, before that,
every open websocket is sent a close frame with 1001 ("going away") and given up to
CLOSE_GRACE_SECONDS to finish the closing handshake; then daphne stops as usual.
"""
from __future__ import annotations

import time

from daphne.cli import CommandLineInterface
from daphne.server import Server  # installs daphne's asyncio reactor: import it before twisted's reactor
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import defer, reactor, task

CLOSE_GRACE_SECONDS = 5.0
GOING_AWAY = 1001


class GracefulServer(Server):
    def kill_all_applications(self):
        sockets = [protocol for protocol in self.connections
                   if isinstance(protocol, WebSocketProtocol) and protocol.state == protocol.STATE_OPEN]
        for protocol in sockets:
            # autobahn's public sendClose admits only 1000 and 3000-4999; 1001 is the RFC 6455 code
            # for a server going away, which tells a client to reconnect (to another server).
            protocol.sendCloseFrame(code=GOING_AWAY)
        return self._closed(sockets, deadline=time.monotonic() + CLOSE_GRACE_SECONDS).addCallback(
            lambda _: super(GracefulServer, self).kill_all_applications())

    @defer.inlineCallbacks
    def _closed(self, sockets: list[WebSocketProtocol], *, deadline: float):
        while time.monotonic() < deadline and any(protocol.state != protocol.STATE_CLOSED for protocol in sockets):
            yield task.deferLater(reactor, 0.05, lambda: None)


class GracefulCommandLineInterface(CommandLineInterface):
    server_class = GracefulServer


if __name__ == "__main__":
    GracefulCommandLineInterface.entrypoint()
