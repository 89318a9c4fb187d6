"""Row-level security for the audit table, beneath the application's own filtering.

The policy (migration 0002) lets a row be read or inserted when

    (client_id <> '' AND client_id = current_setting('app.current_client_id', true))
    OR current_setting('app.is_admin', true) = 'true'

so a session that has set neither sees nothing, a client's session sees only that client's rows,
and platform-level rows (client_id '') only an admin session. The table has ROW LEVEL SECURITY
enabled and forced, so it binds its owner too; superusers bypass every policy, and the platform
may connect as one, so audit reads and writes also switch to the NOLOGIN role `AUDIT_DB_ROLE`
(`audit_role`), which holds only SELECT and INSERT on the table and is subject to the policy.

- `rls_context(client_id=..., is_admin=...)` sets the two settings on the current connection for a
  block and puts the previous values back afterwards (request views, Celery tasks, websockets).
- `audit_read(client_id=..., is_admin=...)` is what audit reads run inside: the settings, a
  transaction, and the audit role. Querysets must be evaluated before the block ends.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction
from psycopg.pq import TransactionStatus

AUDIT_DB_ROLE = "tradingplatform_audit"
CLIENT_SETTING = "app.current_client_id"
ADMIN_SETTING = "app.is_admin"


def settings_read() -> tuple[str, str]:
    """The current (client id, is-admin) settings; '' when unset."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting(%s, true), current_setting(%s, true)", [CLIENT_SETTING, ADMIN_SETTING]
        )
        client_id, is_admin = cursor.fetchone()
    return client_id or "", is_admin or ""


def settings_write(*, client_id: str, is_admin: str, local: bool) -> None:
    """Set both settings, for the session (`local=False`) or until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config(%s, %s, %s), set_config(%s, %s, %s)",
            [CLIENT_SETTING, client_id, local, ADMIN_SETTING, is_admin, local],
        )


def _restorable() -> bool:
    """False when the transaction has failed: its rollback will undo our set_config anyway (the
    context was entered inside it), and any statement now would only raise."""
    if connection.connection is None or connection.needs_rollback:
        return False
    return connection.connection.info.transaction_status != TransactionStatus.INERROR


@contextmanager
def rls_context(*, client_id: str | None, is_admin: bool) -> Iterator[None]:
    """Run the block with `app.current_client_id` = client_id ('' for None) and `app.is_admin`
    set, at session level; the previous values come back on exit, also when the block raises."""
    previous_client_id, previous_is_admin = settings_read()
    settings_write(client_id=client_id or "", is_admin="true" if is_admin else "false", local=False)
    try:
        yield
    finally:
        if _restorable():
            settings_write(client_id=previous_client_id, is_admin=previous_is_admin, local=False)


@contextmanager
def audit_role() -> Iterator[None]:
    """Run the block in a transaction (a savepoint inside an outer one) as `AUDIT_DB_ROLE`, so
    the policy applies even when the connection is a superuser's.

    The role is set with transaction scope; a savepoint's release would keep it until the outer
    transaction ends, so the previous role is put back explicitly when the block succeeds (when it
    raises, the rollback of the savepoint or transaction undoes it).
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('role')")
            (previous_role,) = cursor.fetchone()
            cursor.execute("SELECT set_config('role', %s, true)", [AUDIT_DB_ROLE])
        yield
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('role', %s, true)", [previous_role])


@contextmanager
def audit_read(*, client_id: str | None, is_admin: bool = False) -> Iterator[None]:
    """The context every audit read runs in: the settings, a transaction and the audit role."""
    with rls_context(client_id=client_id, is_admin=is_admin), audit_role():
        yield
