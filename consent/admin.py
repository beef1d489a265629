"""Django admin: institutions, practitioners, affiliations; consent history read-only."""

import logging

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.http import Http404, HttpRequest
from guardian.admin import (
    AdminGroupObjectPermissionsForm,
    AdminUserObjectPermissionsForm,
    GuardedModelAdmin,
)

from anim_gateway.portal import portal_actor
from audit.actions import Action
from audit.errors import AuditUnavailable
from consent.admin_audit import audit_unavailable, is_row_id
from consent.auditing import audit_event
from consent.device_admin import register_device_admins
from consent.models import (
    Account,
    Affiliation,
    CareRelationship,
    Consent,
    EmergencyAccess,
    Exclusion,
    Institution,
    InstitutionAETitle,
    Patient,
    Practitioner,
    StudyVisibility,
)
from consent.services import representation

logger = logging.getLogger(__name__)

PERMISSIONS = "permissions"  # the "page" of guardian's object-permission pages' events


class AuditedReads:
    """Every page of these consent records, list or one record, is an audit event (about
    the record's patient for one record): what the administration shows of a patient's
    choices (a hidden study, an emergency's reason) is read like any other access. No event,
    no page: when the audit log cannot be written, the page is refused (503)."""

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        if not _audited_read(request, self.model, object_id=""):
            return audit_unavailable()
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ):
        if not _audited_read(request, self.model, object_id=object_id):
            return audit_unavailable()
        return super().change_view(request, object_id, form_url, extra_context)


class AuditedPermissionPages(AuditedReads):
    """django-guardian's object-permission pages (GuardedModelAdmin) show who may act for the
    patient, a representative's login and rights: audited reads as the record's own page is,
    with the page named (``"page": "permissions"``, and the login or group shown)."""

    def obj_perms_manage_view(self, request: HttpRequest, object_pk: str):
        if not _audited_read(request, self.model, object_id=object_pk, page=PERMISSIONS):
            return audit_unavailable()
        _require_row_ids(object_pk)
        return super().obj_perms_manage_view(request, object_pk)

    def obj_perms_manage_user_view(self, request: HttpRequest, object_pk: str, user_id: str):
        shown = {"user": _name_of(get_user_model(), "username", user_id)}
        if not _audited_read(request, self.model, object_id=object_pk, page=PERMISSIONS, **shown):
            return audit_unavailable()
        _require_row_ids(object_pk, user_id)
        return super().obj_perms_manage_user_view(request, object_pk, user_id)

    def obj_perms_manage_group_view(self, request: HttpRequest, object_pk: str, group_id: str):
        shown = {"group": _name_of(Group, "name", group_id)}
        if not _audited_read(request, self.model, object_id=object_pk, page=PERMISSIONS, **shown):
            return audit_unavailable()
        _require_row_ids(object_pk, group_id)
        return super().obj_perms_manage_group_view(request, object_pk, group_id)


def _require_row_ids(*values: str) -> None:
    """guardian looks its ids up as they come (a ValueError, 500, for "abc"): a 404 instead."""
    if not all(is_row_id(value) for value in values):
        raise Http404("No such record.")


def _name_of(model: type, field: str, pk: str) -> str:
    """The login or group name of this id as it is now ("" for an unknown one)."""
    if not is_row_id(pk):
        return ""
    return model.objects.filter(pk=pk).values_list(field, flat=True).first() or ""


def _audited_read(request: HttpRequest, model: type, *, object_id: str, **shown: str) -> bool:
    """Write the read's audit event; False when the audit log could not be written."""
    detail = {"model": model._meta.model_name, "object": object_id or "list", **shown}
    try:
        audit_event(
            portal_actor(request),
            action=Action.ADMIN_VIEW,
            patient=_national_id_of(model, object_id),
            detail=detail,
        )
    except AuditUnavailable:
        logger.exception("An administration page was refused: the audit log is unavailable")
        return False
    return True


def _national_id_of(model: type, object_id: str) -> str:
    """The national identifier of the record's patient, "" for a list or an unknown id."""
    if not is_row_id(object_id):
        return ""
    if model is Patient:
        found = Patient.objects.filter(pk=object_id)
    else:
        found = Patient.objects.filter(pk__in=model.objects.filter(pk=object_id).values("patient"))
    return found.values_list("national_id", flat=True).first() or ""


class AETitleInline(admin.TabularInline):
    model = InstitutionAETitle
    extra = 1


class AffiliationInline(admin.TabularInline):
    model = Affiliation
    extra = 1


@admin.register(Institution)
class InstitutionAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "default_issuer"]
    search_fields = ["code", "name"]
    inlines = [AETitleInline]


@admin.register(Practitioner)
class PractitionerAdmin(admin.ModelAdmin):
    list_display = ["display_name", "profession", "license_number"]
    search_fields = ["display_name", "license_number", "user__username"]
    list_filter = ["profession"]
    inlines = [AffiliationInline]


@admin.register(Affiliation)
class AffiliationAdmin(admin.ModelAdmin):
    list_display = ["practitioner", "institution", "start", "end"]
    list_filter = ["institution"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["user", "role", "institution"]


@admin.register(Patient)
class PatientAdmin(AuditedPermissionPages, GuardedModelAdmin):
    """Only for granting legal representation (object permission act_for_patient).

    Administrators do not see patient data: no names, birth dates or hospital identifiers
    here, and nothing is edited (patients change through the audited services).
    """

    list_display = ["national_id"]
    search_fields = ["national_id"]
    fields = ["national_id", "user"]
    readonly_fields = ["national_id", "user"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Patient | None = None) -> bool:
        return False

    def get_obj_perms_manage_user_form(self, request: HttpRequest) -> type[forms.Form]:
        """Grants and revocations go through the audited representation service."""
        actor = portal_actor(request)

        class RepresentationForm(AdminUserObjectPermissionsForm):
            def save_obj_perms(self) -> None:
                chosen = (
                    representation.CODENAME in self.cleaned_data[self.get_obj_perms_field_name()]
                )
                held = representation.represents(self.user, self.obj)
                # clean() refused an invalid representative; the service checks again.
                if chosen and not held:
                    representation.representation_grant(
                        actor=actor, patient=self.obj, user=self.user
                    )
                elif held and not chosen:
                    representation.representation_revoke(
                        actor=actor, patient=self.obj, user=self.user
                    )

            def clean(self) -> dict:
                cleaned = super().clean()
                if representation.CODENAME in cleaned.get(self.get_obj_perms_field_name(), []):
                    problem = representation.grant_problem(patient=self.obj, user=self.user)
                    if problem:
                        raise forms.ValidationError(problem)
                return cleaned

        return RepresentationForm

    def get_obj_perms_manage_group_form(self, request: HttpRequest) -> type[forms.Form]:
        return GroupRepresentationRefused


class GroupRepresentationRefused(AdminGroupObjectPermissionsForm):
    """A legal representative is a person: no group may be granted to act for a patient (the
    gate ignores group permissions); one granted before can still be removed here."""

    def clean(self) -> dict:
        cleaned = super().clean()
        if representation.CODENAME in cleaned.get(self.get_obj_perms_field_name(), []):
            raise forms.ValidationError(
                "Legal representation is granted to one person's login, never to a group."
            )
        return cleaned


class ReadOnlyHistoryAdmin(AuditedReads, admin.ModelAdmin):
    """Consents and the like change only through their services (audited, set-once columns):
    the admin shows them and never edits or deletes them."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Consent)
class ConsentAdmin(ReadOnlyHistoryAdmin):
    list_display = ["pk", "patient", "all_members", "valid_from", "valid_until", "revoked_at"]
    list_filter = ["all_members", "allow_emergency"]


@admin.register(CareRelationship)
class CareRelationshipAdmin(ReadOnlyHistoryAdmin):
    list_display = ["pk", "patient", "practitioner", "kind", "start", "end", "ended_at"]
    list_filter = ["kind"]


@admin.register(Exclusion)
class ExclusionAdmin(ReadOnlyHistoryAdmin):
    list_display = ["pk", "patient", "practitioner", "created_at", "removed_at"]


@admin.register(StudyVisibility)
class StudyVisibilityAdmin(ReadOnlyHistoryAdmin):
    list_display = ["pk", "patient", "study_uid", "hidden_at", "unhidden_at"]


@admin.register(EmergencyAccess)
class EmergencyAccessAdmin(ReadOnlyHistoryAdmin):
    list_display = ["pk", "patient", "practitioner", "institution", "start", "expires_at", "review"]
    list_filter = ["review", "institution"]


# django-otp's pages of second-factor devices, audited like the pages above.
register_device_admins(admin.site)
