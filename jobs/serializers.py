from django.conf import settings
from rest_framework import serializers

from jobs.models import Job, JobEvent
from nexus.api.fields import FreeTextField
from nexus.api.versioning import register_version


class JobInput(serializers.Serializer):
    openapi_request_rules = {"oneOf": [{"required": ["text"]}, {"required": ["record_id"]}]}

    # Exactly one of the two. Which one, length and blankness are checked by jobs.services
    # (one rule for every caller).
    text = FreeTextField(
        required=False,
        trim_whitespace=False,
        max_length=settings.JOB_MAX_TEXT_CHARS,
        help_text="The text to process (not only whitespace).",
    )
    record_id = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text=(
            "Instead of text: the id of one of the organisation's records (GET /api/v1/data); the job "
            "processes its title and body, and its input remembers the record_id. 404 when "
            "the organisation has no such record."
        ),
    )


class JobOutput(serializers.ModelSerializer):
    error = serializers.CharField(source="error_message")

    class Meta:
        model = Job
        fields = [
            "id",
            "job_type",
            "status",
            "cost",
            "attempt_count",
            "max_attempts",
            "output",
            "error",
            "provider",
            "model",
            "cache_hit",
            "actor",
            "created_at",
            "started_at",
            "completed_at",
            "failed_at",
        ]


class JobDetailOutput(JobOutput):
    input = serializers.JSONField()

    class Meta(JobOutput.Meta):
        fields = [*JobOutput.Meta.fields, "input"]


class JobUsage(serializers.Serializer):
    credits_charged = serializers.IntegerField(source="cost")
    cache_hit = serializers.BooleanField()
    provider = serializers.CharField()
    model = serializers.CharField()
    input_characters = serializers.SerializerMethodField()

    def get_input_characters(self, job) -> int:
        return len(job.text)


@register_version(JobOutput, "v2")
class JobOutputV2(JobOutput):
    """v2 adds `usage`: what the job cost and what produced it."""

    usage = JobUsage(source="*")

    class Meta(JobOutput.Meta):
        fields = [*JobOutput.Meta.fields, "usage"]


@register_version(JobDetailOutput, "v2")
class JobDetailOutputV2(JobDetailOutput):
    usage = JobUsage(source="*")

    class Meta(JobDetailOutput.Meta):
        fields = [*JobDetailOutput.Meta.fields, "usage"]


class JobEventOutput(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["kind", "attempt", "message", "error", "created_at"]


class DailyCredits(serializers.Serializer):
    date = serializers.DateField()
    credits = serializers.IntegerField()


class UsageOutput(serializers.Serializer):
    days = serializers.IntegerField()
    credits_spent_per_day = DailyCredits(many=True)
    jobs_by_status = serializers.DictField(child=serializers.IntegerField())
    jobs_by_type = serializers.DictField(child=serializers.IntegerField())
