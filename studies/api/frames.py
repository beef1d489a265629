"""WADO-RS frames: pixel data served by seeking, never whole in memory."""

import logging
from collections.abc import Iterator

from rest_framework.request import Request

from anim_gateway.errors import ApplicationError
from audit.actions import Action
from consent import gate
from consent.access import serves_patient_data
from consent.authentication import actor_of
from studies import access, big_endian, bit_frames, storage
from studies.api.dicomweb import DicomWebApi, accepted, multipart_response
from studies.dicom import InvalidDicom, read_frame
from studies.dicom_decode import decoded_frame
from studies.frame_forms import NATIVE, frame_form
from studies.models import Instance
from studies.qido import whole_number

_BIG_ENDIAN = "1.2.840.10008.1.2.2"

logger = logging.getLogger(__name__)


def viewable_instance(
    request: Request, study: str, series: str, instance: str, audit: str
) -> Instance:
    """The instance, if the gate lets the caller view its images (audited as ``audit``) and
    its stored copy did not fail its fixity check."""
    return access.access_instance_copy(
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


FRAME_LIST = "frames: a comma-separated list of frame numbers (a space may follow a comma)."


def frame_numbers(raw: str, *, count: int) -> list[int]:
    """'1,3' -> [1, 3]; 400 naming the parameter when malformed or out of range.

    PS3.18 writes the list comma-separated; spaces after a comma ("1, 3", the way
    people write lists) are accepted, any other space (" 1", "1 ,3") is not."""
    first, *rest = raw.split(",")
    items = [first, *(item.lstrip(" ") for item in rest)]
    try:
        # Empty items ("1,,2", "1,") are skipped; a list of none is refused below.
        numbers = [whole_number(n) for n in items if n]
    except ValueError as exc:
        raise ApplicationError(FRAME_LIST) from exc
    if not numbers:
        raise ApplicationError(FRAME_LIST)
    if any(n < 1 or n > count for n in numbers):
        raise ApplicationError(f"frames: frame numbers go from 1 to {count}.")
    # Each frame once, in the order asked: a repeated list must not multiply the response.
    return list(dict.fromkeys(numbers))


def _frame_size(instance: Instance) -> int:
    """The bytes of a native frame; 0 for a 1-bit one, whose frames need not start on a
    byte (``_bit_frame_size``)."""
    rows, columns = _value(instance, "00280010", 0), _value(instance, "00280011", 0)
    bits, samples = _value(instance, "00280100", 0), _value(instance, "00280002", 1)
    if _value(instance, "00280004") == "YBR_FULL_422":
        samples = 2  # subsampled chroma
    if not (rows and columns) or not bits or (bits % 8 and bits != 1):
        raise ApplicationError("frames: this instance's frames are not byte-addressable.")
    if bits == 1:
        return 0
    return int(rows) * int(columns) * int(samples) * int(bits) // 8


def _bit_frame_size(instance: Instance) -> int:
    """The bits of a 1-bit native frame (PS3.5 8.1.1: packed, no padding between frames);
    0 for any other."""
    if instance.transfer_syntax_uid not in NATIVE or _value(instance, "00280100", 0) != 1:
        return 0
    rows, columns = _value(instance, "00280010", 0), _value(instance, "00280011", 0)
    return int(rows) * int(columns) * int(_value(instance, "00280002", 1))


def _frame_parts(instance: Instance, numbers: list[int], part_type: str):
    """A part per frame, all read from one open object (opened once the answer starts, so
    that an answer never sent leaves nothing open)."""
    size = 0 if instance.transfer_syntax_uid not in NATIVE else _frame_size(instance)
    bits = _bit_frame_size(instance)
    with storage.object_reader(key=instance.storage_key) as reader:
        for number in numbers:
            chunks = (
                _bit_frame_chunks(reader, instance, number, bits)
                if bits
                else _frame_chunks(reader, instance, number, size)
            )
            yield part_type, chunks


def _bit_frame_chunks(
    reader: storage.Reader, instance: Instance, number: int, bits: int
) -> Iterator[bytes]:
    """A 1-bit frame repacked from its first pixel, a piece at a time (studies.bit_frames).
    Its bytes are a bit stream: big-endian objects hold it as little-endian ones do."""
    try:
        yield from bit_frames.frame_bytes(
            reader,
            offset=instance.pixel_data_offset,
            index=number - 1,
            frame_bits=bits,
            length=instance.pixel_data_length,
        )
    except storage.ObjectUnavailable:
        return  # logged by storage; already streaming: the client sees a short part
    except InvalidDicom as exc:  # the stored bytes, corrupt: the part is short too
        logger.error("Frame %d of instance %s cannot be served: %s", number, instance.pk, exc)


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
        found = viewable_instance(request, study, series, instance, Action.STUDY_RETRIEVE)
        if found.pixel_data_offset is None or not found.number_of_frames:
            raise ApplicationError(
                "frames: this instance has no pixel data.", status_code=404, code="NOT_FOUND"
            )
        numbers = frame_numbers(frames, count=found.number_of_frames)
        form = frame_form(accepted(request), transfer_syntax_uid=found.transfer_syntax_uid)
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
