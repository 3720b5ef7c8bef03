"""Test fixtures shared by every app.

Two organisations (with an admin and a member each) are created once per test session,
committed, and used by every test; each test runs in a transaction that is rolled back,
so no test creates a schema it does not need.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest
from django.db import connection, connections
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from nexus.tests.gemini_stub import GeminiStub
from nexus.tests.live import WorkerProcess
from tenants.models import Organisation, Role, TokenFamily, User
from tenants.tests.helpers import bearer_for


@dataclass
class World:
    org_a: Organisation
    org_b: Organisation
    admin_a: User
    member_a: User
    admin_b: User
    member_b: User


_WORLD_SPEC = [("Org A", "org-a.test"), ("Org B", "org-b.test")]


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_modify_db_settings):
    """Create the test database (always: tests that only use committed data carry no
    django_db mark, and must never fall through to the development database), then the
    two shared organisations."""
    from django.test.utils import setup_databases, teardown_databases

    from tenants.schema_template import template_sync
    from tenants.services import organisation_create, user_create

    with django_db_blocker.unblock():
        db_config = setup_databases(
            verbosity=request.config.option.verbose, interactive=False, aliases={"default"}
        )
        template_sync()
        for name, domain in _WORLD_SPEC:
            org = organisation_create(name=name, email_domain=domain)
            user_create(email=f"admin@{domain}", organisation=org, role=Role.ADMIN, name="Admin")
            user_create(email=f"member@{domain}", organisation=org, role=Role.MEMBER, name="Member")
        connection.set_schema_to_public()
    yield
    with django_db_blocker.unblock():
        # A worker or server process of a live test may still be closing its connection.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        connections.close_all()
        teardown_databases(db_config, verbosity=request.config.option.verbose)


@pytest.fixture
def world(db) -> World:
    orgs = {
        o.email_domain: o for o in Organisation.objects.filter(email_domain__in=[d for _, d in _WORLD_SPEC])
    }
    users = {u.email: u for u in User.objects.filter(organisation__in=orgs.values())}
    a, b = (orgs[d] for _, d in _WORLD_SPEC)
    return World(
        org_a=a,
        org_b=b,
        admin_a=users["admin@org-a.test"],
        member_a=users["member@org-a.test"],
        admin_b=users["admin@org-b.test"],
        member_b=users["member@org-b.test"],
    )


@pytest.fixture
def funded(world) -> World:
    """The shared organisations, each with 100 credits (rolled back with the test)."""
    from billing.services import credits_grant

    for org in (world.org_a, world.org_b):
        with tenant_context(org):
            credits_grant(amount=100, reason="seed", actor_label="operator:tests")
    return world


@pytest.fixture(autouse=True)
def _public_schema_after_test():
    yield
    connection.set_schema_to_public()


@pytest.fixture
def api_as():
    """api_as(user) -> an APIClient sending that user's access token."""

    def make(user: User) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_for(user)}")
        return client

    return make


# --- The broker edge -----------------------------------------------------------------------


@dataclass
class TaskMessage:
    task: str
    args: list
    countdown: float
    schema: str | None


class Broker:
    """Every task message the code under test sends, recorded here instead of going to
    Redis (the broker edge; nothing inside the code is patched). `down = True` refuses
    sends as a stopped Redis does."""

    def __init__(self) -> None:
        self.down = False
        self.messages: list[TaskMessage] = []
        self._watches: list[tuple[str, object, list]] = []

    def watch(self, task: str, shape=lambda message: message.args[0], into: list | None = None) -> list:
        """A list that receives `shape(message)` for each message of `task` sent from now on
        (by default the message's first argument: the id it carries)."""
        view = [] if into is None else into
        self._watches.append((task, shape, view))
        return view

    def record(self, task: str, args, countdown, schema: str | None) -> None:
        if self.down:
            from kombu.exceptions import OperationalError

            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        message = TaskMessage(task, list(args or []), countdown or 0, schema)
        self.messages.append(message)
        for name, shape, view in self._watches:
            if name == task:
                view.append(shape(message))


@pytest.fixture
def broker(monkeypatch) -> Broker:
    """Tasks are recorded, not sent: see Broker. The schema is the one the message would
    carry (its header, else the schema current when it is sent)."""
    from nexus.celery import NexusTask

    recorder = Broker()

    def apply_async(task, args=None, kwargs=None, countdown=None, headers=None, **options):
        schema = (headers or {}).get("_schema_name") or connection.schema_name
        recorder.record(task.name, args, countdown, schema)

    monkeypatch.setattr(NexusTask, "apply_async", apply_async)
    return recorder


# --- Committed data, a real Celery worker, a Gemini stand-in ---------------------------------
# Tests that need other connections (threads, a worker process) to see their rows cannot
# run inside the rolled-back test transaction; they use `live_org`, an organisation that is
# committed and dropped again afterwards.


@pytest.fixture
def live_db(django_db_setup, django_db_blocker):
    assert connection.settings_dict["NAME"].startswith("test_"), "live tests must run on the test database"
    with django_db_blocker.unblock():
        yield
        connection.set_schema_to_public()


def _live_org_create() -> Organisation:
    from billing.services import credits_grant
    from tenants.services import organisation_create, user_create

    suffix = uuid.uuid4().hex[:8]
    org = organisation_create(name=f"Live {suffix}", email_domain=f"live-{suffix}.test")
    admin = user_create(email=f"admin@live-{suffix}.test", organisation=org, role=Role.ADMIN)

    def grant(amount: int) -> None:
        with tenant_context(org):
            credits_grant(amount=amount, reason="test funding", actor_label="operator:tests")

    org.admin = admin
    org.grant = grant
    return org


def _live_org_drop(org: Organisation) -> None:
    connections.close_all()
    connection.set_schema_to_public()
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    with connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA "{org.schema_name}" CASCADE')
    OutstandingToken.objects.filter(user__organisation=org).delete()
    TokenFamily.objects.filter(user__organisation=org).delete()
    from tenants.models import ApiKey, Invitation

    ApiKey.objects.filter(organisation=org)._raw_delete(using="default")
    Invitation.objects.filter(organisation=org)._raw_delete(using="default")
    # The schema holding the rows that reference these users is gone; skip the collector,
    # which would look for those tables in public.
    User.objects.filter(organisation=org)._raw_delete(using="default")
    Organisation.objects.filter(pk=org.pk)._raw_delete(using="default")


@pytest.fixture
def live_org(live_db):
    """A committed organisation with an admin (and `grant(n)` to fund it); removed after."""
    org = _live_org_create()
    yield org
    _live_org_drop(org)


@pytest.fixture
def other_live_org(live_org):
    """A second committed organisation, for tests of one organisation against another."""
    org = _live_org_create()
    yield org
    _live_org_drop(org)


@pytest.fixture(scope="session")
def gemini_stub():
    with GeminiStub() as stub:
        yield stub


@pytest.fixture
def celery_worker(live_db, gemini_stub):
    """Start a worker (Gemini pointed at the stand-in); `celery_worker.start()` again after
    `kill()` to bring it back."""
    os.environ.setdefault("LOG_LEVEL", "INFO")
    worker = WorkerProcess(
        {
            "GEMINI_API_KEY": "test-key",
            "GEMINI_BASE_URL": gemini_stub.url,
            "JOB_PROVIDER_TIMEOUT_SECONDS": "5",
        }
    )
    worker.start()
    yield worker
    worker.stop()
