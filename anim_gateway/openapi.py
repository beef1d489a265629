"""OpenAPI: the error envelope, and the error statuses every /api/v1/ operation declares."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetail(serializers.Serializer):
    code = serializers.CharField(help_text="A stable code: INVALID, NO_CONSENT, ... (api-notes).")
    message = serializers.CharField(help_text="A human sentence naming what is at fault.")


class Error(serializers.Serializer):
    """The body of every 4xx and 5xx answer (anim_gateway.errors.error_body)."""

    error = ErrorDetail()


def error_response(description: str) -> OpenApiResponse:
    """An error status a view declares itself in extend_schema (a 409, say)."""
    return OpenApiResponse(Error, description=description)


# Statuses every operation can answer, whatever it does.
COMMON_ERRORS = {
    "400": "INVALID: a parameter, header or body refused; the message names it.",
    "401": "UNAUTHENTICATED: no valid token or session.",
    "403": "FORBIDDEN, ROLE_NOT_ALLOWED or another of the gate's reasons (NO_CONSENT, say).",
    "500": "SERVER_ERROR (or GATE_NOT_CONSULTED): a defect; it has been logged.",
    "503": "AUDIT_UNAVAILABLE (the audit log could not be written: nothing was served or "
    "changed) or DATABASE_UNAVAILABLE; try again later.",
}
# Where the path or X-Act-For names a patient, a study or a row.
NOT_FOUND = {"404": "NOT_FOUND: no such resource, or one the caller may not know of."}
# Where the operation reads a JSON body.
BODY_ERRORS = {
    "413": "TOO_LARGE: the body is over the maximum the gateway accepts.",
    "415": "UNSUPPORTED_MEDIA_TYPE: the body is not JSON.",
}
ACT_FOR = "X-Act-For"


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's, with the error responses of the API added to its operations."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None or not path.startswith("/api/v1/"):
            return operation
        ref = self.resolve_serializer(Error, "response").ref
        responses = operation["responses"]
        for status, description in self._error_statuses(operation).items():
            content = {"application/json": {"schema": dict(ref)}}
            responses.setdefault(status, {"content": content, "description": description})
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _error_statuses(self, operation: dict) -> dict[str, str]:
        statuses = dict(COMMON_ERRORS)
        names = {p["name"] for p in operation.get("parameters", [])}
        if "{" in self.path or ACT_FOR in names:
            statuses.update(NOT_FOUND)
        if "requestBody" in operation:
            statuses.update(BODY_ERRORS)
        return statuses
