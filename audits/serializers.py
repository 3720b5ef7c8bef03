"""The audits API's shapes: what creating an audit takes (an upload, or a selection of the
organisation's records) and how an audit and its items read. Rules that need the
database or the settings (the models offered, the criteria's words) are audits.services'."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audits.evaluation import DEFAULT_CATEGORIES
from audits.models import Audit, AuditItem
from audits.selectors import audit_progress
from audits.services import MAX_CATEGORIES, MAX_CRITERIA_CHARS, MAX_KEYWORD_CHARS, MAX_KEYWORDS
from nexus.api.fields import FreeTextField, PlainTextField


def split_commas(values) -> list[str]:
    """Keywords and categories: repeated, comma separated, or both."""
    return [part for value in values or () for part in str(value).split(",")]


class _CriteriaInput(serializers.Serializer):
    criteria = FreeTextField(
        max_length=MAX_CRITERIA_CHARS,
        help_text="What should be flagged, in plain words (1 to 2,000 characters).",
    )
    keywords = serializers.ListField(
        child=PlainTextField(max_length=MAX_KEYWORD_CHARS),
        max_length=MAX_KEYWORDS,
        required=False,
        help_text=(
            f"Words or phrases that flag an item; repeated and/or comma separated, at most {MAX_KEYWORDS} "
            f"of {MAX_KEYWORD_CHARS} characters in all."
        ),
    )
    categories = serializers.ListField(
        child=PlainTextField(max_length=MAX_KEYWORD_CHARS),
        max_length=MAX_CATEGORIES,
        required=False,
        help_text=(
            "The category names a verdict may use; repeated and/or comma separated, at most "
            f"{MAX_CATEGORIES}. Default: {', '.join(DEFAULT_CATEGORIES)}."
        ),
    )
    model = serializers.ChoiceField(
        choices=[], required=False, help_text="The provider's model (default: the first offered)."
    )
    batch_size = serializers.IntegerField(
        min_value=1,
        max_value=settings.AUDIT_MAX_BATCH_SIZE,
        required=False,
        help_text=f"Items per provider call (default {settings.AUDIT_BATCH_SIZE}).",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Read per request, so the document and the check follow AUDIT_MODELS.
        self.fields["model"].choices = list(settings.AUDIT_MODELS)

    def criteria_options(self) -> dict:
        """The keyword arguments of audits.services.audit_criteria_check."""
        data = self.validated_data
        return {
            "criteria": data["criteria"],
            "keywords": split_commas(data.get("keywords")),
            "categories": split_commas(data.get("categories")),
            "model": data.get("model") or None,
            "batch_size": data.get("batch_size"),
        }


class AuditUploadInput(_CriteriaInput):
    file = serializers.FileField(
        allow_empty_file=True,  # an empty file is audits.inputs' INVALID_FILE, like any unreadable one
        help_text=(
            "X's data/tweets.js, the archive's zip as X exports it, or a UTF-8 CSV with the columns "
            "id,text[,created_at,url]; recognised by its content, whatever its name. At most "
            "AUDIT_MAX_UPLOAD_BYTES (200 MiB by default)."
        ),
    )
    skip_retweets = serializers.BooleanField(
        required=False, default=False, help_text="X archives: leave retweets out (counted in skipped_input)."
    )
    skip_replies = serializers.BooleanField(
        required=False, default=False, help_text="X archives: leave replies out (counted in skipped_input)."
    )


class RecordSelectionInput(serializers.Serializer):
    source = serializers.UUIDField(
        required=False, allow_null=True, help_text="One data source's records (default: every source's)."
    )
    search = PlainTextField(
        required=False, allow_blank=True, max_length=200, help_text="Text in the title or body."
    )
    # `from` is a Python keyword: declared through the class namespace.
    locals()["from"] = serializers.DateField(
        required=False, allow_null=True, help_text="Published on or after this day (UTC)."
    )
    to = serializers.DateField(
        required=False, allow_null=True, help_text="Published on or before this day (UTC); not before `from`."
    )


class AuditRecordsInput(_CriteriaInput):
    records = RecordSelectionInput(
        help_text=(
            "The organisation's records to audit (GET /api/v1/data); the text of each is its title, "
            "a blank line and its body."
        )
    )


class AuditLinks(serializers.Serializer):
    items = serializers.CharField(help_text="The audit's items, with their verdicts.")
    results_csv = serializers.CharField(help_text="The results as CSV.")


class AuditOutput(serializers.ModelSerializer):
    items_per_minute = serializers.SerializerMethodField(
        help_text="Items evaluated per minute over the last batches; null before there is a rate."
    )
    eta_seconds = serializers.SerializerMethodField(
        help_text="Seconds the pending items would take at that rate; null unless queued or running."
    )
    percent = serializers.SerializerMethodField(help_text="done / total, in percent.")
    keywords = serializers.ListField(child=serializers.CharField(), help_text="Words that flag an item.")
    categories = serializers.ListField(
        child=serializers.CharField(), help_text="The category names a verdict may use."
    )
    links = serializers.SerializerMethodField()

    class Meta:
        model = Audit
        fields = [
            "id",
            "status",
            "input_kind",
            "input_name",
            "criteria",
            "keywords",
            "categories",
            "model",
            "provider",
            "batch_size",
            "total",
            "done",
            "flagged",
            "failed",
            "cancelled_items",
            "skipped_input",
            "items_per_minute",
            "eta_seconds",
            "percent",
            "price_per_item",
            "credits_reserved",
            "credits_charged",
            "credits_released",
            "created_by",
            "created_at",
            "started_at",
            "paused_at",
            "finished_at",
            "error",
            "links",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "total": {"help_text": "Items in the audit (after retweets and replies left out)."},
            "done": {"help_text": "Items evaluated or failed."},
            "flagged": {"help_text": "Items evaluated and flagged."},
            "failed": {"help_text": "Items the provider could not evaluate (not charged)."},
            "cancelled_items": {
                "help_text": "Items left unevaluated by a cancel or a failure (not charged)."
            },
            "skipped_input": {"help_text": "Retweets, replies or empty records left out of the input."},
            "price_per_item": {"help_text": "Credits per evaluated item."},
            "credits_reserved": {"help_text": "Credits reserved when the audit was created."},
            "credits_charged": {"help_text": "Credits charged for evaluated items so far."},
            "credits_released": {"help_text": "Credits given back once the audit ended."},
            "created_by": {"help_text": "The user who started the audit."},
            "error": {"help_text": "Why the audit failed, if it did."},
        }

    def _progress(self, audit: Audit):
        # One computation per audit per representation (no query: the audit row holds it).
        cached = getattr(audit, "_progress_cache", None)
        if cached is None:
            cached = audit._progress_cache = audit_progress(audit)
        return cached

    def get_items_per_minute(self, audit: Audit) -> float | None:
        return self._progress(audit).items_per_minute

    def get_eta_seconds(self, audit: Audit) -> int | None:
        return self._progress(audit).eta_seconds

    def get_percent(self, audit: Audit) -> float:
        return self._progress(audit).percent

    @extend_schema_field(AuditLinks)
    def get_links(self, audit: Audit) -> dict:
        request = self.context.get("request")
        version = getattr(request, "version", None) or "v1"
        kwargs = {"version": version, "audit_id": audit.pk}
        return {
            "items": reverse("audit-items", kwargs=kwargs),
            "results_csv": reverse("audit-results-csv", kwargs=kwargs),
        }


class AuditItemOutput(serializers.ModelSerializer):
    id = serializers.IntegerField(source="seq", help_text="The item's place in the input, from 1.")
    categories = serializers.ListField(
        child=serializers.CharField(), help_text="The categories of the verdict (empty when not flagged)."
    )

    class Meta:
        model = AuditItem
        fields = [
            "id",
            "external_id",
            "text",
            "url",
            "created_at_source",
            "is_retweet",
            "is_reply",
            "truncated",
            "status",
            "flagged",
            "reason",
            "categories",
            "confidence",
            "error",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "external_id": {"help_text": "The tweet's id_str, the CSV's id or the record's id."},
            "truncated": {"help_text": "The text was cut at AUDIT_MAX_ITEM_CHARS."},
            "flagged": {"help_text": "The verdict; null until the item is evaluated."},
            "reason": {"help_text": "Why the item was (or was not) flagged."},
            "confidence": {"help_text": "The provider's confidence, 0 to 1."},
            "error": {"help_text": "Why the item could not be evaluated, if it failed."},
        }
