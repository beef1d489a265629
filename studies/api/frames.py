"""WADO-RS frames and rendered images: pixel data served by seeking, never whole in memory."""

import logging
import math
from collections.abc import Iterator

from django.http import HttpResponse
from rest_framework.request import Request

from anim_gateway.errors import ApplicationError
from audit.actions import Action
from consent import gate
from consent.access import serves_patient_data
from consent.authentication import actor_of
from studies import accept, access, big_endian, storage
from studies.api.dicomweb import DicomWebApi, multipart_response
from studies.dicom import InvalidDicom, read_frame
from studies.dicom_decode import decoded_frame
from studies.dicom_render import FORMATS, render_frame
from studies.frame_forms import NATIVE, frame_form
from studies.models import Instance
from studies.qido import whole_number

_BIG_ENDIAN = "1.2.840.10008.1.2.2"

logger = logging.getLogger(__name__)


def _instance(request: Request, study: str, series: str, instance: str, audit: str) -> Instance:
    return access.access_instance(
        actor_of(request),
        study_uid=study,
        series_uid=series,
        sop_uid=instance,
        action=gate.VIEW_IMAGES,
        audit_action=audit,
    )


def _value(instance: Instance, tag: str, default: object = None) -> object:
    values = instance.metadata.get(tag, {}).get("Value") or [default]
    return values[0]


def frame_numbers(raw: str, *, count: int) -> list[int]:
    """'1,3' -> [1, 3]; 400 naming the parameter when malformed or out of range."""
    try:
        # Empty items ("1,,2", "1,") are skipped; a list of none is refused below.
        numbers = [whole_number(n) for n in raw.split(",") if n.strip()]
    except ValueError as exc:
        raise ApplicationError("frames: a comma-separated list of frame numbers.") from exc
    if not numbers:
        raise ApplicationError("frames: a comma-separated list of frame numbers.")
    if any(n < 1 or n > count for n in numbers):
        raise ApplicationError(f"frames: frame numbers go from 1 to {count}.")
    # Each frame once, in the order asked: a repeated list must not multiply the response.
    return list(dict.fromkeys(numbers))


def _frame_size(instance: Instance) -> int:
    rows, columns = _value(instance, "00280010", 0), _value(instance, "00280011", 0)
    bits, samples = _value(instance, "00280100", 0), _value(instance, "00280002", 1)
    if _value(instance, "00280004") == "YBR_FULL_422":
        samples = 2  # subsampled chroma
    if not (rows and columns) or not bits or bits % 8:
        raise ApplicationError("frames: this instance's frames are not byte-addressable.")
    return int(rows) * int(columns) * int(samples) * int(bits) // 8


def _frame_parts(instance: Instance, numbers: list[int], part_type: str):
    """A part per frame, all read from one open object (opened once the answer starts, so
    that an answer never sent leaves nothing open)."""
    size = 0 if instance.transfer_syntax_uid not in NATIVE else _frame_size(instance)
    with storage.object_reader(key=instance.storage_key) as reader:
        for number in numbers:
            yield part_type, _frame_chunks(reader, instance, number, size)


def _frame_chunks(
    reader: storage.Reader, instance: Instance, number: int, size: int
) -> Iterator[bytes]:
    try:
        word = _big_endian_word(reader, instance)
        if word:
            yield from big_endian.little_endian_frame(
                reader,
                offset=instance.pixel_data_offset,
                index=number - 1,
                frame_size=size,
                word=word,
            )
            return
        yield read_frame(
            reader,
            transfer_syntax_uid=instance.transfer_syntax_uid,
            offset=instance.pixel_data_offset,
            index=number - 1,
            number_of_frames=instance.number_of_frames,
            frame_size=size,
        )
    except storage.ObjectUnavailable:
        return  # logged by storage; already streaming: the client sees a short part
    except InvalidDicom as exc:  # the stored bytes, corrupt: the part is short too
        logger.error("Frame %d of instance %s cannot be served: %s", number, instance.pk, exc)


def _big_endian_word(reader: storage.Reader, instance: Instance) -> int:
    """The width of the pixel words to turn round, 0 for none: PS3.18 8.7.3.3.1 serves
    uncompressed bulk data little endian, and a big-endian object stores its words the other
    way round."""
    if instance.transfer_syntax_uid != _BIG_ENDIAN:
        return 0
    bits = int(_value(instance, "00280100", 0) or 0)
    return big_endian.swapped_word(reader, offset=instance.pixel_data_offset, bits_allocated=bits)


@serves_patient_data
class FramesApi(DicomWebApi):
    """Frames as multipart/related: raw octets (native), the compressed bitstream, or that
    bitstream decoded to uncompressed octets, as the client accepts (PS3.18 8.7.3.3)."""

    def get(self, request: Request, study: str, series: str, instance: str, frames: str):
        found = _instance(request, study, series, instance, Action.STUDY_RETRIEVE)
        if found.pixel_data_offset is None or not found.number_of_frames:
            raise ApplicationError(
                "frames: this instance has no pixel data.", status_code=404, code="NOT_FOUND"
            )
        numbers = frame_numbers(frames, count=found.number_of_frames)
        form = frame_form(
            request.headers.get("Accept"), transfer_syntax_uid=found.transfer_syntax_uid
        )
        if form.decoded:
            first = _first_decoded(found, numbers[0])  # refused here, before any byte
            parts = _decoded_parts(found, numbers, first, form.part_type)
            return multipart_response(parts, form.part_type)
        if found.transfer_syntax_uid in NATIVE:
            _frame_size(found)  # refuse before streaming starts
        storage.object_open(key=found.storage_key).close()  # a lost object: refused here
        return multipart_response(_frame_parts(found, numbers, form.part_type), form.part_type)


def _first_decoded(instance: Instance, number: int) -> bytes:
    """The first frame asked, decoded before the answer starts: a frame that does not decode
    is 406 NOT_RENDERABLE, not a cut stream; a lost object is ObjectUnavailable."""
    try:
        with storage.object_reader(key=instance.storage_key) as reader:
            return decoded_frame(reader, index=number - 1)
    except InvalidDicom as exc:
        _log_undecodable(instance, number, exc)
        raise ApplicationError(
            f"frames: frame {number} of this instance cannot be decoded; its stored"
            " bitstream can be asked for with transfer-syntax=*.",
            code="NOT_RENDERABLE",
            status_code=406,
        ) from exc


def _decoded_parts(
    instance: Instance, numbers: list[int], first: bytes, part_type: str
) -> Iterator[tuple[str, list[bytes]]]:
    """The first frame, already decoded, then each other decoded from one open object as
    the client reads (one frame held at a time)."""
    yield part_type, [first]
    if len(numbers) == 1:
        return
    with storage.object_reader(key=instance.storage_key) as reader:
        for number in numbers[1:]:
            yield part_type, _decoded_chunks(reader, instance, number)


def _decoded_chunks(reader: storage.Reader, instance: Instance, number: int) -> Iterator[bytes]:
    try:
        yield decoded_frame(reader, index=number - 1)
    except storage.ObjectUnavailable:
        return  # logged by storage; already streaming: the client sees a short part
    except InvalidDicom as exc:  # the stored bitstream, corrupt: the part is short too
        _log_undecodable(instance, number, exc)


def _log_undecodable(instance: Instance, number: int, exc: Exception) -> None:
    # For the operators: the instance's key and the decoder's words, never patient data.
    logger.error("Frame %d of instance %s cannot be decoded: %s", number, instance.pk, exc)


@serves_patient_data
class RenderedApi(DicomWebApi):
    """A frame as JPEG (default) or PNG, with the dataset's window or ?window=center,width."""

    def get(
        self, request: Request, study: str, series: str, instance: str, frames: str = "1"
    ) -> HttpResponse:
        media_type = rendered_type(request)
        window = _window(request.query_params.get("window", ""))
        viewport = viewport_param(request.query_params.get("viewport", ""))
        quality = _quality(request.query_params.get("quality", ""))
        found = _instance(request, study, series, instance, Action.STUDY_RENDER)
        image = render_instance(
            found,
            frames=frames,
            media_type=media_type,
            window=window,
            viewport=viewport,
            quality=quality,
        )
        return HttpResponse(image, content_type=media_type)


def render_instance(
    found: Instance,
    *,
    frames: str,
    media_type: str,
    window: tuple[float, float] | None = None,
    viewport: tuple[int, int] | None = None,
    quality: int = 90,
    max_size: int | None = None,
) -> bytes:
    """The first frame of ``frames`` of an instance the gate already let through, rendered;
    404 when it holds no image, 406 NOT_RENDERABLE when the frame does not decode."""
    # A deflated instance keeps no offset (it counts in the inflated stream), yet renders.
    if found.pixel_data_offset is None and found.transfer_syntax_uid != "1.2.840.10008.1.2.1.99":
        raise ApplicationError(
            "This instance has no image to render.", status_code=404, code="NOT_FOUND"
        )
    index = frame_numbers(frames, count=max(found.number_of_frames, 1))[0] - 1
    try:
        with storage.object_reader(key=found.storage_key) as reader:
            return render_frame(
                reader,
                index=index,
                media_type=media_type,
                window=window,
                viewport=viewport,
                quality=quality,
                max_size=max_size,
            )
    except InvalidDicom as exc:
        raise ApplicationError(str(exc), code="NOT_RENDERABLE", status_code=406) from exc


def rendered_type(request: Request) -> str:
    """The most preferred of the formats the client accepts (PS3.18 8.7.8), JPEG for any."""
    wanted = request.query_params.get("accept") or request.headers.get("Accept")
    refused = accept.refused(wanted)
    media_type = accept.choose(wanted, lambda r: _rendered_offer(r, refused))
    if media_type is not None:
        return media_type
    raise ApplicationError(
        "Accept: rendered images are image/jpeg or image/png.",
        code="NOT_ACCEPTABLE",
        status_code=406,
    )


def _rendered_offer(media_range: accept.MediaRange, refused: frozenset[str]) -> str | None:
    wanted = media_range.media_type
    if wanted in FORMATS:
        return None if wanted in refused else wanted
    if wanted not in ("*/*", "image/*"):
        return None
    # JPEG first, for a wildcard, unless the client refused it.
    return next((f for f in FORMATS if not accept.refused_under(refused, f, wanted)), None)


# A viewport's sides, at most (PS3.18 8.3.5.1.3): a rendering is made in memory.
MAX_VIEWPORT = 4096


def viewport_param(raw: str) -> tuple[int, int] | None:
    """PS3.18 8.3.5.1.3's vw,vh: the whole image scaled to fit. A cropping region (sx, sy,
    sw, sh) is refused rather than ignored: the image would not be the one asked for."""
    if not raw:
        return None
    values = raw.split(",")
    if len(values) != 2:
        raise ApplicationError("viewport: vw,vh (a cropping region is not supported).")
    try:
        width, height = (whole_number(v) for v in values)
    except ValueError as exc:
        raise ApplicationError("viewport: vw,vh with whole numbers of pixels.") from exc
    if not (0 < width <= MAX_VIEWPORT and 0 < height <= MAX_VIEWPORT):
        raise ApplicationError(f"viewport: each side from 1 to {MAX_VIEWPORT} pixels.")
    return width, height


def _quality(raw: str) -> int:
    """PS3.18 8.3.5.1.2's quality, 1 to 100, for a lossy format (JPEG); 90 by default."""
    if not raw:
        return 90
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 100):
        raise ApplicationError("quality: a whole number from 1 to 100.")
    return int(raw)


WINDOW_LIMIT = 1e15
MIN_WINDOW_WIDTH = 1e-6


def _window(raw: str) -> tuple[float, float] | None:
    if not raw:
        return None
    try:
        center, width = (float(v) for v in raw.split(",")[:2])
    except ValueError as exc:
        raise ApplicationError("window: center,width[,function] with numbers.") from exc
    if not (math.isfinite(center) and math.isfinite(width)):
        raise ApplicationError("window: center and width must be finite numbers.")
    if width <= 0:
        raise ApplicationError("window: the width must be positive.")
    # Beyond what a Decimal String window (16 characters) can say, or a width whose scale
    # factor overflows: the arithmetic gives infinities and an image that means nothing.
    if abs(center) > WINDOW_LIMIT or not MIN_WINDOW_WIDTH <= width <= WINDOW_LIMIT:
        raise ApplicationError(
            f"window: the center within ±{WINDOW_LIMIT:g}, the width from "
            f"{MIN_WINDOW_WIDTH:g} to {WINDOW_LIMIT:g}."
        )
    return center, width
