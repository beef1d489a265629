"""WADO-RS /rendered: a frame as JPEG or PNG, decoded and windowed from the stored object."""

import math

from django.http import HttpResponse
from rest_framework.request import Request

from anim_gateway.errors import ApplicationError
from audit.actions import Action
from consent.access import serves_patient_data
from studies import accept, storage
from studies.api.dicomweb import DicomWebApi, accepted
from studies.api.frames import frame_numbers, viewable_instance
from studies.dicom import InvalidDicom
from studies.dicom_render import FORMATS, render_frame
from studies.models import Instance
from studies.qido import whole_number


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
        found = viewable_instance(request, study, series, instance, Action.STUDY_RENDER)
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
    wanted = accepted(request)
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
