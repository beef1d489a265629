"""OpenAPI descriptions of the gateway's authentication schemes (drf-spectacular)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "consent.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `manage.py issue_token`; bound to the acting institution "
            "for practitioners and hospital systems.",
        }


class PortalSessionScheme(OpenApiAuthenticationExtension):
    target_class = "consent.authentication.PortalSessionAuthentication"
    name = "portalSession"

    def get_security_definition(self, auto_schema) -> dict:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
