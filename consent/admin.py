"""Django admin for institutions, practitioners and affiliations."""

from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from consent.models import (
    Account,
    Affiliation,
    Institution,
    InstitutionAETitle,
    Patient,
    PatientIdentifier,
    Practitioner,
)


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


class PatientIdentifierInline(admin.TabularInline):
    model = PatientIdentifier
    extra = 0


@admin.register(Patient)
class PatientAdmin(GuardedModelAdmin):
    """Legal representatives are granted here as the object permission act_for_patient."""

    list_display = ["national_id", "birth_date"]
    search_fields = ["national_id"]
    inlines = [PatientIdentifierInline]
