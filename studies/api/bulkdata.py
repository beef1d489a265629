"""WADO-RS bulk data (PS3.18 10.4.1.1.5): a value a header references, read from the object."""

from django.http import StreamingHttpResponse
from rest_framework.request import Request

from anim_gateway.errors import ApplicationError, NotFound
from audit.actions import Action
from consent import gate
from consent.access import serves_patient_data
from consent.authentication import actor_of
from studies import accept, access, bulkdata, storage
from studies.api.dicomweb import DicomWebApi, accepted, multipart_response

OCTETS = "application/octet-stream"
MULTIPART, BARE = "multipart", "bare"


def _form(request: Request) -> str:
    """multipart/related; type="application/octet-stream" unless the client prefers a bare
    application/octet-stream (PS3.18 8.7.3.3.2), from ?accept= where given (8.3.3.1); 406
    when it accepts neither."""
    wanted = accepted(request)
    refused = accept.refused(wanted)
    form = accept.choose(wanted, lambda media_range: _offer(media_range, refused))
    if form is None:
        raise ApplicationError(
            f'Accept: bulk data is served as multipart/related; type="{OCTETS}" or {OCTETS}.',
            code="NOT_ACCEPTABLE",
            status_code=406,
        )
    return form


def _offer(media_range: accept.MediaRange, refused: frozenset[str]) -> str | None:
    wanted = media_range.media_type
    if wanted in ("*/*", "multipart/*"):
        forms = (("multipart/related", MULTIPART), (OCTETS, BARE))
        usable = (f for t, f in forms if not accept.refused_under(refused, t, wanted))
        return next(usable, None)
    if not _little_endian(media_range.param("transfer-syntax", "*")):
        return None
    if wanted == "multipart/related":
        part_type = media_range.param("type", OCTETS).lower()
        return MULTIPART if part_type in (OCTETS, "application/*", "*/*") else None
    return BARE if wanted in (OCTETS, "application/*") else None


# The values are served as stored, little endian (big endian objects reference none): what
# PS3.18 8.7.3.3.2 makes the default, Explicit VR Little Endian; the same bytes in Implicit.
_SERVED_SYNTAXES = ("*", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2")


def _little_endian(transfer_syntax: str) -> bool:
    return transfer_syntax in _SERVED_SYNTAXES


@serves_patient_data
class BulkDataApi(DicomWebApi):
    """One bulk data value of an instance, exactly its stored bytes, streamed."""

    def get(
        self, request: Request, study: str, series: str, instance: str, reference: str
    ) -> StreamingHttpResponse:
        offset, length = bulkdata.parse_reference(reference)
        form = _form(request)
        found = access.access_instance_copy(
            actor_of(request),
            study_uid=study,
            series_uid=series,
            sop_uid=instance,
            action=gate.VIEW_IMAGES,
            audit_action=Action.STUDY_RETRIEVE,
        )
        path = bulkdata.instance_path(study_uid=study, series_uid=series, sop_uid=instance)
        # Only what the stored header references is served: never any range of the object.
        if not bulkdata.is_referenced(found.metadata, instance=path, reference=reference):
            raise NotFound("reference: no such bulk data in this instance.")
        # Opened before the answer starts: a lost object is an error, not a cut stream.
        chunks = storage.object_chunks(key=found.storage_key, start=offset, length=length)
        if form == MULTIPART:
            return multipart_response([(OCTETS, chunks)], OCTETS)
        response = StreamingHttpResponse(chunks, content_type=OCTETS)
        response["Content-Length"] = str(length)
        return response
