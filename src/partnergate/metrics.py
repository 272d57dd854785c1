"""The metrics an operator scrapes from ``/metrics``, in one place.

Low in the import graph on purpose: the runtime, the security gate, the store and the
server record events here; only ``prometheus_client`` is imported, never Starlette or any
room of ours. Recording an event is a call of a few microseconds on the message path:
label children are looked up once and kept (:class:`_Children`).

With several worker processes (``serve --workers N``) each process writes its values to
files in one directory (prometheus_client's multiprocess mode); :func:`exposition` reads
them all, so any worker answers for the whole server. The parent calls
:func:`prepare_workers` before it starts them and :func:`worker_exited` for each that ends.
Values computed at scrape time (certificate expiry) are not kept in those files: the
answering process computes them (:func:`certificate_family`).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "CONTENT_TYPE",
    "certificate_family",
    "exposition",
    "prepare_workers",
    "worker_exited",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

MESSAGES = Counter(
    "partnergate_messages",
    "Messages a flow processed, by flow and final status (COMPLETED or FAILED).",
    ["flow", "status"],
)
STEP_SECONDS = Histogram(
    "partnergate_step_duration_seconds",
    "Time one step of a flow took, by flow and step.",
    ["flow", "step"],
    buckets=LATENCY_BUCKETS,
)
RECEIVER_SECONDS = Histogram(
    "partnergate_receiver_call_duration_seconds",
    "Time a call to a receiver took, by outcome (status class, timeout or error).",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
REFUSALS = Counter(
    "partnergate_auth_refusals",
    "Requests the security gate refused, by face (api, ui, sender, oauth, sign_in) and reason.",
    ["face", "reason"],
)
CACHE_HITS = Counter(
    "partnergate_directory_cache_hits",
    "Partner Directory lookups answered from the runtime's cache.",
)
CACHE_MISSES = Counter(
    "partnergate_directory_cache_misses",
    "Partner Directory lookups that went to the store.",
)
LOG_QUEUE = Gauge(
    "partnergate_message_log_queue_depth",
    "Message processing log entries waiting to be written.",
    multiprocess_mode="livesum",
)
LOG_WRITE_SECONDS = Histogram(
    "partnergate_message_log_write_duration_seconds",
    "Time one batch of message processing log entries took to write.",
    buckets=LATENCY_BUCKETS,
)
LOG_WRITTEN = Counter(
    "partnergate_message_log_entries_written",
    "Message processing log reports written to the store.",
)
API_REQUESTS = Counter(
    "partnergate_api_requests",
    "Requests to the OData API (/api/v1), by entity set, method and status.",
    ["entity_set", "method", "status"],
)
OPEN_CONNECTIONS = Gauge(
    "partnergate_open_connections",
    "Connections open on a listener, TLS handshakes included.",
    ["listener"],
    multiprocess_mode="livesum",
)
TLS_FAILURES = Counter(
    "partnergate_tls_handshake_failures",
    "TLS handshakes that did not complete, by listener and reason.",
    ["listener", "reason"],
)

_ALL: tuple[MetricWrapperBase, ...] = (
    MESSAGES,
    STEP_SECONDS,
    RECEIVER_SECONDS,
    REFUSALS,
    CACHE_HITS,
    CACHE_MISSES,
    LOG_QUEUE,
    LOG_WRITE_SECONDS,
    LOG_WRITTEN,
    API_REQUESTS,
    OPEN_CONNECTIONS,
    TLS_FAILURES,
)


class _Children(dict[tuple[str, ...], Any]):
    """Label values to their child metric, without prometheus_client's lock per lookup."""

    def __init__(self, metric: MetricWrapperBase) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, key: tuple[str, ...]) -> Any:
        child = self[key] = self.metric.labels(*key)
        return child


_messages = _Children(MESSAGES)
_steps = _Children(STEP_SECONDS)
_receiver = _Children(RECEIVER_SECONDS)
_refusals = _Children(REFUSALS)
_api = _Children(API_REQUESTS)
_connections = _Children(OPEN_CONNECTIONS)
_tls = _Children(TLS_FAILURES)
_CACHES = (_messages, _steps, _receiver, _refusals, _api, _connections, _tls)

P = ParamSpec("P")
T = TypeVar("T")


# --- recording -----------------------------------------------------------------------------


def message_finished(flow: str, status: str) -> None:
    _messages[flow, status].inc()


async def run_step(step: Any, flow: str, *args: Any) -> Any:
    """``step.run(*args)``, timed."""
    started = time.perf_counter()
    try:
        return await step.run(*args)
    finally:
        _steps[flow, step.label].observe(time.perf_counter() - started)


def timed_receiver_call(call: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorates the receiver adapter's request: its time, by the status class of the
    answer (``2xx`` …), ``timeout`` or ``error``."""

    @functools.wraps(call)
    async def timed(*args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            response = await call(*args, **kwargs)
            outcome = f"{getattr(response, 'status', 0) // 100}xx"
            return response
        except Exception as exc:
            outcome = "timeout" if "Timeout" in type(exc).__name__ else "error"
            raise
        finally:
            _receiver[(outcome,)].observe(time.perf_counter() - started)

    return timed


def refusal_reason(status: int, reason: str) -> str:
    """A refusal's reason words, folded into a few label values (the words themselves name
    users and clients, which would make a label without bound)."""
    text = reason.lower()
    if status == 429:
        return "throttled"
    if status == 403:
        return "csrf" if "csrf" in text else "role"
    for words, kind in _REASONS:
        if words in text:
            return kind
    return "other" if status != 400 else "bad_request"


_REASONS = (
    ("no credentials", "no_credentials"),
    ("no client credentials", "no_credentials"),
    ("malformed", "malformed_credentials"),
    ("wrong secret", "wrong_secret"),
    ("wrong password", "wrong_secret"),
    ("unknown", "unknown_account"),
    ("bearer token", "bearer_token"),
    ("session", "session"),
    ("certificate", "certificate"),
    ("partner", "no_partner"),
    ("authorized user", "no_partner"),
)


def counted_refusals(face: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorates a face of the security gate: each refusal it returns is counted."""

    def decorate(check: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(check)
        async def counted(*args: P.args, **kwargs: P.kwargs) -> T:
            decision = await check(*args, **kwargs)
            reason = getattr(decision, "reason", None)
            if reason is not None:
                status = getattr(decision, "status", 0)
                _refusals[face, refusal_reason(status, reason)].inc()
            return decision

        return counted

    return decorate


def directory_cache(hit: bool) -> None:
    (CACHE_HITS if hit else CACHE_MISSES).inc()


def queued_log_entry(put: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Decorates the message log's ``put(self, entry)``: the queue depth after it."""

    @functools.wraps(put)
    async def queued(self: Any, entry: Any) -> None:
        await put(self, entry)
        LOG_QUEUE.set(len(self._pending))

    return queued


def timed_log_write(write: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Decorates the message log's batch write ``write(self, batch)``: its time, and the
    queue depth (the batch plus what waits behind it) before and after."""

    @functools.wraps(write)
    async def timed(self: Any, batch: list[Any]) -> None:
        waiting = len(getattr(self, "_pending", ()))
        LOG_QUEUE.set(len(batch) + waiting)
        started = time.perf_counter()
        try:
            await write(self, batch)
        finally:
            LOG_WRITE_SECONDS.observe(time.perf_counter() - started)
            LOG_QUEUE.set(len(getattr(self, "_pending", ())))
        LOG_WRITTEN.inc(len(batch))

    return timed


def api_request(entity_set: str, method: str, status: int) -> None:
    _api[entity_set, method, str(status)].inc()


def connections_open(listener: str, count: int) -> None:
    _connections[(listener,)].set(count)


def tls_failure(listener: str, exc: BaseException | None) -> None:
    """A handshake that failed: ``exc`` as asyncio raised it, None when it ran out of time."""
    _tls[listener, tls_failure_reason(exc)].inc()


def tls_failure_reason(exc: BaseException | None) -> str:
    if exc is None or isinstance(exc, TimeoutError):
        return "timeout"
    reason = getattr(exc, "reason", None)  # ssl.SSLError: OpenSSL's reason code
    if isinstance(reason, str) and reason:
        return reason.lower()
    if isinstance(exc, ConnectionResetError | BrokenPipeError | EOFError):
        return "connection_closed"
    return type(exc).__name__.lower()


# --- certificates --------------------------------------------------------------------------


def certificate_family(
    mapped: Iterable[tuple[str, str, float]], server: Iterable[tuple[str, float]], now: float
) -> GaugeMetricFamily:
    """Days left until each certificate expires: ``mapped`` as (mapping id, user, not after
    in Unix seconds), ``server`` as (subject, not after)."""
    family = GaugeMetricFamily(
        "partnergate_certificate_expiry_days",
        "Days until a certificate expires (negative: expired): each certificate of "
        "CertificateUserMappings, and the server's own.",
        labels=["kind", "id", "user"],
    )
    for mapping_id, user, not_after in mapped:
        family.add_metric(["mapped", mapping_id, user], round((not_after - now) / 86400, 3))
    for subject, not_after in server:
        family.add_metric(["server", subject, ""], round((not_after - now) / 86400, 3))
    return family


class _Fixed:
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


# --- exposition and worker processes -------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(extra: Iterable[Any] = ()) -> bytes:
    """The text the scraper gets: every process's values, and ``extra`` metric families."""
    directory = multiprocess_dir()
    if directory is not None:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry, path=directory)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    extra = list(extra)
    if extra:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(extra))
        text += generate_latest(registry)
    return text


def prepare_workers(directory: str | Path) -> None:
    """In the parent, before it starts worker processes: values go to files in
    ``directory`` (emptied now), from this process and every process it starts."""
    path = Path(directory)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    # the metrics were made when this module was imported, before the directory was set
    values.ValueClass = values.get_value_class()
    for metric in _ALL:
        if metric._labelnames:
            with metric._lock:
                metric._metrics.clear()
        else:
            metric._metric_init()
    for cache in _CACHES:
        cache.clear()


def worker_exited(pid: int) -> None:
    """In the parent, when a worker has ended: its gauges stop counting (``livesum``)."""
    if multiprocess_dir() is not None:
        _multiprocess.mark_process_dead(pid)
