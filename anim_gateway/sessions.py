"""A user's portal sessions ended on the server: what revoke_tokens does besides the tokens,
and a password change to the user's other sessions."""

from importlib import import_module

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.utils import timezone

# The portal's log-in in progress: the password step passed, the second factor not yet.
PENDING_KEY = "portal_pending_login"


def user_sessions_end(*, user_pk: int, keep: str | None = None) -> int | None:
    """End every live session of this user, the log-ins in progress included.

    Parameters
    ----------
    keep
        The key of a session to leave alone (the one from which the user changes their
        password).

    Returns
    -------
    int or None
        How many sessions were ended; None when the configured session engine keeps its
        sessions where the server cannot find them by user (signed cookies, a cache).
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if not hasattr(store, "get_model_class"):  # db and cached_db keep them as rows
        return None
    decoder = store()
    live = store.get_model_class().objects.filter(expire_date__gt=timezone.now())
    keys = [
        row.session_key
        for row in live.only("session_key", "session_data").iterator()
        if row.session_key != keep and _belongs(decoder.decode(row.session_data), user_pk)
    ]
    for key in keys:
        store(session_key=key).delete()  # through the store: cached_db forgets its copy too
    return len(keys)


def _belongs(data: dict, user_pk: int) -> bool:
    pending = data.get(PENDING_KEY)
    pending_user = pending.get("user") if isinstance(pending, dict) else None
    return str(user_pk) in (str(data.get(SESSION_KEY)), str(pending_user))
