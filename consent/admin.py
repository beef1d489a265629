"""Django admin: institutions, practitioners, affiliations; consent history read-only."""

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from guardian.admin import (
    AdminGroupObjectPermissionsForm,
    AdminUserObjectPermissionsForm,
    GuardedModelAdmin,
)

from anim_gateway.portal import portal_actor
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
class PatientAdmin(GuardedModelAdmin):
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


class ReadOnlyHistoryAdmin(admin.ModelAdmin):
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
