from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tenants.mfa import mfa_reset


class Command(BaseCommand):
    help = (
        "Take a user's second factor away (a lost device), after checking who asks: they log in with "
        "their password alone and enrol again. Revokes every token of theirs. Audited (auth.mfa_reset)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--reason", required=True, help="Why, for the audit trail (a ticket number).")
        parser.add_argument("--actor", default="manage.py", help="Who runs this, for the audit trail.")

    def handle(self, *args, **options) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}.")
        mfa_reset(user=user, actor=options["actor"], reason=options["reason"])
        self.stdout.write(self.style.SUCCESS(f"Two-factor authentication reset for {user.get_username()}."))
