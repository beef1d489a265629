"""The patient's access log: the audit app's view, with the reader decided by consent.gate."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.request import Request

from audit.actions import Action
from audit.api import AccessLogApiBase
from consent.access import (
    ACT_FOR_PARAMETER,
    access_own_record,
    patient_actor,
    serves_patient_data,
)


@serves_patient_data
@extend_schema_view(get=extend_schema(parameters=[ACT_FOR_PARAMETER]))
class AccessLogApi(AccessLogApiBase):
    """GET me/access-log/: events about the caller's record (or the one they represent)."""

    def authorize_reader(self, request: Request) -> str:
        actor = patient_actor(request, audit_action=Action.AUDIT_ACCESS_LOG)
        return access_own_record(actor, audit_action=Action.AUDIT_ACCESS_LOG).national_id
