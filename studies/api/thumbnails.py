"""WADO-RS thumbnails (PS3.18 10.4.1.1.4): a representative frame, rendered small."""

from django.http import HttpResponse
from rest_framework.request import Request

from anim_gateway.errors import NotFound
from audit.actions import Action
from consent import gate
from consent.access import serves_patient_data
from consent.authentication import actor_of
from studies import access, fixity, selectors
from studies.api.dicomweb import DicomWebApi
from studies.api.rendered import render_instance, rendered_type, viewport_param
from studies.models import Instance

# The side a thumbnail fits in, unless ?viewport=vw,vh asks for another size: a study list's
# picture, not an image to read.
THUMBNAIL_SIZE = 128


@serves_patient_data
class ThumbnailApi(DicomWebApi):
    """A thumbnail as JPEG (default) or PNG, gated and audited as /rendered is."""

    def get(
        self,
        request: Request,
        study: str,
        series: str | None = None,
        instance: str | None = None,
        frames: str = "1",
    ) -> HttpResponse:
        media_type = rendered_type(request)
        viewport = viewport_param(request.query_params.get("viewport", ""))
        found = _thumbnail_instance(request, study, series, instance)
        image = render_instance(
            found,
            frames=frames,
            media_type=media_type,
            viewport=viewport,
            # Without a viewport, only shrunk: a small image is not blown up to the default.
            max_size=None if viewport else THUMBNAIL_SIZE,
        )
        return HttpResponse(image, content_type=media_type)


def _thumbnail_instance(
    request: Request, study: str, series: str | None, instance: str | None
) -> Instance:
    """The instance named, or the representative one of the series or study, once the gate
    has decided on the study (a hidden one is 404, as an unknown one); the representative one
    is a good image where there is one; refused as a lost one when its stored copy failed
    its fixity check."""
    actor = actor_of(request)
    if instance:
        return access.access_instance_copy(
            actor,
            study_uid=study,
            series_uid=series,
            sop_uid=instance,
            action=gate.VIEW_IMAGES,
            audit_action=Action.STUDY_RENDER,
        )
    found = access.access_study_row(
        actor, study_uid=study, action=gate.VIEW_IMAGES, audit_action=Action.STUDY_RENDER
    )
    in_series = access.series_in(found, series) if series else None
    # A failed copy is passed over for another good image; only when every image failed is
    # one of them chosen, to be refused (and audited) as a lost one below.
    chosen = selectors.thumbnail_instance(study=found, series=in_series, intact_only=True)
    if chosen is None:
        chosen = selectors.thumbnail_instance(study=found, series=in_series)
    if chosen is None:
        raise NotFound(f"This {'series' if series else 'study'} holds no image to show.")
    fixity.refuse_if_failed(actor, chosen, study=found, audit_action=Action.STUDY_RENDER)
    return chosen
