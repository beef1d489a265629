"""SQL statements per gateway request, counted in-process with Django's test client."""

import uuid
from collections.abc import Callable

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext


def _count(call: Callable[[], object]) -> tuple[int, int]:
    call()  # warm caches (content types, the first audit checkpoint, imports)
    with CaptureQueriesContext(connection) as captured:
        response = call()
    status = getattr(response, "status_code", 0)
    if hasattr(response, "streaming_content"):
        for _ in response.streaming_content:
            pass
    return len(captured.captured_queries), status


def per_request(*, reader: str, system: str, study, clone: Callable[[], str]) -> list[tuple]:
    """(request, statements, HTTP status) for the common requests on one stored study.

    ``study`` holds study_uid, series_uid, patient_id and items[0].sop_uid; ``clone`` returns
    the path of a new Part 10 file (new UIDs) for the STOW-RS count.
    """
    client = Client(HTTP_HOST="127.0.0.1")
    read = {"HTTP_AUTHORIZATION": f"Bearer {reader}"}
    write = {"HTTP_AUTHORIZATION": f"Bearer {system}"}
    base = "/dicomweb/studies"
    instance = (
        f"{base}/{study.study_uid}/series/{study.series_uid}/instances/{study.items[0].sop_uid}"
    )
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    rows = []
    for label, call in (
        (
            "QIDO studies?PatientID=",
            lambda: client.get(base, {"PatientID": study.patient_id}, **read),
        ),
        ("QIDO studies?limit=50&offset=0", lambda: client.get(base, {"limit": 50}, **read)),
        ("WADO-RS instance", lambda: client.get(instance, HTTP_ACCEPT=accept, **read)),
        (
            "WADO-RS study /metadata",
            lambda: client.get(f"{base}/{study.study_uid}/metadata", **read),
        ),
    ):
        rows.append((label, *_count(call)))

    def stow() -> object:
        boundary = uuid.uuid4().hex
        with open(clone(), "rb") as fp:
            payload = fp.read()
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + payload
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return client.post(
            base,
            data=body,
            content_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
            **write,
        )

    rows.append(("STOW-RS 1 instance, new study", *_count(stow)))
    return rows
