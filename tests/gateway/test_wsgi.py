"""The WSGI entry point: a 400 for what Django cannot build a request from; everything a
request needs loaded when it is imported."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from anim_gateway.wsgi import application


def _call(content_type: str) -> tuple[str, dict]:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/dicomweb/studies",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": "0",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
    }
    answer = {}

    def start_response(status: str, headers: list) -> None:
        answer.update(status=status, headers=dict(headers))

    body = b"".join(application(environ, start_response))
    return answer["status"], json.loads(body) if body else {}


@pytest.mark.parametrize("charset", ["idna", "undefined", "no-such-codec"])
def test_an_undecodable_content_type_parameter_is_a_400(charset):
    """Django raises while building the request (before any middleware): a bare 500."""
    status, body = _call(f"multipart/related; type*={charset}''b")
    assert status.startswith("400")
    assert body == {
        "error": {"code": "INVALID", "message": "Content-Type: a parameter cannot be decoded."}
    }


@pytest.mark.django_db
def test_other_requests_reach_django():
    """Unauthenticated STOW-RS: Django's own 401, so the request went through."""
    status, body = _call('multipart/related; type="application/dicom"; boundary=b')
    assert status.startswith("401")
    assert body["error"]["code"] == "UNAUTHENTICATED"


def test_importing_it_loads_the_urlconf_and_the_views_before_any_request(process_env):
    """gunicorn imports the entry point, then forks its workers (preload_app): what the import
    loads, every worker starts with, and no worker's first request waits for it."""
    code = (
        "import sys; import anim_gateway.wsgi; from django.db import connections; "
        "print(*(m in sys.modules for m in ('anim_gateway.urls', 'studies.api.dicomweb')), "
        # No database connection yet: the forked workers must not share one.
        "all(c.connection is None for c in connections.all()))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env=process_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["True", "True", "True"]
