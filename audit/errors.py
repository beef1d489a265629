"""The audit app's small error vocabulary."""


class AuditUnavailable(Exception):
    """The audit row could not be written; callers must fail closed (deny)."""


class InvalidAuditEvent(AuditUnavailable):
    """The event itself is malformed (unknown action, oversized code, unserialisable detail)."""


class AuditImmutable(Exception):
    """Someone tried to change or delete an audit row or checkpoint through the ORM."""
