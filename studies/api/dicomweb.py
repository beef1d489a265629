"""DICOMweb (PS3.18): QIDO-RS, WADO-RS and STOW-RS, every request through the gate."""

import json
from collections.abc import Callable, Iterable, Iterator

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from anim_gateway.errors import ApplicationError
from audit.actions import Action
from consent import gate
from consent.access import serves_patient_data
from consent.authentication import actor_of
from studies import access, dicom_json, qido, selectors, storage
from studies.ingest import IngestResult, IngestSession, instance_ingest
from studies.multipart import (
    BodyTooLarge,
    MalformedMultipart,
    MultipartReader,
    multipart_stream,
    new_boundary,
    parse_content_type,
)

DICOM_JSON = "application/dicom+json"


class _ErrorsAsJson(BaseContentNegotiation):
    """Successes are built by hand with DICOM media types; errors are always our JSON."""

    def select_parser(self, request: Request, parsers: list) -> None:
        return None

    def select_renderer(self, request: Request, renderers: list, format_suffix=None) -> tuple:
        return renderers[0], renderers[0].media_type


class DicomWebApi(APIView):
    # DICOMweb is specified by PS3.18, not by the OpenAPI schema of the JSON API.
    schema = None
    content_negotiation_class = _ErrorsAsJson
    renderer_classes = [JSONRenderer]
    parser_classes: list = []


def _json(body: object, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(body), content_type=DICOM_JSON, status=status)


def _url(request: Request, name: str, **kwargs: str) -> str:
    return request.build_absolute_uri(reverse(f"dicomweb:{name}", kwargs=kwargs))


def _wants_multipart(request: Request) -> bool:
    """True for multipart/related, False for a bare application/dicom (one instance)."""
    accept = request.headers.get("Accept", "*/*")
    if any(t in accept for t in ("multipart/related", "*/*", "multipart/*")):
        return True
    if "application/dicom" in accept:
        return False
    raise ApplicationError(
        'Accept: this resource is served as multipart/related; type="application/dicom".',
        code="NOT_ACCEPTABLE",
        status_code=406,
    )


def multipart_response(
    parts: Iterable[tuple[str, Iterable[bytes]]], part_type: str
) -> StreamingHttpResponse:
    boundary = new_boundary()
    return StreamingHttpResponse(
        multipart_stream(parts, boundary=boundary),
        content_type=f'multipart/related; type="{part_type}"; boundary={boundary}',
    )


def _dicom_parts(keys: list[str]) -> Iterator[tuple[str, Iterator[bytes]]]:
    # The bytes served are the bytes stored, read chunk by chunk as the client takes them.
    for key in keys:
        yield "application/dicom", storage.object_chunks(key=key)


def _json_array(items: Iterable[dict]) -> Iterator[bytes]:
    yield b"["
    for n, item in enumerate(items):
        yield (b"," if n else b"") + json.dumps(item).encode()
    yield b"]"


# --- QIDO-RS -----------------------------------------------------------------------------


@serves_patient_data
class StudiesApi(DicomWebApi):
    """GET: search for studies (QIDO-RS); POST: store instances (STOW-RS)."""

    def get(self, request: Request) -> HttpResponse:
        query = qido.parse_query(request.query_params)
        studies = access.studies_search(actor_of(request), query=query)
        # UIDs are digits and dots: one reverse() for the base, not one per result.
        base = _url(request, "studies")
        return _json(
            [
                dicom_json.study_result(
                    s,
                    url=f"{base}/{s.study_uid}",
                    includefield=query.includefield,
                )
                for s in studies
            ]
        )

    def post(self, request: Request) -> HttpResponse:
        session = IngestSession.for_writer(actor_of(request))
        read = _body_reader(request)
        reader = MultipartReader(
            read, boundary=_stow_boundary(request), max_bytes=settings.STOW_MAX_BYTES
        )
        results = _store_parts(session, reader)
        if not results:
            raise ApplicationError("The body holds no DICOM part.")
        body = dicom_json.store_response(
            results,
            instance_url=lambda r: _url(
                request,
                "instance",
                study=r.study_uid,
                series=r.series_uid,
                instance=r.sop_instance_uid,
            ),
        )
        stored = sum(r.ok for r in results)
        status = 200 if stored == len(results) else 202 if stored else 409
        return _json(body, status=status)


def _body_reader(request: Request) -> Callable[[int], bytes]:
    """How to read the body: bounded by Content-Length, or chunked where the server allows."""
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        if int(length) > settings.STOW_MAX_BYTES:
            # Refused before a byte of the body is read.
            raise ApplicationError(
                f"The body is larger than the maximum of {settings.STOW_MAX_BYTES} bytes.",
                code="TOO_LARGE",
                status_code=413,
            )
        return request._request.read
    if request.META.get("wsgi.input_terminated"):
        # Chunked transfer encoding, de-chunked by the server (gunicorn); the reader stops
        # at STOW_MAX_BYTES.
        return request.META["wsgi.input"].read
    raise ApplicationError("Content-Length is required.", code="LENGTH_REQUIRED", status_code=411)


def _stow_boundary(request: Request) -> str:
    media_type, params = parse_content_type(request.META.get("CONTENT_TYPE", ""))
    part_type = params.get("type", "application/dicom").lower()
    if media_type != "multipart/related" or part_type != "application/dicom":
        raise ApplicationError(
            'Content-Type: send multipart/related; type="application/dicom".',
            code="UNSUPPORTED_MEDIA_TYPE",
            status_code=415,
        )
    boundary = params.get("boundary", "")
    if not 0 < len(boundary) <= 70:
        raise ApplicationError("Content-Type: a boundary parameter of 1 to 70 characters.")
    return boundary


def _store_parts(session: IngestSession, reader: MultipartReader) -> list[IngestResult]:
    results = []
    try:
        for part in reader.parts():
            if parse_content_type(part.content_type)[0] != "application/dicom":
                part.spooled.discard()
                results.append(_failed(f"A part of type {part.content_type[:60]} was skipped."))
                continue
            results.append(instance_ingest(session=session, spooled=part.spooled))
    except MalformedMultipart as exc:
        if not results:
            raise ApplicationError(f"Malformed multipart body: {exc}") from exc
        results.append(_failed(f"Malformed multipart body: {exc}"))
    except BodyTooLarge as exc:
        raise ApplicationError(str(exc), code="TOO_LARGE", status_code=413) from exc
    return results


def _failed(reason: str) -> IngestResult:
    return IngestResult(status="rejected", reason=reason, failure_code=0xC000)


@serves_patient_data
class StudySeriesSearchApi(DicomWebApi):
    def get(self, request: Request, study: str) -> HttpResponse:
        query = qido.parse_query(request.query_params)
        found = _study(request, study, gate.LIST_STUDIES, Action.STUDY_SEARCH)
        return _json(
            [
                dicom_json.series_result(
                    s,
                    url=_url(request, "series", study=study, series=s.series_uid),
                    includefield=query.includefield,
                )
                for s in selectors.series_list(study=found, query=query)
            ]
        )


@serves_patient_data
class InstanceSearchApi(DicomWebApi):
    def get(self, request: Request, study: str, series: str | None = None) -> HttpResponse:
        query = qido.parse_query(request.query_params)
        found = _study(request, study, gate.LIST_STUDIES, Action.STUDY_SEARCH)
        in_series = access.series_in(found, series) if series else None
        instances = selectors.instance_list(study=found, series=in_series, query=query)
        return _json(
            [
                dicom_json.instance_result(
                    i,
                    url=_instance_url(request, i),
                    includefield=query.includefield,
                )
                for i in instances
            ]
        )


def _instance_url(request: Request, instance) -> str:
    return _url(
        request,
        "instance",
        study=instance.study.study_uid,
        series=instance.series.series_uid,
        instance=instance.sop_instance_uid,
    )


def _study(request: Request, study_uid: str, action: str, audit_action: str):
    return access.access_study(
        actor_of(request), study_uid=study_uid, action=action, audit_action=audit_action
    )


# --- WADO-RS -----------------------------------------------------------------------------


@serves_patient_data
class RetrieveApi(DicomWebApi):
    """A study, a series or an instance as multipart/related application/dicom."""

    def get(
        self, request: Request, study: str, series: str | None = None, instance: str | None = None
    ) -> HttpResponse:
        multipart = _wants_multipart(request)
        if instance:
            one = access.access_instance(
                actor_of(request),
                study_uid=study,
                series_uid=series,
                sop_uid=instance,
                action=gate.VIEW_IMAGES,
                audit_action=Action.STUDY_RETRIEVE,
                metadata=False,
            )
            keys = [one.storage_key]
            if not multipart:
                return StreamingHttpResponse(
                    storage.object_chunks(key=keys[0]), content_type="application/dicom"
                )
        else:
            found = _study(request, study, gate.VIEW_IMAGES, Action.STUDY_RETRIEVE)
            in_series = access.series_in(found, series) if series else None
            keys = selectors.instance_keys(study=found, series=in_series)
        return multipart_response(_dicom_parts(keys), "application/dicom")


@serves_patient_data
class MetadataApi(DicomWebApi):
    """The DICOM JSON of a study's, series' or instance's headers, from the index alone."""

    def get(
        self, request: Request, study: str, series: str | None = None, instance: str | None = None
    ) -> HttpResponse:
        if instance:
            one = access.access_instance(
                actor_of(request),
                study_uid=study,
                series_uid=series,
                sop_uid=instance,
                action=gate.VIEW_IMAGES,
                audit_action=Action.STUDY_METADATA,
            )
            items: Iterable[dict] = [one.metadata]
        else:
            found = _study(request, study, gate.VIEW_IMAGES, Action.STUDY_METADATA)
            in_series = access.series_in(found, series) if series else None
            items = selectors.instance_metadata(study=found, series=in_series)
        return StreamingHttpResponse(_json_array(items), content_type=DICOM_JSON)
