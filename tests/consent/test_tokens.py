"""Bearer tokens: issue, use, expiry, revocation, institution binding."""

import datetime

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from consent.models import ApiToken
from consent.models.tokens import hash_token
from consent.services.tokens import token_issue, tokens_revoke

pytestmark = pytest.mark.django_db

PROBE = "/api/v1/patients/"  # any authenticated endpoint: GET is 405 once authenticated


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_it_stores_only_a_hash_of_the_token(cast) -> None:
    raw = token_issue(username="alice", institution_code="CHL", days=1)
    stored = ApiToken.objects.get(user__username="alice")
    assert stored.key_hash == hash_token(raw)
    assert raw not in stored.key_hash
    assert stored.institution.code == "CHL"


def test_it_authenticates_with_a_fresh_token(cast) -> None:
    raw = token_issue(username="dora", days=1)
    assert bearer(raw).get(PROBE).status_code == 405


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_scheme_name_is_case_insensitive(cast, scheme) -> None:
    """RFC 9110 11.1: some HTTP clients send "bearer"; the token still counts."""
    raw = token_issue(username="dora", days=1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {raw}")
    assert client.get(PROBE).status_code == 405


def test_it_refuses_a_missing_token_with_401(cast) -> None:
    response = APIClient().post(PROBE, {}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_an_unknown_token(cast) -> None:
    response = bearer("not-a-token").post(PROBE, {}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "The token is unknown, expired or revoked."


def test_it_refuses_a_malformed_authorization_header(cast) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token abc")
    assert client.post(PROBE, {}, format="json").status_code == 401


def test_it_refuses_an_expired_token(cast) -> None:
    raw = token_issue(username="dora", days=1)
    ApiToken.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert bearer(raw).post(PROBE, {}, format="json").status_code == 401


def test_it_refuses_a_revoked_token_at_the_next_request(cast) -> None:
    raw = token_issue(username="dora", days=1)
    client = bearer(raw)
    assert client.get(PROBE).status_code == 405
    assert tokens_revoke(username="dora").tokens == 1
    assert client.get(PROBE).status_code == 401


def _refusals() -> list[tuple]:
    rows = AuditEvent.objects.filter(action="auth.token_refused").order_by("seq")
    return list(rows.values_list("actor_username", "outcome", "reason_code", "detail"))


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        ({"revoked_at": timezone.now()}, "TOKEN_REVOKED"),
        ({"expires_at": timezone.now() - datetime.timedelta(seconds=1)}, "TOKEN_EXPIRED"),
    ],
)
def test_a_refused_token_that_exists_is_audited(cast, spoil, reason) -> None:
    # A stolen key replayed after its revocation must not go unseen.
    raw = token_issue(username="dora", days=1)
    ApiToken.objects.update(**spoil)
    assert bearer(raw).get("/dicomweb/studies").status_code == 401
    prefix = ApiToken.objects.get().prefix
    assert _refusals() == [("dora", "deny", reason, {"token": prefix})]


def test_a_deactivated_users_token_is_refused_and_audited(cast) -> None:
    raw = token_issue(username="dora", days=1)
    get_user_model().objects.filter(username="dora").update(is_active=False)
    assert bearer(raw).get(PROBE).status_code == 401
    assert [row[2] for row in _refusals()] == ["ACCOUNT_INACTIVE"]


def test_an_unknown_token_names_nobody_and_is_not_audited(cast) -> None:
    assert bearer("not-a-token").get(PROBE).status_code == 401
    assert _refusals() == []


def test_it_binds_a_practitioner_token_to_an_affiliated_institution(cast) -> None:
    from anim_gateway.errors import ApplicationError

    with pytest.raises(ApplicationError, match="not affiliated with CHEM"):
        token_issue(username="alice", institution_code="CHEM", days=1)
    with pytest.raises(ApplicationError, match="needs --institution"):
        token_issue(username="alice", days=1)
    with pytest.raises(ApplicationError, match="Unknown institution"):
        token_issue(username="alice", institution_code="NOPE", days=1)


def test_it_refuses_an_institution_on_a_patient_or_dpo_token(cast) -> None:
    from anim_gateway.errors import ApplicationError

    with pytest.raises(ApplicationError, match="not bound to an institution"):
        token_issue(username="dora", institution_code="CHL", days=1)


def test_it_binds_a_system_token_only_to_its_own_institution(cast) -> None:
    from anim_gateway.errors import ApplicationError

    assert token_issue(username="chl-pacs", institution_code="CHL", days=1)
    with pytest.raises(ApplicationError, match="not affiliated"):
        token_issue(username="chl-pacs", institution_code="HRS", days=1)


def test_the_issue_token_command_prints_a_usable_token(cast, capsys) -> None:
    call_command("issue_token", "alice", "--institution", "CHL", "--days", "2")
    raw = capsys.readouterr().out.strip()
    token = ApiToken.objects.get(key_hash=hash_token(raw))
    assert token.expires_at - timezone.now() > datetime.timedelta(days=1, hours=23)


def test_the_issue_token_command_names_the_problem(cast) -> None:
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("issue_token", "ghost")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("issue_token", "dora", "--days", "0")


@pytest.mark.parametrize("days", ["36501", "99999999999"])
def test_the_issue_token_command_refuses_days_past_its_bound(cast, days: str) -> None:
    with pytest.raises(CommandError, match=f"at most 36500 .100 years., not {days}"):
        call_command("issue_token", "dora", "--days", days)
    assert not ApiToken.objects.exists()


def test_the_revoke_tokens_command_revokes_all_of_them(cast, capsys) -> None:
    token_issue(username="dora", days=1)
    token_issue(username="dora", days=1)
    call_command("revoke_tokens", "dora")
    assert "Revoked 2 token(s)" in capsys.readouterr().out
    assert not ApiToken.objects.filter(revoked_at__isnull=True).exists()


def test_issuing_and_revoking_are_audited(cast) -> None:
    token_issue(username="dora", days=1)
    tokens_revoke(username="dora")
    actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions[-2:] == ["auth.token_issue", "auth.token_revoke"]


@pytest.mark.parametrize(
    ("username", "institution", "role"),
    [("alice", "CHL", "practitioner"), ("xavier", None, "patient"), ("chl-pacs", "CHL", "system")],
)
def test_it_resolves_the_actor_in_one_query(
    cast, django_assert_num_queries, username, institution, role
) -> None:
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from consent.authentication import BearerTokenAuthentication

    raw = token_issue(username=username, institution_code=institution, days=1)
    request = Request(APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {raw}"))
    with django_assert_num_queries(1):
        _user, actor = BearerTokenAuthentication().authenticate(request)
        assert actor.role == role
        assert actor.institution_code == (institution or "")
