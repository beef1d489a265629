"""The OpenAPI schema documents the consent API, including the X-Act-For header."""

import pytest
import yaml

pytestmark = pytest.mark.django_db


def test_the_schema_documents_x_act_for_on_patient_self_service(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    consents = schema["paths"]["/api/v1/me/consents/"]["post"]
    assert "X-Act-For" in [p["name"] for p in consents.get("parameters", [])]
    assert "/api/v1/patients/{national_id}/emergency-access/" in schema["paths"]
