"""The base of every organisation's API view (as Sentry's OrganizationEndpoint): the caller
must belong to the organisation the request runs in, and the handler finds that
organisation in `self.organisation`, set once here. No app reads the request's tenant."""

from __future__ import annotations

from rest_framework.views import APIView

from nexus.api.errors import Forbidden
from nexus.api.permissions import IsOrganisationMember
from tenants.models import Organisation


class OrganisationEndpoint(APIView):
    permission_classes = [IsOrganisationMember]  # views may narrow it (admins only, ...)
    organisation: Organisation

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication and permissions first
        organisation = getattr(request._request, "tenant", None)
        if organisation is None:  # a view that loosened its permission still fails closed
            raise Forbidden(IsOrganisationMember.message)
        self.organisation = organisation
