"""How `verdict serve` listens: one server per port, and limits for slow or idle clients.

- **A taken port is refused.** granian binds each worker's socket with SO_REUSEPORT, so a second
  server on a port another one holds started anyway, and the kernel spread the connections
  between two unrelated gateways (and databases). Before starting, the port is bound once
  *without* SO_REUSEPORT: that fails while anyone listens there. Sharing the port is only done
  when the operator asks for it (`--reuse-port`).
- **Slow clients are cut.** granian closes a connection whose request headers have not all
  arrived within its header-read timer. The timer also runs while a connection waits for its
  first request or, between requests, for the next one: it is the keep-alive idle timeout too,
  so granian gets the smaller of the two settings. The request body has its own deadline in the
  app (`gateway.slow_clients`). HTTP/1 only: in granian's "auto" mode a connection that sends
  nothing at all is never timed out (it waits for bytes to tell HTTP/1 from HTTP/2).
- **Connections are capped per worker** (granian's backpressure: a worker accepts no more than
  that many at once; the rest wait in the kernel's backlog, holding no descriptor of ours).
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import tempfile
from typing import Any

from gateway.settings import Settings

MAX_HEADER_TIMEOUT_MS = 60_000  # granian's upper bound for its header-read timer
DESCRIPTORS_PER_WORKER_BESIDES_CLIENTS = 64  # database pool, log files, the runtime's own


class PortInUse(Exception):
    """Another process listens on the address; carries the message to show the operator."""


def verify_port_free(host: str, port: int) -> None:
    """Raises PortInUse when a process listens on host:port (or any address covering it).

    SO_REUSEADDR lets the check pass over connections of an earlier run in TIME_WAIT; without
    SO_REUSEPORT the bind fails against any listener, including one that set SO_REUSEPORT.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
            raise PortInUse(
                f"address in use: another process already listens on {host}:{port}. Stop it, pick"
                " another --port, or pass --reuse-port to share the port with it on purpose (the"
                " kernel then spreads connections between the processes, so they must serve the"
                " same database)."
            ) from exc


def header_timeout_ms(settings: Settings) -> int:
    """granian's header-read timer: it covers idle keep-alive connections too (see above)."""
    seconds = settings.header_timeout
    if settings.keepalive_timeout > 0:
        seconds = min(seconds, settings.keepalive_timeout)
    return max(1, min(MAX_HEADER_TIMEOUT_MS, round(seconds * 1000)))


def raise_descriptor_limit(settings: Settings) -> str | None:
    """Raise this process's soft limit on open files (the workers inherit it) to what the
    connection cap needs, up to the hard limit. Returns a warning when even that is too low."""
    needed = settings.max_connections + DESCRIPTORS_PER_WORKER_BESIDES_CLIENTS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        return (
            f"the open-files limit ({soft}) is below --max-connections {settings.max_connections}"
            f" + {DESCRIPTORS_PER_WORKER_BESIDES_CLIENTS}; lower --max-connections or raise `ulimit -n`"
        )
    return None


def granian_options(settings: Settings) -> dict[str, Any]:
    """The granian arguments for the listening limits of `settings`."""
    from granian.constants import HTTPModes
    from granian.http import HTTP1Settings

    return {
        "http": HTTPModes.http1,
        "http1_settings": HTTP1Settings(
            header_read_timeout=header_timeout_ms(settings), keep_alive=settings.keepalive_timeout > 0
        ),
        "backpressure": settings.max_connections,
    }


METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_dir(environ: dict[str, str] | os._Environ[str]) -> str | None:
    """Give the workers one directory to count into (gateway.metrics, prometheus_client's
    multiprocess mode) before anything imports prometheus_client. The operator's
    PROMETHEUS_MULTIPROC_DIR is emptied of an earlier run's files (one directory per `verdict
    serve`); without one, a fresh temporary directory is made. Returns the directory this call
    made (the caller removes it at exit), None when the operator gave one."""
    given = environ.get(METRICS_DIR_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        return None
    made = tempfile.mkdtemp(prefix="verdict-metrics-")
    environ[METRICS_DIR_ENV] = made
    return made
