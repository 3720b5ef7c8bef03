"""Data sources, runs, stats and the unified records."""

from __future__ import annotations

import time

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from etl import selectors, services, uploads
from etl.models import DataSource, EtlRun, RunTrigger, SourceKind
from etl.serializers import (
    CompareOutput,
    RecordOutput,
    RunDetailOutput,
    RunOutput,
    RunQueuedOutput,
    SourceFileInput,
    SourceInput,
    SourceOutput,
    SourcePatchInput,
    StatsOutput,
)
from nexus.access import filter_id
from nexus.api.errors import ValidationFailed, field_error
from nexus.api.pagination import paginated
from nexus.api.permissions import AdminForWrites, IsOrganisationAdmin
from nexus.api.query import (
    UUID_LIST_PATTERN,
    apply_sort,
    date_parameter,
    date_range,
    sort_parameter,
    uuid_parameter,
)
from nexus.api.views import OrganisationEndpoint
from nexus.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from nexus.schema import COMPLETE_LIST

TAGS = ["data"]


class SourceListView(OrganisationEndpoint):
    key_scopes = {"GET": "etl:read", "POST": "etl:write"}
    permission_classes = [AdminForWrites]

    @extend_schema(summary="Data sources", responses={200: SourceOutput(many=True)}, tags=TAGS)
    def get(self, request, *args, **kwargs):
        return paginated(request, selectors.source_list(), SourceOutput)

    @extend_schema(
        summary="Connect a data source (admins)",
        description="config: api {url, api_key_header, records_path, page_size, updated_field, ...}; "
        "csv {path | url, delimiter, encoding}; rss {url | path}. The api_key is stored encrypted "
        "and never returned.",
        request=SourceInput,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: SourceOutput},
        tags=TAGS,
    )
    @idempotent
    def post(self, request, *args, **kwargs):
        payload = SourceInput(data=request.data)
        payload.is_valid(raise_exception=True)
        source = services.etl_source_create(**payload.validated_data)
        return Response(SourceOutput(source).data, status=status.HTTP_201_CREATED)


class SourceDetailView(OrganisationEndpoint):
    key_scopes = {"GET": "etl:read", "PUT": "etl:write", "PATCH": "etl:write", "DELETE": "etl:write"}
    permission_classes = [AdminForWrites]

    @extend_schema(summary="One data source", responses={200: SourceOutput}, tags=TAGS)
    def get(self, request, source_id, *args, **kwargs):
        return Response(SourceOutput(selectors.source_get(source_id=source_id)).data)

    @extend_schema(
        summary="Change a data source (admins)",
        request=SourcePatchInput,
        responses={200: SourceOutput},
        tags=TAGS,
    )
    def patch(self, request, source_id, *args, **kwargs):
        source = selectors.source_get(source_id=source_id)
        payload = SourcePatchInput(data=request.data)
        payload.is_valid(raise_exception=True)
        return Response(
            SourceOutput(services.etl_source_update(source=source, **payload.validated_data)).data
        )

    @extend_schema(
        summary="Delete a data source with its records and runs (admins)",
        responses={204: OpenApiResponse(description="Deleted")},
        tags=TAGS,
    )
    def delete(self, request, source_id, *args, **kwargs):
        services.etl_source_delete(source=selectors.source_get(source_id=source_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SourceRunView(OrganisationEndpoint):
    key_scopes = {"POST": "etl:write"}
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="Run a data source now (admins)",
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={202: RunQueuedOutput},
        tags=TAGS,
    )
    @idempotent
    def post(self, request, source_id, *args, **kwargs):
        source = selectors.source_get(source_id=source_id)
        run = services.etl_run_queue(source=source, trigger=RunTrigger.MANUAL)
        return Response(RunQueuedOutput({"run_id": run.pk, "status": run.status}).data, status=202)


class SourceFileView(OrganisationEndpoint):
    """The source's file, uploaded (multipart). The size limit is enforced while the body is
    read, so the upload handlers are installed before DRF or anything else reads it."""

    key_scopes = {"POST": "etl:write", "PUT": "etl:write"}
    permission_classes = [IsOrganisationAdmin]
    parser_classes = [MultiPartParser]
    # The API's default body limit is for JSON; a file may be up to ETL_MAX_UPLOAD_BYTES
    # plus its multipart framing (the upload handlers count the file's own bytes).
    max_body_bytes = staticmethod(lambda: settings.ETL_MAX_UPLOAD_BYTES + uploads.FORM_FRAMING_ALLOWANCE)
    body_too_large = staticmethod(uploads.too_large)

    def initialize_request(self, request, *args, **kwargs):
        uploads.install_upload_handlers(request)
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        summary="Upload the file of a CSV or RSS source (admins)",
        description="multipart/form-data with one field `file`: a CSV (UTF-8, header row) or an RSS/Atom "
        "document, at most ETL_MAX_UPLOAD_BYTES (20 MiB by default). It replaces the source's previous file "
        "and config.path/url; the next run ingests it incrementally. 413 PAYLOAD_TOO_LARGE over the limit; "
        "422 for an API source or content that does not parse; nothing is stored then.",
        request={"multipart/form-data": SourceFileInput},
        responses={200: SourceOutput},
        tags=TAGS,
    )
    def post(self, request, source_id, *args, **kwargs):
        source = selectors.source_get(source_id=source_id)
        if source.kind not in (SourceKind.CSV, SourceKind.RSS):
            # Before the body is read: an API source never takes a file, whatever its size.
            services.etl_source_file_upload(source=source, file=None)
        upload = request.FILES.get("file")
        if upload is None:
            raise field_error("file", "Required.", message="Send the file as the multipart field 'file'.")
        return Response(SourceOutput(services.etl_source_file_upload(source=source, file=upload)).data)


class RunListView(OrganisationEndpoint):
    key_scopes = {"GET": "etl:read"}

    @extend_schema(
        summary="ETL runs, newest first",
        parameters=[
            uuid_parameter("source", "Only this source's runs"),
        ],
        responses={200: RunOutput(many=True)},
        tags=TAGS,
    )
    def get(self, request, *args, **kwargs):
        params = request.query_params
        source_id = filter_id(DataSource, params.get("source"), param="source", what="data source")
        source = selectors.source_get(source_id=source_id) if source_id else None
        return paginated(request, selectors.run_list(source=source), RunOutput)


class RunDetailView(OrganisationEndpoint):
    key_scopes = {"GET": "etl:read"}

    @extend_schema(
        summary="One run, its drift events and quarantined items", responses={200: RunDetailOutput}, tags=TAGS
    )
    def get(self, request, run_id, *args, **kwargs):
        return Response(RunDetailOutput(selectors.run_get(run_id=run_id)).data)


class RunCompareView(OrganisationEndpoint):
    key_scopes = {"GET": "etl:read"}

    @extend_schema(
        summary="Compare two runs of a source (default: its latest two)",
        parameters=[
            uuid_parameter("source", "Data source id (compares its latest two runs)"),
            uuid_parameter("a", "Earlier run id (with b, instead of source)"),
            uuid_parameter("b", "Later run id (with a, instead of source)"),
        ],
        responses={200: CompareOutput},
        tags=TAGS,
    )
    def get(self, request, *args, **kwargs):
        params = request.query_params
        comparison = selectors.runs_compare(
            source_id=filter_id(DataSource, params.get("source"), param="source", what="data source"),
            run_a=filter_id(EtlRun, params.get("a"), param="a", what="run"),
            run_b=filter_id(EtlRun, params.get("b"), param="b", what="run"),
        )
        return Response(CompareOutput(comparison).data)


class StatsView(OrganisationEndpoint):
    key_scopes = {"GET": "etl:read"}

    @extend_schema(
        summary="Per source: records, processed, last duration, last success and failure",
        responses={200: StatsOutput(many=True)},
        extensions=COMPLETE_LIST,
        tags=TAGS,
    )
    def get(self, request, *args, **kwargs):
        return Response(StatsOutput(selectors.source_stats(), many=True).data)


class DataView(OrganisationEndpoint):
    key_scopes = {"GET": "data:read"}

    @extend_schema(
        summary="The unified records",
        parameters=[
            OpenApiParameter(
                "source",
                {"type": "string", "pattern": UUID_LIST_PATTERN},
                description="Source ids, comma separated",
            ),
            date_parameter("from", "Published on or after (ISO date or date-time)"),
            date_parameter("to", "Published on or before; not before `from`"),
            OpenApiParameter(
                "search", {"type": "string", "maxLength": 200}, description="Text in the title or body"
            ),
            OpenApiParameter("tags", str, description="Any of these tags, comma separated"),
            sort_parameter(allowed={"published_at", "title", "created_at"}, default="-published_at"),
        ],
        responses={200: RecordOutput(many=True)},
        tags=TAGS,
    )
    def get(self, request, *args, **kwargs):
        started = time.perf_counter()
        params = request.query_params
        search = params.get("search", "").strip()
        if len(search) > 200:
            raise ValidationFailed("search is limited to 200 characters.")
        records = selectors.record_list(
            sources=[s for s in params.get("source", "").split(",") if s.strip()],
            search=search,
            tags=[t.strip() for t in params.get("tags", "").split(",") if t.strip()],
        )
        records = date_range(records, request, field="published_at")
        records = apply_sort(
            records, request, allowed={"published_at", "title", "created_at"}, default="-published_at"
        )
        response = paginated(request, records, RecordOutput)
        response.envelope_meta["api_latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return response
