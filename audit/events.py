"""The value object every audited service hands to audit.services.append."""

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class Event:
    """One audit event, as the caller knows it; seq, time and hashes are added on append."""

    action: str
    outcome: str
    reason_code: str = ""
    basis: str = ""
    basis_ids: dict = field(default_factory=dict)
    actor_role: str = ""
    actor_username: str = ""
    actor_display: str = ""
    actor_profession: str = ""
    acting_institution: str = ""
    on_behalf_of: str = ""
    patient: str = ""
    study_uid: str = ""
    client_address: str = ""
    request_id: str = ""
    message: str = ""
    detail: dict = field(default_factory=dict)


# The event fields in their canonical order (version 1 of the encoding, audit.canonical).
EVENT_FIELDS: tuple[str, ...] = (
    "action",
    "outcome",
    "reason_code",
    "basis",
    "basis_ids",
    "actor_role",
    "actor_username",
    "actor_display",
    "actor_profession",
    "acting_institution",
    "on_behalf_of",
    "patient",
    "study_uid",
    "client_address",
    "request_id",
    "message",
    "detail",
)
