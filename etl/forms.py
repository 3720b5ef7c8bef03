"""The data page's form for adding and editing a source. It only shapes what a person types
into the arguments of the same services the API calls; the services decide what is valid."""

from __future__ import annotations

import json

from django import forms

from etl.models import DataSource, SourceKind

# What a new CSV source reads from etl/sample_data/articles.csv-like files; a starting point.
MAPPING_PLACEHOLDER = '{"external_id": "id", "title": "title", "body": "body"}'
API_CONFIG_FIELDS = ("records_path", "page_size", "api_key_header")


class SourceForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=SourceKind.choices, initial=SourceKind.CSV)
    url = forms.CharField(
        label="URL",
        required=False,
        max_length=2000,
        help_text="API sources: required. CSV/RSS: an https URL, or leave empty and upload a file.",
    )
    path = forms.CharField(
        required=False,
        max_length=500,
        help_text="CSV/RSS only: a file in your organisation's server data directory (relative).",
    )
    schedule_minutes = forms.IntegerField(min_value=1, max_value=10080, initial=60)
    enabled = forms.BooleanField(required=False, initial=True)
    field_mapping = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="JSON: unified field → incoming field; external_id is required.",
    )
    records_path = forms.CharField(required=False, max_length=200, help_text="API sources (default data).")
    page_size = forms.IntegerField(required=False, min_value=1, max_value=1000, help_text="API sources.")
    api_key_header = forms.CharField(
        required=False, max_length=100, help_text="API sources (default X-API-Key)."
    )
    api_key = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.PasswordInput(render_value=False),
        help_text="API sources. Leave empty to keep the stored key.",
    )

    def __init__(self, *args, source: DataSource | None = None, **kwargs):
        self.source = source
        if source is not None and "initial" not in kwargs:
            config = source.config
            kwargs["initial"] = {
                "name": source.name,
                "kind": source.kind,
                "url": config.get("url", ""),
                "path": config.get("path", ""),
                "schedule_minutes": source.schedule_minutes,
                "enabled": source.enabled,
                "field_mapping": json.dumps(source.field_mapping),
                "records_path": config.get("records_path", ""),
                "page_size": config.get("page_size"),
                "api_key_header": config.get("api_key_header", ""),
            }
        super().__init__(*args, **kwargs)
        if source is not None:
            # A source's kind never changes (as in the API).
            self.fields["kind"].disabled = True

    def clean_field_mapping(self) -> dict:
        try:
            mapping = json.loads(self.cleaned_data["field_mapping"])
        except ValueError:
            raise forms.ValidationError("Write the mapping as a JSON object.") from None
        if not isinstance(mapping, dict):
            raise forms.ValidationError("Write the mapping as a JSON object.")
        return mapping

    def service_arguments(self) -> dict:
        """The keyword arguments of etl_source_create / etl_source_update."""
        data = self.cleaned_data
        kind = self.source.kind if self.source else data["kind"]
        # Keep what the form does not show (a CSV delimiter, an API's page parameters).
        config = dict(self.source.config) if self.source else {}
        for key in ("url", "path", *API_CONFIG_FIELDS):
            config.pop(key, None)
        if data["url"].strip():
            config["url"] = data["url"].strip()
        if data["path"].strip():
            config["path"] = data["path"].strip()
        if kind == SourceKind.API:
            for key in API_CONFIG_FIELDS:
                if data.get(key) not in (None, ""):
                    config[key] = data[key]
        arguments = {
            "name": data["name"],
            "config": config,
            "field_mapping": data["field_mapping"],
            "schedule_minutes": data["schedule_minutes"],
            "enabled": data["enabled"],
        }
        if kind == SourceKind.API and data["api_key"]:
            arguments["api_key"] = data["api_key"]
        if self.source is None:
            arguments["kind"] = kind
        return arguments
