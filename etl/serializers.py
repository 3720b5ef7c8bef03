from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from etl.connectors.base import server_key, server_key_name
from etl.models import DataSource, DriftEvent, EtlRun, QuarantinedItem, Record, SourceKind
from etl.normalise import UNIFIED_FIELDS
from nexus.api.fields import PlainTextField


class SourceInput(serializers.Serializer):
    # Published in the OpenAPI document; etl.config enforces them when a source is saved (and
    # what depends on the kind: an API source needs config.url, whose host must resolve to a
    # public address).
    openapi_request_rules = {
        "allOf": [
            {"properties": {"config": {"not": {"required": ["path", "url"]}}}},
            {
                "properties": {
                    "field_mapping": {
                        "required": ["external_id"],
                        "propertyNames": {"enum": list(UNIFIED_FIELDS)},
                        "additionalProperties": {"type": "string", "minLength": 1},
                    }
                }
            },
        ]
    }
    name = PlainTextField(max_length=100)
    kind = serializers.ChoiceField(choices=SourceKind.choices)
    config = serializers.DictField()
    field_mapping = serializers.DictField(child=PlainTextField())
    required_fields = serializers.ListField(child=PlainTextField(), required=False)
    api_key = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=1000)
    schedule_minutes = serializers.IntegerField(min_value=1, max_value=10080, required=False, default=60)
    enabled = serializers.BooleanField(required=False, default=True)
    requests_per_second = serializers.FloatField(min_value=0.2, max_value=100, required=False, default=5.0)


class SourcePatchInput(SourceInput):
    kind = None  # a source's kind never changes

    def __init__(self, *args, **kwargs):
        super().__init__(*args, partial=True, **kwargs)


class SourceFileOutput(serializers.Serializer):
    name = serializers.CharField(source="file_name")
    size = serializers.IntegerField(source="file_size")
    sha256 = serializers.CharField(source="file_sha256")
    uploaded_at = serializers.DateTimeField(source="file_uploaded_at")


class SourceFileInput(serializers.Serializer):
    file = serializers.FileField(help_text="A CSV (UTF-8, header row) or RSS/Atom document.")


class SourceOutput(serializers.ModelSerializer):
    api_key_set = serializers.SerializerMethodField()
    file = serializers.SerializerMethodField()

    class Meta:
        model = DataSource
        fields = [
            "id",
            "name",
            "kind",
            "config",
            "field_mapping",
            "required_fields",
            "api_key_set",
            "schedule_minutes",
            "enabled",
            "requests_per_second",
            "next_run_at",
            "file",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(SourceFileOutput(allow_null=True))
    def get_file(self, source) -> dict | None:
        """The uploaded file, or null; never its storage location."""
        return SourceFileOutput(source).data if source.file_key else None

    def get_api_key_set(self, source) -> bool:
        # A name only counts while it names one of this organisation's keys (a row with
        # another organisation's variable shows, and runs, without a key).
        name = server_key_name(source)
        return bool(source.api_key_encrypted or (name and server_key(name)))


class RunOutput(serializers.ModelSerializer):
    source_id = serializers.UUIDField()
    source_name = serializers.CharField(source="source.name")

    class Meta:
        model = EtlRun
        fields = [
            "id",
            "source_id",
            "source_name",
            "trigger",
            "status",
            "started_at",
            "finished_at",
            "duration_ms",
            "fetched",
            "inserted",
            "updated",
            "skipped",
            "quarantined",
            "drift_warnings",
            "slices",
            "checkpoint_before",
            "checkpoint_after",
            "error",
        ]


class DriftEventOutput(serializers.ModelSerializer):
    class Meta:
        model = DriftEvent
        fields = ["kind", "field", "matched_to", "confidence", "message"]


class QuarantinedItemOutput(serializers.ModelSerializer):
    class Meta:
        model = QuarantinedItem
        fields = ["external_id", "reason", "payload", "created_at"]


class RunDetailOutput(RunOutput):
    drift_events = DriftEventOutput(many=True)
    quarantined_items = serializers.SerializerMethodField()

    class Meta(RunOutput.Meta):
        fields = [*RunOutput.Meta.fields, "drift_events", "quarantined_items"]

    def get_quarantined_items(self, run) -> list[dict]:
        return QuarantinedItemOutput(run.quarantine.all()[:50], many=True).data


class RunQueuedOutput(serializers.Serializer):
    run_id = serializers.UUIDField()
    status = serializers.CharField()


class StatsOutput(serializers.Serializer):
    source_id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.CharField()
    records = serializers.IntegerField()
    records_processed = serializers.IntegerField()
    runs = serializers.IntegerField()
    last_status = serializers.CharField(allow_null=True)
    last_duration_ms = serializers.IntegerField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_failure_at = serializers.DateTimeField(allow_null=True)
    next_run_at = serializers.DateTimeField(allow_null=True)


class DriftSets(serializers.Serializer):
    previous = serializers.ListField(child=serializers.CharField())
    current = serializers.ListField(child=serializers.CharField())


class CompareOutput(serializers.Serializer):
    source_id = serializers.UUIDField()
    previous = RunOutput()
    current = RunOutput()
    differences = serializers.DictField(child=serializers.IntegerField())
    status_changed = serializers.BooleanField()
    error_changed = serializers.BooleanField()
    drift = DriftSets()
    anomalies = serializers.ListField(child=serializers.CharField())


class RecordOutput(serializers.ModelSerializer):
    source_id = serializers.UUIDField()

    class Meta:
        model = Record
        fields = [
            "id",
            "source_id",
            "external_id",
            "title",
            "body",
            "url",
            "author",
            "published_at",
            "tags",
            "extra",
            "created_at",
            "updated_at",
        ]
