"""Provisioning: accounts, practitioners, patients and their local identifiers."""

import contextlib
import datetime
from collections.abc import Callable, Iterator

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from anim_gateway.errors import ApplicationError, Conflict, Forbidden, NotFound
from audit.actions import Action
from consent import national_id, selectors
from consent.actors import Actor
from consent.auditing import audit_event, audit_refusal
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
from consent.services.passwords import REQUIRED, password_change_require
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


@contextlib.contextmanager
def _refusals_audited(
    actor: Actor, *, action: str, patient: str | Callable[[], str] = "", detail: dict | None = None
) -> Iterator[None]:
    """Audit a refusal as a deny of ``action`` (every attempt is in the log, DESIGN.md Audit).

    Entered before the service's transaction, so the row is written once that has rolled
    back and stands. When it cannot be written, AuditUnavailable replaces the refusal (503):
    the answer claims nothing. ``patient`` identifies the patient as the permitted event
    does (a callable: looked up only for a refusal).
    """
    try:
        yield
    except ApplicationError as refusal:
        about = patient() if callable(patient) else patient
        audit_refusal(actor, refusal, action=action, patient=about, detail=detail)
        raise


@contextlib.contextmanager
def _or_conflict(conflict: Conflict) -> Iterator[None]:
    """Raise ``conflict`` when the insert inside breaks a unique constraint: a concurrent
    request registered the same value after the check, and the answer is the check's (409),
    not a database error's 500."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        raise conflict from exc


def _new_user(username: str, *, password: str | None = None, actor: Actor | None = None):
    """A new login; its password is the one given (the user must change it at their first
    portal log-in: whoever provisioned it knows it), or none (unusable) until one is set."""
    users = get_user_model().objects
    taken = Conflict(
        f"The username {username!r} is already taken.",
        code="USERNAME_TAKEN",
        audit_message="The username is already taken.",
    )
    # Whatever the case: "Alice" next to "alice" would be told apart by nobody.
    if selectors.username_taken(username=username):
        raise taken
    with _or_conflict(taken):
        user = users.create_user(username=username)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
        password_change_require(user=user, acting=actor)
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
        try:
            row.full_clean()
        except ValidationError as exc:
            raise ValidationError(_title_named(exc, title)) from exc
        row.save()
    return institution


def _title_named(exc: ValidationError, title: str) -> list[str]:
    """The row's errors, those of its AE title naming it: of several titles, which one."""
    return [
        f"AE title {title!r}: {message}" if field == "ae_title" else message
        for field, messages in exc.message_dict.items()
        for message in messages
    ]


def account_create(
    *,
    actor: Actor,
    username: str,
    role: str,
    institution_code: str | None,
    password: str | None = None,
) -> Account:
    """Create a DPO or hospital-system login (administrators only); refusals are audited.

    A ``password`` given is changed by the user at their first portal log-in (the event
    says ``password_change_required``; never the password)."""
    detail = {"username": username, "role": role}
    with (
        _refusals_audited(actor, action=Action.ACCOUNT_CREATE, detail=detail),
        transaction.atomic(),
    ):
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
        user = _new_user(username, password=password, actor=actor)
        account = Account.objects.create(user=user, role=role, institution=institution)
        audit_event(actor, action=Action.ACCOUNT_CREATE, detail=detail | _required(password))
    return account


def practitioner_create(
    *,
    actor: Actor,
    username: str,
    display_name: str,
    profession: str,
    license_number: str,
    institution_codes: list[str],
    password: str | None = None,
) -> Practitioner:
    """Register a practitioner affiliated with these institutions; refusals are audited.
    A ``password`` given is changed at the first portal log-in, as ``account_create``'s."""
    detail = {"username": username, "institutions": institution_codes}
    with (
        _refusals_audited(actor, action=Action.PRACTITIONER_CREATE, detail=detail),
        transaction.atomic(),
    ):
        institutions = institutions_by_code(institution_codes)
        _require_may_provision(actor, institutions)
        licensed = Conflict(f"A practitioner with license {license_number!r} already exists.")
        if Practitioner.objects.filter(license_number=license_number).exists():
            raise licensed
        user = _new_user(username, password=password, actor=actor)
        with _or_conflict(licensed):
            practitioner = Practitioner.objects.create(
                user=user,
                display_name=display_name,
                profession=profession,
                license_number=license_number,
            )
        for institution in institutions:
            Affiliation.objects.create(practitioner=practitioner, institution=institution)
        detail |= _required(password)
        audit_event(actor, action=Action.PRACTITIONER_CREATE, detail=detail)
    return practitioner


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
    password: str | None = None,
) -> Patient:
    """Register a patient with an active shared record and their local identifiers (and a
    login, with ``username``; a ``password`` given is changed at the first portal log-in).

    A refusal is audited about the national identifier it was asked for, as the event of a
    registration is (its ``patient``, never its message).
    """
    number = national_id.compact(national_id_value)
    about = number if national_id.is_valid(number) else ""
    with (
        _refusals_audited(actor, action=Action.PATIENT_CREATE, patient=about),
        transaction.atomic(),
    ):
        return _patient_create(
            actor=actor,
            number=national_id.validate(national_id_value),
            family_name=family_name,
            given_name=given_name,
            birth_date=birth_date,
            sex=sex,
            identifiers=identifiers,
            username=username,
            password=password,
        )


def _patient_create(
    *,
    actor: Actor,
    number: str,
    family_name: str,
    given_name: str,
    birth_date: datetime.date,
    sex: str,
    identifiers: list[dict],
    username: str | None,
    password: str | None,
) -> Patient:
    if national_id.birth_date(number) != birth_date:
        raise ApplicationError("birth_date: does not match the birth date in the national_id.")
    codes = [i["institution"] for i in identifiers]
    institutions = institutions_by_code(codes, field="identifiers.institution")
    _require_may_provision(actor, institutions)
    registered = Conflict(
        f"A patient with national_id {number} already exists.",
        audit_message="A patient with this national_id already exists.",
    )
    if Patient.objects.filter(national_id=number).exists():
        raise registered
    user = _new_user(username, password=password, actor=actor) if username else None
    with _or_conflict(registered):
        patient = Patient.objects.create(
            national_id=number,
            family_name=family_name,
            given_name=given_name,
            birth_date=birth_date,
            sex=sex,
            user=user,
        )
    record = SharedRecord.objects.create(patient=patient)
    SharedRecordChange.objects.create(
        record=record, status=record.status, changed_by=actor.username, channel=actor.channel
    )
    audit_event(actor, action=Action.PATIENT_CREATE, patient=number, detail=_required(password))
    for institution, item in zip(institutions, identifiers, strict=True):
        _identifier_add(actor=actor, patient=patient, institution=institution, value=item["value"])
    return patient


def _required(password: str | None) -> dict:
    """What a creation's event says of a password given: that it must be changed."""
    return REQUIRED if password is not None else {}


def _identifier_add(
    *, actor: Actor, patient: Patient, institution: Institution, value: str
) -> PatientIdentifier:
    registered = Conflict(
        f"Identifier {value!r} at {institution.code} is already registered.",
        audit_message=f"The identifier at {institution.code} is already registered.",
    )
    if PatientIdentifier.objects.filter(institution=institution, value=value).exists():
        raise registered
    with _or_conflict(registered):
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


def patient_identifier_add(
    *, actor: Actor, national_id_value: str, institution_code: str, value: str
) -> PatientIdentifier:
    """Add a hospital's identifier to a registered patient; refusals are audited, about the
    patient when there is one (an unknown national identifier is no one's, as at the gate)."""
    number = national_id.compact(national_id_value)
    with (
        _refusals_audited(
            actor,
            action=Action.PATIENT_IDENTIFIER_ADD,
            patient=lambda: _registered(number),
            detail={"institution": institution_code},
        ),
        transaction.atomic(),
    ):
        institution = institutions_by_code([institution_code], field="institution")[0]
        _require_may_provision(actor, [institution])
        # Only a valid number is looked up (a NUL byte in the URL is a database error on
        # PostgreSQL).
        valid = national_id.is_valid(number)
        patient = Patient.objects.filter(national_id=number).first() if valid else None
        if patient is None:
            raise NotFound("No patient with this national_id.")
        return _identifier_add(actor=actor, patient=patient, institution=institution, value=value)


def _registered(number: str) -> str:
    """The national identifier if a patient has it, else ""."""
    if not national_id.is_valid(number):
        return ""
    return number if Patient.objects.filter(national_id=number).exists() else ""
