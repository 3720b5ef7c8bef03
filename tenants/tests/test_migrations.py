"""The second users migration adds a column without losing a row."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db


def test_last_login_ip_migration_keeps_existing_users(world):
    executor = MigrationExecutor(connection)
    before = [("tenants", "0001_initial")]
    after = [("tenants", "0002_user_last_login_ip")]

    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    OldUser = old_apps.get_model("tenants", "User")
    Organisation = old_apps.get_model("tenants", "Organisation")
    OldUser.objects.create(
        email="survivor@org-a.test",
        password="!",
        organisation=Organisation.objects.get(pk=world.org_a.pk),
        role="member",
    )
    count_before = OldUser.objects.count()
    with connection.cursor() as cursor:
        # Deferred FK checks of the insert above must fire before the table is altered.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    new_apps = executor.loader.project_state(after).apps
    NewUser = new_apps.get_model("tenants", "User")
    assert NewUser.objects.count() == count_before
    survivor = NewUser.objects.get(email="survivor@org-a.test")
    assert survivor.last_login_ip is None
    assert survivor.organisation_id == world.org_a.pk
    assert NewUser.objects.filter(email="admin@org-a.test", role="admin").exists()
