"""django-otp's device pages in the administration: who set up or removed whose second factor
is audited (the user by id), and no page shows a device's secret."""

from base64 import b32encode
from binascii import unhexlify

import pytest
from django.contrib import admin
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from anim_gateway.enrolment import enrolment_code_issue
from audit.errors import AuditUnavailable
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

TOTP_PAGES = "/admin/otp_totp/totpdevice"
STATIC_PAGES = "/admin/otp_static/staticdevice"
KEY = "3132333435363738393031323334353637383930"  # hex, as the admin form takes it


def device_events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def totp_fields(user_id: int, **changes: object) -> dict:
    """The TOTP device form as an administrator submits it."""
    fields = {
        "user": user_id,
        "name": "Phone",
        "confirmed": "on",
        "step": 30,
        "t0": 0,
        "digits": 6,
        "tolerance": 1,
        "drift": 0,
        "throttling_failure_count": 0,
    }
    return fields | changes


def assert_names_no_one(event: AuditEvent, *usernames: str) -> None:
    for username in usernames:
        assert username not in str(event.detail)


def test_every_device_page_of_the_admin_is_audited():
    from consent.device_admin import AuditedDevicePages

    device_admins = {
        model: model_admin
        for model, model_admin in admin.site._registry.items()
        if issubclass(model, Device)
    }
    assert set(device_admins) == {TOTPDevice, StaticDevice}
    assert all(isinstance(page, AuditedDevicePages) for page in device_admins.values())


def test_adding_an_authenticator_is_audited(admin_client_verified, cast):
    alice = cast.alice.user
    response = admin_client_verified.post(
        f"{TOTP_PAGES}/add/", totp_fields(alice.pk, key=KEY, name="Spare phone")
    )
    assert response.status_code == 302, response.content
    device = TOTPDevice.objects.get(user=alice)
    [event] = device_events("auth.device_add")
    assert (event.outcome, event.actor_username, event.actor_role) == ("permit", "root", "admin")
    assert event.detail["kind"] == "totp"
    assert (event.detail["device"], event.detail["user_id"]) == (device.pk, alice.pk)
    assert event.detail["confirmed"] is True  # a working second factor, its key known here
    assert "key" in event.detail["fields"]
    assert_names_no_one(event, "alice", "Spare phone")
    assert KEY not in str(AuditEvent.objects.values_list().get(pk=event.pk))


def test_changing_an_authenticator_is_audited_with_the_fields_changed(admin_client_verified, cast):
    alice = cast.alice.user
    device = TOTPDevice.objects.create(user=alice, name="Phone", confirmed=True)
    response = admin_client_verified.post(
        f"{TOTP_PAGES}/{device.pk}/change/", totp_fields(alice.pk, confirmed="")
    )
    assert response.status_code == 302, response.content
    device.refresh_from_db()
    assert not device.confirmed
    [event] = device_events("auth.device_change")
    assert event.detail == {
        "kind": "totp",
        "device": device.pk,
        "user_id": alice.pk,
        "confirmed": False,
        "fields": ["confirmed"],
    }


def test_deleting_an_authenticator_is_audited(admin_client_verified, cast):
    alice = cast.alice.user
    device = TOTPDevice.objects.create(user=alice, name="Phone", confirmed=True)
    response = admin_client_verified.post(f"{TOTP_PAGES}/{device.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    [event] = device_events("auth.device_delete")
    assert event.actor_username == "root"
    assert event.detail == {
        "kind": "totp",
        "device": device.pk,
        "user_id": alice.pk,
        "confirmed": True,
    }


def test_deleting_several_devices_at_once_is_one_event_each(admin_client_verified, cast):
    alices = TOTPDevice.objects.create(user=cast.alice.user, name="Phone", confirmed=True)
    bobs = TOTPDevice.objects.create(user=cast.bob.user, name="Phone", confirmed=True)
    response = admin_client_verified.post(
        f"{TOTP_PAGES}/",
        {"action": "delete_selected", "_selected_action": [alices.pk, bobs.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(pk__in=[alices.pk, bobs.pk]).exists()
    deleted = {
        (e.detail["device"], e.detail["user_id"]) for e in device_events("auth.device_delete")
    }
    assert deleted == {(alices.pk, cast.alice.user.pk), (bobs.pk, cast.bob.user.pk)}


def test_deleting_an_enrolment_code_is_audited_as_a_static_device(admin_client_verified, cast):
    enrolment_code_issue(username="charlie")
    holder = StaticDevice.objects.get(user=cast.charlie.user)
    response = admin_client_verified.post(f"{STATIC_PAGES}/{holder.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    [event] = device_events("auth.device_delete")
    assert event.detail == {
        "kind": "static",
        "device": holder.pk,
        "user_id": cast.charlie.user.pk,
        "confirmed": False,  # an enrolment code, never a second factor
    }


def test_adding_backup_codes_is_audited_with_how_many(admin_client_verified, cast):
    alice = cast.alice.user
    fields = {"user": alice.pk, "name": "Backup", "confirmed": "on"}
    fields |= {"token_set-TOTAL_FORMS": 2, "token_set-INITIAL_FORMS": 0}
    fields |= {"token_set-0-token": "backupcode12", "token_set-1-token": "backupcode34"}
    response = admin_client_verified.post(f"{STATIC_PAGES}/add/", fields)
    assert response.status_code == 302, response.content
    [event] = device_events("auth.device_add")
    assert event.detail["kind"] == "static"
    assert event.detail["inlines"] == {"statictoken": {"added": 2, "changed": 0, "deleted": 0}}
    assert "backupcode" not in str(AuditEvent.objects.values_list().get(pk=event.pk))


def test_opening_a_device_shows_no_secret_and_is_an_audited_read(admin_client_verified, cast):
    alice = cast.alice.user
    device = TOTPDevice.objects.create(user=alice, name="Phone", confirmed=True, key=KEY)
    page = admin_client_verified.get(f"{TOTP_PAGES}/{device.pk}/change/")
    assert page.status_code == 200
    secret_b32 = b32encode(unhexlify(KEY)).decode()
    for secret in (KEY, secret_b32, device.config_url):
        assert secret not in page.content.decode()
    [event] = device_events("admin.view")
    assert event.actor_username == "root"
    assert event.detail == {"model": "totpdevice", "object": str(device.pk), "user_id": alice.pk}
    # django-otp's own key and QR code pages are closed.
    assert admin_client_verified.get(f"{TOTP_PAGES}/{device.pk}/config/").status_code == 403
    assert admin_client_verified.get(f"{TOTP_PAGES}/{device.pk}/qrcode/").status_code == 403


def test_an_enrolment_codes_device_page_shows_no_token(admin_client_verified, cast):
    enrolment_code_issue(username="alice")
    holder = StaticDevice.objects.get(user=cast.alice.user)
    stored = holder.token_set.get().token
    page = admin_client_verified.get(f"{STATIC_PAGES}/{holder.pk}/change/")
    assert page.status_code == 200
    assert stored not in page.content.decode()


@pytest.mark.parametrize("object_id", ["999999", "abc", "\u00b2"])
def test_an_unknown_device_id_is_no_500_and_still_audited(admin_client_verified, object_id):
    response = admin_client_verified.get(f"{TOTP_PAGES}/{object_id}/change/")
    assert response.status_code == 302  # the admin's "does not exist" redirect
    [event] = device_events("admin.view")
    assert event.detail == {"model": "totpdevice", "object": object_id, "user_id": None}


@pytest.fixture
def audit_down(monkeypatch):
    from consent import device_admin

    def unavailable(*args, **kwargs):
        raise AuditUnavailable("down")

    monkeypatch.setattr(device_admin, "audit_event", unavailable)
    monkeypatch.setattr(device_admin, "audit_events", unavailable)


def test_no_audit_event_no_change(admin_client_verified, cast, audit_down):
    alice = cast.alice.user
    added = admin_client_verified.post(f"{TOTP_PAGES}/add/", totp_fields(alice.pk, key=KEY))
    assert added.status_code == 503
    assert not TOTPDevice.objects.filter(user=alice).exists()
    device = TOTPDevice.objects.create(user=alice, name="Phone", confirmed=True)
    change = f"{TOTP_PAGES}/{device.pk}/change/"
    assert (
        admin_client_verified.post(change, totp_fields(alice.pk, confirmed="")).status_code == 503
    )
    device.refresh_from_db()
    assert device.confirmed
    deleted = admin_client_verified.post(f"{TOTP_PAGES}/{device.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 503
    several = admin_client_verified.post(
        f"{TOTP_PAGES}/",
        {"action": "delete_selected", "_selected_action": [device.pk], "post": "yes"},
    )
    assert several.status_code == 503
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    assert admin_client_verified.get(change).status_code == 503  # no audited read, no page


def test_an_authenticator_given_to_another_user_names_the_user_who_lost_it(
    admin_client_verified, cast
):
    """Alice's working authenticator moved to Bob: she loses her second factor, and the DPO
    must see whose it was (a review found only the new owner named)."""
    alice, bob = cast.alice.user, cast.bob.user
    device = TOTPDevice.objects.create(user=alice, name="Phone", confirmed=True)
    response = admin_client_verified.post(f"{TOTP_PAGES}/{device.pk}/change/", totp_fields(bob.pk))
    assert response.status_code == 302
    [event] = device_events("auth.device_change")
    assert (event.detail["user_id"], event.detail["previous_user_id"]) == (bob.pk, alice.pk)


def test_a_device_page_shown_again_after_a_refused_change_is_an_audited_read(
    admin_client_verified, cast
):
    """An invalid POST changes nothing and shows the device's page as a GET does."""
    alice = cast.alice.user
    device = TOTPDevice.objects.create(user=alice, name="Phone", confirmed=True)
    page = admin_client_verified.post(
        f"{TOTP_PAGES}/{device.pk}/change/", totp_fields(alice.pk, digits="x")
    )
    assert page.status_code == 200
    assert not device_events("auth.device_change")
    [event] = device_events("admin.view")
    assert event.detail["user_id"] == alice.pk


@pytest.mark.parametrize("how", ["page", "delete_selected"])
def test_deleting_a_user_audits_the_devices_deleted_with_them(admin_client_verified, cast, how):
    """The user pages delete a user's devices with the user (a cascade): one event each."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("temp-doctor", password="x-unused-123456")
    totp = TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    static = StaticDevice.objects.create(user=user, name="backup", confirmed=True)
    if how == "page":
        response = admin_client_verified.post(
            f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"}
        )
    else:
        response = admin_client_verified.post(
            "/admin/auth/user/",
            {"action": "delete_selected", "_selected_action": [user.pk], "post": "yes"},
        )
    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=user.pk).exists()
    assert [e.detail for e in device_events("auth.device_delete")] == [
        {"kind": "totp", "device": totp.pk, "user_id": user.pk, "confirmed": True},
        {"kind": "static", "device": static.pk, "user_id": user.pk, "confirmed": True},
    ]


def test_no_audit_event_no_user_deleted_with_their_devices(admin_client_verified, cast, audit_down):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("temp-doctor", password="x-unused-123456")
    TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    response = admin_client_verified.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 503
    several = admin_client_verified.post(
        "/admin/auth/user/",
        {"action": "delete_selected", "_selected_action": [user.pk], "post": "yes"},
    )
    assert several.status_code == 503
    assert TOTPDevice.objects.filter(user=user).exists()
