"""The audit log is append-only, enforced by the database as the credit ledger is: a
trigger refuses every UPDATE, and every DELETE except inside the retention purge
(auditlog.services.audit_log_purge), which sets the transaction-local flag
`nexus.audit_log_purge` first. Raises integrity_constraint_violation (23000)."""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION public.audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('nexus.audit_log_purge', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit log events cannot be changed or removed (%)', TG_OP
    USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
"""

TRIGGERS = [
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON public.auditlog_auditevent "
    "FOR EACH ROW EXECUTE FUNCTION public.audit_log_append_only()",
    # TRUNCATE skips row triggers: refuse it by a statement trigger of its own.
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON public.auditlog_auditevent "
    "FOR EACH STATEMENT EXECUTE FUNCTION public.audit_log_append_only()",
]


class Migration(migrations.Migration):
    dependencies = [("auditlog", "0001_initial")]

    operations = [
        migrations.RunSQL(
            [FUNCTION, *TRIGGERS],
            reverse_sql=[
                "DROP TRIGGER IF EXISTS audit_log_no_truncate ON public.auditlog_auditevent",
                "DROP TRIGGER IF EXISTS audit_log_append_only ON public.auditlog_auditevent",
                "DROP FUNCTION IF EXISTS public.audit_log_append_only()",
            ],
        )
    ]
