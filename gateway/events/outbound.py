"""Outbound requests to webhook receivers, and which receivers may be reached at all (SSRF).

A webhook URL must be `https` and its host must resolve only to public addresses: not
loopback, private, link-local (cloud metadata at 169.254.169.254 among them), shared (CGNAT),
multicast or reserved ones, nor an IPv4 address hidden in an IPv6 one. The check runs when the
URL is given and again before every delivery, and the delivery connects to the address that
was checked (TLS still verifies the certificate against the URL's host name, sent as SNI), so
a DNS answer that changes in between (rebinding) cannot steer a request inside. Any refused
address among a name's answers refuses the name (fail closed). Redirects are never followed
and no proxy from the environment is used.

The operator may allow private targets (`VERDICT_WEBHOOK_ALLOW_PRIVATE=1`, for receivers on an
internal network and for tests); then plain `http` is accepted too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import SplitResult, urlsplit

import certifi
import httpx

from gateway.errors import Unavailable, Unprocessable

ALLOW_PRIVATE_ENV = "VERDICT_WEBHOOK_ALLOW_PRIVATE"
MAX_URL_LENGTH = 2048
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_CLIENTS_KEPT = 256
MAX_BODY_READ = 65536  # of a receiver's answer, which nobody reads


class TargetRefused(Unprocessable):
    """The URL's host is, or resolves to, an address webhooks may not reach."""

    code = "webhook_target_refused"


class TargetUnresolvable(Unprocessable):
    code = "webhook_target_unresolvable"


def check_url(url: str, *, allow_private: bool, field: str = "url") -> SplitResult:
    """The parts of a webhook URL. Raises Unprocessable (`invalid_webhook_url`) unless it is an
    absolute https URL (http too when private targets are allowed) with a host, no user
    information, no fragment, at most MAX_URL_LENGTH characters."""
    schemes = ("https", "http") if allow_private else ("https",)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        parts = None
    if (
        parts is None
        or len(url) > MAX_URL_LENGTH
        or parts.scheme not in schemes
        or not parts.hostname
        or parts.username is not None
        or parts.fragment
        or any(ord(c) < 0x21 or ord(c) > 0x7E for c in url)
    ):
        allowed = " or ".join(schemes)
        raise Unprocessable(
            f"{field} must be an absolute {allowed} URL with a host, without user information or"
            f" fragment, at most {MAX_URL_LENGTH} characters",
            code="invalid_webhook_url",
            field=field,
        )
    return parts


def address_allowed(address: _IPAddress, *, allow_private: bool) -> bool:
    """Whether webhooks may connect to this address."""
    if allow_private:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None and not address_allowed(embedded, allow_private=False):
            return False
    return address.is_global and not address.is_multicast


async def resolve(parts: SplitResult, *, allow_private: bool) -> list[_IPAddress]:
    """Every address the URL's host stands for, all of them allowed. Raises TargetRefused,
    TargetUnresolvable (the name does not exist), Unavailable (the resolver failed)."""
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses: list[_IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                raise TargetUnresolvable(f"the host {host!r} does not resolve", field="url") from exc
            raise Unavailable(f"could not resolve {host!r}: {exc}", code="dns_unavailable") from exc
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    refused = [str(a) for a in addresses if not address_allowed(a, allow_private=allow_private)]
    if refused or not addresses:
        raise TargetRefused(
            f"the host {host!r} resolves to {', '.join(refused) or 'nothing'}: loopback, private,"
            " link-local and other non-public addresses are refused (the operator may allow them"
            f" with {ALLOW_PRIVATE_ENV}=1)",
            field="url",
        )
    return addresses


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one delivery attempt got: an HTTP status, or an error before any status."""

    status_code: int | None
    latency_ms: int
    error: str | None = None
    retry_after: float | None = None  # seconds, from the receiver's `Retry-After`

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class Sender:
    """Posts deliveries. Connections are kept per (host name, address, port), so a connection
    verified for one host name is never reused for another one served from the same address.
    Safe for concurrent use by the tasks of one event loop."""

    def __init__(self, *, allow_private: bool, timeout: float) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self._clients: dict[tuple[str, str, str, int], httpx.AsyncClient] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # Loading the CA certificates takes a while and blocks: once, not per client.
        self._tls = ssl.create_default_context(cafile=certifi.where())

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        """POST `body` to `url`, connecting to an address checked just now; never raises for
        the receiver's failures (they are the Attempt's error)."""
        started = time.monotonic()
        try:
            parts = check_url(url, allow_private=self.allow_private)
            address = (await resolve(parts, allow_private=self.allow_private))[0]
        except (Unprocessable, Unavailable) as exc:
            return Attempt(None, _elapsed_ms(started), f"{exc.code}: {exc.detail}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        literal = f"[{address}]" if address.version == 6 else str(address)
        target = f"{parts.scheme}://{literal}:{port}{parts.path or '/'}" + (
            f"?{parts.query}" if parts.query else ""
        )
        host_header = parts.netloc.rsplit("@", 1)[-1]
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        client = self._client(parts.scheme, parts.hostname or "", str(address), port)
        try:
            async with asyncio.timeout(self.timeout):
                request = client.build_request(
                    "POST",
                    target,
                    content=body,
                    headers={**headers, "host": host_header},
                    extensions=extensions,
                )
                response = await client.send(request, stream=True)
                try:  # only the status and headers matter; a short body is read so the
                    read = 0  # connection goes back to the pool, a long one is cut off
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > MAX_BODY_READ:
                            break
                finally:
                    await response.aclose()
        except TimeoutError:
            return Attempt(None, _elapsed_ms(started), f"timeout: no answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return Attempt(None, _elapsed_ms(started), f"{type(exc).__name__}: {exc}"[:500])
        status = response.status_code
        retry = retry_after_seconds(response.headers.get("retry-after"), time.time())
        error = None if 200 <= status < 300 else f"HTTP {status}"
        return Attempt(status, _elapsed_ms(started), error, retry)

    def _client(self, scheme: str, host: str, address: str, port: int) -> httpx.AsyncClient:
        key = (scheme, host, address, port)
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) >= _CLIENTS_KEPT:
                oldest = next(iter(self._clients))
                closing = asyncio.get_running_loop().create_task(self._clients.pop(oldest).aclose())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                verify=self._tls,
                timeout=httpx.Timeout(self.timeout),
                headers={"user-agent": "Verdict-Webhooks/1"},
            )
            self._clients[key] = client
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
