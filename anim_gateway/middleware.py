"""Request id (taken from X-Request-ID when sane, generated otherwise) and response headers."""

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get("X-Request-ID", "")
        request.request_id = supplied if _SAFE_REQUEST_ID.match(supplied) else uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


class NoStoreMiddleware:
    """Every response the application makes is kept by no cache.

    Patient data leaves as portal pages, REST JSON, DICOMweb bytes and rendered images, and
    is viewed on shared hospital workstations: the next user must find none of it in the
    browser's cache. Static files never get here (WhiteNoise answers them first).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "no-store" not in response.get("Cache-Control", ""):
            add_never_cache_headers(response)
        return response


# The portal's pages load their own script, stylesheet and images only: injected markup can
# run nothing, load nothing from elsewhere, and send no form elsewhere.
PORTAL_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Anything else (JSON, DICOM, images) is never a document: if a browser is made to open one
# as such, it runs nothing.
NON_HTML_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"


class ContentSecurityPolicyMiddleware:
    """A Content-Security-Policy on every response that does not bring its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            html = response.get("Content-Type", "").startswith("text/html")
            response["Content-Security-Policy"] = PORTAL_POLICY if html else NON_HTML_POLICY
        return response


def client_address(request: HttpRequest) -> str:
    """The peer address; proxies are not trusted unless the deployment rewrites REMOTE_ADDR."""
    return request.META.get("REMOTE_ADDR", "")
