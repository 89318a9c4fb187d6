from django.core.management import call_command
from django.core.management.base import BaseCommand

from tenants.services import template_schema_migrate


class Command(BaseCommand):
    help = (
        "Apply every migration: the public schema, the template new clients are cloned from, and "
        "every client schema (migrate_schemas --shared, the template, migrate_schemas --tenant)."
    )

    def handle(self, *args, **options) -> None:
        verbosity = options["verbosity"]
        call_command("migrate_schemas", shared=True, interactive=False, verbosity=verbosity)
        template_schema_migrate(verbosity=verbosity)
        call_command("migrate_schemas", tenant=True, interactive=False, verbosity=verbosity)
        self.stdout.write(self.style.SUCCESS("public, template and client schemas are migrated"))
