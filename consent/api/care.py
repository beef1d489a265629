"""Care relationships asserted by hospital systems (or administrators): create and end."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from anim_gateway.api_fields import DateTimeField
from anim_gateway.openapi import error_response
from audit.actions import Action
from consent.access import (
    access_care_assertion,
    access_care_end,
    refusals_audited,
    serves_patient_data,
)
from consent.api.fields import USERNAME
from consent.api.patients import CareOutput, practitioner_named, valid
from consent.api.provisioning import NationalIdField
from consent.authentication import actor_of
from consent.models import CareKind
from consent.services import care


@serves_patient_data
class CareRelationshipCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "CareAssertInput"  # drf-spectacular: one component per input

        patient = NationalIdField(help_text="The patient's national identifier.")
        practitioner = serializers.RegexField(USERNAME, max_length=150)
        kind = serializers.ChoiceField(choices=[CareKind.ADMISSION, CareKind.REFERRAL])
        start = DateTimeField(required=False, allow_null=True)
        end = DateTimeField(required=False, allow_null=True)

    @extend_schema(request=InputSerializer, responses={201: CareOutput})
    def post(self, request: Request) -> Response:
        data = valid(self.InputSerializer, request)
        actor = actor_of(request)
        with refusals_audited(actor, audit_action=Action.CARE_ASSERT, patient=None):
            practitioner = practitioner_named(data["practitioner"])
        patient = access_care_assertion(
            actor, national_id_value=data["patient"], practitioner=practitioner
        )
        # A period the service rejects (backdated, ending before it starts, too long) is a
        # refused assertion: audited as a deny.
        detail = {"practitioner": practitioner.user.username}
        with refusals_audited(
            actor, audit_action=Action.CARE_ASSERT, patient=patient, detail=detail
        ):
            link = care.care_relationship_assert(
                actor=actor,
                patient=patient,
                practitioner=practitioner,
                kind=data["kind"],
                start=data.get("start"),
                end=data.get("end"),
            )
        return Response(CareOutput(link).data, status=status.HTTP_201_CREATED)


@serves_patient_data
class CareRelationshipEndApi(APIView):
    @extend_schema(
        request=None,
        responses={200: CareOutput, 409: error_response("ALREADY_ENDED: ended already.")},
    )
    def post(self, request: Request, link_id: int) -> Response:
        actor = actor_of(request)
        link = access_care_end(actor, link_id=link_id, audit_action=Action.CARE_END)
        with refusals_audited(
            actor,
            audit_action=Action.CARE_END,
            patient=link.patient,
            detail={"care_relationship": link_id},
        ):
            link = care.care_relationship_end(actor=actor, link_id=link_id)
        return Response(CareOutput(link).data)
