"""The audit log is append-only in the database itself: no UPDATE, DELETE or TRUNCATE gets
through its trigger, except the retention purge's DELETE, which a transaction-local flag
lets through for that purge alone. And the recorder refuses what it cannot attribute."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from auditlog.models import AuditEvent
from auditlog.services import audit_log_purge, audit_record

pytestmark = pytest.mark.django_db

TABLE = "public.auditlog_auditevent"


def _event(organisation_id, **fields) -> AuditEvent:
    return audit_record(
        action="organisation.updated",
        organisation_id=organisation_id,
        target_type="organisation",
        target_id=organisation_id,
        target_label="Org",
        before={"domain_auto_join": True},
        after={"domain_auto_join": False},
        **fields,
    )


def _refused(sql: str, params=()) -> IntegrityError:
    """Run `sql` in a savepoint of its own and return the IntegrityError it raised (the
    test's transaction stays usable)."""
    with pytest.raises(IntegrityError) as raised, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return raised.value


def _sqlstate(error: IntegrityError) -> str:
    return error.__cause__.sqlstate


def _insert_at(created_at, organisation_id, label: str) -> int:
    """An event written as of `created_at` (auto_now_add would ignore a given value)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (created_at, organisation_id, actor_kind, actor_id, actor_label, action, "
            "target_type, target_id, target_label, changes, ip, user_agent, request_id) "
            "VALUES (%s, %s, 'system', '', 'system', 'credits.granted', 'credits', '', %s, '{}', NULL, '', "
            "'') RETURNING id",
            [created_at, organisation_id, label],
        )
        return cursor.fetchone()[0]


def _purge_flag() -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('nexus.audit_log_purge', true)")
        return cursor.fetchone()[0]


# --- Nothing changes an event ---------------------------------------------------------------


def test_an_update_through_the_orm_is_refused(world):
    event = _event(world.org_a.pk)
    with pytest.raises(IntegrityError) as raised, transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor_label="user:someone-else@org-a.test")
    assert _sqlstate(raised.value) == "23000"
    assert "cannot be changed or removed (UPDATE)" in str(raised.value)
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "system"


def test_a_raw_update_is_refused(world):
    event = _event(world.org_a.pk)
    error = _refused(f"UPDATE {TABLE} SET changes = '{{}}'::jsonb WHERE id = %s", [event.pk])
    assert _sqlstate(error) == "23000"
    assert AuditEvent.objects.get(pk=event.pk).changes == {
        "before": {"domain_auto_join": True},
        "after": {"domain_auto_join": False},
    }


def test_saving_a_loaded_event_again_is_refused(world):
    event = _event(world.org_a.pk)
    event.target_label = "tampered"
    with pytest.raises(IntegrityError), transaction.atomic():
        event.save()
    assert AuditEvent.objects.get(pk=event.pk).target_label == "Org"


def test_a_delete_is_refused(world):
    event = _event(world.org_a.pk)
    with pytest.raises(IntegrityError) as raised, transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert _sqlstate(raised.value) == "23000"
    assert "(DELETE)" in str(raised.value)
    error = _refused(f"DELETE FROM {TABLE} WHERE id = %s", [event.pk])
    assert _sqlstate(error) == "23000"
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_truncate_is_refused(world):
    event = _event(world.org_a.pk)
    error = _refused(f"TRUNCATE {TABLE}")
    assert _sqlstate(error) == "23000"
    assert "(TRUNCATE)" in str(error)
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_the_purge_flag_set_by_someone_else_only_lets_deletes_through_not_updates(world):
    event = _event(world.org_a.pk)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('nexus.audit_log_purge', 'on', true)")
        cursor.execute(f"UPDATE {TABLE} SET target_label = 'x' WHERE id = %s", [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).target_label == "Org"


# --- Retention ------------------------------------------------------------------------------


def test_the_purge_deletes_exactly_the_events_older_than_the_retention(world, settings):
    settings.AUDIT_LOG_RETENTION_DAYS = 30
    now = timezone.now()
    old = [
        _insert_at(now - timedelta(days=31), world.org_a.pk, "old a"),
        _insert_at(now - timedelta(days=400), world.org_b.pk, "old b"),
        _insert_at(now - timedelta(days=30, minutes=1), None, "old, no organisation"),
    ]
    kept = [
        _insert_at(now - timedelta(days=29, hours=23), world.org_a.pk, "recent a"),
        _insert_at(now - timedelta(days=1), world.org_b.pk, "recent b"),
        _event(world.org_a.pk).pk,
    ]
    others_before = AuditEvent.objects.exclude(pk__in=old + kept).filter(
        created_at__gte=now - timedelta(days=30)
    )
    survivors = set(others_before.values_list("pk", flat=True))

    assert audit_log_purge(now=now) == 3

    assert not AuditEvent.objects.filter(pk__in=old).exists()
    assert set(AuditEvent.objects.filter(pk__in=kept).values_list("pk", flat=True)) == set(kept)
    assert survivors <= set(AuditEvent.objects.values_list("pk", flat=True))
    assert not AuditEvent.objects.filter(created_at__lt=now - timedelta(days=30)).exists()
    # Nothing is left to purge.
    assert audit_log_purge(now=now) == 0


def test_after_the_purge_a_plain_delete_is_refused_again(world, settings):
    settings.AUDIT_LOG_RETENTION_DAYS = 365
    now = timezone.now()
    _insert_at(now - timedelta(days=366), world.org_a.pk, "old")
    recent = _event(world.org_a.pk)
    assert audit_log_purge(now=now) == 1
    # The flag was the purge's alone: the rest of this transaction does not carry it.
    assert _purge_flag() in (None, "", "off")
    error = _refused(f"DELETE FROM {TABLE} WHERE id = %s", [recent.pk])
    assert _sqlstate(error) == "23000"
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEvent.objects.filter(pk=recent.pk).delete()
    assert AuditEvent.objects.filter(pk=recent.pk).exists()


def test_the_purge_runs_in_batches(world, settings, monkeypatch):
    from auditlog import services

    monkeypatch.setattr(services, "PURGE_BATCH", 2)
    settings.AUDIT_LOG_RETENTION_DAYS = 10
    now = timezone.now()
    old = [_insert_at(now - timedelta(days=11 + n), world.org_a.pk, f"old {n}") for n in range(5)]
    recent = _insert_at(now - timedelta(days=9), world.org_a.pk, "recent")
    assert audit_log_purge(now=now) == 5
    assert not AuditEvent.objects.filter(pk__in=old).exists()
    assert AuditEvent.objects.filter(pk=recent).exists()


def test_the_daily_beat_entry_runs_the_purge_task(world, settings):
    from auditlog.tasks import purge
    from nexus.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["purge-audit-log"]
    assert entry["task"] == "auditlog.purge"
    assert entry["schedule"] == 60 * 60 * 24
    assert app.tasks["auditlog.purge"].name == purge.name
    old = _insert_at(timezone.now() - timedelta(days=settings.AUDIT_LOG_RETENTION_DAYS + 1), None, "old")
    assert purge() >= 1
    assert not AuditEvent.objects.filter(pk=old).exists()


def test_the_retention_defaults_to_a_year():
    assert settings.AUDIT_LOG_RETENTION_DAYS == 365


# --- The recorder ---------------------------------------------------------------------------


def test_an_unknown_action_is_refused(world):
    before = AuditEvent.objects.count()
    with pytest.raises(ValueError, match=r"unknown audit action 'member\.promoted'"):
        audit_record(action="member.promoted", organisation_id=world.org_a.pk)
    assert AuditEvent.objects.count() == before


def test_outside_an_organisations_schema_the_organisation_must_be_given(world):
    connection.set_schema_to_public()
    with pytest.raises(ValueError, match="needs organisation_id"):
        audit_record(action="webhook.created", target_type="webhook")
    # Given explicitly (None too: an event of no organisation), it is recorded.
    assert audit_record(action="auth.sign_in_failed", organisation_id=None).organisation_id is None
    assert audit_record(action="webhook.created", organisation_id=world.org_b.pk).organisation_id == (
        world.org_b.pk
    )


def test_inside_an_organisations_schema_the_event_is_that_organisations(world):
    with tenant_context(world.org_a):
        event = audit_record(action="webhook.created", target_type="webhook", target_id=uuid.uuid4())
    assert event.organisation_id == world.org_a.pk
    assert (event.actor_kind, event.actor_label, event.ip) == ("system", "system", None)


def test_long_values_are_cut_to_their_columns(world):
    event = audit_record(
        action="invitation.created",
        organisation_id=world.org_a.pk,
        target_id="x" * 100,
        target_label="y" * 400,
    )
    event.refresh_from_db()
    assert (len(event.target_id), len(event.target_label)) == (64, 300)
