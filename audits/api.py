"""Audit endpoints: start an audit from an upload or from the organisation's records, follow
it, read its items, pause, resume or cancel it, and download its results as CSV."""

from __future__ import annotations

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from audits import csv_export, selectors, services, uploads
from audits.inputs import InputError
from audits.models import Audit, AuditStatus
from audits.records import RecordSelection, record_items
from audits.serializers import AuditItemOutput, AuditOutput, AuditRecordsInput, AuditUploadInput
from nexus.api.errors import Forbidden, PayloadTooLarge, field_error
from nexus.api.pagination import paginated
from nexus.api.parsers import StrictJSONParser
from nexus.api.permissions import api_key_of
from nexus.api.query import multi_value, multi_value_parameter
from nexus.api.renderers import CsvDownloadMixin
from nexus.api.versioning import versioned
from nexus.api.views import OrganisationEndpoint
from nexus.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from nexus.schema import error_statuses
from tenants.models import Role

TAGS = ["audits"]
MAX_SEARCH_CHARS = 200
_BOOLEAN = {"true": True, "false": False}


def _boolean_param(request, name: str) -> bool | None:
    """`?name=true|false`; None when absent or empty; 422 for anything else."""
    raw = request.query_params.get(name, "")
    if raw == "":
        return None
    if raw not in _BOOLEAN:
        raise field_error(name, f"Invalid value: {raw!r}.", message=f"{name} must be true or false.")
    return _BOOLEAN[raw]


def _boolean_parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, {"type": "string", "enum": ["true", "false", ""]}, description=description)


def _output(request, audit: Audit) -> dict:
    return versioned(AuditOutput, request)(audit, context={"request": request}).data


def _create(request, *, input_kind: str | None, input_name: str, items, options: dict) -> Audit:
    """audits.services.audit_create with the API's errors: an unreadable input is 422
    INVALID_FILE or TOO_MANY_ITEMS naming where (a short balance is audit_create's 402, with
    the price and the items)."""
    try:
        return services.audit_create(
            user=request.user,
            input_kind=input_kind or items.input_kind,
            input_name=input_name,
            items=items,
            options=options,
        )
    except InputError as exc:
        raise uploads.input_refused(exc) from None


class AuditListView(OrganisationEndpoint):
    """Any member may start an audit: like a job, it spends the organisation's credits."""

    key_scopes = {"GET": "audits:read", "POST": "audits:write"}
    parser_classes = [MultiPartParser, StrictJSONParser]
    # An upload may be up to AUDIT_MAX_UPLOAD_BYTES plus its multipart framing (the upload
    # handler counts the file's own bytes); a JSON body keeps the API's usual limit (initial).
    max_body_bytes = staticmethod(uploads.max_body_bytes)
    body_too_large = staticmethod(uploads.too_large)

    def initialize_request(self, request, *args, **kwargs):
        uploads.install_upload_handlers(request)  # before anything reads the body
        return super().initialize_request(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method == "POST" and not request.content_type.startswith("multipart/"):
            declared = request.META.get("CONTENT_LENGTH") or "0"
            limit = settings.API_MAX_BODY_BYTES
            if declared.isdigit() and int(declared) > limit:
                raise PayloadTooLarge(
                    f"The request body is larger than this endpoint accepts as JSON ({limit} bytes); "
                    "send a file as multipart/form-data.",
                    details={"limit_bytes": limit},
                )

    @extend_schema(
        summary="Audits of the organisation, newest first",
        parameters=[multi_value_parameter("status", allowed=set(AuditStatus.values))],
        responses={200: AuditOutput(many=True)},
        tags=TAGS,
    )
    def get(self, request, *args, **kwargs):
        audits = selectors.audit_list()
        statuses = multi_value(request, "status", allowed=set(AuditStatus.values))
        if statuses:
            audits = audits.filter(status__in=statuses)
        return paginated(
            request,
            audits,
            lambda rows, many: versioned(AuditOutput, request)(rows, many=many, context={"request": request}),
        )

    @extend_schema(
        summary="Start an audit (any member; reserves the credits of its items)",
        description=(
            "multipart/form-data: `file` (X's data/tweets.js, the archive's zip, or a CSV "
            "`id,text[,created_at,url]`, recognised by content) with the criteria and options; or JSON: "
            '`{"records": {"source", "from", "to", "search"}, "criteria", ...}` to audit the '
            "organisation's records. `keywords` and `categories` may be repeated and/or comma separated. "
            "The audit is created with all its items and its credits reserved (AUDIT_PRICE_PER_ITEM "
            "per item), then evaluated in the background: poll GET /audits/{id}. Only evaluated items "
            "are charged; the rest is released when the audit ends. Nothing is written when the "
            "request is refused."
        ),
        request={"multipart/form-data": AuditUploadInput, "application/json": AuditRecordsInput},
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={202: AuditOutput},
        extensions=error_statuses(
            {
                402: "PAYMENT_REQUIRED: the reservation does not fit the balance; details {balance, "
                "required, price_per_item, items}.",
                404: "NOT_FOUND: records.source is not one of the organisation's data sources.",
                413: "PAYLOAD_TOO_LARGE: the file is over AUDIT_MAX_UPLOAD_BYTES (counted as it "
                "arrives), or a JSON body over the API's limit.",
                422: "VALIDATION_ERROR naming the field; INVALID_FILE (details line, item, item_id, "
                "file) when the file cannot be read as items, or holds none; TOO_MANY_ITEMS (details "
                "count, limit) over AUDIT_MAX_ITEMS.",
            }
        ),
        tags=TAGS,
    )
    @idempotent(request_body=uploads.form_fingerprint_body)
    def post(self, request, *args, **kwargs):
        if request.content_type.startswith("multipart/"):
            audit = self._from_upload(request)
        else:
            audit = self._from_records(request)
        return Response(_output(request, audit), status=status.HTTP_202_ACCEPTED)

    def _from_upload(self, request) -> Audit:
        payload = AuditUploadInput(data=request.data)
        payload.is_valid(raise_exception=True)
        options = services.audit_criteria_check(**payload.criteria_options())
        upload = payload.validated_data["file"]
        try:
            items = uploads.parse_upload(
                upload,
                skip_retweets=payload.validated_data["skip_retweets"],
                skip_replies=payload.validated_data["skip_replies"],
            )
        except InputError as exc:  # the zip's structure, checked before any item is read
            raise uploads.input_refused(exc) from None
        return _create(
            request, input_kind=None, input_name=uploads.input_name(upload.name), items=items, options=options
        )

    def _from_records(self, request) -> Audit:
        payload = AuditRecordsInput(data=request.data)
        payload.is_valid(raise_exception=True)
        options = services.audit_criteria_check(**payload.criteria_options())
        selection = payload.validated_data["records"]
        try:
            name, items = record_items(
                RecordSelection(
                    source_id=selection.get("source"),
                    published_from=selection.get("from"),
                    published_to=selection.get("to"),
                    search=selection.get("search") or "",
                )
            )
        except InputError as exc:
            raise uploads.input_refused(exc) from None
        return _create(request, input_kind="records", input_name=name, items=items, options=options)


class AuditDetailView(OrganisationEndpoint):
    key_scopes = {"GET": "audits:read"}

    @extend_schema(
        summary="One audit, with its progress and credits", responses={200: AuditOutput}, tags=TAGS
    )
    def get(self, request, audit_id, *args, **kwargs):
        return Response(_output(request, selectors.audit_get(audit_id=audit_id)))


class AuditItemListView(OrganisationEndpoint):
    key_scopes = {"GET": "audits:read"}

    @extend_schema(
        summary="The audit's items in input order, with their verdicts",
        parameters=[
            _boolean_parameter("flagged", "true: only flagged items; false: none of them."),
            _boolean_parameter(
                "failed", "true: only items that failed; false: none of them (both true: either)."
            ),
            OpenApiParameter(
                "search",
                {"type": "string", "maxLength": MAX_SEARCH_CHARS},
                description="Text in the item or its id",
            ),
        ],
        responses={200: AuditItemOutput(many=True)},
        tags=TAGS,
    )
    def get(self, request, audit_id, *args, **kwargs):
        audit = selectors.audit_get(audit_id=audit_id)
        search = request.query_params.get("search", "").strip()
        if len(search) > MAX_SEARCH_CHARS:
            raise field_error("search", f"At most {MAX_SEARCH_CHARS} characters.")
        items = selectors.item_list(
            audit=audit,
            flagged=_boolean_param(request, "flagged"),
            failed=_boolean_param(request, "failed"),
            search=search,
        )
        return paginated(request, items, versioned(AuditItemOutput, request))


class _AuditActionView(OrganisationEndpoint):
    """Pause, resume, cancel: the organisation's admins, or the member who started it."""

    key_scopes = {"POST": "audits:write"}

    action = ""

    def post(self, request, audit_id, *args, **kwargs):
        audit = selectors.audit_get(audit_id=audit_id)
        # A key's audits:write scope (checked already) stands for the role a person needs.
        is_person = api_key_of(request) is None
        if is_person and request.user.role != Role.ADMIN and audit.created_by_id != request.user.pk:
            raise Forbidden(f"Only an organisation admin or the audit's creator can {self.action} it.")
        changed = getattr(services, f"audit_{self.action}")(audit_id=audit.pk)
        return Response(_output(request, changed))


def _action_schema(summary: str, description: str):
    return extend_schema(
        summary=summary,
        description=description,
        request=None,
        responses={200: AuditOutput},
        extensions=error_statuses(
            {409: "CONFLICT: the audit's status does not allow it; details {status, action}."}
        ),
        tags=TAGS,
    )


class AuditPauseView(_AuditActionView):
    action = "pause"

    @_action_schema(
        "Pause an audit (admins or its creator)",
        "A queued or running audit stops after the batches in flight; its reserved credits stay reserved.",
    )
    def post(self, request, audit_id, *args, **kwargs):
        return super().post(request, audit_id, *args, **kwargs)


class AuditResumeView(_AuditActionView):
    action = "resume"

    @_action_schema("Resume a paused audit (admins or its creator)", "Its pending items are queued again.")
    def post(self, request, audit_id, *args, **kwargs):
        return super().post(request, audit_id, *args, **kwargs)


class AuditCancelView(_AuditActionView):
    action = "cancel"

    @_action_schema(
        "Cancel an audit (admins or its creator)",
        "Pending items are cancelled and their credits released at once; batches in flight still "
        "commit (and charge) their verdicts.",
    )
    def post(self, request, audit_id, *args, **kwargs):
        return super().post(request, audit_id, *args, **kwargs)


class AuditResultsCsvView(CsvDownloadMixin, OrganisationEndpoint):
    key_scopes = {"GET": "audits:read"}

    @extend_schema(
        summary="The audit's results as CSV (streamed)",
        description=(
            "X archives: `tweet_url,deleted,reason,categories,confidence`, one row per flagged item, "
            "`deleted` empty (for the deletion tool to fill). Other inputs: "
            "`id,url,text,reason,categories,confidence`. `all=true`: every evaluated item, with a last "
            "`flagged` column. Categories are joined with `;`. A cell starting with = + - @, a tab or a "
            "carriage return is prefixed with a single quote, so no spreadsheet runs it as a formula."
        ),
        parameters=[_boolean_parameter("all", "true: every evaluated item, not only the flagged ones.")],
        responses={(200, "text/csv"): OpenApiResponse(response=OpenApiTypes.STR, description="The CSV.")},
        tags=TAGS,
    )
    def get(self, request, audit_id, *args, **kwargs):
        audit = selectors.audit_get(audit_id=audit_id)
        everything = bool(_boolean_param(request, "all"))
        response = StreamingHttpResponse(
            csv_export.results_csv(self.organisation, audit, everything=everything),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="{csv_export.file_name(audit)}"'
        return response
