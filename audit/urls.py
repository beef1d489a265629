"""Audit API routes, mounted by the project under /api/v1/."""

urlpatterns: list = []
