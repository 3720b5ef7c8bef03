"""Operator commands: their output is an interface; bad input is a clear error and a
non-zero exit."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from tenants.models import Organisation, User

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_create_org_prints_slug_last(world):
    output = run("create_org", "--name", "Initech Ltd", "--domain", "Initech.example")
    slug = output.strip().splitlines()[-1]
    org = Organisation.objects.get(slug=slug)
    assert org.name == "Initech Ltd"
    assert org.email_domain == "initech.example"
    assert org.schema_name == f"org_{slug.replace('-', '_')}"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--name", ""], "organisation name"),
        (["--name", "X", "--domain", "not a domain"], "not a valid email domain"),
        (["--name", "X", "--domain", "gmail.com"], "free-mail"),
        (["--name", "X", "--domain", "org-a.test"], "already exists"),
    ],
)
def test_create_org_refuses_bad_input(world, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_org", *args)


def test_create_user_then_password_login(world, client):
    run(
        "create_user",
        "--email",
        "New@Org-A.test",
        "--org",
        world.org_a.slug,
        "--role",
        "member",
        "--password",
        "a-long-unusual-passphrase",
    )
    user = User.objects.get(email="new@org-a.test")
    assert user.organisation_id == world.org_a.id
    assert user.role == "member"
    assert client.login(email="new@org-a.test", password="a-long-unusual-passphrase")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--email", "x@org-a.test", "--org", "nope", "--role", "member"], "No organisation"),
        (["--email", "not-an-email", "--org", "org-a", "--role", "member"], "not a valid email"),
        (["--email", "admin@org-a.test", "--org", "org-a", "--role", "member"], "already exists"),
        (["--email", "y@org-a.test", "--org", "org-a", "--role", "member", "--password", "123"], "too weak"),
    ],
)
def test_create_user_refuses_bad_input(world, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_user", *args)


def test_create_user_refuses_unknown_role(world):
    with pytest.raises(CommandError, match="invalid choice"):
        run("create_user", "--email", "z@org-a.test", "--org", "org-a", "--role", "owner")


def test_issue_token_prints_only_a_working_token(world):
    output = run("issue_token", "--email", "member@org-a.test")
    assert len(output.strip().splitlines()) == 1
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {output.strip()}")
    assert client.get("/api/v1/auth/me").json()["data"]["user"]["email"] == "member@org-a.test"


def test_issue_token_refuses_unknown_and_organisationless_users(world):
    with pytest.raises(CommandError, match="No user"):
        run("issue_token", "--email", "ghost@org-a.test")
    User.objects.create_user("ops@nexus.test", "x", is_staff=True)
    with pytest.raises(CommandError, match="member of an organisation"):
        run("issue_token", "--email", "ops@nexus.test")


def test_seed_demo_twice_is_harmless(world, settings):
    settings.DEBUG = True
    first = run("seed_demo")
    orgs = Organisation.objects.count()
    second = run("seed_demo")
    assert Organisation.objects.count() == orgs
    for output in (first, second):
        assert "admin@acme.test" in output
        assert "member@globex.test" in output
        assert output.count("token: ") == 4
    assert User.objects.filter(email__endswith="@acme.test").count() == 2


@pytest.mark.parametrize("command", ["seed_demo", "seed_demo_content"])
def test_demo_data_is_never_created_outside_debug(world, settings, command):
    """Its logins share a published password: on a real deployment they would be accounts
    anyone can sign in to."""
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG is off"):
        run(command)
    err = StringIO()
    call_command(command, "--skip-unless-debug", stdout=StringIO(), stderr=err)  # compose's seed job
    assert "DEBUG is off" in err.getvalue()
    assert not Organisation.objects.filter(email_domain__in=["acme.test", "globex.test"]).exists()
    assert not User.objects.filter(email__endswith="@acme.test").exists()


def test_names_differing_only_by_underscore_get_distinct_schemas(world):
    from tenants.services import organisation_create

    first = organisation_create(name="john_smith personal")
    second = organisation_create(name="john-smith personal")
    assert first.slug != second.slug
    assert first.schema_name != second.schema_name
    assert "_" not in first.slug
