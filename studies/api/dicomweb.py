"""DICOMweb (PS3.18): QIDO-RS, WADO-RS and STOW-RS, every request through the gate."""

import dataclasses
import functools
import itertools
import json
from collections.abc import Callable, Iterable, Iterator

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import get_script_prefix, reverse
from gunicorn.http.errors import ParseException
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from anim_gateway.errors import ApplicationError
from audit.actions import Action
from consent import gate
from consent.access import serves_patient_data
from consent.authentication import actor_of
from studies import (
    accept,
    access,
    bulkdata,
    dicom_json,
    dicom_xml,
    fixity,
    instance_forms,
    lookups,
    qido,
    selectors,
    storage,
)
from studies.dicom import is_valid_uid
from studies.ingest import IngestResult, IngestSession, study_ingest
from studies.multipart import (
    BodyTooLarge,
    MalformedMultipart,
    MultipartReader,
    multipart_stream,
    new_boundary,
    parse_content_type,
)
from studies.spool import Spooled

DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
# PS3.18 8.3.4.4.1's words for a search with results beyond this response.
MORE_RESULTS = (
    "The number of results exceeded the maximum supported by the server."
    " Additional results can be requested."
)


def warning_value(text: str) -> str:
    """A Warning header value in RFC 7234 5.5's form: code, agent, quoted text."""
    return f'299 anim-gateway "{text}"'


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


def accepted(request: Request) -> str | None:
    """What the client accepts: ?accept= where given (PS3.18 8.3.3.1), else the header."""
    return accept.requested(request.META.get("QUERY_STRING", ""), request.headers.get("Accept"))


def _json(body: object, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(body), content_type=DICOM_JSON, status=status)


def _url(request: Request, name: str, **kwargs: str) -> str:
    return request.build_absolute_uri(reverse(f"dicomweb:{name}", kwargs=kwargs))


def _studies_url(request: Request) -> str:
    """The absolute URL of /studies, reversed once per script prefix (every search needs
    it; the URL configuration does not change while the process runs)."""
    return request.build_absolute_uri(_studies_path(get_script_prefix()))


@functools.lru_cache(maxsize=8)  # bounded: the prefix comes from the (trusted) proxy
def _studies_path(prefix: str) -> str:
    # reverse() reads the prefix itself; the argument keys the cache on it.
    return reverse("dicomweb:studies")


def _dicomweb_root(request: Request) -> str:
    """The absolute URL of /dicomweb/, which stored bulk data markers are made relative to."""
    return _studies_url(request).removesuffix("studies")


JSON, XML = "json", "xml"


def _results_form(request: Request) -> str:
    """How search results and metadata are served: DICOM JSON (the default) or the XML form,
    multipart/related; type="application/dicom+xml" (required of metadata by PS3.18 10.4.4,
    offered for searches too); the most
    preferred of the ranges the client accepts (8.7.8), from ?accept= where given (8.3.3.1)."""
    wanted = accepted(request)
    refused = accept.refused(wanted)
    form = accept.choose(wanted, lambda media_range: _results_offer(media_range, refused))
    if form is None:
        raise ApplicationError(
            f"Accept: this resource is served as {DICOM_JSON}"
            f' or multipart/related; type="{DICOM_XML}".',
            code="NOT_ACCEPTABLE",
            status_code=406,
        )
    return form


_JSON_TYPES = frozenset((DICOM_JSON, "application/json", "application/*", "*/*"))


def _results_offer(media_range: accept.MediaRange, refused: frozenset[str]) -> str | None:
    media_type = media_range.media_type
    # JSON for its names and the wildcards, unless the client refused DICOM JSON.
    if media_type in _JSON_TYPES and not accept.refused_under(refused, DICOM_JSON, media_type):
        return JSON
    if media_type in ("*/*", "multipart/*"):
        # The XML form, the one multipart form, unless the client refused it.
        return None if accept.refused_under(refused, "multipart/related", media_type) else XML
    if media_type == "multipart/related":
        # Another type of part (application/dicom, say) is not served here.
        return XML if media_range.param("type").lower() == DICOM_XML else None
    return None


def multipart_response(
    parts: Iterable[tuple[str, Iterable[bytes]]], part_type: str
) -> StreamingHttpResponse:
    """Parts of ``part_type`` as multipart/related, whose type parameter is the bare media
    type (RFC 2387 3.1); the part type's own parameters (transfer-syntax) follow it, as in
    PS3.18's multipart/related; type="image/jpeg"; transfer-syntax=..."""
    boundary = new_boundary()
    media_type, _, params = (p.strip() for p in part_type.partition(";"))
    extra = f"; {params}" if params else ""
    return StreamingHttpResponse(
        multipart_stream(parts, boundary=boundary),
        content_type=f'multipart/related; type="{media_type}"{extra}; boundary={boundary}',
    )


def _dicom_parts(copies: list[tuple[str, str]]) -> Iterator[tuple[str, Iterator[bytes]]]:
    # The bytes served are the bytes stored, read chunk by chunk as the client takes them.
    for key, syntax in copies:
        yield dicom_part_type(syntax), storage.object_chunks(key=key)


def dicom_part_type(transfer_syntax_uid: str) -> str:
    """A part's Content-Type: application/dicom, with the syntax it is stored in (PS3.18
    8.7.3.5: a client that accepts several is told which it is given)."""
    if not transfer_syntax_uid:
        return "application/dicom"
    return f"application/dicom; transfer-syntax={transfer_syntax_uid}"


# --- QIDO-RS -----------------------------------------------------------------------------


@serves_patient_data
class StudiesApi(DicomWebApi):
    """GET: search for studies (QIDO-RS); POST: store instances (STOW-RS)."""

    def get(self, request: Request) -> HttpResponse:
        form = _results_form(request)
        query = qido.parse_query(request.query_params)
        page = access.studies_search(actor_of(request), query=query)
        # UIDs are digits and dots: one reverse() for the base, not one per result.
        base = _studies_url(request)
        results = (
            dicom_json.study_result_json(
                s, url=f"{base}/{s.study_uid}", includefield=query.includefield
            )
            for s in page.hits
        )
        if form == XML:
            return _search_response(list(results), form=XML, query=query, more=page.more)
        # A page may be short, even empty, where the gate withheld studies: the warning is
        # how a client knows to ask for the page at offset + limit.
        body = HttpResponse(f"[{','.join(results)}]", content_type=DICOM_JSON)
        return _warned(body, query, more=page.more)

    def post(self, request: Request) -> HttpResponse:
        return _store(request)


def _store(request: Request, study_uid: str = "") -> HttpResponse:
    """STOW-RS to /studies, or to /studies/{study}, which stores that study's instances only."""
    if study_uid and not is_valid_uid(study_uid):
        raise ApplicationError("study: the URL names no valid Study Instance UID.")
    actor = actor_of(request)
    _refuse_writer_without_institution(actor)
    session = IngestSession.for_writer(actor, target_study_uid=study_uid)
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
        study_url=lambda uid: _url(request, "study", study=uid),
    )
    stored = sum(r.ok for r in results)
    status = 200 if stored == len(results) else 202 if stored else 409
    return _json(body, status=status)


def _refuse_writer_without_institution(actor) -> None:
    """A token bound to no institution (a DPO's, a patient's, an administrator's) stores
    nothing. The gate says so, with its reason code, and audits the refusal as it does every
    other: before, the ingest session refused it alone, unaudited."""
    if actor.institution is None:
        gate.authorize(
            actor,
            gate.STORE,
            patient=None,
            audit_action=Action.STUDY_STORE,
            detail={"channel": actor.channel},
        )
        # The rule permits no store without an acting institution; should it ever, the
        # session still refuses (IngestSession.for_writer).


def _body_reader(request: Request) -> Callable[[int], bytes]:
    """How to read the body: bounded by Content-Length, or chunked where the server allows."""
    length = request.META.get("CONTENT_LENGTH") or ""
    # isdigit() alone takes "²" (a Latin-1 header byte), which int() refuses.
    if length.isascii() and length.isdigit():
        if int(length) > settings.STOW_MAX_BYTES:
            # Refused before a byte of the body is read.
            raise ApplicationError(
                f"The body is larger than the maximum of {settings.STOW_MAX_BYTES} bytes.",
                code="TOO_LARGE",
                status_code=413,
            )
        return _client_read(request._request.read)
    if request.META.get("wsgi.input_terminated"):
        # Chunked transfer encoding, de-chunked by the server (gunicorn); the reader stops
        # at STOW_MAX_BYTES.
        return _client_read(request.META["wsgi.input"].read)
    raise ApplicationError("Content-Length is required.", code="LENGTH_REQUIRED", status_code=411)


def _client_read(read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """``read``, with the client's connection failing under it (reset, timed out, closed
    inside a chunk: Django's UnreadablePostError, gunicorn's NoMoreData) or its chunked
    encoding malformed (gunicorn's InvalidChunkSize and the other ParseExceptions) refused
    as the client's fault, not answered 500: what was spooled of the body is discarded."""

    def guarded(size: int) -> bytes:
        try:
            return read(size)
        except (OSError, ParseException) as exc:
            raise ApplicationError(
                f"The body could not be read to its end ({type(exc).__name__})."
            ) from exc

    return guarded


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
    # RFC 2046 5.1.1: 1 to 70 ASCII characters (the reader looks for its bytes).
    if not 0 < len(boundary) <= 70 or not boundary.isascii():
        raise ApplicationError("Content-Type: a boundary parameter of 1 to 70 ASCII characters.")
    return boundary


def _store_parts(session: IngestSession, reader: MultipartReader) -> list[IngestResult]:
    """Spool every part, then ingest them together (one transaction for the request)."""
    results: list[IngestResult | None] = []  # None: a DICOM part, answered by study_ingest
    spooled: list[Spooled] = []
    try:
        for part in reader.parts():
            spooled.append(part.spooled)  # from here on, discarded on any failure
            if parse_content_type(part.content_type)[0] != "application/dicom":
                spooled.pop().discard()
                results.append(_failed(f"A part of type {part.content_type[:60]} was skipped."))
                continue
            results.append(None)
    except MalformedMultipart as exc:
        if not results:
            raise ApplicationError(f"Malformed multipart body: {exc}") from exc
        results.append(_failed(f"Malformed multipart body: {exc}"))
    except BodyTooLarge as exc:
        _discard(spooled)
        raise ApplicationError(str(exc), code="TOO_LARGE", status_code=413) from exc
    except BaseException:
        _discard(spooled)
        raise
    ingested = iter(study_ingest(session=session, spooled=spooled))
    return [result or next(ingested) for result in results]


def _discard(spooled: list[Spooled]) -> None:
    for item in spooled:
        item.discard()


def _failed(reason: str) -> IngestResult:
    return IngestResult(status="rejected", reason=reason, failure_code=0xC000)


@serves_patient_data
class StudySeriesSearchApi(DicomWebApi):
    def get(self, request: Request, study: str) -> HttpResponse:
        form = _results_form(request)
        query = qido.parse_query(request.query_params, "series")
        found = _study(request, study, gate.LIST_STUDIES, Action.STUDY_SEARCH)
        series, more = _page(query, lambda peek: selectors.series_list(study=found, query=peek))
        return _search_response(
            [
                dicom_json.series_result(
                    s,
                    url=_url(request, "series", study=study, series=s.series_uid),
                    includefield=query.includefield,
                )
                for s in series
            ],
            form=form,
            query=query,
            more=more,
        )


@serves_patient_data
class InstanceSearchApi(DicomWebApi):
    def get(self, request: Request, study: str, series: str | None = None) -> HttpResponse:
        form = _results_form(request)
        query = qido.parse_query(request.query_params, "instances")
        # includefield draws on the instances' whole stored header, what /metadata serves:
        # it needs the right to view images, which listing studies does not give (a
        # nurse's profession may list a patient's studies, not read their headers).
        action = gate.VIEW_IMAGES if query.includefield else gate.LIST_STUDIES
        found = _study(request, study, action, Action.STUDY_SEARCH)
        in_series = access.series_in(found, series) if series else None
        instances, more = _page(
            query, lambda peek: selectors.instance_list(study=found, series=in_series, query=peek)
        )
        results = [
            dicom_json.instance_result(
                i,
                url=_instance_url(request, i),
                includefield=query.includefield,
                with_series=series is None,
            )
            for i in instances
        ]
        # includefield may bring stored bulk data markers: served as this server's URLs.
        root = _dicomweb_root(request) if query.includefield else None
        return _search_response(results, form=form, query=query, more=more, root=root)


def _page(query: qido.Query, fetch: Callable[[qido.Query], list]) -> tuple[list, bool]:
    """A page of results, and whether more follow (one more row is read to know)."""
    found = fetch(dataclasses.replace(query, limit=query.limit + 1))
    return found[: query.limit], len(found) > query.limit


def _search_response(
    results: list, *, form: str, query: qido.Query, more: bool, root: str | None = None
) -> HttpResponse:
    """The results (DICOM JSON objects, or their text) as one JSON array, or one XML part
    each; stored bulk data markers as URLs under ``root``."""
    if form == XML:
        texts = [r if isinstance(r, str) else json.dumps(r) for r in results]
        return _warned(_xml_parts_response(iter([texts]), root=root), query, more=more)
    if root is None:
        return _warned(_json(results), query, more=more)
    text = bulkdata.absolute(json.dumps(results), root=root)
    return _warned(HttpResponse(text, content_type=DICOM_JSON), query, more=more)


def _warned(response: HttpResponse, query: qido.Query, *, more: bool) -> HttpResponse:
    """The search's warnings, in one Warning header (RFC 9110 5.3: a list, comma-separated)."""
    texts = [*query.warnings, MORE_RESULTS] if more else query.warnings
    if texts:
        response["Warning"] = ", ".join(warning_value(text) for text in texts)
    return response


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
        wanted = accepted(request)
        options = instance_forms.choices(wanted)  # before any lookup: a form never served
        if options[0].form == instance_forms.METADATA:
            return _metadata(request, study, series, instance, form=JSON)
        refused = instance_forms.refused_syntaxes(wanted)
        if instance:
            stored = access.access_stored_object(
                actor_of(request),
                study_uid=study,
                series_uid=series,
                sop_uid=instance,
                action=gate.VIEW_IMAGES,
                audit_action=Action.STUDY_RETRIEVE,
            )
            form = instance_forms.served_form(
                options, [stored.transfer_syntax], refused=refused, one=True
            )
            return _instance_response(stored, multipart=form == instance_forms.MULTIPART)
        found = _study_row(request, study, Action.STUDY_RETRIEVE)
        in_series = access.series_in(found, series) if series else None
        copies = selectors.stored_copies(study=found, series=in_series)
        syntaxes = {copy.transfer_syntax for copy in copies}
        instance_forms.served_form(options, syntaxes, refused=refused, one=False)
        # Those that failed their fixity check are left out as lost ones are.
        unreadable = fixity.unreadable_keys(
            actor_of(request), study=found, copies=copies, audit_action=Action.STUDY_RETRIEVE
        )
        return _partial_if_lost([(c.key, c.transfer_syntax) for c in copies], unreadable)


@serves_patient_data
class StudyApi(RetrieveApi):
    """GET: a study (WADO-RS); POST: store instances of this study (STOW-RS)."""

    def post(self, request: Request, study: str) -> HttpResponse:
        return _store(request, study)


def _partial_if_lost(copies: list[tuple[str, str]], missing: list[str]) -> StreamingHttpResponse:
    """The instances still readable (key and transfer syntax), as 206 Partial Content with a
    Warning saying how many are not (PS3.18's Retrieve transaction); none readable is the
    server's error, not an empty answer. The status in the warning is C-GET's for "one or
    more failures"."""
    if missing and len(missing) == len(copies):
        raise storage.ObjectUnavailable(what="copies of these instances")
    lost = set(missing)
    response = multipart_response(
        _dicom_parts([c for c in copies if c[0] not in lost]), "application/dicom"
    )
    if missing:
        response.status_code = 206
        # 206 answers a Range request in HTTP: no cache should keep this one as the study.
        response["Cache-Control"] = "no-store"
        response["Warning"] = (
            f'299 anim-gateway "B000: {len(missing)} of {len(copies)} instances cannot be read;'
            ' the error has been logged."'
        )
    return response


def _study_row(request: Request, study_uid: str, audit_action: str) -> lookups.StudyRow:
    return access.access_study_row(
        actor_of(request), study_uid=study_uid, action=gate.VIEW_IMAGES, audit_action=audit_action
    )


def _instance_response(stored: lookups.StoredObject, *, multipart: bool) -> HttpResponse:
    """One instance's stored bytes: a small one in one piece with its length, a larger one
    streamed chunk by chunk."""
    part_type = dicom_part_type(stored.transfer_syntax)
    if stored.size > lookups.SMALL_OBJECT:
        # Opened before the answer starts: a lost object is an error, not a cut stream.
        chunks = storage.object_chunks(key=stored.key)
        if not multipart:
            return StreamingHttpResponse(chunks, content_type="application/dicom")
        return multipart_response([(part_type, chunks)], "application/dicom")
    data = b"".join(storage.object_chunks(key=stored.key))
    if not multipart:
        return _whole(data, "application/dicom")
    boundary = new_boundary()
    body = b"".join(multipart_stream([(part_type, [data])], boundary=boundary))
    return _whole(body, f'multipart/related; type="application/dicom"; boundary={boundary}')


def _whole(body: bytes, content_type: str) -> StreamingHttpResponse:
    """A body already in memory, as one chunk with its Content-Length (no chunked encoding),
    in the same response class as the streamed ones."""
    response = StreamingHttpResponse([body], content_type=content_type)
    response["Content-Length"] = str(len(body))
    return response


@serves_patient_data
class MetadataApi(DicomWebApi):
    """The DICOM JSON, or XML, of a study's, series' or instance's headers, from the index."""

    def get(
        self, request: Request, study: str, series: str | None = None, instance: str | None = None
    ) -> HttpResponse:
        form = _results_form(request)
        return _metadata(request, study, series, instance, form=form)


def _metadata(
    request: Request, study: str, series: str | None, instance: str | None, *, form: str = JSON
) -> HttpResponse:
    """The headers of a study's, series' or instance's instances, from the index alone: one
    DICOM JSON array, or one XML part per instance; the same gated lookup for both."""
    texts = _metadata_texts(request, study, series, instance)
    root = _dicomweb_root(request)
    if form == XML:
        return _xml_parts_response(texts, root=root)
    return _json_array_response(texts, root=root)


def _metadata_texts(
    request: Request, study: str, series: str | None, instance: str | None
) -> Iterator[list[str]]:
    """The stored DICOM JSON texts, once the gate has permitted reading them (here, before
    the lists are read: the gate decides and audits when this is called, not when read)."""
    if instance:
        one = access.access_instance(
            actor_of(request),
            study_uid=study,
            series_uid=series,
            sop_uid=instance,
            action=gate.VIEW_IMAGES,
            audit_action=Action.STUDY_METADATA,
        )
        return iter([[json.dumps(one.metadata)]])
    found = _study_row(request, study, Action.STUDY_METADATA)
    in_series = access.series_in(found, series) if series else None
    return lookups.metadata_texts(study=found, series_id=in_series.pk if in_series else None)


def _xml_parts_response(chunks: Iterator[list[str]], *, root: str | None) -> HttpResponse:
    """One application/dicom+xml part per DICOM JSON text, rendered as the client takes
    them (one at a time in memory); bulk data markers as URLs under ``root``. The first
    list is read before the answer starts: a database error is an error status, not a cut
    stream. No texts, an empty body: a multipart body holds at least one part (RFC 2046
    5.1.1), and PS3.18 answers a UPS search that matches nothing so in the XML form."""
    texts = itertools.chain.from_iterable(chunks)
    first = next(texts, None)
    if first is None:
        content_type = f'multipart/related; type="{DICOM_XML}"; boundary={new_boundary()}'
        return HttpResponse(b"", content_type=content_type)
    parts = ((DICOM_XML, _xml_of(text, root=root)) for text in itertools.chain([first], texts))
    return multipart_response(parts, DICOM_XML)


def _xml_of(text: str, *, root: str | None) -> Iterator[bytes]:
    # A generator: rendered when its part is sent, not before.
    if root is not None:
        text = bulkdata.absolute(text, root=root)
    yield dicom_xml.native_model_from_text(text)


def _json_array_response(chunks: Iterator[list[str]], *, root: str) -> StreamingHttpResponse:
    """A JSON array of items already encoded, from lists of them: in one piece when there is
    one list, streamed list by list otherwise; bulk data markers as URLs under ``root``."""
    first = next(chunks, [])
    second = next(chunks, None)
    if second is None:
        body = bulkdata.absolute(f"[{','.join(first)}]", root=root)
        return _whole(body.encode(), DICOM_JSON)
    pieces = _json_array_pieces([first, second], chunks, root=root)
    return StreamingHttpResponse(pieces, content_type=DICOM_JSON)


def _json_array_pieces(
    head: list[list[str]], rest: Iterator[list[str]], *, root: str
) -> Iterator[bytes]:
    yield b"["
    separator = ""
    for texts in itertools.chain(head, rest):
        if texts:
            yield bulkdata.absolute(separator + ",".join(texts), root=root).encode()
            separator = ","
    yield b"]"
