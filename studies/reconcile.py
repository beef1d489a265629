"""Identity reconciliation: a hospital's PatientID (+ issuer) to the patient's shared record."""

from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models import Q

from audit.actions import Action
from consent.actors import Actor
from consent.auditing import audit_event
from consent.models import Institution, Patient, PatientIdentifier, Role
from consent.prepared import fetch_prepared, text_array
from studies.models import Study

RECONCILER = Actor(role=Role.SYSTEM, username="reconciler", display_name="Study reconciliation")


def identifier_institution(*, issuer: str, performing: Institution) -> Institution | None:
    """Whose identifier space a PatientID belongs to: the issuer's, else the performing one's.

    An issuer that names no member institution cannot be reconciled (None).
    """
    if not issuer or issuer in (performing.default_issuer, performing.code):
        return performing
    return Institution.objects.filter(Q(default_issuer=issuer) | Q(code=issuer)).first()


def patient_for(*, institution: Institution | None, patient_id: str) -> Patient | None:
    """The patient a local identifier names, or None (the study stays unreconciled)."""
    if institution is None or not patient_id:
        return None
    identifier = (
        PatientIdentifier.objects.select_related("patient")
        .filter(institution=institution, value=patient_id)
        .first()
    )
    return identifier.patient if identifier else None


def patients_for(*, institution: Institution | None, patient_ids: set[str]) -> dict[str, Patient]:
    """The patients that several local identifiers of one institution name (one query).

    Each patient is loaded with its national identifier only (what the gate and the audit
    read); another field loads on access, as Django's deferred fields do.
    """
    values = {value for value in patient_ids if value}
    if institution is None or not values:
        return {}
    if connection.vendor == "postgresql":
        # A prepared statement: building the ORM's query on every new study cost CPU
        # (in-process C-STORE ingest, 4.86 and 5.47 ms of CPU per instance with it, 3.82
        # and 5.01 without; bench/README.md).
        rows = fetch_prepared(
            _PATIENTS_SQL, {"institution": institution.pk, "values": text_array(values)}
        )
    else:
        rows = PatientIdentifier.objects.filter(
            institution=institution, value__in=values
        ).values_list("value", "patient_id", "patient__national_id")
    return {
        value: Patient.from_db(DEFAULT_DB_ALIAS, _LOADED, (pk, national_id))
        for value, pk, national_id in rows
    }


_LOADED = ["id", "national_id"]
_PATIENTS_SQL = f"""
SELECT i.value, p.id, p.national_id
FROM {PatientIdentifier._meta.db_table} i JOIN {Patient._meta.db_table} p ON p.id = i.patient_id
WHERE i.institution_id = %(institution)s AND i.value = ANY(CAST(%(values)s AS text[]))
"""  # noqa: S608 (table names from the models; every value is a parameter)


@transaction.atomic
def studies_reconcile(*, identifier: PatientIdentifier) -> list[Study]:
    """Link the unreconciled studies waiting under a newly registered identifier.

    Returns
    -------
    list[Study]
        The studies linked, each with a ``study.reconcile`` audit event.
    """
    waiting = list(
        Study.objects.select_for_update().filter(
            patient__isnull=True,
            identifier_institution=identifier.institution,
            dicom_patient_id=identifier.value,
        )
    )
    for study in waiting:
        study.patient = identifier.patient
        study.save(update_fields=["patient"])
        audit_event(
            RECONCILER,
            action=Action.STUDY_RECONCILE,
            patient=identifier.patient.national_id,
            study_uid=study.study_uid,
            detail={"institution": identifier.institution.code},
        )
    return waiting


def on_patient_identifier_added(
    sender: object, *, identifier: PatientIdentifier, **_: object
) -> None:
    """Receiver of consent.signals.patient_identifier_added."""
    studies_reconcile(identifier=identifier)
