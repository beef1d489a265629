"""Emergency access: a practitioner declares it; the DPO lists and reviews the queue."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from anim_gateway.openapi import error_response
from audit.actions import Action
from consent import gate, selectors
from consent.access import access_patient_by_national_id, refusals_audited, serves_patient_data
from consent.api.patients import valid
from consent.authentication import actor_of
from consent.models import Notice, ReviewState
from consent.services import emergency


class EmergencyOutput(serializers.Serializer):
    id = serializers.IntegerField()
    practitioner = serializers.CharField(source="practitioner.user.username")
    practitioner_name = serializers.CharField(source="practitioner.display_name")
    institution = serializers.CharField(source="institution.code")
    patient = serializers.CharField(source="patient.national_id")
    reason = serializers.CharField()
    start = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    review = serializers.CharField()
    reviewed_by = serializers.CharField()
    reviewed_at = serializers.DateTimeField(allow_null=True, help_text="null: pending.")
    review_note = serializers.CharField()
    patient_notified_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the patient was told (or found to have no address, or the notice was "
        "given up as failed); null: still due.",
    )
    patient_notice = serializers.ChoiceField(
        choices=Notice.choices,
        allow_blank=True,
        help_text="sent, no_address, failed (the mail server refused the address every time), "
        'unrecorded (declared before notices were recorded), or "" while the notice is due.',
    )


@serves_patient_data
class EmergencyAccessCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "EmergencyDeclareInput"  # drf-spectacular: one component per input

        reason = serializers.CharField(
            min_length=settings.EMERGENCY_REASON_MIN_LENGTH,
            max_length=2000,
            help_text="Why the emergency justifies access without consent (written reason).",
        )

    @extend_schema(
        request=InputSerializer,
        responses={
            201: dict,
            409: error_response(
                "EMERGENCY_ALREADY_OPEN: the caller's access to the patient is open already."
            ),
        },
    )
    def post(self, request: Request, national_id: str) -> Response:
        data = valid(self.InputSerializer, request)
        actor = actor_of(request)
        patient = access_patient_by_national_id(
            actor,
            national_id,
            action=gate.EMERGENCY,
            audit_action=Action.EMERGENCY_DECLARE,
            audit_permit=False,
        )
        with refusals_audited(actor, audit_action=Action.EMERGENCY_DECLARE, patient=patient):
            access = emergency.emergency_declare(
                actor=actor, patient=patient, reason=data["reason"]
            )
        # Through the list's own field: every answer writes a time alike (Luxembourg's offset).
        expires_at = EmergencyOutput().fields["expires_at"].to_representation(access.expires_at)
        body = {"id": access.pk, "expires_at": expires_at, "review": access.review}
        return Response(body, status=status.HTTP_201_CREATED)


@serves_patient_data
class EmergencyAccessListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        class Meta:
            ref_name = "EmergencyFilter"

        review = serializers.ChoiceField(choices=ReviewState.choices, required=False)

    @extend_schema(parameters=[FilterSerializer], responses={200: EmergencyOutput(many=True)})
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        review = filters.validated_data.get("review")
        gate.authorize(
            actor_of(request),
            gate.REVIEW_EMERGENCY,
            patient=None,
            audit_action=Action.EMERGENCY_LIST,
            detail={"review": review or "all"},
        )
        rows = selectors.emergency_access_list(review=review)
        return Response(EmergencyOutput(rows, many=True).data)


@serves_patient_data
class EmergencyAccessReviewApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "EmergencyReviewInput"  # drf-spectacular: one component per input

        outcome = serializers.ChoiceField(choices=[ReviewState.JUSTIFIED, ReviewState.UNJUSTIFIED])
        note = serializers.CharField(max_length=4000, allow_blank=True, required=False, default="")

    @extend_schema(
        request=InputSerializer,
        responses={
            200: EmergencyOutput,
            409: error_response("ALREADY_REVIEWED: reviewed already."),
        },
    )
    def post(self, request: Request, access_id: int) -> Response:
        data = valid(self.InputSerializer, request)
        actor = actor_of(request)
        gate.authorize(
            actor,
            gate.REVIEW_EMERGENCY,
            patient=None,
            audit_action=Action.EMERGENCY_REVIEW,
            audit_permit=False,
        )
        # An unknown (404) or reviewed (409) access is a refused review: audited as a deny.
        with refusals_audited(
            actor,
            audit_action=Action.EMERGENCY_REVIEW,
            patient=selectors.emergency_access_patient(access_id=access_id),
            detail={"emergency_access": access_id},
        ):
            access = emergency.emergency_review(
                actor=actor, access_id=access_id, outcome=data["outcome"], note=data["note"]
            )
        return Response(EmergencyOutput(access).data)
