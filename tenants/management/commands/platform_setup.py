"""What a fresh deployment needs before it serves, idempotently: every migration, then the first
operator. Docker compose's one-shot `migrate` service runs it on every `up`.

The operator's login comes from OPERATOR_USERNAME / OPERATOR_PASSWORD when set; otherwise a password
is generated and written, readable by the owner only, to OPERATOR_CREDENTIALS_FILE (default
/var/lib/tradingplatform/first-operator.json, a volume in compose). The log says where, never
what; the creation is audited (`operator.created`, without the password). The admin API key is
ADMIN_API_KEY from the environment (settings refuse to start without it); only whether it is set
is said.
"""
import json
import os
import secrets
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from tenants.services import operator_first_create

DEFAULT_CREDENTIALS_FILE = "/var/lib/tradingplatform/first-operator.json"


class Command(BaseCommand):
    help = "Apply every migration and create the first operator, once (safe to run on every deploy)."

    def handle(self, *args, **options) -> None:
        call_command("migrate_platform", verbosity=options["verbosity"])
        username = os.environ.get("OPERATOR_USERNAME") or "operator"
        email = os.environ.get("OPERATOR_EMAIL", "")
        given = os.environ.get("OPERATOR_PASSWORD", "")
        password = given or secrets.token_urlsafe(18)
        path = Path(os.environ.get("OPERATOR_CREDENTIALS_FILE") or DEFAULT_CREDENTIALS_FILE)
        try:
            operator, created = operator_first_create(username=username, password=password, email=email,
                                                      actor="platform_setup")
        except ValidationError as exc:
            raise CommandError(f"OPERATOR_PASSWORD is refused: {' '.join(exc.messages)}") from None
        if not created:
            self.stdout.write(f"Operator: {operator.get_username()!r} exists already; nothing created.")
        elif given:
            self.stdout.write(f"Operator: created {username!r} with the password OPERATOR_PASSWORD gives.")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(json.dumps({"username": username, "password": password}, indent=2) + "\n")
            self.stdout.write(f"Operator: created {username!r}; its generated password is in {path} "
                              "(readable by this user only). Log in at /admin/, enrol MFA, then delete the file.")
        # Settings refuse to start without it, so reaching here means it is set (never print it).
        self.stdout.write("Admin API key: ADMIN_API_KEY from the environment (X-Admin-Key header).")
