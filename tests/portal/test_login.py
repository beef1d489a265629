"""Portal log-in: password, TOTP enrolment and verification, acting institution, throttling."""

import os
import re
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils.html import escape
from django_otp.plugins.otp_totp.models import TOTPDevice

from anim_gateway.enrolment import enrolment_code_issue
from audit.models import AuditEvent
from consent.models import Affiliation, Institution
from tests.conftest import XAVIER_ID
from tests.portal.helpers import PASSWORD, confirmed_device, fresh_code, set_password, totp_code

pytestmark = pytest.mark.django_db


def login(client: Client, username: str, password: str = PASSWORD, next_url: str = ""):
    fields = {
        "username": username,
        "password": password,
        **({"next": next_url} if next_url else {}),
    }
    return client.post("/login/", fields)


def test_it_shows_the_login_form_with_a_csrf_token(cast):
    client = Client(enforce_csrf_checks=True)
    response = client.get("/login/")
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content
    assert login(client, "xavier").status_code == 403  # no token: refused by CSRF


def test_it_logs_a_patient_in_with_the_password_alone(cast):
    set_password("xavier")
    client = Client()
    response = login(client, "xavier")
    assert response.status_code == 302
    assert client.get("/").url == "/me/"
    event = AuditEvent.objects.filter(action="auth.login").get()
    assert (event.actor_username, event.outcome) == ("xavier", "permit")


def test_it_refuses_a_wrong_password_and_audits_it(cast):
    set_password("xavier")
    client = Client()
    response = login(client, "xavier", "wrong-password")
    assert response.status_code == 200
    assert b"Wrong username or password" in response.content
    event = AuditEvent.objects.filter(action="auth.login_failed").get()
    assert (event.actor_username, event.outcome, event.detail) == (
        "xavier",
        "deny",
        {"step": "password"},
    )
    assert client.get("/").url == "/login/"


def test_it_does_not_record_an_unknown_username(cast):
    login(Client(), "my-password-typed-in-the-wrong-box")
    event = AuditEvent.objects.filter(action="auth.login_failed").get()
    assert event.actor_username == ""


def test_it_locks_a_username_after_five_failures(cast):
    set_password("xavier")
    client = Client()
    for _ in range(5):
        login(client, "xavier", "wrong-password")
    response = login(client, "xavier")  # the right password, too late
    assert b"Too many failed attempts" in response.content
    assert not response.wsgi_request.user.is_authenticated
    assert AuditEvent.objects.filter(action="auth.login_failed").count() == 6


def test_it_enrols_a_practitioner_on_first_login_with_a_qr_code(cast):
    code = enrolment_code_issue(username="alice")  # handed over by an administrator
    set_password("alice")
    client = Client()
    assert login(client, "alice").url == "/login/enrol/"
    page = client.get("/login/enrol/")
    assert b"<svg" in page.content
    assert page.context["secret"]
    device = TOTPDevice.objects.get(user__username="alice")
    assert not device.confirmed
    # Not logged in until the code is confirmed
    assert client.get("/patients/").status_code == 302
    response = client.post("/login/enrol/", {"enrolment_code": code, "token": totp_code(device)})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert client.session["acting_institution"] == "CHL"  # her only affiliation
    assert client.get("/").url == "/patients/"
    event = AuditEvent.objects.filter(action="auth.login").get()
    assert (event.actor_username, event.acting_institution) == ("alice", "CHL")


def test_it_asks_an_enrolled_practitioner_for_a_code(cast):
    device = confirmed_device("alice")
    set_password("alice")
    client = Client()
    assert login(client, "alice").url == "/login/verify/"
    assert client.get("/").url.startswith("/login/")  # password alone is not enough
    bad = client.post("/login/verify/", {"token": f"{(int(totp_code(device)) + 1) % 10**6:06d}"})
    assert b"not valid" in bad.content
    assert client.post("/login/verify/", {"token": fresh_code("alice")}).status_code == 302
    assert client.get("/").url == "/patients/"
    assert client.session["otp_device_id"] == device.persistent_id


def test_it_refuses_a_code_already_used(cast):
    set_password("alice")
    code = fresh_code("alice")
    first, second = Client(), Client()
    login(first, "alice")
    assert first.post("/login/verify/", {"token": code}).status_code == 302
    login(second, "alice")
    assert second.post("/login/verify/", {"token": code}).status_code == 200


def test_it_forgets_a_password_step_that_was_never_completed(cast):
    client = Client()
    assert client.get("/login/verify/").url == "/login/"
    assert client.get("/login/enrol/").url == "/login/"


def test_it_asks_a_practitioner_with_several_hospitals_which_one(cast):
    chl = Institution.objects.get(code="CHL")
    Affiliation.objects.create(practitioner=cast.charlie, institution=chl)
    set_password("charlie")
    client = Client()
    login(client, "charlie")
    response = client.post("/login/verify/", {"token": fresh_code("charlie")})
    assert response.url == "/login/institution/"
    assert client.get("/").url == "/login/institution/"
    page = client.get("/login/institution/")
    assert b"Centre Hospitalier de Luxembourg (CHL)" in page.content
    assert b"CHEM" not in page.content
    refused = client.post("/login/institution/", {"institution": "CHEM"})
    assert refused.status_code == 200  # not one of his affiliations
    assert "acting_institution" not in client.session
    client.post("/login/institution/", {"institution": "CHL"})
    assert client.session["acting_institution"] == "CHL"
    assert client.get("/").url == "/patients/"


# --- a deep link through the log-in's steps -----------------------------------------------

DEEP_LINK = f"/patients/{XAVIER_ID}/?shared=by&a=colleague"


def with_next(path: str, next_url: str) -> str:
    return f"{path}?next={quote(next_url, safe='/')}"


def charlie_at_chl_and_hrs(cast) -> Client:
    """Dr Charlie, affiliated with two hospitals, past his password step (a code is next)."""
    chl = Institution.objects.get(code="CHL")
    Affiliation.objects.create(practitioner=cast.charlie, institution=chl)
    set_password("charlie")
    confirmed_device("charlie")
    return Client()


def test_a_deep_link_survives_the_code_and_the_hospital_choice(cast):
    client = charlie_at_chl_and_hrs(cast)
    asked = client.get(DEEP_LINK)
    assert asked.url == with_next("/login/", DEEP_LINK)
    assert login(client, "charlie", next_url=DEEP_LINK).url == "/login/verify/"
    response = client.post("/login/verify/", {"token": fresh_code("charlie")})
    assert response.url == with_next("/login/institution/", DEEP_LINK)
    page = client.get(response.url)
    assert f'name="next" value="{escape(DEEP_LINK)}"'.encode() in page.content
    chosen = client.post("/login/institution/", {"institution": "CHL", "next": DEEP_LINK})
    assert chosen.url == DEEP_LINK
    assert client.session["acting_institution"] == "CHL"


def test_a_deep_link_opened_before_the_hospital_choice_comes_back_after_it(cast):
    client = charlie_at_chl_and_hrs(cast)
    login(client, "charlie")
    client.post("/login/verify/", {"token": fresh_code("charlie")})
    asked = client.get(DEEP_LINK)  # pasted while the choice is still open
    assert asked.url == with_next("/login/institution/", DEEP_LINK)
    chosen = client.post(asked.url, {"institution": "HRS"})
    assert chosen.url == DEEP_LINK


@pytest.mark.parametrize(
    "elsewhere", ["https://evil.example/", "//evil.example/patients/", "/\\evil.example/"]
)
def test_the_hospital_choice_drops_a_next_page_elsewhere(cast, elsewhere):
    client = charlie_at_chl_and_hrs(cast)
    login(client, "charlie", next_url=elsewhere)
    response = client.post("/login/verify/", {"token": fresh_code("charlie")})
    assert response.url == "/login/institution/"
    page = client.get(with_next("/login/institution/", elsewhere))
    assert b'name="next"' not in page.content
    chosen = client.post(
        with_next("/login/institution/", elsewhere),
        {"institution": "CHL", "next": elsewhere},
    )
    assert chosen.url == "/"


def test_it_sends_the_dpo_to_the_audit_log_after_totp(cast):
    set_password("dora")
    client = Client()
    login(client, "dora")
    client.post("/login/verify/", {"token": fresh_code("dora")})
    assert client.get("/").url == "/dpo/audit/"


def test_it_logs_out_on_post_only(portal_as):
    client = portal_as("xavier")
    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").url == "/login/"
    assert client.get("/").url == "/login/"


def test_it_returns_to_the_page_asked_for(cast):
    set_password("xavier")
    client = Client()
    asked = client.get("/me/consents/")
    assert asked.url == "/login/?next=/me/consents/"
    response = client.post(
        "/login/?next=/me/consents/", {"username": "xavier", "password": PASSWORD}
    )
    assert response.url == "/me/consents/"


def test_it_ignores_a_next_page_elsewhere(cast):
    set_password("xavier")
    response = Client().post(
        "/login/", {"username": "xavier", "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response.url == "/"


def test_it_refuses_an_inactive_user(cast):
    set_password("xavier")
    get_user_model().objects.filter(username="xavier").update(is_active=False)
    assert login(Client(), "xavier").status_code == 200


def test_it_locks_the_code_step_after_five_wrong_codes(cast):
    device = confirmed_device("alice")
    set_password("alice")
    client = Client()
    login(client, "alice")
    wrong = f"{(int(totp_code(device)) + 500_000) % 10**6:06d}"
    for _ in range(5):
        TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0)
        client.post("/login/verify/", {"token": wrong})
    response = client.post("/login/verify/", {"token": fresh_code("alice")})
    assert b"Too many failed attempts" in response.content
    assert not response.wsgi_request.user.is_authenticated


def test_a_second_log_in_on_the_same_browser_ends_the_first_session(portal_as):
    xavier = portal_as("xavier")
    set_password("alice")
    confirmed_device("alice")
    assert login(xavier, "alice").url == "/login/verify/"
    assert xavier.get("/me/").status_code == 302  # Xavier is logged out, Alice not yet in


def test_it_opens_no_portal_session_for_a_hospital_system_account(cast):
    # A system account's power (register patients, assert care relationships, store studies)
    # is meant for its token; a password set on it must not open a session, without any
    # second factor, that the REST API would accept as that system.
    set_password("chl-pacs")
    client = Client()
    response = login(client, "chl-pacs")
    assert response.status_code == 200
    # The answer to a wrong password: a right one must not be told apart.
    assert b"Wrong username or password." in response.content
    assert "_auth_user_id" not in client.session
    refused = client.post(
        f"/api/v1/patients/{cast.yvonne.national_id}/identifiers/",
        {"institution": "CHL", "value": "CHL-NEW"},
        content_type="application/json",
    )
    assert refused.status_code == 401
    event = AuditEvent.objects.filter(action="auth.login_failed").get()
    assert (event.actor_username, event.detail) == ("chl-pacs", {"step": "no_portal_role"})


@pytest.mark.parametrize("username", ["chl-pacs", "root"])
def test_the_api_accepts_no_session_of_a_system_or_of_an_admin_without_otp(
    cast, admin_user, username
):
    # Sessions from elsewhere than the portal's log-in (one opened before it refused system
    # accounts, or by any other door): the API must hold the portal's rules on its own.
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    refused = client.post(
        f"/api/v1/patients/{cast.yvonne.national_id}/identifiers/",
        {"institution": "CHL", "value": "CHL-NEW"},
        content_type="application/json",
    )
    assert refused.status_code == 401


def test_the_session_ends_with_the_browser_and_rotates_at_log_in(cast):
    # A shared workstation: the session cookie is not written to disk for the next person,
    # and an identifier planted before the log-in (session fixation) is not kept.
    set_password("xavier")
    client = Client()
    client.get("/login/")
    client.session.save()
    planted = client.cookies["sessionid"].value
    login(client, "xavier")
    cookie = client.cookies["sessionid"]
    assert cookie.value != planted
    assert (cookie["expires"], cookie["max-age"]) == ("", "")


def test_a_session_is_dead_on_the_server_after_log_out(portal_as):
    client = portal_as("xavier")
    stolen = client.cookies["sessionid"].value
    client.post("/logout/")
    replay = Client()
    replay.cookies["sessionid"] = stolen
    assert replay.get("/me/").status_code == 302
    assert replay.get("/api/v1/me/record/").status_code == 401


def test_the_api_wants_the_csrf_token_of_a_portal_session(cast):
    # A page elsewhere posting with the patient's cookie: refused, nothing granted.
    set_password("xavier")
    client = Client(enforce_csrf_checks=True)
    client.get("/login/")
    token = client.cookies["csrftoken"].value
    client.post(
        "/login/", {"username": "xavier", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    forged = client.post(
        "/api/v1/me/consents/", {"institutions": None}, content_type="application/json"
    )
    assert forged.status_code == 403
    stow = client.post(
        "/dicomweb/studies",
        b"",
        content_type='multipart/related; type="application/dicom"; boundary=x',
    )
    assert stow.status_code == 403
    assert not cast.xavier.consents.exists()


def test_every_role_that_may_log_in_has_a_home_page():
    from anim_gateway.portal import HOME_BY_ROLE
    from consent.authentication import PORTAL_ROLES

    assert set(HOME_BY_ROLE) == set(PORTAL_ROLES)


# --- the per-address counter: password spraying -------------------------------------------

SPRAYER = "203.0.113.7"


@pytest.fixture
def address_limit(settings):
    """Three failures from one address trip its counter; five per username, as by default."""
    settings.PORTAL_LOGIN_ADDRESS_MAX_FAILURES = 3
    settings.PORTAL_LOGIN_MAX_FAILURES = 5
    return 3


def spray(address: str, count: int) -> None:
    """One wrong password for each of `count` usernames, known or not, from one address."""
    names = ["xavier", "alice", "dora", "nobody-1", "nobody-2", "nobody-3"][:count]
    for name in names:
        response = login(Client(REMOTE_ADDR=address), name, "wrong-password")
        assert b"Wrong username or password" in response.content


def test_it_throttles_one_address_trying_many_usernames(cast, address_limit):
    set_password("yvonne")
    spray(SPRAYER, address_limit)
    response = login(Client(REMOTE_ADDR=SPRAYER), "nobody-4", "wrong-password")
    assert b"Too many failed attempts" in response.content
    throttled = AuditEvent.objects.filter(action="auth.login_failed").latest("pk")
    assert throttled.detail == {"step": "throttled", "counter": "address"}
    assert throttled.client_address == SPRAYER


def test_a_throttled_address_is_refused_a_right_password_and_learns_nothing(cast, address_limit):
    set_password("xavier")
    spray(SPRAYER, address_limit)
    client = Client(REMOTE_ADDR=SPRAYER)
    answers = [
        login(client, "xavier"),  # the right password
        login(client, "xavier", "wrong-password"),
        login(client, "no-such-user", "wrong-password"),
    ]
    assert not answers[0].wsgi_request.user.is_authenticated
    assert "_auth_user_id" not in client.session
    # One answer whether the username exists and whether the password was right.
    bodies = {(a.status_code, re.sub(rb'value="[^"]*"', b"", a.content)) for a in answers}
    assert len(bodies) == 1
    assert b"Too many failed attempts" in answers[0].content


def test_another_address_is_not_affected_by_a_throttled_one(cast, address_limit):
    set_password("xavier")
    spray(SPRAYER, address_limit)
    client = Client(REMOTE_ADDR="198.51.100.9")
    assert login(client, "xavier").url == "/"
    assert client.get("/").url == "/me/"


def test_an_ipv6_client_is_counted_by_its_64_bit_prefix(cast, address_limit):
    set_password("xavier")
    for host in range(1, address_limit + 1):
        login(Client(REMOTE_ADDR=f"2001:db8::{host}"), f"nobody-{host}", "wrong-password")
    refused = login(Client(REMOTE_ADDR="2001:db8::ffff:1"), "xavier")
    assert b"Too many failed attempts" in refused.content
    assert login(Client(REMOTE_ADDR="2001:db8:0:1::1"), "xavier").url == "/"


def test_a_scoped_ipv6_client_is_counted_by_its_prefix_not_answered_500(cast, address_limit):
    # A link-local client carries its zone ("%eth0"), as gunicorn may pass it on.
    for host in range(1, address_limit + 1):
        response = login(Client(REMOTE_ADDR=f"fe80::{host}%eth0"), "nobody", "wrong-password")
        assert b"Wrong username or password" in response.content
    refused = login(Client(REMOTE_ADDR="fe80::ff%eth1"), "nobody", "wrong-password")
    assert b"Too many failed attempts" in refused.content


def test_a_success_does_not_reset_the_address_counter(cast, address_limit):
    set_password("xavier")
    spray(SPRAYER, address_limit - 1)
    assert login(Client(REMOTE_ADDR=SPRAYER), "xavier").url == "/"  # the attacker's own account
    login(Client(REMOTE_ADDR=SPRAYER), "nobody-9", "wrong-password")
    refused = login(Client(REMOTE_ADDR=SPRAYER), "xavier")
    assert b"Too many failed attempts" in refused.content


def test_the_username_counter_still_locks_a_name_tried_from_many_addresses(cast, address_limit):
    set_password("xavier")
    for host in range(1, 6):
        login(Client(REMOTE_ADDR=f"192.0.2.{host}"), "xavier", "wrong-password")
    refused = login(Client(REMOTE_ADDR="192.0.2.99"), "xavier")
    assert b"Too many failed attempts" in refused.content
    throttled = AuditEvent.objects.filter(action="auth.login_failed").latest("pk")
    assert throttled.detail == {"step": "throttled", "counter": "username"}


def test_a_success_still_resets_the_username_counter(cast):
    set_password("xavier")
    for _ in range(4):
        login(Client(), "xavier", "wrong-password")
    assert login(Client(), "xavier").url == "/"
    for _ in range(4):
        login(Client(), "xavier", "wrong-password")
    assert login(Client(), "xavier").url == "/"


def test_wrong_codes_count_against_the_address_and_it_is_checked_at_the_code_step(
    cast, address_limit
):
    device = confirmed_device("alice")
    set_password("alice")
    set_password("xavier")
    client = Client(REMOTE_ADDR=SPRAYER)
    login(client, "alice")
    wrong = f"{(int(totp_code(device)) + 500_000) % 10**6:06d}"
    for _ in range(address_limit):
        TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0)
        assert b"not valid" in client.post("/login/verify/", {"token": wrong}).content
    refused = login(Client(REMOTE_ADDR=SPRAYER), "xavier")  # another user, same address
    assert b"Too many failed attempts" in refused.content
    # Alice's own code step is refused by the address counter before her username's is full.
    refused = client.post("/login/verify/", {"token": fresh_code("alice")})
    assert b"Too many failed attempts" in refused.content
    assert not refused.wsgi_request.user.is_authenticated
    throttled = AuditEvent.objects.filter(action="auth.login_failed").latest("pk")
    assert (throttled.actor_username, throttled.detail) == (
        "alice",
        {"step": "throttled", "counter": "address"},
    )


def test_the_reverse_proxy_is_not_counted_as_a_client(cast, address_limit, settings):
    """Behind the proxy every client comes from its address: counting it would let anyone
    lock everyone out. The username counter still holds there."""
    settings.PROXY_ADDRESSES = [SPRAYER]
    spray(SPRAYER, address_limit + 2)
    set_password("yvonne")
    assert login(Client(REMOTE_ADDR=SPRAYER), "yvonne").url == "/"
    for _ in range(settings.PORTAL_LOGIN_MAX_FAILURES):
        login(Client(REMOTE_ADDR=SPRAYER), "yvonne", "wrong-password")
    refused = login(Client(REMOTE_ADDR=SPRAYER), "yvonne")
    assert b"Too many failed attempts" in refused.content


def test_guesses_sent_together_are_counted_before_any_is_checked(cast, monkeypatch, settings):
    """Eight guesses in flight at once (each arriving while the one before is checking its
    password): only the first five are checked, as if they had come one after the other."""
    from django.contrib import auth

    real_authenticate = auth.authenticate
    checked = []

    def authenticate(request, **credentials):
        checked.append(credentials["username"])
        if len(checked) < 8:  # the next guess arrives while this one is being checked
            login(Client(REMOTE_ADDR=f"192.0.2.{len(checked)}"), "xavier", "wrong-password")
        return real_authenticate(request, **credentials)

    monkeypatch.setattr(auth, "authenticate", authenticate)
    login(Client(REMOTE_ADDR="192.0.2.100"), "xavier", "wrong-password")
    assert len(checked) == settings.PORTAL_LOGIN_MAX_FAILURES


def test_behind_the_proxy_the_client_it_names_is_counted(cast, address_limit, settings):
    """The proxy appends each client's address to X-Forwarded-For: spraying through it is
    counted for that client alone, whatever the client wrote in the header itself."""
    settings.PROXY_ADDRESSES = ["10.0.0.0/24"]

    def through_proxy(forwarded_for: str) -> Client:
        return Client(REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=forwarded_for)

    for number in range(address_limit):  # a fresh forged entry each time, then the proxy's
        response = login(through_proxy(f"192.0.2.{number}, {SPRAYER}"), f"nobody-{number}", "x")
        assert b"Wrong username or password" in response.content
    set_password("yvonne")
    refused = login(through_proxy(SPRAYER), "yvonne")
    assert b"Too many failed attempts" in refused.content
    assert login(through_proxy("198.51.100.9"), "yvonne").url == "/"  # another client
    assert login(Client(REMOTE_ADDR="10.0.0.5"), "yvonne").url == "/"  # no client named


@pytest.mark.parametrize(
    ("proxies", "peer"),
    [
        pytest.param(["10.0.0.0/24", "::1"], "10.0.0.5", id="a network"),
        pytest.param(["10.0.0.0/24", "::1"], "::1", id="IPv6 loopback"),
        pytest.param(["*"], SPRAYER, id="every address"),
        pytest.param(["10.0.0.5"], "", id="a Unix socket (no address)"),
    ],
)
def test_proxies_are_recognised_as_gunicorn_lists_them(
    cast, address_limit, settings, proxies, peer
):
    settings.PROXY_ADDRESSES = proxies
    spray(peer, address_limit + 1)
    set_password("yvonne")
    assert login(Client(REMOTE_ADDR=peer), "yvonne").url == "/"


@pytest.mark.redis
def test_with_a_shared_cache_another_process_sees_the_failures(cast, settings):
    """CACHE_URL puts the counters in Redis, where every web process reads them (with each
    process's own memory, an attacker would get the limit once per gunicorn worker)."""
    import subprocess
    import sys

    from django.core.cache import cache

    from tests.conftest import require_redis

    url = require_redis().rsplit("/", 1)[0] + "/15"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    }
    cache.clear()
    try:
        for _ in range(settings.PORTAL_LOGIN_MAX_FAILURES):
            login(Client(REMOTE_ADDR="198.51.100.20"), "xavier", "wrong-password")
        probe = (
            "import django; django.setup(); from anim_gateway import login_throttle; "
            "print(login_throttle.attempt('xavier', '198.51.100.21'))"
        )
        env = {**os.environ, "CACHE_URL": url, "DJANGO_SETTINGS_MODULE": "anim_gateway.settings"}
        seen = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        )
        assert seen.stdout.strip() == "username"
    finally:
        cache.clear()


@pytest.mark.redis
def test_a_counter_always_ends(cast, settings):
    """Django's Redis incr and decr check that the key exists, then add: a key that expires in
    between comes back without an expiry (the reviewer forced it), which would lock a name
    for good after five failures spread over any time, or leave -1 (one more guess)."""
    from django.core.cache import cache

    from anim_gateway import login_throttle
    from tests.conftest import require_redis

    url = require_redis().rsplit("/", 1)[0] + "/15"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    }
    cache.clear()
    try:
        key = login_throttle._username_key("xavier")
        redis = cache._cache.get_client(key, write=True)
        cache.set(key, 0, timeout=None)  # as the race leaves it: no expiry
        login_throttle.attempt("xavier", "198.51.100.30")
        assert 0 < redis.ttl(cache.make_and_validate_key(key)) <= settings.PORTAL_LOGIN_LOCK_SECONDS
        cache.set(key, 0, timeout=None)
        login_throttle.not_a_failure("xavier", "198.51.100.30")
        assert cache.get(key) is None  # not -1 for ever
    finally:
        cache.clear()


def test_deploy_checks_warn_of_counters_kept_per_process(settings):
    from consent.checks import check_production_settings

    def ids() -> set[str]:
        return {problem.id for problem in check_production_settings(None)}

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert "anim.W003" in ids()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/15",
        }
    }
    assert "anim.W003" not in ids()
