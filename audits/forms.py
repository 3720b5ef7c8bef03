"""The audits page's form: what a person types and uploads, shaped into the arguments of the
services the API calls (audit_criteria_check decides what is valid; audits.uploads counts the
file's bytes while they stream in, as for the API)."""

from __future__ import annotations

from django import forms
from django.conf import settings

from audits.evaluation import DEFAULT_CATEGORIES
from audits.services import MAX_CRITERIA_CHARS, audit_criteria_check
from nexus.api.errors import ValidationFailed

ACCEPTED_FILES = ".zip,.js,.csv,application/zip,text/csv,text/javascript,application/javascript"


def _split(value: str) -> list[str]:
    return [part for part in (piece.strip() for piece in value.split(",")) if part]


class AuditForm(forms.Form):
    file = forms.FileField(error_messages={"required": "Choose the file to audit."})
    # Lengths and counts are the service's rules (audit_criteria_check), not repeated here.
    criteria = forms.CharField(
        widget=forms.Textarea, error_messages={"required": "Describe what should be flagged."}
    )
    keywords = forms.CharField(required=False, max_length=6000)
    skip_retweets = forms.BooleanField(required=False)
    skip_replies = forms.BooleanField(required=False)
    categories = forms.CharField(required=False, max_length=3000)
    batch_size = forms.IntegerField(required=False)
    model = forms.CharField(required=False, max_length=100)

    def service_options(self) -> dict | None:
        """audit_criteria_check's answer for what was typed, or None with the problems added
        to the form's fields (call after is_valid())."""
        data = self.cleaned_data
        try:
            return audit_criteria_check(
                criteria=data["criteria"],
                keywords=_split(data.get("keywords") or ""),
                categories=_split(data.get("categories") or ""),
                model=data.get("model") or None,
                batch_size=data.get("batch_size"),
            )
        except ValidationFailed as exc:
            fields = exc.details.get("fields") or {}
            for name, problems in fields.items():
                self.add_error(name if name in self.fields else None, " ".join(problems))
            if not fields:
                self.add_error(None, exc.message)
            return None


def form_defaults() -> dict:
    """What the page says about the form's optional fields."""
    return {
        "default_categories": ", ".join(DEFAULT_CATEGORIES),
        "default_batch_size": settings.AUDIT_BATCH_SIZE,
        "max_batch_size": settings.AUDIT_MAX_BATCH_SIZE,
        "models": settings.AUDIT_MODELS,
        "max_criteria_chars": MAX_CRITERIA_CHARS,
        "accepted_files": ACCEPTED_FILES,
    }
