"""One error vocabulary and the one place it becomes HTTP: {"error": {"code", "message"}}."""

import logging
import sys
from collections.abc import Callable

import psycopg
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.html import escape
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from audit.errors import AuditUnavailable

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """An error the client can act on, with a stable code and a human sentence."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "INVALID"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        audit_message: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        # What an audit event of the refusal keeps, when the answer echoes what the log must
        # not hold in clear (a national identifier, a hospital's patient number).
        self.audit_message = audit_message or message
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "CONFLICT"


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "NOT_FOUND"


class Forbidden(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "FORBIDDEN"


_DRF_CODES = {
    exceptions.NotAuthenticated: "UNAUTHENTICATED",
    exceptions.AuthenticationFailed: "UNAUTHENTICATED",
    exceptions.PermissionDenied: "FORBIDDEN",
    exceptions.NotFound: "NOT_FOUND",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    exceptions.Throttled: "THROTTLED",
    exceptions.ParseError: "INVALID",
    exceptions.ValidationError: "INVALID",
}


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _flatten(detail, prefix: str = "") -> list[str]:
    """Validation details as 'field: problem' sentences, so the message names the field."""
    if isinstance(detail, dict):
        out: list[str] = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            out += _flatten(value, f"{prefix}.{name}" if prefix and name else name or prefix)
        return out
    if isinstance(detail, list):
        return [msg for item in detail for msg in _flatten(item, prefix)]
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def _drf_message(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "; ".join(_flatten(exc.detail)) or "Invalid input."
    if isinstance(exc, exceptions.ParseError):
        return f"Malformed request body: {exc.detail}"
    return str(exc.detail)


# Django's refusals of what a client sent; any other SuspiciousOperation (a storage name
# that leaves its folder, say) is the server's, left to the 500 below.
_REQUEST_REFUSALS = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


def _request_refused(exc: SuspiciousOperation) -> Response:
    """Django's refusals of a request's size or shape, raised where DRF reads the request
    (Django's own handler would answer 400 outside a DRF view)."""
    logger.warning("Request refused: %s", exc.__class__.__name__)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("TOO_LARGE", "The request body is larger than this endpoint accepts."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, TooManyFieldsSent):
        message = "The request has more parameters than the gateway accepts."
    else:
        message = "The request has more files than the gateway accepts."
    return Response(error_body("INVALID", message), status=status.HTTP_400_BAD_REQUEST)


# PostgreSQL's codes of a server that is going or gone (an administrator's or a crash's
# termination, a shutdown, a server still starting), besides class 08 (connection).
_SERVER_GONE = {"57P01", "57P02", "57P03"}


def database_unreachable(exc: BaseException) -> bool:
    """Whether a database error says the database cannot be reached now (stopped,
    restarting, unreachable, a connection it ended), which the client may retry; any other
    (a missing table, a limit exceeded: a fault) stays the server's error."""
    if isinstance(exc, InterfaceError):  # a connection already closed
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if isinstance(cause, psycopg.Error):
        code = cause.sqlstate
        return code is None or code.startswith("08") or code in _SERVER_GONE
    # SQLite (make run): only a database busy with another writer is worth retrying.
    return "database is locked" in str(exc)


def _database_unavailable(exc: BaseException) -> dict:
    logger.error("Database unavailable: %s", exc.__class__.__name__)
    return error_body(
        "DATABASE_UNAVAILABLE", "The database is unavailable; try again in a few moments."
    )


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error leaves with the documented shape."""
    # Django's own exceptions, as DRF's handler converts them (and so that their message
    # is read from the converted one: Http404 has no .detail).
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, _REQUEST_REFUSALS):
        return _request_refused(exc)
    if isinstance(exc, ApplicationError):
        # Storage failures among them: studies.storage_errors raises the gateway's own disk
        # or bucket failing as a StorageUnavailable (503) or a StorageMisconfigured (500),
        # so that an OSError of anything else (a template, a settings file) stays a 500.
        return Response(error_body(exc.code, exc.message), status=exc.status_code)
    if isinstance(exc, AuditUnavailable):
        # Nothing was changed (the service's transaction rolled back with the audit row).
        logger.error("Audit log unavailable: %s", exc.__class__.__name__)
        return Response(
            error_body("AUDIT_UNAVAILABLE", "The audit log is unavailable; nothing was changed."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if database_unreachable(exc):
        return Response(_database_unavailable(exc), status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        return Response(
            error_body("SERVER_ERROR", "An unexpected error occurred; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "ERROR")
    response.data = error_body(code, _drf_message(exc))
    return response


# --- Django's own error views: JSON for the API, a page for a browser on the portal -------

_API_PATHS = ("/api/", "/dicomweb/")
_SERVER_ERROR_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
    '<body><h1>{title}</h1><p>{message}</p><p><a href="/">Back to the start</a></p></body></html>'
)


def _wants_page(request: HttpRequest) -> bool:
    """A browser on the portal's pages; API and DICOMweb clients always get the JSON shape."""
    if request.path.startswith(_API_PATHS):
        return False
    return "text/html" in request.headers.get("Accept", "")


# The portal's words for them: a patient at a browser has no use for "No such resource."
_PAGE_MESSAGES = {
    400: "The address or the form sent could not be understood.",
    403: "This page is not available to you.",
    404: "There is no page at this address.",
}


def _answer(request: HttpRequest, code: str, message: str, status: int) -> HttpResponse:
    if _wants_page(request):
        context = {"message": _PAGE_MESSAGES[status]}
        return render(request, "portal/error.html", context, status=status)
    return JsonResponse(error_body(code, message), status=status)


def error_400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _answer(request, "INVALID", "Bad request.", 400)


def error_403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _answer(request, "FORBIDDEN", "Forbidden.", 403)


def error_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _answer(request, "NOT_FOUND", "No such resource.", 404)


AUDIT_UNAVAILABLE_PAGE = (
    "The audit log is unavailable, so this cannot be shown or done now. Try again in a few moments."
)


def is_audit_unavailable(exc: BaseException) -> bool:
    """The audit log could not be written: raised by it, or the gate's deny that says so."""
    if isinstance(exc, AuditUnavailable):
        return True
    return isinstance(exc, ApplicationError) and exc.code == "AUDIT_UNAVAILABLE"


def audit_unavailable_answer(request: HttpRequest) -> HttpResponse:
    """503 for a request whose audit event could not be written: whatever it asked is refused
    (DESIGN.md: no audit, no answer), a page for the portal, the JSON shape for the API."""
    logger.error("Refused %s: the audit log is unavailable", request.path_info)
    if request.path.startswith(_API_PATHS):
        body = error_body("AUDIT_UNAVAILABLE", "The audit log is unavailable; try again later.")
        return JsonResponse(body, status=503)
    return render(request, "portal/error.html", {"message": AUDIT_UNAVAILABLE_PAGE}, status=503)


class AuditUnavailableMiddleware:
    """Any view whose audit event could not be written answers 503, not 500.

    The services roll back with their audit row, and the gate denies what it cannot audit;
    what reaches here escaped a page that writes its event itself (a log-in, a role refused,
    the DPO's search). DRF's views have their own handler (anim_gateway.errors).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        return audit_unavailable_answer(request) if is_audit_unavailable(exc) else None


def error_500(request: HttpRequest) -> HttpResponse:
    # Django calls this while handling the exception (a portal page's, say). The page is
    # plain text in a fixed frame, never a template: whatever failed may fail again there.
    exc = sys.exc_info()[1]
    if database_unreachable(exc):
        body, status = _database_unavailable(exc), 503
    else:
        body = error_body("SERVER_ERROR", "An unexpected error occurred; it has been logged.")
        status = 500
    if not _wants_page(request):
        return JsonResponse(body, status=status)
    title = "Unavailable for a moment" if status == 503 else "Something went wrong"
    page = _SERVER_ERROR_PAGE.format(title=title, message=escape(body["error"]["message"]))
    return HttpResponse(page, status=status, content_type="text/html; charset=utf-8")
