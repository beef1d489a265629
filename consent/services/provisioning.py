"""Provisioning: accounts, practitioners, patients and their local identifiers."""

import datetime

from django.contrib.auth import get_user_model
from django.db import transaction

from anim_gateway.errors import ApplicationError, Conflict, Forbidden, NotFound
from audit.actions import Action
from consent import national_id
from consent.actors import Actor
from consent.auditing import audit_event
from consent.models import (
    Account,
    Affiliation,
    Institution,
    InstitutionAETitle,
    Patient,
    PatientIdentifier,
    Practitioner,
    Role,
    SharedRecord,
    SharedRecordChange,
)
from consent.signals import patient_identifier_added


def institutions_by_code(codes: list[str], *, field: str = "institutions") -> list[Institution]:
    """The institutions of these codes; an unknown code is refused naming ``field``, the
    request's field that held it."""
    found = {i.code: i for i in Institution.objects.filter(code__in=codes)}
    unknown = sorted(set(codes) - set(found))
    if unknown:
        raise ApplicationError(f"{field}: unknown institution code(s) {', '.join(unknown)}.")
    return [found[code] for code in codes]


def _require_may_provision(actor: Actor, institutions: list[Institution]) -> None:
    """Administrators provision anything; a hospital system only for its own institution."""
    if actor.role == Role.ADMIN:
        return
    if actor.role == Role.SYSTEM and all(i == actor.institution for i in institutions):
        return
    raise Forbidden("Only an administrator, or a hospital system for its own institution.")


def _new_user(username: str):
    users = get_user_model().objects
    if users.filter(username=username).exists():
        raise Conflict(f"The username {username!r} is already taken.", code="USERNAME_TAKEN")
    user = users.create_user(username=username)
    user.set_unusable_password()
    user.save(update_fields=["password"])
    return user


@transaction.atomic
def institution_create(
    *, code: str, name: str, ae_titles: list[str], issuer: str = "", peer_networks: str = ""
) -> Institution:
    if Institution.objects.filter(code=code).exists():
        raise Conflict(f"Institution {code} already exists.")
    taken = InstitutionAETitle.objects.filter(ae_title__in=ae_titles).values_list(
        "ae_title", flat=True
    )
    if taken:
        raise Conflict(f"AE title(s) already in use: {', '.join(taken)}.")
    institution = Institution(code=code, name=name, default_issuer=issuer or code)
    institution.full_clean()
    institution.save()
    for title in ae_titles:
        row = InstitutionAETitle(
            institution=institution, ae_title=title, peer_networks=peer_networks
        )
        row.full_clean()
        row.save()
    return institution


@transaction.atomic
def account_create(
    *, actor: Actor, username: str, role: str, institution_code: str | None
) -> Account:
    """Create a DPO or hospital-system login (administrators only)."""
    if actor.role != Role.ADMIN:
        raise Forbidden("Only an administrator may create accounts.")
    if role == Role.SYSTEM and not institution_code:
        raise ApplicationError("institution: a system account belongs to one institution.")
    if role == Role.DPO and institution_code:
        raise ApplicationError("institution: a DPO account has no institution.")
    institution = (
        institutions_by_code([institution_code], field="institution")[0]
        if institution_code
        else None
    )
    account = Account.objects.create(user=_new_user(username), role=role, institution=institution)
    audit_event(actor, action=Action.ACCOUNT_CREATE, detail={"username": username, "role": role})
    return account


@transaction.atomic
def practitioner_create(
    *,
    actor: Actor,
    username: str,
    display_name: str,
    profession: str,
    license_number: str,
    institution_codes: list[str],
) -> Practitioner:
    institutions = institutions_by_code(institution_codes)
    _require_may_provision(actor, institutions)
    if Practitioner.objects.filter(license_number=license_number).exists():
        raise Conflict(f"A practitioner with license {license_number!r} already exists.")
    practitioner = Practitioner.objects.create(
        user=_new_user(username),
        display_name=display_name,
        profession=profession,
        license_number=license_number,
    )
    for institution in institutions:
        Affiliation.objects.create(practitioner=practitioner, institution=institution)
    audit_event(
        actor,
        action=Action.PRACTITIONER_CREATE,
        detail={"username": username, "institutions": institution_codes},
    )
    return practitioner


@transaction.atomic
def patient_create(
    *,
    actor: Actor,
    national_id_value: str,
    family_name: str,
    given_name: str,
    birth_date: datetime.date,
    sex: str,
    identifiers: list[dict],
    username: str | None = None,
) -> Patient:
    """Register a patient with an active shared record and their local identifiers."""
    number = national_id.validate(national_id_value)
    if national_id.birth_date(number) != birth_date:
        raise ApplicationError("birth_date: does not match the birth date in the national_id.")
    codes = [i["institution"] for i in identifiers]
    institutions = institutions_by_code(codes, field="identifiers.institution")
    _require_may_provision(actor, institutions)
    if Patient.objects.filter(national_id=number).exists():
        raise Conflict(f"A patient with national_id {number} already exists.")
    patient = Patient.objects.create(
        national_id=number,
        family_name=family_name,
        given_name=given_name,
        birth_date=birth_date,
        sex=sex,
        user=_new_user(username) if username else None,
    )
    record = SharedRecord.objects.create(patient=patient)
    SharedRecordChange.objects.create(
        record=record, status=record.status, changed_by=actor.username, channel=actor.channel
    )
    audit_event(actor, action=Action.PATIENT_CREATE, patient=number)
    for institution, item in zip(institutions, identifiers, strict=True):
        _identifier_add(actor=actor, patient=patient, institution=institution, value=item["value"])
    return patient


def _identifier_add(
    *, actor: Actor, patient: Patient, institution: Institution, value: str
) -> PatientIdentifier:
    if PatientIdentifier.objects.filter(institution=institution, value=value).exists():
        raise Conflict(f"Identifier {value!r} at {institution.code} is already registered.")
    identifier = PatientIdentifier.objects.create(
        patient=patient, institution=institution, value=value
    )
    audit_event(
        actor,
        action=Action.PATIENT_IDENTIFIER_ADD,
        patient=patient.national_id,
        detail={"institution": institution.code},
    )
    # Studies waiting under this identifier get linked once the identifier is committed.
    transaction.on_commit(
        lambda: patient_identifier_added.send(sender=PatientIdentifier, identifier=identifier)
    )
    return identifier


@transaction.atomic
def patient_identifier_add(
    *, actor: Actor, national_id_value: str, institution_code: str, value: str
) -> PatientIdentifier:
    institution = institutions_by_code([institution_code], field="institution")[0]
    _require_may_provision(actor, [institution])
    number = national_id.compact(national_id_value)
    # Only a valid number is looked up (a NUL byte in the URL is a database error on PostgreSQL).
    valid = national_id.is_valid(number)
    patient = Patient.objects.filter(national_id=number).first() if valid else None
    if patient is None:
        raise NotFound("No patient with this national_id.")
    return _identifier_add(actor=actor, patient=patient, institution=institution, value=value)
