"""A username is unique whatever its case, in the database itself (auth_user)."""

from django.db import migrations

INDEX = "auth_user_username_lower_uniq"
# An expression index: PostgreSQL and SQLite alike.
CREATE_INDEX = f"CREATE UNIQUE INDEX {INDEX} ON auth_user (lower(username))"
DROP_INDEX = f"DROP INDEX {INDEX}"


class ClashingUsernames(Exception):
    """Accounts whose usernames differ only in case: a person must decide which to rename."""


def clashing_usernames(users) -> list[list[str]]:
    """The groups of usernames that differ only in case, each sorted, in username order."""
    by_lower: dict[str, list[str]] = {}
    for username in users.objects.order_by("username").values_list("username", flat=True):
        by_lower.setdefault(username.lower(), []).append(username)
    return sorted(group for group in by_lower.values() if len(group) > 1)


def refuse_clashing_usernames(apps, schema_editor) -> None:
    """Stop before the index when existing accounts clash, naming them: which account to
    rename is a person's decision, never the migration's."""
    clashes = clashing_usernames(apps.get_model("auth", "User"))
    if clashes:
        named = "; ".join(", ".join(repr(name) for name in group) for group in clashes)
        raise ClashingUsernames(
            f"Usernames differing only in case exist: {named}. Rename all but one of each "
            "group (Django admin, Users), then run migrate again."
        )


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [
        migrations.RunPython(refuse_clashing_usernames, migrations.RunPython.noop),
        migrations.RunSQL(CREATE_INDEX, DROP_INDEX),
    ]
