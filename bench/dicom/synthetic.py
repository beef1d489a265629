"""A synthetic index: many patients and studies inserted in bulk, some visible to the reader."""

import datetime

from django.utils import timezone

from consent.models import CareRelationship, Consent, Institution, Patient, SharedRecord
from studies.models import Study


def national_id(n: int) -> str:
    # Unique 13-digit strings; bulk_create skips the check-digit validation on purpose.
    return f"19{n:011d}"


def populate(*, studies: int, per_patient: int, reader, visible_patients: int) -> list[str]:
    """Insert ``studies`` CHL studies over ``studies // per_patient`` patients.

    The first ``visible_patients`` patients consent and are in care with the reader.
    Returns their PatientIDs (CHL identifiers).
    """
    chl = Institution.objects.get(code="CHL")
    count = studies // per_patient
    first = (Patient.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    Patient.objects.bulk_create(
        Patient(
            national_id=national_id(first + n),
            family_name="Synthetic",
            given_name=f"P{n}",
            birth_date=datetime.date(1970, 1, 1),
            sex="O",
        )
        for n in range(count)
    )
    patients = list(Patient.objects.filter(family_name="Synthetic").order_by("pk"))
    SharedRecord.objects.bulk_create(SharedRecord(patient=p) for p in patients)
    end = timezone.now() + datetime.timedelta(days=90)
    for patient in patients[:visible_patients]:
        Consent.objects.create(patient=patient, all_members=True, granted_by="bench")
        CareRelationship.objects.create(
            practitioner=reader, patient=patient, kind="admission", asserted_by="bench", end=end
        )
    rows = []
    for n in range(studies):
        patient = patients[n % count]
        rows.append(
            Study(
                study_uid=f"2.25.{10**20 + n}",
                institution=chl,
                patient=patient,
                dicom_patient_id=f"CHL-S{patient.pk:07d}",
                issuer="CHL",
                identifier_institution=chl,
                study_date=datetime.date(2015, 1, 1) + datetime.timedelta(days=n % 3650),
                accession_number=f"A{n}",
                modalities="CT",
                series_count=1,
                instance_count=1,
                attributes={"0020000D": {"vr": "UI", "Value": [f"2.25.{10**20 + n}"]}},
            )
        )
    Study.objects.bulk_create(rows, batch_size=5000)
    return [f"CHL-S{p.pk:07d}" for p in patients[:visible_patients]]
