"""The DPO's audit API and the patient's access log: thin views over selectors and services."""

from django.core.validators import RegexValidator
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from anim_gateway.api_fields import DateTimeField
from anim_gateway.errors import ApplicationError
from audit import exports
from audit.actions import Action, Basis, Outcome, describe, describe_for_patient
from audit.errors import AuditUnavailable
from audit.events import Event
from audit.models import AuditEvent
from audit.permissions import IsDpo
from audit.selectors import EventFilters, access_log_list, event_filtered, event_list
from audit.services import append
from audit.verification import verify_chain

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 200


class AuditServiceUnavailable(ApplicationError):
    """The audit log could not be written: nothing is served without it."""

    status_code = 503
    code = "AUDIT_UNAVAILABLE"


def _actor_fields(request: Request) -> dict:
    actor = request.auth
    if hasattr(actor, "audit_fields"):
        return actor.audit_fields()
    return {
        "actor_role": getattr(actor, "role", ""),
        "actor_username": getattr(actor, "username", ""),
    }


def audit_request(
    request: Request, action: str, *, outcome: str = Outcome.PERMIT, **fields
) -> None:
    """Write the audit row of a request to the audit API itself; no row, no answer."""
    try:
        append(Event(action=action, outcome=outcome, **_actor_fields(request), **fields))
    except AuditUnavailable as exc:
        raise AuditServiceUnavailable(
            "The audit log is unavailable; nothing is served without it."
        ) from exc


class AuditedApi(APIView):
    """Refusals by the permission classes are audited too: every attempt is."""

    audit_action = ""

    def permission_denied(self, request: Request, message: str | None = None, code=None) -> None:
        if request.auth is not None and self.audit_action:
            audit_request(
                request,
                self.audit_action,
                outcome=Outcome.DENY,
                reason_code="FORBIDDEN",
                message=message or "Refused.",
            )
        super().permission_denied(request, message=message, code=code)


class EventFilterInput(serializers.Serializer):
    patient = serializers.CharField(
        required=False,
        validators=[RegexValidator(r"^\d{13}$", "Must be a 13-digit national identifier.")],
    )
    actor = serializers.CharField(required=False, max_length=150)
    institution = serializers.CharField(required=False, max_length=32)
    action = serializers.ChoiceField(required=False, choices=Action.choices)
    outcome = serializers.ChoiceField(required=False, choices=Outcome.choices)
    basis = serializers.CharField(required=False, max_length=32)
    since = DateTimeField(required=False)
    until = DateTimeField(required=False)

    def validate_institution(self, value: str) -> str:
        return value.strip().upper()

    def validate(self, attrs: dict) -> dict:
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise ValidationError({"until": "Must be later than since."})
        return attrs


class PageInput(serializers.Serializer):
    cursor = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1)


class EventListInput(EventFilterInput, PageInput):
    pass


class ExportInput(EventFilterInput):
    format = serializers.ChoiceField(choices=sorted(exports.FORMATS))


def _validated(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    """Query parameters through a serializer; unknown or invalid ones are a 400 naming them."""
    params = {k: v for k, v in request.query_params.items() if v != ""}
    unknown = sorted(set(params) - set(serializer_class().fields))
    if unknown:
        raise ValidationError({name: "Unknown parameter." for name in unknown})
    serializer = serializer_class(data=params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _filters(data: dict) -> EventFilters:
    names = EventFilterInput().fields
    return EventFilters(**{k: v for k, v in data.items() if k in names})


def _page(request: Request, rows: list, size: int) -> tuple[list, str | None]:
    """Keyset pagination: the next page holds events older than the last one shown."""
    if len(rows) <= size:
        return rows, None
    rows = rows[:size]
    return rows, replace_query_param(request.build_absolute_uri(), "cursor", rows[-1].seq)


def _size(data: dict) -> int:
    return min(data.get("page_size", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)


def page_of(name: str, item: serializers.Serializer) -> serializers.Serializer:
    """The schema of a page that _page cut: {"results": [...], "next": URL or null}."""
    next_url = serializers.URLField(allow_null=True, help_text="The next page; null: the last.")
    return inline_serializer(name, {"results": item, "next": next_url})


class EventOutput(serializers.ModelSerializer):
    description = serializers.SerializerMethodField()
    basis_ids = serializers.JSONField()
    detail = serializers.JSONField()

    class Meta:
        model = AuditEvent
        fields = [
            "seq", "time", "action", "description", "outcome", "reason_code", "basis",
            "basis_ids", "actor_role", "actor_username", "actor_display", "actor_profession",
            "acting_institution", "on_behalf_of", "patient", "study_uid", "client_address",
            "request_id", "message", "detail", "hash",
        ]  # fmt: skip

    def get_description(self, event: AuditEvent) -> str:
        return describe(event.action)


class AuditEventListApi(AuditedApi):
    """GET audit/events/: the DPO's search, newest first; the search is itself audited."""

    permission_classes = [IsDpo]
    audit_action = Action.AUDIT_SEARCH

    @extend_schema(
        parameters=[EventListInput],
        operation_id="v1_audit_events_list",  # a list, as before its envelope was described
        responses=page_of("AuditEventPage", EventOutput(many=True)),
    )
    def get(self, request: Request) -> Response:
        data = _validated(EventListInput, request)
        filters, size = _filters(data), _size(data)
        rows = event_list(filters=filters, before=data.get("cursor"), limit=size + 1)
        rows, next_url = _page(request, rows, size)
        audit_request(
            request,
            Action.AUDIT_SEARCH,
            basis=Basis.DPO,
            detail={"filters": filters.used(), "returned": len(rows)},
        )
        return Response({"results": EventOutput(rows, many=True).data, "next": next_url})


class VerifyOutput(serializers.Serializer):
    valid = serializers.BooleanField()
    events = serializers.IntegerField()
    last_seq = serializers.IntegerField()
    first_invalid_seq = serializers.IntegerField(allow_null=True)
    problem = serializers.CharField(allow_null=True)
    checkpoints_checked = serializers.IntegerField()
    checkpoint = serializers.DictField(allow_null=True)


class AuditVerifyApi(AuditedApi):
    """GET audit/verify/: verify the whole chain and every checkpoint now."""

    permission_classes = [IsDpo]
    audit_action = Action.AUDIT_VERIFY

    @extend_schema(responses=VerifyOutput)
    def get(self, request: Request) -> Response:
        result = verify_chain()
        audit_request(
            request,
            Action.AUDIT_VERIFY,
            basis=Basis.DPO,
            outcome=Outcome.PERMIT,
            detail={"valid": result.valid, "first_invalid_seq": result.first_invalid_seq},
        )
        return Response(result.as_dict())


class IgnoreFormatParameter(DefaultContentNegotiation):
    """?format= names the export format here, not one of DRF's renderers."""

    def select_renderer(self, request: Request, renderers: list, format_suffix=None) -> tuple:
        return renderers[0], renderers[0].media_type


_EXPORT = (
    "An attachment: a FHIR Bundle of AuditEvents (format=fhir), DICOM audit messages "
    "(format=dicom) or CSV rows (format=csv)."
)
# The media type of each format (exports.CONTENT_TYPES), without csv's charset parameter.
EXPORT_RESPONSES = {
    (200, "application/fhir+json"): OpenApiResponse(OpenApiTypes.OBJECT, _EXPORT),
    (200, "application/xml"): OpenApiResponse(OpenApiTypes.STR, _EXPORT),
    (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, _EXPORT),
}


class AuditExportApi(AuditedApi):
    """GET audit/export/?format=fhir|dicom|csv: a filtered range, oldest first, streamed."""

    permission_classes = [IsDpo]
    audit_action = Action.AUDIT_EXPORT
    content_negotiation_class = IgnoreFormatParameter

    @extend_schema(parameters=[ExportInput], responses=EXPORT_RESPONSES)
    def get(self, request: Request) -> StreamingHttpResponse:
        data = _validated(ExportInput, request)
        filters, fmt = _filters(data), data["format"]
        audit_request(
            request,
            Action.AUDIT_EXPORT,
            basis=Basis.DPO,
            detail={"filters": filters.used(), "format": fmt},
        )
        rows = event_filtered(filters=filters).order_by("seq").iterator(chunk_size=2000)
        response = StreamingHttpResponse(
            exports.render(fmt, rows), content_type=exports.CONTENT_TYPES[fmt]
        )
        response["Content-Disposition"] = f'attachment; filename="{exports.filename(fmt)}"'
        return response


class AccessLogOutput(serializers.Serializer):
    seq = serializers.IntegerField()
    time = serializers.DateTimeField()
    action = serializers.CharField()
    what = serializers.SerializerMethodField()
    outcome = serializers.CharField()
    basis = serializers.CharField()
    emergency = serializers.SerializerMethodField()
    reason_code = serializers.CharField()
    message = serializers.CharField()
    who = serializers.SerializerMethodField()

    def get_what(self, event: AuditEvent) -> str:
        return describe_for_patient(event.action)  # the patient's own log, in their words

    def get_emergency(self, event: AuditEvent) -> bool:
        return event.basis == Basis.EMERGENCY or event.action.startswith("emergency.")

    def get_who(self, event: AuditEvent) -> dict:
        # The names as they were when it happened: the row stands alone (DESIGN.md, Audit).
        return {
            "name": event.actor_display or event.actor_username,
            "role": event.actor_role,
            "profession": event.actor_profession,
            "institution": event.acting_institution,
        }


class AccessLogApiBase(APIView):
    """GET me/access-log/: who did what with a patient's record, newest first.

    The audit app knows no patients: the consent app subclasses this view and says, through
    consent.gate (which also audits the read), whose record the caller may read.
    """

    def authorize_reader(self, request: Request) -> str:
        """The national id of the record the caller may read; raise when they may not."""
        raise NotImplementedError

    @extend_schema(
        parameters=[PageInput],
        operation_id="v1_me_access_log_list",  # a list, as before its envelope was described
        responses=page_of("AccessLogPage", AccessLogOutput(many=True)),
    )
    def get(self, request: Request) -> Response:
        data = _validated(PageInput, request)
        size = _size(data)
        national_id = self.authorize_reader(request)
        rows = access_log_list(national_id=national_id, before=data.get("cursor"), limit=size + 1)
        rows, next_url = _page(request, rows, size)
        return Response({"results": AccessLogOutput(rows, many=True).data, "next": next_url})
