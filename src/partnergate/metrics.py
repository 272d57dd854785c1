"""The metrics an operator scrapes from ``/metrics``, in one place.

Low in the import graph on purpose: the runtime, the security gate, the store and the
server record events here; only ``prometheus_client`` is imported, never Starlette or any
room of ours. Recording an event on the message path is a dict update (:class:`_Series`);
prometheus_client gets the totals before each scrape and once a second (:func:`sync`).

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
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from time import perf_counter
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


class _Series:
    """Events of one metric since the last :func:`sync`, by label values.

    Recording is a dict update on the event loop's thread; prometheus_client takes a lock
    for every change of a value, which costs more than the rest of recording together
    where a lock is a system call. :func:`sync` hands the totals over, a lock per series."""

    def __init__(self, metric: MetricWrapperBase) -> None:
        self.metric = metric
        self.pending: dict[tuple[str, ...], Any] = {}
        self.children: dict[tuple[str, ...], Any] = {}

    def child(self, key: tuple[str, ...]) -> Any:
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = self.metric.labels(*key) if key else self.metric
        return found

    def add(self, key: tuple[str, ...], amount: float = 1) -> None:
        pending = self.pending
        pending[key] = pending.get(key, 0) + amount

    def sync(self) -> None:
        pending, self.pending = self.pending, {}
        for key, amount in pending.items():
            self.child(key).inc(amount)


class _GaugeSeries(_Series):
    def set(self, key: tuple[str, ...], value: float) -> None:
        self.pending[key] = value

    def sync(self) -> None:
        pending, self.pending = self.pending, {}
        for key, value in pending.items():
            self.child(key).set(value)


class _HistogramSeries(_Series):
    def __init__(self, metric: Histogram, bounds: tuple[float, ...]) -> None:
        super().__init__(metric)
        self.bounds = bounds  # without +Inf: bisect past the end is the +Inf bucket

    def observe(self, key: tuple[str, ...], amount: float) -> None:
        counts = self.pending.get(key)
        if counts is None:
            counts = self.pending[key] = [0] * (len(self.bounds) + 1) + [0.0]
        counts[bisect_left(self.bounds, amount)] += 1
        counts[-1] += amount

    def sync(self) -> None:
        pending, self.pending = self.pending, {}
        for key, counts in pending.items():
            child = self.child(key)
            for bucket, count in zip(child._buckets, counts, strict=False):
                if count:
                    bucket.inc(count)
            child._sum.inc(counts[-1])


_messages = _Series(MESSAGES)
_steps = _HistogramSeries(STEP_SECONDS, LATENCY_BUCKETS)
_receiver = _HistogramSeries(RECEIVER_SECONDS, LATENCY_BUCKETS)
_refusals = _Series(REFUSALS)
_cache = {True: _Series(CACHE_HITS), False: _Series(CACHE_MISSES)}
_log_queue = _GaugeSeries(LOG_QUEUE)
_log_write = _HistogramSeries(LOG_WRITE_SECONDS, LATENCY_BUCKETS)
_log_written = _Series(LOG_WRITTEN)
_api = _Series(API_REQUESTS)
_connections = _GaugeSeries(OPEN_CONNECTIONS)
_tls = _Series(TLS_FAILURES)
_SERIES = (
    _messages,
    _steps,
    _receiver,
    _refusals,
    *_cache.values(),
    _log_queue,
    _log_write,
    _log_written,
    _api,
    _connections,
    _tls,
)
_NO_LABELS: tuple[str, ...] = ()

P = ParamSpec("P")
T = TypeVar("T")


def _forget_pending() -> None:
    """In a forked child: the parent's unsynced events are the parent's to hand over."""
    for series in _SERIES:
        series.pending.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pending)


def sync() -> None:
    """Hand what was recorded since the last call to prometheus_client: before a scrape,
    and every second where other processes scrape (:func:`run_sync`)."""
    for series in _SERIES:
        series.sync()


async def run_sync(interval: float = 1.0) -> None:
    """Sync every ``interval`` seconds, on the event loop that records (with workers, so
    that the one answering ``/metrics`` sees the others' events)."""
    import asyncio

    try:
        while True:
            await asyncio.sleep(interval)
            sync()
    finally:
        sync()


# --- recording -----------------------------------------------------------------------------


def message_finished(flow: str, status: str) -> None:
    _messages.add((flow, status))


def step_finished(flow: str, step: str, seconds: float) -> None:
    """A step of ``flow`` ran for ``seconds``, whether it succeeded, failed or was cancelled
    (the engine times each step once, for this and for the message processing log)."""
    _steps.observe((flow, step), seconds)


def timed_receiver_call(call: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorates the receiver adapter's request: its time, by the status class of the
    answer (``2xx`` …), ``timeout`` or ``error``."""

    @functools.wraps(call)
    async def timed(*args: P.args, **kwargs: P.kwargs) -> T:
        started = perf_counter()
        outcome = "error"
        try:
            response = await call(*args, **kwargs)
            outcome = _STATUS_CLASSES.get(getattr(response, "status", 0) // 100, "error")
            return response
        except Exception as exc:
            outcome = "timeout" if "Timeout" in type(exc).__name__ else "error"
            raise
        finally:
            _receiver.observe((outcome,), perf_counter() - started)

    return timed


_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}


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
                refusal(face, getattr(decision, "status", 0), reason)
            return decision

        return counted

    return decorate


def refusal(face: str, status: int, reason: str) -> None:
    """The security gate refused a request on ``face`` (a refusal outside its faces, such
    as a write without its CSRF token)."""
    _refusals.add((face, refusal_reason(status, reason)))


def directory_cache(hit: bool) -> None:
    _cache[hit].add(_NO_LABELS)


def queued_log_entry(put: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Decorates the message log's ``put(self, entry)``: the queue depth after it."""

    @functools.wraps(put)
    async def queued(self: Any, entry: Any) -> None:
        await put(self, entry)
        _log_queue.pending[_NO_LABELS] = len(self._pending)

    return queued


def timed_log_write(write: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Decorates the message log's batch write ``write(self, batch)``: its time, and the
    queue depth (the batch plus what waits behind it) before and after."""

    @functools.wraps(write)
    async def timed(self: Any, batch: list[Any]) -> None:
        _log_queue.set(_NO_LABELS, len(batch) + len(getattr(self, "_pending", ())))
        started = perf_counter()
        try:
            await write(self, batch)
        finally:
            _log_write.observe(_NO_LABELS, perf_counter() - started)
            _log_queue.set(_NO_LABELS, len(getattr(self, "_pending", ())))
        _log_written.add(_NO_LABELS, len(batch))

    return timed


def api_request(entity_set: str, method: str, status: int) -> None:
    _api.add((entity_set, method, str(status)))


def connections_open(listener: str, count: int) -> None:
    _connections.set((listener,), count)


def tls_failure(listener: str, exc: BaseException | None) -> None:
    """A handshake that failed: ``exc`` as asyncio raised it, None when it ran out of time."""
    _tls.add((listener, tls_failure_reason(exc)))


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
    sync()
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
    for series in _SERIES:
        series.pending.clear()
        series.children.clear()


def worker_exited(pid: int) -> None:
    """In the parent, when a worker has ended: its gauges stop counting (``livesum``)."""
    if multiprocess_dir() is not None:
        _multiprocess.mark_process_dead(pid)
