"""Google sign-in through allauth's real views, against the local stand-in of Google's token
endpoint (the `google` fixture of tenants/tests/conftest.py), with the `hd` claim Google
adds for a Google Workspace account when the test gives one."""

import pytest

from tenants.models import Organisation, Role, User

pytestmark = pytest.mark.django_db


def _user(email):
    return User.objects.select_related("organisation").get(email=email)


def _personal(user):
    return user.organisation.email_domain is None and user.role == Role.ADMIN


def test_first_workspace_user_of_a_new_domain_creates_the_organisation_as_admin(google, client):
    response = google(client, "Founder@NewCo.example", hd="newco.example")
    assert response.status_code == 302
    assert response["Location"] == "/"
    user = _user("founder@newco.example")
    assert user.role == Role.ADMIN
    assert user.organisation.email_domain == "newco.example"
    assert user.organisation.name == "Newco"
    assert user.name == "Test Person"
    # The session now belongs to that user.
    assert client.get("/").status_code == 200


def test_later_workspace_user_of_the_same_domain_joins_as_member(google, client):
    google(client, "first@newco.example", hd="newco.example")
    client.logout()
    # Google's spelling of the domain may differ in case (and a trailing root dot).
    google(client, "second@newco.example", hd="NewCo.Example.")
    first, second = _user("first@newco.example"), _user("second@newco.example")
    assert second.organisation_id == first.organisation_id
    assert second.role == Role.MEMBER
    assert Organisation.objects.filter(email_domain="newco.example").count() == 1


def test_workspace_user_joins_an_existing_company_organisation(google, client, world):
    google(client, "newhire@org-a.test", hd="org-a.test")
    newhire = _user("newhire@org-a.test")
    assert newhire.organisation_id == world.org_a.id
    assert newhire.role == Role.MEMBER


def test_company_address_without_hd_gets_a_personal_organisation(google, client, world):
    """A consumer Google account registered on a company address (no `hd`) used to join the
    company's organisation; an address alone proves no company let its owner in."""
    google(client, "stranger@org-a.test", name="Stranger")
    client.logout()
    google(client, "founder@newco.example", name="Founder")
    stranger, founder = _user("stranger@org-a.test"), _user("founder@newco.example")
    assert _personal(stranger)
    assert stranger.organisation_id != world.org_a.id
    assert stranger.organisation.name == "Stranger (personal)"
    assert _personal(founder)
    assert not Organisation.objects.filter(email_domain="newco.example").exists()
    assert world.org_a.users.filter(email="stranger@org-a.test").count() == 0


def test_hd_of_another_domain_gets_a_personal_organisation(google, client, world):
    # A Workspace account of evil.example whose address is at org-a.test (a secondary
    # address Google shows as the email) proves nothing about org-a.test.
    google(client, "mallory@org-a.test", hd="evil.example")
    mallory = _user("mallory@org-a.test")
    assert _personal(mallory)
    assert mallory.organisation_id != world.org_a.id
    assert not Organisation.objects.filter(email_domain="evil.example").exists()


@pytest.mark.parametrize("domain", ["hotmail.de", "yahoo.de", "ymail.com"])
def test_unlisted_free_mail_domains_no_longer_pool_strangers(google, client, domain):
    """These were outside the old 31-entry list: their first user became admin of a shared
    organisation every later user of the provider joined."""
    google(client, f"ann@{domain}", name="Ann")
    client.logout()
    google(client, f"bob@{domain}", name="Bob")
    ann, bob = _user(f"ann@{domain}"), _user(f"bob@{domain}")
    assert _personal(ann)
    assert _personal(bob)
    assert ann.organisation_id != bob.organisation_id
    assert not Organisation.objects.filter(email_domain=domain).exists()


def test_free_mail_domain_with_hd_still_gets_a_personal_organisation(google, client):
    # The free-mail list is the second guard, should a provider's domain ever carry `hd`.
    google(client, "carol@web.de", hd="web.de", name="Carol")
    google(client, "dave@hey.com", hd="hey.com", name="Dave")
    assert _personal(_user("carol@web.de"))
    assert _personal(_user("dave@hey.com"))
    assert not Organisation.objects.filter(email_domain__in=["web.de", "hey.com"]).exists()


def test_free_mail_users_each_get_a_personal_organisation(google, client):
    google(client, "ann@gmail.com", name="Ann")
    client.logout()
    google(client, "bob@gmail.com", name="Bob")
    ann, bob = _user("ann@gmail.com"), _user("bob@gmail.com")
    assert ann.organisation_id != bob.organisation_id
    assert ann.organisation.email_domain is None
    assert bob.organisation.email_domain is None
    assert ann.organisation.name == "Ann (personal)"
    assert ann.role == bob.role == Role.ADMIN
    assert not Organisation.objects.filter(email_domain="gmail.com").exists()


def test_unverified_email_is_refused_and_nothing_is_created(google, client):
    orgs_before = Organisation.objects.count()
    response = google(client, "mallory@victim.example", verified=False, hd="victim.example")
    assert response.status_code == 403
    assert b"not verified" in response.content
    assert not User.objects.filter(email="mallory@victim.example").exists()
    assert Organisation.objects.count() == orgs_before


def test_operator_created_user_signs_in_to_their_existing_account(google, client, world):
    # No `hd`: an existing account keeps its organisation, whatever Google says.
    google(client, "member@org-a.test")
    user = _user("member@org-a.test")
    assert user.pk == world.member_a.pk
    assert user.organisation_id == world.org_a.id
    assert user.role == Role.MEMBER


def test_sign_in_records_the_ip_address(google, client):
    google(client, "ip@newco.example")
    assert _user("ip@newco.example").last_login_ip == "127.0.0.1"


def test_google_login_without_configuration_explains(client, settings):
    settings.GOOGLE_CLIENT_ID = ""
    response = client.get("/auth/login")
    assert response.status_code == 503
    assert b"not configured" in response.content


def test_signed_out_visitor_is_sent_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
