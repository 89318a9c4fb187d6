"""`python manage.py ibkr_sessions`: the process holding one live TWS / IB Gateway session per IB
account (see brokers.ibkr.session). `make run` supervises it; compose runs it as `ibkr-sessions`."""
from __future__ import annotations

import json
import logging
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django_tenants.utils import tenant_context
from rest_framework import serializers

from brokers.ibkr.session import protocol
from brokers.ibkr.session.proxy import redis_client
from brokers.ibkr.session.server import SessionServer

logger = logging.getLogger(__name__)


def stored_ibkr_credentials() -> list[dict[str, Any]]:
    """The validated IBKR credentials of every client (each schema's broker connection)."""
    from brokers.models import BrokerConnection
    from brokers.registry import credentials_validate
    from tenants.models import Client

    if settings.USE_MOCK_BROKER:
        return []
    found = []
    for client in Client.objects.order_by("client_id"):
        with tenant_context(client):
            for connection in BrokerConnection.objects.filter(broker="ibkr"):
                try:
                    found.append(credentials_validate(broker="ibkr",
                                                      credentials=json.loads(connection.credentials)))
                except serializers.ValidationError:
                    logger.warning("IBKR sessions: the stored credentials of %s are no longer valid",
                                   client.client_id)
    return found


class Command(BaseCommand):
    help = "Hold one live IB session per IBKR account and serve the platform's broker calls."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-discovery", action="store_true",
                            help="start sessions only when a call names them (no scan of clients)")
        parser.add_argument("--check", action="store_true",
                            help="exit 0 if a session process is alive, 1 if not (health checks)")

    def handle(self, *args, **options) -> None:
        if options["check"]:
            alive = redis_client(settings.REDIS_URL).exists(protocol.alive_key())
            raise SystemExit(0 if alive else 1)
        server = SessionServer(redis_client(settings.REDIS_URL),
                               discover=None if options["no_discovery"] else stored_ibkr_credentials,
                               scan_seconds=settings.IBKR_SESSIONS_SCAN_SECONDS)

        def stop(*_: object) -> None:
            server.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write("IBKR sessions: serving")
        server.run()
        self.stdout.write("IBKR sessions: stopped")
