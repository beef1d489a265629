"""Patient self-service under me/: the record, consents, exclusions, declared care, hiding."""

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from anim_gateway.errors import ApplicationError, NotFound
from anim_gateway.openapi import error_response
from audit.actions import Action
from consent import gate, selectors
from consent.access import (
    ACT_FOR_PARAMETER,
    access_own_record,
    patient_actor,
    refusals_audited,
    serves_patient_data,
)
from consent.api.fields import USERNAME, DateOrDateTimeField
from consent.models import Practitioner, RecordStatus
from consent.providers import lookup_study
from consent.services import care, consents, exclusions


def valid(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def practitioner_named(username: str, field: str = "practitioner") -> Practitioner:
    practitioner = selectors.practitioner_get(username=username)
    if practitioner is None:
        raise ApplicationError(f"{field}: no practitioner with this username.")
    return practitioner


class ConsentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.SerializerMethodField()
    institutions = serializers.SerializerMethodField()
    valid_from = serializers.DateTimeField()
    valid_until = serializers.DateTimeField(allow_null=True, help_text="null: until revoked.")
    allow_emergency = serializers.BooleanField()
    granted_at = serializers.DateTimeField()
    granted_by = serializers.CharField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    revoked_by = serializers.CharField()

    def get_status(self, consent) -> str:
        return consent.status(at=timezone.now())

    def get_institutions(self, consent) -> list[str] | None:
        if consent.all_members:
            return None
        return sorted(i.code for i in consent.institutions.all())


class CareOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    practitioner = serializers.CharField(source="practitioner.user.username")
    practitioner_name = serializers.CharField(source="practitioner.display_name")
    institution = serializers.CharField(
        source="institution.code",
        allow_null=True,
        help_text="The institution that asserted it; null when the patient declared it.",
    )
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    active = serializers.SerializerMethodField()

    def get_active(self, link) -> bool:
        return link.is_active(at=timezone.now())


class ExclusionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    practitioner = serializers.CharField(source="practitioner.user.username")
    practitioner_name = serializers.CharField(source="practitioner.display_name")
    created_at = serializers.DateTimeField()
    removed_at = serializers.DateTimeField(allow_null=True, help_text="null: still blocked.")


@serves_patient_data
class RecordApi(APIView):
    @extend_schema(parameters=[ACT_FOR_PARAMETER], responses={200: dict})
    def get(self, request: Request) -> Response:
        patient = access_own_record(
            patient_actor(request, audit_action=Action.RECORD_VIEW), audit_action=Action.RECORD_VIEW
        )
        history = [
            {"status": c.status, "changed_at": c.changed_at, "channel": c.channel}
            for c in selectors.record_history(patient=patient)
        ]
        body = {
            "national_id": patient.national_id,
            "status": patient.record.status,
            "changed_at": patient.record.changed_at,
            "history": history,
        }
        return Response(body)


class _RecordStatusApi(APIView):
    target = RecordStatus.ACTIVE
    audit_action = Action.RECORD_REOPEN

    @extend_schema(
        parameters=[ACT_FOR_PARAMETER],
        request=None,
        responses={
            200: dict,
            409: error_response("ALREADY_CLOSED or ALREADY_ACTIVE: the record has that status."),
        },
    )
    def post(self, request: Request) -> Response:
        actor = patient_actor(request, audit_action=self.audit_action)
        patient = access_own_record(actor, audit_action=self.audit_action, audit_permit=False)
        with refusals_audited(actor, audit_action=self.audit_action, patient=patient):
            record = consents.record_set_status(actor=actor, patient=patient, status=self.target)
        return Response({"national_id": patient.national_id, "status": record.status})


@serves_patient_data
class RecordCloseApi(_RecordStatusApi):
    target = RecordStatus.CLOSED
    audit_action = Action.RECORD_CLOSE


@serves_patient_data
class RecordReopenApi(_RecordStatusApi):
    target = RecordStatus.ACTIVE
    audit_action = Action.RECORD_REOPEN


@serves_patient_data
class ConsentListCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ConsentGrantInput"  # drf-spectacular: one component per input

        institutions = serializers.ListField(
            child=serializers.RegexField(r"^[A-Z0-9]{2,16}$"),
            allow_null=True,
            help_text="Institution codes, or null for every member institution.",
        )
        valid_until = DateOrDateTimeField(
            required=False,
            allow_null=True,
            help_text="A date (valid through that day) or a date-time; none: until revoked.",
        )
        allow_emergency = serializers.BooleanField(required=False, default=True)

    @extend_schema(parameters=[ACT_FOR_PARAMETER], responses={200: ConsentOutput(many=True)})
    def get(self, request: Request) -> Response:
        patient = access_own_record(
            patient_actor(request, audit_action=Action.CONSENT_LIST),
            audit_action=Action.CONSENT_LIST,
        )
        rows = selectors.consent_list(patient=patient)
        return Response(ConsentOutput(rows, many=True).data)

    @extend_schema(
        parameters=[ACT_FOR_PARAMETER], request=InputSerializer, responses={201: ConsentOutput}
    )
    def post(self, request: Request) -> Response:
        data = valid(self.InputSerializer, request)
        actor = patient_actor(request, audit_action=Action.CONSENT_GRANT)
        patient = access_own_record(actor, audit_action=Action.CONSENT_GRANT, audit_permit=False)
        with refusals_audited(actor, audit_action=Action.CONSENT_GRANT, patient=patient):
            consent = consents.consent_grant(
                actor=actor,
                patient=patient,
                institution_codes=data["institutions"],
                valid_until=data.get("valid_until"),
                allow_emergency=data["allow_emergency"],
            )
        return Response(ConsentOutput(consent).data, status=status.HTTP_201_CREATED)


@serves_patient_data
class ConsentRevokeApi(APIView):
    @extend_schema(
        parameters=[ACT_FOR_PARAMETER],
        request=None,
        responses={
            200: ConsentOutput,
            409: error_response("ALREADY_REVOKED: revoked already."),
        },
    )
    def post(self, request: Request, consent_id: int) -> Response:
        actor = patient_actor(request, audit_action=Action.CONSENT_REVOKE)
        patient = access_own_record(actor, audit_action=Action.CONSENT_REVOKE, audit_permit=False)
        with refusals_audited(actor, audit_action=Action.CONSENT_REVOKE, patient=patient):
            consent = consents.consent_revoke(actor=actor, patient=patient, consent_id=consent_id)
        return Response(ConsentOutput(consent).data)


@serves_patient_data
class ExclusionListCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ExclusionCreateInput"  # drf-spectacular: one component per input

        practitioner = serializers.RegexField(USERNAME, max_length=150)

    @extend_schema(parameters=[ACT_FOR_PARAMETER], responses={200: ExclusionOutput(many=True)})
    def get(self, request: Request) -> Response:
        patient = access_own_record(
            patient_actor(request, audit_action=Action.RECORD_VIEW),
            audit_action=Action.RECORD_VIEW,
            detail={"view": "exclusions"},
        )
        return Response(ExclusionOutput(selectors.exclusion_list(patient=patient), many=True).data)

    @extend_schema(
        parameters=[ACT_FOR_PARAMETER],
        request=InputSerializer,
        responses={
            201: ExclusionOutput,
            409: error_response("ALREADY_EXCLUDED: the practitioner is blocked already."),
        },
    )
    def post(self, request: Request) -> Response:
        data = valid(self.InputSerializer, request)
        actor = patient_actor(request, audit_action=Action.EXCLUSION_ADD)
        patient = access_own_record(actor, audit_action=Action.EXCLUSION_ADD, audit_permit=False)
        with refusals_audited(actor, audit_action=Action.EXCLUSION_ADD, patient=patient):
            exclusion = exclusions.exclusion_add(
                actor=actor, patient=patient, practitioner=practitioner_named(data["practitioner"])
            )
        return Response(ExclusionOutput(exclusion).data, status=status.HTTP_201_CREATED)


@serves_patient_data
class ExclusionDeleteApi(APIView):
    @extend_schema(parameters=[ACT_FOR_PARAMETER], responses={204: None})
    def delete(self, request: Request, exclusion_id: int) -> Response:
        actor = patient_actor(request, audit_action=Action.EXCLUSION_REMOVE)
        patient = access_own_record(actor, audit_action=Action.EXCLUSION_REMOVE, audit_permit=False)
        with refusals_audited(actor, audit_action=Action.EXCLUSION_REMOVE, patient=patient):
            exclusions.exclusion_remove(actor=actor, patient=patient, exclusion_id=exclusion_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


@serves_patient_data
class DeclaredCareApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "CareDeclareInput"  # drf-spectacular: one component per input

        practitioner = serializers.RegexField(USERNAME, max_length=150)

    @extend_schema(parameters=[ACT_FOR_PARAMETER], responses={200: CareOutput(many=True)})
    def get(self, request: Request) -> Response:
        patient = access_own_record(
            patient_actor(request, audit_action=Action.RECORD_VIEW),
            audit_action=Action.RECORD_VIEW,
            detail={"view": "care"},
        )
        rows = selectors.care_relationship_list(patient=patient)
        return Response(CareOutput(rows, many=True).data)

    @extend_schema(
        parameters=[ACT_FOR_PARAMETER], request=InputSerializer, responses={201: CareOutput}
    )
    def post(self, request: Request) -> Response:
        data = valid(self.InputSerializer, request)
        actor = patient_actor(request, audit_action=Action.CARE_DECLARE)
        patient = access_own_record(actor, audit_action=Action.CARE_DECLARE, audit_permit=False)
        with refusals_audited(actor, audit_action=Action.CARE_DECLARE, patient=patient):
            link = care.care_relationship_declare(
                actor=actor, patient=patient, practitioner=practitioner_named(data["practitioner"])
            )
        return Response(CareOutput(link).data, status=status.HTTP_201_CREATED)


class _StudyVisibilityApi(APIView):
    audit_action = Action.STUDY_HIDE

    @extend_schema(parameters=[ACT_FOR_PARAMETER], request=None, responses={200: dict})
    def post(self, request: Request, study_uid: str) -> Response:
        actor = patient_actor(request, audit_action=self.audit_action)
        patient = access_own_record(actor, audit_action=self.audit_action, audit_permit=False)
        study = lookup_study(study_uid)
        if study is None or study.patient_id != patient.pk:
            gate.deny_unknown(actor, audit_action=self.audit_action)
            raise NotFound("No such study.")
        return Response(self.apply(actor, patient, study_uid))


@serves_patient_data
class StudyHideApi(_StudyVisibilityApi):
    audit_action = Action.STUDY_HIDE

    def apply(self, actor, patient, study_uid: str) -> dict:
        exclusions.study_hide(actor=actor, patient=patient, study_uid=study_uid)
        return {"study_uid": study_uid, "hidden": True}


@serves_patient_data
class StudyUnhideApi(_StudyVisibilityApi):
    audit_action = Action.STUDY_UNHIDE

    def apply(self, actor, patient, study_uid: str) -> dict:
        exclusions.study_unhide(actor=actor, patient=patient, study_uid=study_uid)
        return {"study_uid": study_uid, "hidden": False}


@serves_patient_data
class WhoCanSeeApi(APIView):
    @extend_schema(parameters=[ACT_FOR_PARAMETER], responses={200: dict})
    def get(self, request: Request) -> Response:
        actor = patient_actor(request, audit_action=Action.RECORD_VIEW)
        if actor.patient is None:
            # Not a patient: the gate denies (and audits) on the role.
            access_own_record(actor, audit_action=Action.RECORD_VIEW)
        overview = gate.access_overview(
            actor, patient=actor.patient, audit_action=Action.RECORD_VIEW
        )
        return Response(overview)
