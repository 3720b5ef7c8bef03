"""The product's URLs plus probes used only by tests: one that fails with an unexpected
exception, one that reports the schema the request ran in, one that declares its own body
limit, one whose work needs Redis (no fail-open path)."""

from django.db import connection
from django.urls import re_path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from nexus.redis import get_redis
from nexus.urls import urlpatterns as product_urlpatterns


class Boom(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request, *args, **kwargs):
        raise RuntimeError("secret internal detail: relation tenants_user at /srv/app/settings.py")


class WhichSchema(APIView):
    def get(self, request, *args, **kwargs):
        return Response({"schema": connection.schema_name})


class BigBodyView(APIView):
    max_body_bytes = 10_000

    def post(self, request, *args, **kwargs):
        return Response({"received": len(request.body)})


class NeedsRedis(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request, *args, **kwargs):
        return Response({"pong": get_redis().ping()})


urlpatterns = [
    re_path(r"^api/(?P<version>v1)/test/needs-redis$", NeedsRedis.as_view()),
    re_path(r"^api/(?P<version>v1)/test/big-body$", BigBodyView.as_view()),
    re_path(r"^api/(?P<version>v1)/test/boom$", Boom.as_view()),
    re_path(r"^api/(?P<version>v1)/test/schema$", WhichSchema.as_view()),
    *product_urlpatterns,
]
