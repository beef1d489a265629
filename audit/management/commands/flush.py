"""Django's flush, able to empty the append-only audit tables only when asked or under tests.

TransactionTestCase calls flush after every transactional test; the triggers would refuse
it. The triggers are dropped and recreated in the flush's own transaction, which needs the
table owner's rights, the same rights that could drop them anyway.
"""

from argparse import ArgumentParser

from django.conf import settings
from django.core import mail
from django.core.management.base import CommandError
from django.core.management.commands import flush
from django.db import connections, transaction

from audit import triggers


def _under_test() -> bool:
    # Django's test set-up installs mail.outbox; nothing else does.
    return hasattr(mail, "outbox")


class Command(flush.Command):
    help = flush.Command.help + " Refuses to erase the audit log unless --erase-audit-log."

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--erase-audit-log",
            action="store_true",
            help="Also erase the append-only audit log (irreversible).",
        )

    def handle(self, **options: object) -> None:
        if not (options["erase_audit_log"] or _under_test()):
            raise CommandError(
                "flush would erase the append-only audit log; pass --erase-audit-log to do so."
            )
        if not (settings.AUDIT_ERASABLE or _under_test()):
            # A production log is never erased by the application (docs/audit.md).
            raise CommandError(
                "The audit log can be erased only on a development instance (AUDIT_ERASABLE)."
            )
        connection = connections[options["database"]]
        with transaction.atomic(using=connection.alias):
            triggers.set_enabled(connection, enabled=False)
            super().handle(**options)
            triggers.set_enabled(connection, enabled=True)
