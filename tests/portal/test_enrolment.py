"""Setting up an authenticator app needs a one-time enrolment code from an administrator."""

import datetime
import re
from base64 import b32decode
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from anim_gateway.enrolment import enrolment_code_issue
from audit.models import AuditEvent
from tests.portal.helpers import PASSWORD, confirmed_device, fresh_code, set_password, totp_code

pytestmark = pytest.mark.django_db

NOT_VALID = b"This enrolment code is not valid"
EXPIRED = b"This enrolment code has expired and can no longer be used. Ask your administrator"


def at_enrolment(username: str, client: Client | None = None) -> tuple[Client, TOTPDevice]:
    """A client past the password step, on the enrolment page, and the key it was shown."""
    set_password(username)
    client = client or Client()
    response = client.post("/login/", {"username": username, "password": PASSWORD})
    assert response.url == "/login/enrol/"
    page = client.get("/login/enrol/")
    assert page.status_code == 200
    return client, shown(page)


def shown(page) -> TOTPDevice:
    """The device whose key the page shows, as the person's app would add it."""
    key = b32decode(page.context["secret"].replace(" ", "")).hex()
    return TOTPDevice.objects.get(key=key)


def enrol(client: Client, device: TOTPDevice, code: str | None, steps_ahead: int = 0):
    data = {"token": totp_code(device, steps_ahead)}
    if code is not None:
        data["enrolment_code"] = code
    return client.post("/login/enrol/", data)


def ready_to_retry(username: str) -> None:
    """django-otp's own back-off after a wrong code is seconds long: a person's retry is later."""
    StaticDevice.objects.filter(user__username=username).update(
        throttling_failure_count=0, throttling_failure_timestamp=None
    )


def enrolled(username: str) -> bool:
    return TOTPDevice.objects.filter(user__username=username, confirmed=True).exists()


def failures() -> list[dict]:
    events = AuditEvent.objects.filter(action="auth.login_failed").order_by("seq")
    return [event.detail for event in events]


# --- the enrolment page --------------------------------------------------------------------


def test_it_enrols_with_the_administrators_code_and_the_code_then_serves_no_more(cast):
    code = enrolment_code_issue(username="alice")
    client, device = at_enrolment("alice")
    response = enrol(client, device, code)
    assert response.status_code == 302
    assert enrolled("alice")
    assert client.get("/").url == "/patients/"
    event = AuditEvent.objects.filter(action="auth.login").get()
    assert event.detail == {"second_factor": True, "enrolled": True}
    assert not StaticToken.objects.exists()  # used up
    # Her phone is lost and an administrator removes it: the same code cannot set up another.
    TOTPDevice.objects.filter(user__username="alice").delete()
    again, device = at_enrolment("alice")
    refused = enrol(again, device, code)
    assert NOT_VALID in refused.content
    assert not enrolled("alice")
    assert failures() == [{"step": "enrolment_code"}]


def test_it_refuses_an_enrolment_without_a_code(cast):
    enrolment_code_issue(username="alice")
    client, device = at_enrolment("alice")
    response = enrol(client, device, None)
    assert response.status_code == 200
    assert b"Enter the enrolment code your administrator gave you." in response.content
    assert not enrolled("alice")
    assert client.get("/patients/").status_code == 302  # not logged in


def test_it_refuses_an_enrolment_when_no_code_was_issued(cast):
    client, device = at_enrolment("alice")
    response = enrol(client, device, "AAAA-BBBB-CCCC-DDDD")
    assert NOT_VALID in response.content
    assert not enrolled("alice")
    assert failures() == [{"step": "enrolment_code"}]


def test_it_refuses_a_wrong_code_and_keeps_the_right_one(cast):
    code = enrolment_code_issue(username="alice")
    client, device = at_enrolment("alice")
    wrong = ("B" if code[0] != "B" else "C") + code[1:]
    response = enrol(client, device, wrong)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="id_enrolment_code_error"' in html
    assert html.count("This enrolment code is not valid") == 1
    assert not enrolled("alice")
    assert failures() == [{"step": "enrolment_code"}]
    ready_to_retry("alice")
    assert enrol(client, device, code).status_code == 302  # the app's code was not used up
    assert enrolled("alice")


def test_it_refuses_another_users_code_which_still_serves_its_owner(cast):
    bobs = enrolment_code_issue(username="bob")
    enrolment_code_issue(username="alice")
    client, device = at_enrolment("alice")
    assert NOT_VALID in enrol(client, device, bobs).content
    assert not enrolled("alice")
    bob, his_device = at_enrolment("bob")
    assert enrol(bob, his_device, bobs).status_code == 302
    assert enrolled("bob")


def test_a_wrong_app_code_does_not_use_up_the_enrolment_code(cast):
    code = enrolment_code_issue(username="alice")
    client, device = at_enrolment("alice")
    wrong = client.post(
        "/login/enrol/",
        {"enrolment_code": code, "token": f"{(int(totp_code(device)) + 500_000) % 10**6:06d}"},
    )
    assert b"This code is not valid. Check the time on your phone." in wrong.content
    assert StaticToken.objects.filter(device__user__username="alice").exists()
    assert failures() == [{"step": "totp_enrolment"}]
    assert enrol(client, device, code).status_code == 302
    assert enrolled("alice")


def test_the_code_is_accepted_as_typed_in_lower_case_and_spaces(cast):
    code = enrolment_code_issue(username="dora")
    client, device = at_enrolment("dora")
    assert enrol(client, device, f" {code.lower().replace('-', ' ')} ").status_code == 302
    assert client.get("/").url == "/dpo/audit/"


def test_wrong_enrolment_codes_count_against_the_log_in_throttle(cast):
    code = enrolment_code_issue(username="alice")
    client, device = at_enrolment("alice")
    for _ in range(5):
        ready_to_retry("alice")
        assert NOT_VALID in enrol(client, device, "AAAA-BBBB-CCCC-DDDD").content
    ready_to_retry("alice")
    refused = enrol(client, device, code)  # the right code, too late
    assert b"Too many failed attempts" in refused.content
    assert not enrolled("alice")
    assert failures() == [{"step": "enrolment_code"}] * 5 + [
        {"step": "throttled", "counter": "username"}
    ]
    # The lock holds at the password step too: the username's counter is shared.
    locked = Client().post("/login/", {"username": "alice", "password": PASSWORD})
    assert b"Too many failed attempts" in locked.content


def test_a_key_shown_to_another_session_is_not_the_one_enrolled(cast):
    # Whoever holds the initial password opens the page first and notes the key shown there:
    # the key Alice then enrols must not be that one.
    code = enrolment_code_issue(username="alice")
    intruder, intruders_device = at_enrolment("alice")
    intruders_code = totp_code(intruders_device, steps_ahead=1)
    client, device = at_enrolment("alice")
    assert device.key != intruders_device.key
    assert enrol(client, device, code).status_code == 302
    set_password("alice")
    intruder = Client()
    intruder.post("/login/", {"username": "alice", "password": PASSWORD})
    refused = intruder.post("/login/verify/", {"token": intruders_code})
    assert b"not valid" in refused.content
    assert intruder.get("/patients/").status_code == 302


def test_a_set_up_started_again_elsewhere_asks_for_the_new_key(cast):
    code = enrolment_code_issue(username="alice")
    first, device = at_enrolment("alice")
    at_enrolment("alice")  # another window: a new key, the first one's is gone
    response = enrol(first, device, code)
    assert b"The set-up was started again" in response.content
    assert not enrolled("alice")
    assert failures() == []  # nothing was checked, nothing counted
    assert enrol(first, shown(response), code).status_code == 302


def test_an_enrolled_practitioner_is_asked_for_the_app_code_without_an_enrolment_code(cast):
    confirmed_device("alice")
    set_password("alice")
    client = Client()
    assert client.post("/login/", {"username": "alice", "password": PASSWORD}).url == (
        "/login/verify/"
    )
    assert client.get("/login/enrol/").url == "/login/verify/"
    assert client.post("/login/verify/", {"token": fresh_code("alice")}).status_code == 302
    assert client.get("/").url == "/patients/"


def test_a_code_from_django_otps_addstatictoken_is_no_enrolment_code(cast):
    # Such a code is a backup second factor (a confirmed device), not an enrolment code.
    call_command("addstatictoken", "alice", "--token", "backupcode12", stdout=StringIO())
    client, device = at_enrolment("alice")
    assert NOT_VALID in enrol(client, device, "backupcode12").content
    assert not enrolled("alice")


def test_the_enrolment_code_is_no_second_factor_at_the_admins_log_in(cast, admin_user):
    code = enrolment_code_issue(username="root")
    holder = StaticDevice.objects.get(user=admin_user)

    def admin_log_in(device, token: str) -> Client:
        client = Client()
        fields = {"username": "root", "password": "not-used-here-123", "next": "/admin/"}
        fields |= {"otp_device": device.persistent_id, "otp_token": token}
        client.post("/admin/login/", fields)
        return client

    assert admin_log_in(holder, code).get("/admin/").status_code == 302  # to the log-in
    # Even the stored value, which django-otp's form matches, verifies no session.
    stored = StaticToken.objects.get(device=holder).token
    ready_to_retry("root")
    assert admin_log_in(holder, stored).get("/admin/").status_code == 302
    app = TOTPDevice.objects.create(user=admin_user, name="Portal", confirmed=True)
    assert admin_log_in(app, totp_code(app)).get("/admin/").status_code == 200  # the form works


# --- expiry --------------------------------------------------------------------------------


def issued_ago(username: str, age: datetime.timedelta) -> None:
    """Move the issue of the user's enrolment code back in time (no clock library here)."""
    StaticDevice.objects.filter(user__username=username).update(created_at=F("created_at") - age)


def test_a_code_used_after_its_expiry_is_refused_as_expired_and_then_serves_no_more(cast, settings):
    settings.ENROLMENT_CODE_HOURS = 72
    code = enrolment_code_issue(username="alice")
    issued_ago("alice", datetime.timedelta(hours=72, seconds=1))
    client, device = at_enrolment("alice")
    response = enrol(client, device, code)
    assert response.status_code == 200
    assert EXPIRED in response.content
    assert NOT_VALID not in response.content
    assert not enrolled("alice")
    assert failures() == [{"step": "enrolment_code_expired"}]
    assert not StaticDevice.objects.filter(user__username="alice").exists()  # used up
    # Even with a longer lifetime configured afterwards, the code is gone.
    settings.ENROLMENT_CODE_HOURS = 1000
    assert NOT_VALID in enrol(client, device, code).content
    assert not enrolled("alice")


def test_a_code_still_within_its_lifetime_works(cast, settings):
    settings.ENROLMENT_CODE_HOURS = 72
    code = enrolment_code_issue(username="alice")
    issued_ago("alice", datetime.timedelta(hours=71, minutes=59))
    client, device = at_enrolment("alice")
    assert enrol(client, device, code).status_code == 302
    assert enrolled("alice")


def test_the_lifetime_is_the_setting(cast, settings):
    settings.ENROLMENT_CODE_HOURS = 1
    code = enrolment_code_issue(username="alice")
    issued_ago("alice", datetime.timedelta(minutes=61))
    client, device = at_enrolment("alice")
    assert EXPIRED in enrol(client, device, code).content
    assert not enrolled("alice")


def test_a_wrong_code_against_an_expired_one_is_only_not_valid(cast):
    # Whoever has the password alone learns nothing of the real code: not even its age.
    code = enrolment_code_issue(username="alice")
    issued_ago("alice", datetime.timedelta(days=30))
    client, device = at_enrolment("alice")
    wrong = ("B" if code[0] != "B" else "C") + code[1:]
    response = enrol(client, device, wrong)
    assert NOT_VALID in response.content
    assert EXPIRED not in response.content
    assert failures() == [{"step": "enrolment_code"}]


def test_a_code_of_unknown_age_is_expired(cast):
    # Deny by default: a row written before django-otp recorded creation times has no age.
    code = enrolment_code_issue(username="alice")
    StaticDevice.objects.filter(user__username="alice").update(created_at=None)
    client, device = at_enrolment("alice")
    assert EXPIRED in enrol(client, device, code).content
    assert not enrolled("alice")


# --- issuing codes -------------------------------------------------------------------------


def issue(username: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("issue_enrolment_code", username, *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_the_command_prints_a_code_once_and_keeps_only_its_digest(cast):
    code, note = issue("alice")
    assert len(code.replace("-", "")) == 16
    assert "never with the password" in note
    stored = StaticToken.objects.get(device__user__username="alice")
    assert code.replace("-", "") not in stored.token.upper()
    holder = stored.device
    assert (holder.name, holder.confirmed) == ("Enrolment code", False)
    client, device = at_enrolment("alice")
    assert enrol(client, device, code).status_code == 302


def test_the_command_prints_when_the_code_expires_in_the_servers_local_time(cast, settings):
    settings.ENROLMENT_CODE_HOURS = 72
    before = timezone.now()
    _, note = issue("alice")
    after = timezone.now()
    printed = re.search(r"until (\d{4}-\d\d-\d\d \d\d:\d\d) (CES?T)\b", note)
    assert printed is not None, note
    expiry = timezone.localtime(
        StaticDevice.objects.get(user__username="alice").created_at + datetime.timedelta(hours=72)
    )
    assert printed.groups() == (f"{expiry:%Y-%m-%d %H:%M}", expiry.tzname())
    assert before + datetime.timedelta(hours=72) <= expiry <= after + datetime.timedelta(hours=72)


def test_a_new_code_replaces_the_earlier_unused_one(cast):
    earlier, _ = issue("alice")
    later, _ = issue("alice")
    assert later != earlier
    assert StaticToken.objects.filter(device__user__username="alice").count() == 1
    client, device = at_enrolment("alice")
    assert NOT_VALID in enrol(client, device, earlier).content
    ready_to_retry("alice")
    assert enrol(client, device, later).status_code == 302


def test_issuing_is_audited_without_the_code(cast):
    code, _ = issue("charlie")
    event = AuditEvent.objects.filter(action="auth.enrolment_code_issue").get()
    assert (event.outcome, event.actor_username, event.actor_role) == (
        "permit",
        "cli:issue_enrolment_code",
        "admin",
    )
    assert event.detail == {
        "username": "charlie",
        "user_id": cast.charlie.user.pk,
        "role": "practitioner",
        "authenticator_removed": False,
    }
    for text in (code, code.replace("-", ""), code.lower()):
        assert text not in str(AuditEvent.objects.values_list().get(pk=event.pk))


@pytest.mark.parametrize("username", ["xavier", "chl-pacs"])
def test_it_issues_no_code_to_a_role_without_a_second_factor(cast, username):
    with pytest.raises(CommandError, match="sets up no authenticator app"):
        issue(username)
    assert not StaticDevice.objects.exists()
    assert not AuditEvent.objects.filter(action="auth.enrolment_code_issue").exists()


def test_it_refuses_an_unknown_user(cast):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        issue("nobody")


def test_it_keeps_an_enrolled_authenticator_unless_told_to_reset_it(cast):
    old = confirmed_device("alice")
    with pytest.raises(CommandError, match="already has an authenticator app"):
        issue("alice")
    assert TOTPDevice.objects.filter(pk=old.pk).exists()
    assert not StaticDevice.objects.exists()
    code, _ = issue("alice", "--reset-authenticator")
    assert not TOTPDevice.objects.filter(pk=old.pk).exists()
    event = AuditEvent.objects.filter(action="auth.enrolment_code_issue").get()
    assert event.detail["authenticator_removed"] is True
    client, device = at_enrolment("alice")  # the password step now leads to the set-up
    assert enrol(client, device, code).status_code == 302
    assert enrolled("alice")
