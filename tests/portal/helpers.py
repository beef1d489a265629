"""Log-in helpers shared by the page tests and the browser tests."""

import time

from django.contrib.auth import get_user_model
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from anim_gateway.enrolment import enrolment_code_issue

PASSWORD = "portal-test-password-1"


def set_password(username: str) -> None:
    user = get_user_model().objects.get(username=username)
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])


def totp_code(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The code an authenticator app would show; steps ahead dodge django-otp's replay guard."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def confirmed_device(username: str) -> TOTPDevice:
    user = get_user_model().objects.get(username=username)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name="Portal", confirmed=True)


def fresh_code(username: str) -> str:
    """A current code; replay guard and throttle are reset so a test may log in twice quickly."""
    device = confirmed_device(username)
    TOTPDevice.objects.filter(pk=device.pk).update(
        last_t=-1, throttling_failure_count=0, throttling_failure_timestamp=None
    )
    return totp_code(device)


def portal_client(username: str, institution: str | None = None) -> Client:
    """A test client fully logged in through the portal's own log-in pages."""
    set_password(username)
    client = Client()
    response = client.post("/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    if response["Location"].startswith("/login/enrol/"):
        code = enrolment_code_issue(username=username)  # as an administrator gives it
        client.get("/login/enrol/")
        device = TOTPDevice.objects.get(user__username=username, confirmed=False)
        response = client.post(
            "/login/enrol/", {"enrolment_code": code, "token": totp_code(device)}
        )
        assert response.status_code == 302, response.content[:500]
    elif response["Location"].startswith("/login/verify/"):
        response = client.post("/login/verify/", {"token": fresh_code(username)})
        assert response.status_code == 302, response.content[:500]
    if response["Location"].startswith("/login/institution/"):
        assert institution, "this practitioner must choose an institution"
        response = client.post("/login/institution/", {"institution": institution})
        assert response.status_code == 302
    return client
