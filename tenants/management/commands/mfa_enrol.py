from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tenants.mfa import mfa_staff_enrol


class Command(BaseCommand):
    help = (
        "Enrol a user (an operator, typically the first one of a production platform, who cannot log in "
        "to enrol) in two-factor authentication at once: prints the otpauth:// URI to scan and ten "
        "single-use recovery codes. Replaces any device the user had. Audited."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--actor", default="manage.py", help="Who runs this, for the audit trail.")

    def handle(self, *args, **options) -> None:
        user = get_user_model().objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {options['username']!r}.")
        enrolment, codes = mfa_staff_enrol(user=user, actor=options["actor"])
        self.stdout.write("Add this to the user's authenticator app (or as a QR code):")
        self.stdout.write(enrolment.otpauth_uri)
        self.stdout.write("Recovery codes (each works once; hand them over safely, they are not shown again):")
        for code in codes:
            self.stdout.write(f"  {code}")
