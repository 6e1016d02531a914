"""Where a rail may send requests: the outbound rules rail URLs share with webhooks.

A rail URL must be `https` and its host must not be (or resolve to) a loopback, private,
link-local, multicast, reserved or cloud-metadata address: a tenant admin configuring a rail must
not be able to make the gateway call into its own network. The operator may lift the rule for
a test or a demo bank on the same host with `VERDICT_RAIL_ALLOW_PRIVATE=1` (then plain `http` is
accepted too). The host is resolved and checked before every request, and the request connects to
the address that was checked (`pin`), as webhook deliveries do: a DNS answer that changes in
between (rebinding) cannot steer it inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

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


class Pinned(NamedTuple):
    """Where one request goes: `url` with its host replaced by the address that was checked,
    the `Host` header and the TLS server name of the original host (the certificate is still
    verified against the name)."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, Any]


async def pin(url: str) -> Pinned:
    """Resolve the URL's host, refuse it when any answer is not public (unless allowed), and
    return the request's target pinned to a checked address, so that a DNS answer that changes
    before the connection (rebinding) cannot steer it inside. Raises RailUnavailable when the
    name does not resolve, RailConfigError for a private address."""
    if private_allowed():
        return Pinned(url, {}, {})
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RailUnavailable(f"cannot resolve the rail's host: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise RailUnavailable(f"the rail's host {host} has no address")
    for address in addresses:
        if not is_public_address(address):
            raise RailConfigError(f"host {host} resolves to a non-public address", field="base_url")
    address = addresses[0].split("%", 1)[0]
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return Pinned(urlunsplit(parts._replace(netloc=netloc)), {"Host": parts.netloc}, extensions)
