"""The API plumbing every app's views stand on: the organisation handed to the handler once,
failing closed, and one way to answer a list."""

import pytest
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate

from nexus.api.views import OrganisationEndpoint
from tenants.models import User
from tenants.selectors import member_list

pytestmark = pytest.mark.django_db


class WhoAmI(OrganisationEndpoint):
    def get(self, request, *args, **kwargs):
        return Response({"organisation": str(self.organisation.id)})


class Loosened(WhoAmI):
    permission_classes = [AllowAny]  # a mistake: the base still refuses a request without one


class Members(OrganisationEndpoint):
    def get(self, request, *args, **kwargs):
        from nexus.api.pagination import paginated
        from tenants.serializers import MemberOutput

        return paginated(request, member_list(org=self.organisation).order_by("email"), MemberOutput)


def _get(view, user, tenant, path="/api/v1/probe"):
    request = APIRequestFactory().get(path)
    request.tenant = tenant
    force_authenticate(request, user=user)
    return view.as_view()(request, version="v1")


def test_the_handler_receives_the_callers_organisation(world):
    response = _get(WhoAmI, world.member_a, world.org_a)
    assert response.status_code == 200
    assert response.data == {"organisation": str(world.org_a.id)}


def test_a_caller_of_another_organisation_is_refused(world):
    assert _get(WhoAmI, world.member_b, world.org_a).status_code == 403


def test_a_request_without_an_organisation_is_refused_even_when_the_view_allows_anyone(world):
    assert _get(WhoAmI, world.member_a, None).status_code == 403
    response = _get(Loosened, world.member_a, None)
    assert response.status_code == 403
    assert response.data["error"]["code"] == "FORBIDDEN"


def test_paginated_answers_one_page_with_page_limit_and_total(world):
    response = _get(Members, world.admin_a, world.org_a, path="/api/v1/probe?limit=1&page=2")
    assert response.status_code == 200
    assert response.envelope_meta == {"page": 2, "limit": 1, "total": 2}
    emails = sorted(User.objects.filter(organisation=world.org_a).values_list("email", flat=True))
    assert [row["email"] for row in response.data] == emails[1:]
