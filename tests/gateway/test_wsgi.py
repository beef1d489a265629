"""The WSGI entry point answers what Django cannot build a request from with a 400."""

import io
import json

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
