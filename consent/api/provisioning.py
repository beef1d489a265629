"""Provisioning endpoints: accounts, practitioners, patients, identifiers."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from stdnum.exceptions import ValidationError as StdnumError

from anim_gateway.openapi import error_response
from consent import national_id
from consent.api.fields import USERNAME, InitialPasswordField
from consent.authentication import actor_of
from consent.models import Profession, Role
from consent.services import provisioning

INSTITUTION_CODE = r"^[A-Z0-9]{2,16}$"


class NationalIdField(serializers.CharField):
    def to_internal_value(self, data: object) -> str:
        value = super().to_internal_value(data)
        try:
            return national_id.validate(value)
        except StdnumError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class AccountCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AccountCreateInput"  # drf-spectacular: one component per input

        username = serializers.RegexField(USERNAME, max_length=150)
        role = serializers.ChoiceField(choices=[Role.DPO, Role.SYSTEM])
        institution = serializers.RegexField(INSTITUTION_CODE, required=False, allow_null=True)
        password = InitialPasswordField()

        def validate(self, attrs: dict) -> dict:
            # A hospital system acts with its token only: the portal refuses it a log-in.
            if attrs.get("password") is not None and attrs["role"] == Role.SYSTEM:
                raise serializers.ValidationError(
                    {"password": "a system account acts with its token only, never a password."}
                )
            return attrs

    @extend_schema(
        request=InputSerializer,
        responses={201: dict, 409: error_response("USERNAME_TAKEN: the username exists.")},
    )
    def post(self, request: Request) -> Response:
        data = _valid(self.InputSerializer, request)
        account = provisioning.account_create(
            actor=actor_of(request),
            username=data["username"],
            role=data["role"],
            institution_code=data.get("institution"),
            password=data.get("password"),
        )
        body = {
            "username": account.user.username,
            "role": account.role,
            "institution": account.institution.code if account.institution else None,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class PractitionerCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PractitionerCreateInput"  # drf-spectacular: one component per input

        username = serializers.RegexField(USERNAME, max_length=150)
        display_name = serializers.CharField(max_length=200)
        profession = serializers.ChoiceField(choices=Profession.choices)
        license_number = serializers.CharField(max_length=32)
        institutions = serializers.ListField(
            child=serializers.RegexField(INSTITUTION_CODE), min_length=1
        )
        password = InitialPasswordField()

    @extend_schema(
        request=InputSerializer,
        responses={
            201: dict,
            409: error_response(
                "USERNAME_TAKEN: the username exists; CONFLICT: the license number exists."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = _valid(self.InputSerializer, request)
        practitioner = provisioning.practitioner_create(
            actor=actor_of(request),
            username=data["username"],
            display_name=data["display_name"],
            profession=data["profession"],
            license_number=data["license_number"],
            institution_codes=data["institutions"],
            password=data.get("password"),
        )
        body = {
            "username": practitioner.user.username,
            "display_name": practitioner.display_name,
            "profession": practitioner.profession,
            "license_number": practitioner.license_number,
            "institutions": data["institutions"],
        }
        return Response(body, status=status.HTTP_201_CREATED)


class IdentifierSerializer(serializers.Serializer):
    institution = serializers.RegexField(INSTITUTION_CODE)
    value = serializers.RegexField(r"^[\x21-\x7e]{1,64}$", max_length=64)


class PatientCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PatientCreateInput"  # drf-spectacular: one component per input

        national_id = NationalIdField()
        family_name = serializers.CharField(max_length=200)
        given_name = serializers.CharField(max_length=200)
        birth_date = serializers.DateField()
        sex = serializers.ChoiceField(choices=["F", "M", "O"])
        identifiers = IdentifierSerializer(many=True, required=False, default=list)
        username = serializers.RegexField(USERNAME, required=False, allow_null=True)
        password = InitialPasswordField()

        def validate(self, attrs: dict) -> dict:
            if attrs.get("password") is not None and not attrs.get("username"):
                raise serializers.ValidationError(
                    {"password": "a patient without a username has no log-in to set it for."}
                )
            return attrs

    @extend_schema(
        request=InputSerializer,
        responses={
            201: dict,
            409: error_response(
                "CONFLICT: the national_id or an identifier is registered already; "
                "USERNAME_TAKEN: the username exists."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = _valid(self.InputSerializer, request)
        patient = provisioning.patient_create(
            actor=actor_of(request),
            national_id_value=data["national_id"],
            family_name=data["family_name"],
            given_name=data["given_name"],
            birth_date=data["birth_date"],
            sex=data["sex"],
            identifiers=data["identifiers"],
            username=data.get("username"),
            password=data.get("password"),
        )
        body = {
            "national_id": patient.national_id,
            "family_name": patient.family_name,
            "given_name": patient.given_name,
            "birth_date": patient.birth_date,
            "sex": patient.sex,
            "record": {"status": patient.record.status},
            "identifiers": [
                {"institution": i.institution.code, "value": i.value}
                for i in patient.identifiers.select_related("institution")
            ],
        }
        return Response(body, status=status.HTTP_201_CREATED)


class PatientIdentifierCreateApi(APIView):
    @extend_schema(
        request=IdentifierSerializer,
        responses={
            201: dict,
            409: error_response("CONFLICT: the identifier is registered already."),
        },
    )
    def post(self, request: Request, national_id: str) -> Response:
        data = _valid(IdentifierSerializer, request)
        identifier = provisioning.patient_identifier_add(
            actor=actor_of(request),
            national_id_value=national_id,
            institution_code=data["institution"],
            value=data["value"],
        )
        body = {
            "national_id": identifier.patient.national_id,
            "institution": identifier.institution.code,
            "value": identifier.value,
        }
        return Response(body, status=status.HTTP_201_CREATED)


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
