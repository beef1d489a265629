"""The portal log-in's failure counters, in the cache: one per username, one per client address."""

import contextlib
import ipaddress

from django.conf import settings
from django.core.cache import cache

USERNAME = "username"
ADDRESS = "address"


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def _username_key(username: str) -> str:
    return f"portal:login-failures:{username.strip().lower()[:150]}"


def address_group(address: str) -> str:
    """The address as counted: an IPv6 client by its /64, which one host may rotate through."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]  # no address (a Unix socket) or not one: counted as given
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    # From the integer: a scoped address ("fe80::1%eth0") has no exploded form.
    return str(ipaddress.IPv6Network((int(ip), 64), strict=False))


def _address_key(address: str) -> str:
    return f"portal:login-failures-from:{address_group(address)}"


def _a_proxy(address: str) -> bool:
    """Whether the peer is the reverse proxy: every client would share its counter, and a
    hundred failures from anyone would lock everyone out (the proxy limits addresses).

    As gunicorn reads GUNICORN_FORWARDED_ALLOW_IPS: addresses or networks, ``*`` for all. A
    peer without an IP address (gunicorn bound to a Unix socket) is a proxy too.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    return any(_within(ip, entry) for entry in settings.PROXY_ADDRESSES)


def counted_address(peer: str, forwarded_for: str) -> str:
    """The client address the counter counts. Behind a trusted proxy, the last address the
    proxies appended to X-Forwarded-For that is not one of theirs (what a client wrote in
    the header itself comes before it, and is never read); "" (not counted) when there is
    none. The audit log keeps the peer's address (docs/configuration.md)."""
    if not _a_proxy(peer):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        if not _a_proxy(hop.strip()):
            return hop.strip()
    return ""


def _within(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, entry: str) -> bool:
    if entry == "*":
        return True
    try:
        return ip in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False  # not an address: gunicorn ignores it too


def _counters(username: str, address: str) -> list[tuple[str, str, int, int]]:
    """(name, cache key, failures allowed, window in seconds) of each counter; address first."""
    by_address = [
        (
            ADDRESS,
            _address_key(address),
            _setting("PORTAL_LOGIN_ADDRESS_MAX_FAILURES", 100),
            _setting("PORTAL_LOGIN_ADDRESS_WINDOW_SECONDS", 3600),
        )
    ]
    return [
        *([] if _a_proxy(address) else by_address),
        (
            USERNAME,
            _username_key(username),
            _setting("PORTAL_LOGIN_MAX_FAILURES", 5),
            _setting("PORTAL_LOGIN_LOCK_SECONDS", 900),
        ),
    ]


def attempt(username: str, address: str) -> str | None:
    """Count this attempt as a failure before its password or code is checked, and name the
    first counter it takes past its limit (None: go on).

    Counted first, so that guesses sent together, while the first is being checked, cannot
    all pass a check made before any of them was counted. Each window starts at its counter's
    first attempt.
    """
    over = None
    for name, key, limit, window in _counters(username, address):
        cache.add(key, 0, timeout=window)  # atomic: only the first attempt sets the window
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)
            count = 1
        if count == 1:
            # Django's Redis incr checks that the key exists, then adds: a key that expired
            # in between comes back without an expiry, and would lock the name for good.
            cache.touch(key, window)
        if count > limit and over is None:
            over = name
    return over


def not_a_failure(username: str, address: str) -> None:
    """The attempt counted by ``attempt`` was right: take it back from both counters."""
    for _name, key, _limit, _window in _counters(username, address):
        with contextlib.suppress(ValueError):  # the window ended meanwhile
            if cache.decr(key) <= 0:
                # Nothing left to count (and a key that expired between Redis's check and
                # its decrement would stay at -1, without an expiry).
                cache.delete(key)


def forget_username(username: str) -> None:
    """A successful log-in clears the username's counter; the address keeps its count, or an
    attacker holding one valid account would clear it between two rounds of guesses."""
    cache.delete(_username_key(username))
