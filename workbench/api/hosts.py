"""Where a server listens: loopback (this machine only) or beyond it, where the API and the
app ask for keys. No FastAPI here: the app's sign-in imports it."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether a listening address is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
