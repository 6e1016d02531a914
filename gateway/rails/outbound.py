"""Where a rail may send requests: the outbound rules rail URLs share with webhooks.

A rail URL must be `https` and its host must not be (or resolve to) a loopback, private,
link-local, multicast, reserved or cloud-metadata address: a tenant admin configuring a rail must
not be able to make the gateway call into its own network. The operator may lift the rule for
a test or a demo bank on the same host with `VERDICT_RAIL_ALLOW_PRIVATE=1` (then plain `http` is
accepted too).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from urllib.parse import urlsplit

from gateway.rails.base import RailConfigError, RailUnavailable

ALLOW_PRIVATE_ENV = "VERDICT_RAIL_ALLOW_PRIVATE"
# Cloud metadata services answer on link-local addresses (covered) and on these names.
_METADATA_NAMES = {"metadata.google.internal", "metadata", "instance-data"}


def private_allowed() -> bool:
    """Whether the operator lifted the outbound rule (`VERDICT_RAIL_ALLOW_PRIVATE=1`)."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def is_public_address(text: str) -> bool:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_url(url: object, field: str = "base_url") -> str:
    """The URL without a trailing slash. Raises RailConfigError for a URL the rules refuse
    (a literal address is checked here; a name is checked when resolved: `check_host`)."""
    if not isinstance(url, str) or len(url) > 2000:
        raise RailConfigError("must be a URL string", field=field)
    parts = urlsplit(url)
    allow = private_allowed()
    if parts.scheme != "https" and not (allow and parts.scheme == "http"):
        raise RailConfigError("must be an https URL", field=field)
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise RailConfigError("must be https://host[:port][/path] without credentials or query", field=field)
    if not allow:
        host = parts.hostname.lower()
        if host in _METADATA_NAMES or host == "localhost" or host.endswith(".localhost"):
            raise RailConfigError(f"host {host!r} is not a public address", field=field)
        try:
            public = is_public_address(host)
        except ValueError:
            public = True  # a name: checked when resolved
        if not public:
            raise RailConfigError(f"address {host} is not public", field=field)
    return url.rstrip("/")


async def check_host(url: str) -> None:
    """Resolve the URL's host and refuse private addresses (unless allowed). Raises
    RailUnavailable when the name does not resolve, RailConfigError for a private address."""
    if private_allowed():
        return
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RailUnavailable(f"cannot resolve the rail's host: {exc}") from None
    for info in infos:
        if not is_public_address(str(info[4][0])):
            raise RailConfigError(f"host {host} resolves to a non-public address", field="base_url")
