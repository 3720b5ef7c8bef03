from django.urls import path

from jobs import api

urlpatterns = [
    path("summarize", api.SummarizeView.as_view(), name="summarize"),
    path("analyze", api.AnalyzeView.as_view(), name="analyze"),
    path("jobs", api.JobListView.as_view(), name="jobs"),
    path("jobs/<uuid:job_id>", api.JobDetailView.as_view(), name="job"),
    path("jobs/<uuid:job_id>/events", api.JobEventListView.as_view(), name="job-events"),
    path("analytics/usage", api.UsageView.as_view(), name="analytics-usage"),
]
