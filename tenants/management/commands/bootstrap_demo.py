"""Create, once, the demo client with a demo trader and an operator account; print how to log in.

Development only: passwords are generated on first run and kept in .data/ (git-ignored) so that
every `make run` can print them again.
"""
import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tenants.models import Client, Membership
from tenants.services import client_onboard, membership_set

DEMO_CLIENT_ID = "demo"


class Command(BaseCommand):
    help = "Create the demo client (mock broker), its trader and an operator, once; print their logins."

    def handle(self, *args, **options) -> None:
        if settings.IS_PRODUCTION:
            raise CommandError("bootstrap_demo is for development only")
        credentials = self._credentials(settings.BASE_DIR / ".data" / "demo_credentials.json")
        User = get_user_model()
        if not Client.objects.filter(client_id=DEMO_CLIENT_ID).exists():
            client = client_onboard(
                client_id=DEMO_CLIENT_ID,
                name="Demo Capital",
                owner_username=credentials["owner"]["username"],
                owner_password=credentials["owner"]["password"],
                owner_email="owner@demo.example",
                actor="bootstrap_demo",
            )
            self._seed_book(client)
        client = Client.objects.get(client_id=DEMO_CLIENT_ID)
        trader, created = User.objects.get_or_create(
            username=credentials["trader"]["username"], defaults={"email": "trader@demo.example"}
        )
        if created:
            trader.set_password(credentials["trader"]["password"])
            trader.save()
        membership_set(client=client, user=trader, role=Membership.Role.TRADER)
        operator, created = User.objects.get_or_create(
            username=credentials["operator"]["username"],
            defaults={"email": "operator@demo.example", "is_staff": True, "is_superuser": True},
        )
        if created:
            operator.set_password(credentials["operator"]["password"])
            operator.save()

        self.stdout.write("")
        self.stdout.write("  Demo client 'demo' (simulated market). Log in with:")
        for role, account in credentials.items():
            self.stdout.write(f"    {role:<9} username {account['username']:<14} password {account['password']}")
        self.stdout.write("  The operator also signs in to the console at /admin/.")
        self.stdout.write("")

    def _seed_book(self, client: Client) -> None:
        """A long call position out of the agent's band, so that its first cycle has a hedge to
        propose: the demo shows the whole loop (proposal, approval, execution) from the start."""
        from django_tenants.utils import tenant_context

        from audit.rls import rls_context
        from brokers.contracts import hedge_future_select, option_underlyings
        from brokers.domain import BrokerError, OrderLeg, OrderRequest
        from brokers.services import broker_session
        from risk.services import Actor, order_submit

        with tenant_context(client), rls_context(client_id=client.client_id, is_admin=False):
            try:
                with broker_session() as broker:
                    # The agent's own choice of contracts, so the seeded book is one it can hedge
                    # whatever the date: calls two to eight weeks out, on whichever future they deliver.
                    today = timezone.now().date()
                    futures = broker.listed_futures("ES")
                    hedge = hedge_future_select(futures, today=today, chosen_expiry=None).future
                    forwards = {future.expiry: broker.quote(future).mid for future in futures}
                    calls = [option for future in option_underlyings(futures, hedge=hedge, today=today, dte_max=60)
                             for option in broker.option_chain(future)
                             if option.right == "C" and 14 <= (option.expiry - today).days <= 60]
                    call = min(calls, key=lambda option: (option.expiry,
                                                          abs(option.strike - forwards[option.underlying_expiry])))
                order = OrderRequest(client_order_id="demo-seed-1", legs=(OrderLeg(call, "BUY", 8),), order_type="MKT")
                result = order_submit(client=client, order=order, actor=Actor("system", "bootstrap_demo"))
            except BrokerError as exc:
                self.stderr.write(f"  The demo book was not seeded: {exc}")
                return
        if result.accepted:
            self.stdout.write(f"  Demo book: bought 8 {call.key} (the agent will propose a delta hedge).")

    @staticmethod
    def _credentials(path: Path) -> dict:
        if path.is_file():
            return json.loads(path.read_text())
        credentials = {
            role: {"username": f"demo-{role}", "password": secrets.token_urlsafe(12)}
            for role in ("trader", "owner", "operator")
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(credentials, indent=2))
        path.chmod(0o600)
        return credentials
