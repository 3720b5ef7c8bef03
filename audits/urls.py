from django.urls import path

from audits import api

urlpatterns = [
    path("audits", api.AuditListView.as_view(), name="audits"),
    path("audits/<uuid:audit_id>", api.AuditDetailView.as_view(), name="audit"),
    path("audits/<uuid:audit_id>/items", api.AuditItemListView.as_view(), name="audit-items"),
    path("audits/<uuid:audit_id>/pause", api.AuditPauseView.as_view(), name="audit-pause"),
    path("audits/<uuid:audit_id>/resume", api.AuditResumeView.as_view(), name="audit-resume"),
    path("audits/<uuid:audit_id>/cancel", api.AuditCancelView.as_view(), name="audit-cancel"),
    path("audits/<uuid:audit_id>/results.csv", api.AuditResultsCsvView.as_view(), name="audit-results-csv"),
]
