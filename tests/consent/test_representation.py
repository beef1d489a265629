"""Legal representation: granted and ended through an audited service, also from the admin."""

import pytest
from django.contrib.auth.models import Group
from guardian.shortcuts import assign_perm

from anim_gateway.errors import ApplicationError, Conflict, NotFound
from audit.models import AuditEvent
from consent.actors import Actor
from consent.services import representation
from tests.conftest import XAVIER_ID as XAVIER
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

ADMIN = Actor(role="admin", username="root-admin")


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_a_grant_lets_the_login_act_for_the_patient_and_is_audited(cast) -> None:
    representation.representation_grant(actor=ADMIN, patient=cast.xavier, user=cast.yvonne.user)

    assert representation.represents(cast.yvonne.user, cast.xavier)
    (event,) = events("representation.grant")
    assert event.patient == cast.xavier.national_id
    assert event.actor_username == "root-admin"
    assert event.detail == {
        "representative": cast.yvonne.user.username,
        "representative_patient": cast.yvonne.national_id,
    }
    assert "Yvonne" not in str(event.detail) + event.message


def test_a_revocation_ends_it_and_is_audited(cast) -> None:
    representation.representation_grant(actor=ADMIN, patient=cast.xavier, user=cast.yvonne.user)
    representation.representation_revoke(actor=ADMIN, patient=cast.xavier, user=cast.yvonne.user)

    assert not representation.represents(cast.yvonne.user, cast.xavier)
    assert len(events("representation.revoke")) == 1


@pytest.mark.parametrize("who", ["alice", "xavier"])
def test_only_another_patients_login_can_represent(cast, who: str) -> None:
    user = getattr(cast, who).user
    with pytest.raises(ApplicationError):
        representation.representation_grant(actor=ADMIN, patient=cast.xavier, user=user)
    assert not representation.represents(user, cast.xavier)
    assert events("representation.grant") == []


def test_granting_twice_or_revoking_what_is_not_held_is_refused(cast) -> None:
    with pytest.raises(NotFound):
        representation.representation_revoke(
            actor=ADMIN, patient=cast.xavier, user=cast.yvonne.user
        )
    representation.representation_grant(actor=ADMIN, patient=cast.xavier, user=cast.yvonne.user)
    with pytest.raises(Conflict):
        representation.representation_grant(actor=ADMIN, patient=cast.xavier, user=cast.yvonne.user)
    assert len(events("representation.grant")) == 1


def manage_url(patient, user) -> str:
    return f"/admin/consent/patient/{patient.pk}/permissions/user-manage/{user.pk}/"


def test_the_admin_grants_and_revokes_through_the_service(
    cast, admin_user, admin_client_verified
) -> None:
    url = manage_url(cast.xavier, cast.yvonne.user)
    granted = admin_client_verified.post(url, {"permissions": [representation.CODENAME]})
    assert granted.status_code == 302
    assert representation.represents(cast.yvonne.user, cast.xavier)
    (event,) = events("representation.grant")
    assert event.actor_username == admin_user.username

    # Every box unticked: the browser still sends the form's other fields.
    revoked = admin_client_verified.post(url, {"csrfmiddlewaretoken": "unchecked-in-tests"})
    assert revoked.status_code == 302
    assert not representation.represents(cast.yvonne.user, cast.xavier)
    assert len(events("representation.revoke")) == 1


def test_the_admin_refuses_a_practitioner_as_representative(
    cast, admin_user, admin_client_verified
) -> None:
    url = manage_url(cast.xavier, cast.alice.user)
    response = admin_client_verified.post(url, {"permissions": [representation.CODENAME]})
    assert response.status_code == 200
    assert b"Only a patient&#x27;s login can be a legal representative." in response.content
    assert not representation.represents(cast.alice.user, cast.xavier)
    assert events("representation.grant") == []


def test_the_admin_refuses_a_group_as_representative(
    cast, admin_user, admin_client_verified
) -> None:
    group = Group.objects.create(name="parents")
    url = f"/admin/consent/patient/{cast.xavier.pk}/permissions/group-manage/{group.pk}/"
    response = admin_client_verified.post(url, {"permissions": [representation.CODENAME]})
    assert response.status_code == 200
    assert "never to a group" in str(response.context["form"].errors)
    assert not group.groupobjectpermission_set.exists()


def test_a_groups_permission_is_never_a_representation(cast) -> None:
    group = Group.objects.create(name="parents")
    cast.yvonne.user.groups.add(group)
    assign_perm(representation.PERMISSION, group, cast.xavier)

    response = client_for("yvonne").get("/api/v1/me/record/", HTTP_X_ACT_FOR=XAVIER)
    assert response.status_code == 404  # as for a patient who is not registered
    assert AuditEvent.objects.order_by("-seq").first().reason_code == "NOT_REPRESENTATIVE"
    assert not representation.represents(cast.yvonne.user, cast.xavier)


def test_the_admin_removes_a_group_grant_made_before(cast, admin_user, admin_client_verified):
    group = Group.objects.create(name="parents")
    assign_perm(representation.PERMISSION, group, cast.xavier)
    url = f"/admin/consent/patient/{cast.xavier.pk}/permissions/group-manage/{group.pk}/"
    response = admin_client_verified.post(url, {"csrfmiddlewaretoken": "unchecked-in-tests"})
    assert response.status_code == 302
    assert not group.groupobjectpermission_set.exists()
