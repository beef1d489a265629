"""Django admin: a password an administrator sets on the user pages is changed by its user
at their next portal log-in, and the setting is audited (never the password)."""

from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Model
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse

from anim_gateway.portal import portal_actor
from consent.admin_audit import is_row_id
from consent.services.passwords import password_set_for_user


class UserPagesRequiringPasswordChange:
    """ "Add user" with a password, and the "Change password" form of another user: the user
    owes a change (``account.password_set``). An administrator's own password set there is
    theirs: nothing is owed."""

    def save_model(self, request: HttpRequest, obj: Model, form: ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # In the add view's transaction (Django's changeform_view): no event, no user.
        if not change and obj.has_usable_password():
            password_set_for_user(user=obj, acting=portal_actor(request), via="admin_add")

    def user_change_password(self, request: HttpRequest, id: str, form_url="") -> HttpResponse:
        with transaction.atomic():
            before = _password_hash(id)
            response = super().user_change_password(request, id, form_url)
            after = _password_hash(id)
            if _set_for_another(request, id, before, after):
                user = get_user_model().objects.get(pk=unquote(id))
                password_set_for_user(user=user, acting=portal_actor(request), via="admin_password")
        return response


def _password_hash(object_id: str) -> str | None:
    user_id = unquote(object_id)
    if not is_row_id(user_id):
        return None
    users = get_user_model().objects
    return users.filter(pk=user_id).values_list("password", flat=True).first()


def _set_for_another(
    request: HttpRequest, object_id: str, before: str | None, after: str | None
) -> bool:
    """A new usable password (not the "disable password-based log-in" choice), not one's own."""
    if after is None or after == before or after.startswith("!"):  # "!": unusable
        return False
    return str(request.user.pk) != unquote(object_id)
