"""The portal log-in's failure counters, in the cache: one per username, one per client address."""

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
    return str(ipaddress.ip_network(f"{ip.exploded}/64", strict=False))


def _address_key(address: str) -> str:
    return f"portal:login-failures-from:{address_group(address)}"


def _a_proxy(address: str) -> bool:
    """Whether the peer is the reverse proxy: every client would share its counter, and a
    hundred failures from anyone would lock everyone out (the proxy limits addresses)."""
    proxies = settings.PROXY_ADDRESSES
    return "*" in proxies or address in proxies


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


def tripped(username: str, address: str) -> str | None:
    """The name of the first counter that refuses this attempt, or None if both allow it."""
    for name, key, limit, _window in _counters(username, address):
        if cache.get(key, 0) >= limit:
            return name
    return None


def count_failure(username: str, address: str) -> None:
    """One more failure on both counters; each window starts at its counter's first failure."""
    for _name, key, _limit, window in _counters(username, address):
        cache.add(key, 0, timeout=window)  # atomic: only the first failure sets the window
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)


def forget_username(username: str) -> None:
    """A successful log-in clears the username's counter; the address keeps its count, or an
    attacker holding one valid account would clear it between two rounds of guesses."""
    cache.delete(_username_key(username))
