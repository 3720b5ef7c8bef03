import pytest
from auditlog.models import AuditEvent
from auditlog.tests.test_every_action_is_recorded import _admin_form_data, _browser, PASSWORD
from tenants.models import User
from tenants.services import keys

pytestmark = pytest.mark.django_db


def test_move(world):
    op = User.objects.create_superuser("ops-x@nexus.test", PASSWORD)
    b = _browser(op)
    url = f"/admin/tenants/user/{world.member_a.pk}/change/"
    data = _admin_form_data(b, url)
    data["organisation"] = str(world.org_b.pk)
    r = b.post(url, data)
    print(r.status_code)
    key, _ = keys.api_key_create(org=world.org_a, created_by=world.admin_a, name="k", scopes=["jobs:read"])
    r = b.post("/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})
    print(r.status_code)
    for e in AuditEvent.objects.exclude(action="auth.signed_in").order_by("id"):
        print(e.organisation_id, e.action, e.actor_label, e.target_label, e.changes, e.ip)
    print(world.org_a.pk, world.org_b.pk)
