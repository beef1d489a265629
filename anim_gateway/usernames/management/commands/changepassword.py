"""changepassword, whose new password the user must change at their next portal log-in."""

import getpass

from django.contrib.auth import get_user_model
from django.contrib.auth.management.commands import changepassword
from django.db import transaction

from consent.actors import Actor
from consent.models import Role
from consent.services.passwords import password_set_for_user

CLI_ACTOR = Actor(
    role=Role.ADMIN, username="cli:changepassword", display_name="changepassword", channel="cli"
)


class Command(changepassword.Command):
    help = (
        "Change a user's password; the user must choose their own at their next portal log-in "
        "(whoever ran this knows it). Users change their own on the portal's password page."
    )

    def handle(self, *args, **options) -> str:
        # The password, the change owed and its audit event: all or none.
        with transaction.atomic(using=options["database"]):
            done = super().handle(*args, **options)
            username = options["username"] or getpass.getuser()  # as Django's command finds it
            users = get_user_model()._default_manager.db_manager(options["database"])
            user = users.get_by_natural_key(username)
            password_set_for_user(user=user, acting=CLI_ACTOR, via="changepassword")
        return f"{done}; they must change it at their next portal log-in."
