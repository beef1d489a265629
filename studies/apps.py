"""App configuration for studies: connects reconciliation and the study lookup to consent."""

from django.apps import AppConfig


class StudiesConfig(AppConfig):
    name = "studies"
    verbose_name = "Imaging studies"

    def ready(self) -> None:
        from consent.providers import register_study_lookup
        from consent.signals import patient_identifier_added
        from studies import reconcile, selectors

        patient_identifier_added.connect(
            reconcile.on_patient_identifier_added, dispatch_uid="studies.reconcile"
        )
        register_study_lookup(selectors.study_get_ref)
