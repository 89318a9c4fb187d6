"""Time to onboard a client: its schema cloned from the migrated template, against replaying every
tenant migration into an empty schema. Runs on the development database and removes what it made.

`python -m tradingplatform.devstack exec -- .venv/bin/python -m bench.onboarding_bench`
"""
from __future__ import annotations

import os
import secrets
import statistics
import time
from datetime import date

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")
import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from bench.governor_bench import machine  # noqa: E402
from tenants.services import client_onboard  # noqa: E402

CLIENTS = 5


def onboard_seconds() -> float:
    suffix = secrets.token_hex(3)
    started = time.perf_counter()
    client = client_onboard(client_id=f"onboard-bench-{suffix}", name="Benchmark",
                            owner_username=f"onboard-bench-{suffix}", owner_password=secrets.token_urlsafe(16),
                            owner_email="bench@example.invalid", actor="bench")
    seconds = time.perf_counter() - started
    client.delete(force_drop=True)
    get_user_model().objects.filter(username=f"onboard-bench-{suffix}").delete()
    return seconds


def migrate_seconds() -> float:
    schema = f"migrate_bench_{secrets.token_hex(3)}"
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema}"')
    call_command("migrate_schemas", schema_name=schema, interactive=False, verbosity=0)
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')
    connection.set_schema_to_public()
    return seconds


def main() -> None:
    call_command("migrate_platform", verbosity=0)
    cloned = [onboard_seconds() for _ in range(CLIENTS)]
    migrated = [migrate_seconds() for _ in range(2)]
    print(f"onboarding benchmark, {date.today().isoformat()}, {machine()}")
    print(f"  cloned from the template (whole onboarding): median {statistics.median(cloned):.3f} s, "
          f"max {max(cloned):.3f} s over {CLIENTS} clients")
    print(f"  replaying every tenant migration (schema only): median {statistics.median(migrated):.3f} s")


if __name__ == "__main__":
    main()
