"""Reads of the study index: lookups, QIDO queries and the portal's study lists."""

from studies.models import Study


def study_get_ref(study_uid: str) -> Study | None:
    """The study with this UID (a StudyRef for consent), or None."""
    return (
        Study.objects.filter(study_uid=study_uid)
        .only("study_uid", "institution_id", "patient_id")
        .first()
    )
