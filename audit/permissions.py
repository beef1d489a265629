"""DRF permissions of the audit API, read from the Actor the project's authentication sets."""

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView


def role_of(request: Request) -> str | None:
    return getattr(request.auth, "role", None)


class IsDpo(BasePermission):
    """The Data Protection Officer only; nobody else reads the audit log as a whole."""

    message = "Only the Data Protection Officer may read the audit log."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return role_of(request) == "dpo"
