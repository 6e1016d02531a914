"""OpenTelemetry traces: off, and free, unless the standard variables turn them on.

On when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (OTLP over
HTTP/protobuf, the exporter reading its own OTEL_EXPORTER_OTLP_* variables), or when
OTEL_TRACES_EXPORTER names `otlp` or `console`. OTEL_SDK_DISABLED=true or
OTEL_TRACES_EXPORTER=none keeps them off. Sampling is the SDK's (OTEL_TRACES_SAMPLER and
OTEL_TRACES_SAMPLER_ARG; by default every trace, or as the caller's `traceparent` says);
OTEL_SERVICE_NAME names the service (default `verdict-gateway`).

Off, every helper here returns at its first test: `span()` hands back one shared null context,
and the storage is not wrapped at all.

What is traced (docs/metrics.md lists it): one server span per HTTP request, a child of the
caller's W3C `traceparent` when one is sent; within it `authenticate`, `evaluate`, `sign`,
`commit` (waiting for the chain writer), `respond`, `approve`/`reject`, `execute`; the storage's
`db.read`, `db.transaction`, `db.append_batch`, `db.append_batches` and `db.append_batch_locked` (within those spans only, not for every poll
of the background loops); and, since one chain-writer batch serves
many requests, a `chain_writer.batch` span of its own, linked to each request's `commit` span.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

SERVICE_NAME = "verdict-gateway"
_NULL = contextlib.nullcontext()

_tracer: Any = None  # an opentelemetry Tracer while traces are on
_provider: Any = None


def wanted_exporter(environ: Mapping[str, str]) -> str | None:
    """Which exporter the environment asks for: "otlp", "console" or None (traces off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if "none" in names:
        return None
    if "console" in names:
        return "console"
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if "otlp" in names or endpoint:
        return "otlp"
    return None


def check_env(environ: Mapping[str, str]) -> None:
    """Raises ValueError when the environment asks for traces this gateway cannot export
    (an OTLP protocol other than http/protobuf)."""
    if wanted_exporter(environ) != "otlp":
        return
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol not in (None, "", "http/protobuf"):
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: Verdict exports traces over http/protobuf only"
        )


def configure_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Turn traces on in this process if the environment asks and they are not on yet; True
    when they are on. Raises ValueError for an exporter protocol other than http/protobuf."""
    env = os.environ if environ is None else environ
    if _tracer is not None:
        return True
    kind = wanted_exporter(env)
    if kind is None:
        return False
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter = ConsoleSpanExporter()
    else:
        check_env(env)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    configure(exporter, batch=True)
    return True


def configure(exporter: Any, *, batch: bool = False) -> None:
    """Send this process's spans to `exporter` (None: traces off). `batch` exports from a
    background thread (production); otherwise each span as it ends (tests)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None
    if exporter is None:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME})
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    _provider, _tracer = provider, provider.get_tracer("verdict.gateway")


def enabled() -> bool:
    return _tracer is not None


def span(name: str, **attributes: Any):
    """A child span of the current one (a context manager); the shared null context when off."""
    if _tracer is None:
        return _NULL
    return _tracer.start_as_current_span(name, attributes=_attributes(attributes))


def child_span(name: str, **attributes: Any):
    """As `span`, but only inside a recorded span: the storage's spans belong to a request or a
    batch, not to every poll of the background loops."""
    if _tracer is None:
        return _NULL
    from opentelemetry import trace

    if not trace.get_current_span().is_recording():
        return _NULL
    return _tracer.start_as_current_span(name, attributes=_attributes(attributes))


def flush(timeout_millis: int = 5000) -> None:
    """Export the spans still queued (at a worker's shutdown)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (nothing when off or outside a span)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(_attributes(attributes))


def _attributes(values: dict[str, Any]) -> dict[str, Any]:
    return {(k if "." in k else f"verdict.{k}"): v for k, v in values.items() if v is not None}


@contextlib.contextmanager
def server_span(scope: dict[str, Any], request_id: str) -> Iterator[Any]:
    """The span of one HTTP request (`Tracing` opens it), continuing the caller's trace when
    its `traceparent` header is valid (W3C Trace Context); a bad one starts a new trace."""
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in (b"traceparent", b"tracestate"):
            carrier[name.decode()] = value.decode("latin-1")
    parent = TraceContextTextMapPropagator().extract(carrier) if carrier else None
    attributes = {"http.request.method": scope["method"], "verdict.request_id": request_id}
    with _tracer.start_as_current_span(
        scope["method"], context=parent, kind=SpanKind.SERVER, attributes=attributes
    ) as current:
        yield current


def finish_server_span(current: Any, method: str, route: str | None, status: int) -> None:
    """Name the request's span after its route template (known once routed) and record the status."""
    if route:
        current.update_name(f"{method} {route}")
        current.set_attribute("http.route", route)
    current.set_attribute("http.response.status_code", status)
    if status >= 500:
        from opentelemetry.trace import Status, StatusCode

        current.set_status(Status(StatusCode.ERROR))


def start_span(name: str, **attributes: Any) -> Any:
    """A child of the current span that the caller ends (`respond` spans a response's sending)."""
    return _tracer.start_span(name, attributes=_attributes(attributes))


def current_link() -> Any:
    """A link to the current span, for a batch span that serves it (None when off)."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return trace.Link(context) if context.is_valid else None


def batch_span(name: str, links: list[Any], **attributes: Any):
    """A span of its own trace (not the child of whichever request started the writer's task),
    linked to every request it serves."""
    if _tracer is None:
        return _NULL
    from opentelemetry.context import Context

    return _tracer.start_as_current_span(
        name, context=Context(), links=[link for link in links if link is not None],
        attributes=_attributes(attributes),
    )  # fmt: skip


class TracedDatabase:
    """The storage, with a span around each read, transaction and one-statement append.
    Everything else is the wrapped database's (`__getattr__`)."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self._system = "postgresql" if db.dialect == "postgresql" else "sqlite"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    @contextlib.asynccontextmanager
    async def read(self):
        with child_span("db.read", **{"db.system": self._system}):
            async with self._db.read() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def transaction(self):
        with child_span("db.transaction", **{"db.system": self._system}):
            async with self._db.transaction() as conn:
                yield conn

    async def append_batch(self, tenant: str, **kwargs: Any) -> bool:
        with child_span(
            "db.append_batch", **{"db.system": self._system, "entries": len(kwargs["entry_rows"])}
        ):
            return await self._db.append_batch(tenant, **kwargs)

    async def append_batches(self, batches: list[tuple[str, dict[str, Any]]]) -> list[bool | tuple[int, str]]:
        """Several tenants' appends in one transaction (`gateway.ledger.CommitGroup`)."""
        entries = sum(len(arguments["entry_rows"]) for _, arguments in batches)
        with child_span(
            "db.append_batches", **{"db.system": self._system, "tenants": len(batches), "entries": entries}
        ):
            return await self._db.append_batches(batches)

    async def append_batch_locked(self, tenant: str, build: Any) -> bool | tuple[int, str]:
        with child_span("db.append_batch_locked", **{"db.system": self._system}):
            return await self._db.append_batch_locked(tenant, build)


def traced_database(db: Any) -> Any:
    """`db` with storage spans when traces are on; `db` itself when off."""
    return TracedDatabase(db) if _tracer is not None else db
