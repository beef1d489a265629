"""Audit API routes, mounted by the project under /api/v1/."""

from django.urls import path

from audit import api

urlpatterns = [
    path("audit/events/", api.AuditEventListApi.as_view(), name="audit-events"),
    path("audit/verify/", api.AuditVerifyApi.as_view(), name="audit-verify"),
    path("audit/export/", api.AuditExportApi.as_view(), name="audit-export"),
]
