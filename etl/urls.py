from django.urls import path

from etl import api

urlpatterns = [
    path("etl/sources", api.SourceListView.as_view(), name="etl-sources"),
    path("etl/sources/<uuid:source_id>", api.SourceDetailView.as_view(), name="etl-source"),
    path("etl/sources/<uuid:source_id>/run", api.SourceRunView.as_view(), name="etl-source-run"),
    path("etl/sources/<uuid:source_id>/file", api.SourceFileView.as_view(), name="etl-source-file"),
    path("etl/runs", api.RunListView.as_view(), name="etl-runs"),
    path("etl/runs/compare", api.RunCompareView.as_view(), name="etl-runs-compare"),
    path("etl/runs/<uuid:run_id>", api.RunDetailView.as_view(), name="etl-run"),
    path("etl/stats", api.StatsView.as_view(), name="etl-stats"),
    path("data", api.DataView.as_view(), name="data"),
]
