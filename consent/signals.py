"""Signals that let later apps react to consent events without consent importing them."""

from django.dispatch import Signal

# Sent after a PatientIdentifier is committed; kwargs: identifier (PatientIdentifier).
patient_identifier_added = Signal()
