"""Exports of a range of audit events in standard forms: FHIR R4 (IHE BALP), DICOM, CSV."""

from collections.abc import Iterable, Iterator

from django.utils import timezone

from audit.exports import csv_export, dicom, fhir
from audit.models import AuditEvent

FORMATS = {"fhir", "dicom", "csv"}
CONTENT_TYPES = {
    "fhir": "application/fhir+json",
    "dicom": "application/xml",
    "csv": "text/csv; charset=utf-8",
}
_EXTENSIONS = {"fhir": "json", "dicom": "xml", "csv": "csv"}
_RENDERERS = {"fhir": fhir.bundle, "dicom": dicom.document, "csv": csv_export.rows}


def render(fmt: str, events: Iterable[AuditEvent]) -> Iterator[str]:
    """The export as chunks of text, produced as `events` are read (constant memory)."""
    return _RENDERERS[fmt](events)


def filename(fmt: str) -> str:
    return f"anim-audit-{timezone.now():%Y%m%dT%H%M%SZ}.{_EXTENSIONS[fmt]}"
