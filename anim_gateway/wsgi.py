"""WSGI entry point."""

import json
import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver
from django.utils.http import parse_header_parameters

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anim_gateway.settings")
django_application = get_wsgi_application()
# runserver refuses to start without it; gunicorn would start and answer every request 400.
if not settings.DEBUG and not settings.ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is not set: outside DEBUG=True every request would be refused (400). "
        "Set it to the gateway's host names, comma-separated (gateway.example.lu)."
    )
# The URLconf, and every view module it imports, loaded now rather than on a worker's first
# request (0.4 s, paid by whichever request came first to each worker): gunicorn imports
# this module before it forks (preload_app), so every worker starts with them loaded.
get_resolver().url_patterns  # noqa: B018 (a cached property: reading it loads them)


def application(environ: dict, start_response):
    """Django's application, after a check it cannot make itself: Django reads the
    Content-Type while building the request, before any middleware, and an RFC 2231
    parameter in a charset that cannot decode it (type*=idna''x) raises there, which the
    server answers with a bare 500."""
    try:
        parse_header_parameters(environ.get("CONTENT_TYPE", ""))
    except (LookupError, UnicodeError, ValueError):
        return _bad_request(start_response, "Content-Type: a parameter cannot be decoded.")
    return django_application(environ, start_response)


def _bad_request(start_response, message: str) -> list[bytes]:
    # The project's error shape (anim_gateway.errors), without the request Django could not build.
    body = json.dumps({"error": {"code": "INVALID", "message": message}}).encode()
    start_response(
        "400 Bad Request",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
