"""A deny never reveals that a study exists where it must not (hidden, or not a practitioner)."""

import pytest

from audit.models import AuditEvent
from consent import gate
from consent.gate import AccessDenied
from consent.models import SharedRecord

from .conftest import actor, care, consent_for, hide, study

pytestmark = pytest.mark.django_db

UID = "1.2.826.0.1.3680043.8.498.77"


def close_record(patient) -> None:
    SharedRecord.objects.filter(patient=patient).update(status="closed")


def deny(who, patient, uid: str = UID, code: str = "CHEM") -> AccessDenied:
    with pytest.raises(AccessDenied) as info:
        gate.authorize(
            who,
            gate.VIEW_IMAGES,
            patient=patient,
            study=study(uid, code, patient),
            audit_action="study.retrieve",
        )
    return info.value


def test_a_hidden_study_stays_unknown_when_the_record_is_also_closed(cast) -> None:
    consent_for(cast.xavier)
    care(cast.alice, cast.xavier)
    hide(cast.xavier, UID)
    close_record(cast.xavier)
    denied = deny(actor(cast.alice.user, "CHL"), cast.xavier)
    assert (denied.status_code, denied.code) == (404, "NOT_FOUND")
    # The audit row keeps the first failing check.
    assert AuditEvent.objects.order_by("-seq").first().reason_code == "RECORD_NOT_ACTIVE"


def test_a_list_never_mentions_a_hidden_study_whichever_check_fails(cast) -> None:
    care(cast.alice, cast.xavier)
    hide(cast.xavier, UID)
    close_record(cast.xavier)
    result = gate.authorize_studies(
        actor(cast.alice.user, "CHL"),
        gate.LIST_STUDIES,
        studies=[study(UID, "CHEM", cast.xavier)],
        audit_action="patient.studies_list",
    )
    assert (result.permitted, result.withheld) == ([], [])


def test_a_practitioner_learns_why_a_visible_study_is_withheld(cast) -> None:
    care(cast.alice, cast.xavier)
    close_record(cast.xavier)
    denied = deny(actor(cast.alice.user, "CHL"), cast.xavier)
    assert (denied.status_code, denied.code) == (403, "RECORD_NOT_ACTIVE")


def _user(username: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)


def test_a_patient_cannot_tell_another_patients_study_from_an_unknown_one(cast) -> None:
    denied = deny(actor(_user("yvonne"), None), cast.xavier)
    assert (denied.status_code, denied.code, denied.message) == (404, "NOT_FOUND", "No such study.")
    assert AuditEvent.objects.order_by("-seq").first().outcome == "deny"


def unknown(who) -> AccessDenied | None:
    """What the gate answers this actor for a study that does not exist (None: a 404)."""
    try:
        gate.deny_unknown(
            who, audit_action="study.retrieve", detail={"study_uid": UID}, action=gate.VIEW_IMAGES
        )
    except AccessDenied as denied:
        return denied
    return None


@pytest.mark.parametrize("username", ["dora", "chl-pacs"])
def test_a_role_that_never_sees_images_is_refused_alike_for_any_study(cast, username) -> None:
    # Refused for the role, before the study is looked at: an existing study and an unknown
    # one get the same 403, which says why and reveals neither.
    who = actor(_user(username), "CHL" if username == "chl-pacs" else None)
    existing, missing = deny(who, cast.xavier), unknown(who)
    assert missing is not None
    for denied in (existing, missing):
        assert (denied.status_code, denied.code) == (403, "ROLE_NOT_ALLOWED")
    assert existing.message == missing.message
    outcomes = AuditEvent.objects.order_by("-seq").values_list("outcome", "reason_code")[:2]
    assert list(outcomes) == [("deny", "ROLE_NOT_ALLOWED")] * 2


def test_a_patient_asking_for_an_unknown_study_gets_a_404(cast) -> None:
    assert unknown(actor(_user("yvonne"), None)) is None
