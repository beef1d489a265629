"""Dependency inversion: the studies app tells consent how to find a study, so consent never
imports studies (the studies AppConfig.ready() calls register_study_lookup)."""

from collections.abc import Callable

from consent.gate import StudyRef

_lookup: Callable[[str], StudyRef | None] | None = None


def register_study_lookup(fn: Callable[[str], StudyRef | None]) -> None:
    """Register ``fn(study_uid) -> StudyRef | None``; the last registration wins."""
    global _lookup
    _lookup = fn


def lookup_study(study_uid: str) -> StudyRef | None:
    """The study with this UID, or None when it is unknown or no app provides studies."""
    if _lookup is None:
        return None
    return _lookup(study_uid)
