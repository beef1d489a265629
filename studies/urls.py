"""DICOMweb URLs (PS3.18), mounted under /dicomweb/."""

from django.urls import path

from studies.api.bulkdata import BulkDataApi
from studies.api.dicomweb import (
    InstanceSearchApi,
    MetadataApi,
    RetrieveApi,
    StudiesApi,
    StudyApi,
    StudySeriesSearchApi,
)
from studies.api.frames import FramesApi
from studies.api.rendered import RenderedApi
from studies.api.thumbnails import ThumbnailApi

app_name = "dicomweb"

S = "studies/<str:study>"
SE = f"{S}/series/<str:series>"
I = f"{SE}/instances/<str:instance>"  # noqa: E741

urlpatterns = [
    path("studies", StudiesApi.as_view(), name="studies"),
    path(S, StudyApi.as_view(), name="study"),
    path(f"{S}/metadata", MetadataApi.as_view(), name="study-metadata"),
    path(f"{S}/thumbnail", ThumbnailApi.as_view(), name="study-thumbnail"),
    path(f"{S}/series", StudySeriesSearchApi.as_view(), name="study-series"),
    path(f"{S}/instances", InstanceSearchApi.as_view(), name="study-instances"),
    path(SE, RetrieveApi.as_view(), name="series"),
    path(f"{SE}/metadata", MetadataApi.as_view(), name="series-metadata"),
    path(f"{SE}/thumbnail", ThumbnailApi.as_view(), name="series-thumbnail"),
    path(f"{SE}/instances", InstanceSearchApi.as_view(), name="series-instances"),
    path(I, RetrieveApi.as_view(), name="instance"),
    path(f"{I}/metadata", MetadataApi.as_view(), name="instance-metadata"),
    path(f"{I}/rendered", RenderedApi.as_view(), name="instance-rendered"),
    path(f"{I}/thumbnail", ThumbnailApi.as_view(), name="instance-thumbnail"),
    path(f"{I}/frames/<str:frames>", FramesApi.as_view(), name="frames"),
    path(f"{I}/frames/<str:frames>/rendered", RenderedApi.as_view(), name="frames-rendered"),
    path(f"{I}/frames/<str:frames>/thumbnail", ThumbnailApi.as_view(), name="frames-thumbnail"),
    path(f"{I}/bulkdata/<str:reference>", BulkDataApi.as_view(), name="bulkdata"),
]
