from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.selectors import audit_chain_verify, audit_client_ids


def _label(client_id: str) -> str:
    return client_id or "(platform)"


class Command(BaseCommand):
    help = (
        "Recompute the audit hash chain of every client (or of --client-id) from the stored rows; "
        "exit non-zero naming each broken chain's first bad row (edited, deleted or moved)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--client-id", default=None, help="verify only this client's chain ('' for platform-level events)"
        )

    def handle(self, *args, client_id: str | None, **options) -> None:
        client_ids = [client_id] if client_id is not None else audit_client_ids()
        broken = []
        for one_client_id in client_ids:
            result = audit_chain_verify(one_client_id)
            if result.first_break is None:
                self.stdout.write(f"{_label(one_client_id)}: {result.rows_checked} rows, chain intact")
                continue
            failure = (
                f"{_label(one_client_id)}: chain broken at sequence {result.first_break.sequence} "
                f"(row id {result.first_break.row_id}): {result.first_break.problem}"
            )
            self.stderr.write(failure)
            broken.append(failure)
        if broken:
            raise CommandError(f"{len(broken)} broken audit chain(s); first: {broken[0]}")
        self.stdout.write(self.style.SUCCESS(f"{len(client_ids)} audit chain(s) intact"))
