"""The database's own guarantees for the audit table.

- A trigger refuses UPDATE, DELETE and TRUNCATE: rows are appended, never changed.
- Row-level security, enabled and forced (so it binds the table's owner too): a row is visible
  and insertable when its client_id is the session's `app.current_client_id` (never for '', the
  platform-level rows) or when `app.is_admin` is 'true'.
- A NOLOGIN role, `tradingplatform_audit`, with only SELECT and INSERT, granted to the migrating
  user (creating it needs CREATEROLE, unless a DBA created it and granted it to that user).
  Superusers bypass row-level security, so the platform runs audit reads and writes as this role
  (`SET LOCAL ROLE`, see audit/rls.py) and the policy binds even a superuser connection.
  Roles belong to the whole cluster: creation tolerates an existing role, and reversing this
  migration revokes the table's grants but leaves the role to other databases that may use it.
"""
from django.db import migrations

ROLE = "tradingplatform_audit"
VISIBLE = (
    "(client_id <> '' AND client_id = current_setting('app.current_client_id', true))"
    " OR current_setting('app.is_admin', true) = 'true'"
)

APPEND_ONLY = """
CREATE FUNCTION public.audit_event_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP
        USING HINT = 'Audit rows are written by audit.services.audit_record and never changed.';
END
$$;
CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON public.audit_event
    FOR EACH ROW EXECUTE FUNCTION public.audit_event_refuse_change();
CREATE TRIGGER audit_event_no_truncate
    BEFORE TRUNCATE ON public.audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION public.audit_event_refuse_change();
"""

APPEND_ONLY_REVERSE = """
DROP TRIGGER audit_event_no_truncate ON public.audit_event;
DROP TRIGGER audit_event_append_only ON public.audit_event;
DROP FUNCTION public.audit_event_refuse_change();
"""

ROW_LEVEL_SECURITY = f"""
DO $$
BEGIN
    -- A role created earlier (or by a DBA) is used as it is.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
        BEGIN
            CREATE ROLE {ROLE} NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- a concurrent migration of another database in the cluster created it
        END;
    END IF;
    -- Since PostgreSQL 16 a role's creator holds it WITH ADMIN but may not SET ROLE to it; 15
    -- knows no SET privilege, and membership is what SET ROLE needs there.
    IF NOT pg_has_role(CURRENT_USER, '{ROLE}',
                       CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END) THEN
        GRANT {ROLE} TO CURRENT_USER;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO {ROLE};
GRANT SELECT, INSERT ON public.audit_event TO {ROLE};
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SEQUENCE %s TO {ROLE}',
                   pg_get_serial_sequence('public.audit_event', 'id'));
END
$$;
ALTER TABLE public.audit_event ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_event FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_event_read ON public.audit_event FOR SELECT USING ({VISIBLE});
CREATE POLICY audit_event_append ON public.audit_event FOR INSERT WITH CHECK ({VISIBLE});
"""

ROW_LEVEL_SECURITY_REVERSE = f"""
DROP POLICY audit_event_append ON public.audit_event;
DROP POLICY audit_event_read ON public.audit_event;
ALTER TABLE public.audit_event NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.audit_event DISABLE ROW LEVEL SECURITY;
DO $$
BEGIN
    EXECUTE format('REVOKE USAGE ON SEQUENCE %s FROM {ROLE}',
                   pg_get_serial_sequence('public.audit_event', 'id'));
END
$$;
REVOKE SELECT, INSERT ON public.audit_event FROM {ROLE};
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunSQL(APPEND_ONLY, APPEND_ONLY_REVERSE),
        migrations.RunSQL(ROW_LEVEL_SECURITY, ROW_LEVEL_SECURITY_REVERSE),
    ]
