"""Django admin: django-otp's pages of second-factor devices, every look and change audited."""

import logging
from collections.abc import Callable

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Model, QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest, HttpResponse
from django_otp.plugins.otp_static.admin import StaticDeviceAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from anim_gateway.portal import portal_actor
from audit.actions import Action
from audit.errors import AuditUnavailable
from consent.admin_audit import audit_unavailable, is_row_id
from consent.auditing import audit_event, audit_events
from consent.password_admin import UserPagesRequiringPasswordChange

logger = logging.getLogger(__name__)

# The device kind the audit events name; a static device holds an enrolment code or backup codes.
KINDS = {TOTPDevice: "totp", StaticDevice: "static"}


class AuditedDevicePages:
    """Who added, changed, removed or opened whose second factor is in the audit log (the
    user by id, never by name), for the DPO to see who reset whose authenticator.

    A change's event is written in the change's own transaction: no event, no change (the
    page answers 503 and nothing is kept). The change page is an audited read like the
    guardian pages (``admin.view``); django-otp's OTP_ADMIN_HIDE_SENSITIVE_DATA (settings)
    keeps the secret key, its QR code and the static tokens off it."""

    model: type[Model]

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url="", extra_context=None
    ) -> HttpResponse:
        # A GET shows the page: a read. A saved POST is audited as a change.
        shown = object_id is not None and request.method == "GET"
        if shown and not _audited_read(request, self.model, object_id):
            return audit_unavailable()
        view = super().changeform_view
        response = _refused_when_unaudited(view, request, object_id, form_url, extra_context)
        shown_again = _shown_again(request, object_id, response)
        if shown_again and not _audited_read(request, self.model, object_id):
            return audit_unavailable()
        return response

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None):
        return _refused_when_unaudited(super().delete_view, request, object_id, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        # Its "delete selected" action deletes outside any transaction of Django's own.
        def in_one_transaction() -> HttpResponse:
            with transaction.atomic():
                return super(AuditedDevicePages, self).changelist_view(request, extra_context)

        return _refused_when_unaudited(in_one_transaction)

    def save_related(
        self, request: HttpRequest, form: ModelForm, formsets: list, change: bool
    ) -> None:
        super().save_related(request, form, formsets, change)
        action = Action.AUTH_DEVICE_CHANGE if change else Action.AUTH_DEVICE_ADD
        detail = _about(form.instance) | {"fields": sorted(form.changed_data)}
        if change and "user" in form.changed_data:
            # A device given to another user: the one who lost it is named too.
            detail["previous_user_id"] = form.initial.get("user")
        detail |= _inline_changes(formsets)
        audit_event(portal_actor(request), action=action, detail=detail)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        about = _about(obj)  # before the delete clears its id
        super().delete_model(request, obj)
        audit_event(portal_actor(request), action=Action.AUTH_DEVICE_DELETE, detail=about)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        deleted = [_about(device) for device in queryset]
        super().delete_queryset(request, queryset)
        _audit_deleted(request, deleted)


class UserPagesAuditingDevices:
    """The user pages: deleting a user deletes their second-factor devices with them (a
    cascade), audited one event per device as the device pages' deletions are."""

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None):
        return _refused_when_unaudited(super().delete_view, request, object_id, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        def in_one_transaction() -> HttpResponse:  # "delete selected" has none of its own
            with transaction.atomic():
                return super(UserPagesAuditingDevices, self).changelist_view(request, extra_context)

        return _refused_when_unaudited(in_one_transaction)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        deleted = _devices_of([obj.pk])
        super().delete_model(request, obj)
        _audit_deleted(request, deleted)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        deleted = _devices_of(list(queryset.values_list("pk", flat=True)))
        super().delete_queryset(request, queryset)
        _audit_deleted(request, deleted)


def _devices_of(user_ids: list[int]) -> list[dict]:
    """What the audit says of each device of these users, read before they go."""
    return [
        _about(device)
        for model in KINDS
        for device in model.objects.filter(user_id__in=user_ids).order_by("pk")
    ]


def _audit_deleted(request: HttpRequest, deleted: list[dict]) -> None:
    if not deleted:
        return
    events = [
        {"action": Action.AUTH_DEVICE_DELETE, "outcome": "permit", "detail": about}
        for about in deleted
    ]
    audit_events(portal_actor(request), events)


def _shown_again(request: HttpRequest, object_id: str | None, response: HttpResponse) -> bool:
    """A POST the form refused: the page is shown again and nothing changed, a read."""
    return object_id is not None and request.method != "GET" and response.status_code == 200


def _about(device: Model) -> dict:
    """The device's kind and id, its user's id, and whether it is (or was) a working factor."""
    return {
        "kind": KINDS[type(device)],
        "device": device.pk,
        "user_id": device.user_id,
        "confirmed": device.confirmed,
    }


def _inline_changes(formsets: list[BaseInlineFormSet]) -> dict:
    """How many tokens (a static device's inline rows) were added, changed or deleted."""
    counts = {}
    for formset in formsets:
        counted = {
            "added": len(formset.new_objects),
            "changed": len(formset.changed_objects),
            "deleted": len(formset.deleted_objects),
        }
        if any(counted.values()):
            counts[formset.model._meta.model_name] = counted
    return {"inlines": counts} if counts else {}


def _refused_when_unaudited(view: Callable, *args: object) -> HttpResponse:
    """The view's answer; 503 when its audit event could not be written. The view's
    transaction has then rolled back: the change is not kept without its event."""
    try:
        return view(*args)
    except AuditUnavailable:
        logger.exception("An administration change was refused: the audit log is unavailable")
        return audit_unavailable()


def _audited_read(request: HttpRequest, model: type[Model], object_id: str) -> bool:
    """Write the page's audit event (the device's user by id); False when it could not be."""
    user_id = None
    if is_row_id(object_id):
        user_id = model.objects.filter(pk=object_id).values_list("user_id", flat=True).first()
    detail = {"model": model._meta.model_name, "object": object_id, "user_id": user_id}
    try:
        audit_event(portal_actor(request), action=Action.ADMIN_VIEW, detail=detail)
    except AuditUnavailable:
        logger.exception("An administration page was refused: the audit log is unavailable")
        return False
    return True


class AuditedTOTPDeviceAdmin(AuditedDevicePages, TOTPDeviceAdmin):
    pass


class AuditedStaticDeviceAdmin(AuditedDevicePages, StaticDeviceAdmin):
    pass


def register_device_admins(site: admin.AdminSite) -> None:
    """Replace django-otp's own device pages (registered when its admin modules load)."""
    for model, model_admin in [
        (TOTPDevice, AuditedTOTPDeviceAdmin),
        (StaticDevice, AuditedStaticDeviceAdmin),
    ]:
        if site.is_registered(model):
            site.unregister(model)
        site.register(model, model_admin)
    user_model = get_user_model()
    if site.is_registered(user_model):
        # Whatever admin the user model has (django.contrib.auth's), with the devices' audit
        # and the change owed of a password set there.
        user_admin = type(site.get_model_admin(user_model))
        site.unregister(user_model)
        bases = (UserPagesRequiringPasswordChange, UserPagesAuditingDevices, user_admin)
        audited = type("UserAdmin", bases, {})
        site.register(user_model, audited)
