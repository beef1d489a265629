"""REST study lists under /api/v1/: a patient's studies, for practitioners and the patient."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.actions import Action
from consent import gate
from consent.access import (
    ACT_FOR_PARAMETER,
    access_own_record,
    access_patient_by_national_id,
    patient_actor,
    serves_patient_data,
)
from consent.authentication import actor_of
from consent.selectors import hidden_study_uids
from studies import access


class StudyOutputSerializer(serializers.Serializer):
    study_uid = serializers.CharField()
    institution = serializers.CharField(source="institution.code")
    date = serializers.DateField(source="study_date", allow_null=True)
    modalities = serializers.ListField(child=serializers.CharField(), source="modality_list")
    description = serializers.CharField()
    accession_number = serializers.CharField()
    series_count = serializers.IntegerField()
    instance_count = serializers.IntegerField()


class WithheldSerializer(serializers.Serializer):
    institution = serializers.CharField()
    reason = serializers.CharField()


def _withheld(decision: gate.StudyListDecision) -> list[dict]:
    return [{"institution": code, "reason": reason} for code, reason in decision.withheld]


@serves_patient_data
class PatientStudiesApi(APIView):
    """The studies of a patient that the caller may see, every institution, newest first."""

    @extend_schema(
        responses=inline_serializer(
            "PatientStudies",
            {
                "studies": StudyOutputSerializer(many=True),
                "withheld": WithheldSerializer(many=True),
            },
        )
    )
    def get(self, request: Request, national_id: str) -> Response:
        actor = actor_of(request)
        patient = access_patient_by_national_id(
            actor,
            national_id,
            action=gate.LIST_STUDIES,
            audit_action=Action.PATIENT_STUDIES_LIST,
            audit_permit=False,
        )
        decision = access.patient_studies(
            actor, patient=patient, audit_action=Action.PATIENT_STUDIES_LIST
        )
        return Response(
            {
                "studies": StudyOutputSerializer(decision.permitted, many=True).data,
                "withheld": _withheld(decision),
            }
        )


class OwnStudyOutputSerializer(StudyOutputSerializer):
    hidden = serializers.BooleanField()


@serves_patient_data
class MyStudiesApi(APIView):
    """The caller's own studies (or those of the patient they represent), every institution."""

    @extend_schema(
        parameters=[ACT_FOR_PARAMETER],
        responses=inline_serializer("MyStudies", {"studies": OwnStudyOutputSerializer(many=True)}),
    )
    def get(self, request: Request) -> Response:
        actor = patient_actor(request, audit_action=Action.PATIENT_STUDIES_LIST)
        patient = access_own_record(
            actor, audit_action=Action.PATIENT_STUDIES_LIST, audit_permit=False
        )
        decision = access.patient_studies(
            actor, patient=patient, audit_action=Action.PATIENT_STUDIES_LIST
        )
        hidden = hidden_study_uids(patient=patient)
        for study in decision.permitted:
            study.hidden = study.study_uid in hidden
        return Response({"studies": OwnStudyOutputSerializer(decision.permitted, many=True).data})
