"""A new organisation's schema is a faithful copy of a current template."""

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django_tenants.utils import schema_exists, tenant_context

from tenants import schema_template
from tenants.services import organisation_create

pytestmark = pytest.mark.django_db


def _catalog(schema: str) -> dict[str, set]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])
        tables = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT indexname, regexp_replace(indexdef, ' ON \\S+\\.', ' ON ') FROM pg_indexes "
            "WHERE schemaname = %s",
            [schema],
        )
        indexes = set(cursor.fetchall())
        cursor.execute(
            "SELECT cl.relname, co.conname, co.contype FROM pg_constraint co "
            "JOIN pg_class cl ON cl.oid = co.conrelid JOIN pg_namespace n ON n.oid = co.connamespace "
            "WHERE n.nspname = %s",
            [schema],
        )
        constraints = set(cursor.fetchall())
        cursor.execute(
            "SELECT c.relname, t.tgname, regexp_replace(pg_get_triggerdef(t.oid), ' ON \\S+\\.', ' ON ') "
            "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND NOT t.tgisinternal",
            [schema],
        )
        triggers = set(cursor.fetchall())
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations')
        migrations = set(cursor.fetchall())
    return {
        "tables": tables,
        "indexes": indexes,
        "constraints": constraints,
        "triggers": triggers,
        "migrations": migrations,
    }


def _tenant_model_tables() -> set[str]:
    tenant_apps = {app.rsplit(".", 1)[-1] for app in settings.TENANT_APPS}
    return {
        model._meta.db_table
        for model in apps.get_models()
        if model._meta.app_label in tenant_apps and model._meta.managed and not model._meta.proxy
    }


def test_new_organisation_has_every_tenant_table_and_the_templates_catalog(world):
    org = organisation_create(name="Fresh Co", email_domain="fresh.example")
    fresh = _catalog(org.schema_name)
    template = _catalog(settings.TENANT_TEMPLATE_SCHEMA)
    assert _tenant_model_tables() <= fresh["tables"]
    assert {name for _table, name, _definition in fresh["triggers"]} >= {
        "credit_ledger_append_only",
        "credit_ledger_balance_is_newest",
        "credit_balance_is_newest",
    }
    assert fresh == template
    assert fresh["migrations"] == set(schema_template._expected_migrations())


def test_cloned_identity_sequences_are_the_organisations_own(world):
    org = organisation_create(name="Seq Co")
    with tenant_context(org):
        first = ContentType.objects.create(app_label="probe", model="one")
    with tenant_context(world.org_a):
        other = ContentType.objects.create(app_label="probe", model="one")
    assert first.pk == other.pk  # independent sequences, each continuing after the template rows


def test_stale_template_is_rebuilt_before_cloning(world):
    with connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA "{settings.TENANT_TEMPLATE_SCHEMA}" CASCADE')
    assert schema_template.template_missing_migrations()
    org = organisation_create(name="After Drop")
    assert schema_exists(settings.TENANT_TEMPLATE_SCHEMA)
    assert not schema_template.template_missing_migrations()
    assert _tenant_model_tables() <= _catalog(org.schema_name)["tables"]


def test_failed_creation_leaves_no_schema(world, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(schema_template, "_clone_statements", explode)
    with pytest.raises(RuntimeError):
        organisation_create(name="Doomed", email_domain="doomed.example")
    from tenants.models import Organisation

    assert not Organisation.objects.filter(email_domain="doomed.example").exists()
    assert not schema_exists("org_doomed")
