"""Test fixtures shared by every app.

Two organisations (with an admin and a member each) are created once per test session,
committed, and used by every test; each test runs in a transaction that is rolled back,
so no test creates a schema it does not need.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tenants.models import Organisation, Role, User
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
def django_db_setup(django_db_setup, django_db_blocker):
    from tenants.schema_template import template_sync
    from tenants.services import organisation_create, user_create

    with django_db_blocker.unblock():
        template_sync()
        for name, domain in _WORLD_SPEC:
            org = organisation_create(name=name, email_domain=domain)
            user_create(email=f"admin@{domain}", organisation=org, role=Role.ADMIN, name="Admin")
            user_create(email=f"member@{domain}", organisation=org, role=Role.MEMBER, name="Member")
        connection.set_schema_to_public()


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
