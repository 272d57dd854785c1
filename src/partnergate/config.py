"""Settings: defaults, then a TOML file, then ``PARTNERGATE_*`` variables, then flags.

Each later source overrides the earlier ones, so a container can keep a file and change
one value through the environment, and a person can try a flag without editing anything.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    db: str = "sqlite:///./partnergate.db"
    http: str | None = "127.0.0.1:8080"
    data_dir: str = "./.partnergate"
    """Where files live that must not sit in the database: the credential encryption key."""
    metadata_style: str = "flat"
    max_body_bytes: int = 8 * 1024 * 1024
    max_binary_bytes: int = 1_572_864
    page_size: int = 1000
    binary_page_size: int = 30
    token_lifetime: int = 3600
    csrf_for_bearer: bool = False
    """SAP's own clients send bearer-token writes without a CSRF token; so do we allow."""
    public_url: str | None = None
    """Absolute URL of the service as clients see it (behind a proxy); else from the request."""
    log_level: str = "info"
    https: str | None = None
    """TLS listener HOST:PORT; needs tls_cert and tls_key."""
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    """PEM bundle of the CAs whose client certificates are trusted (listener and proxies)."""
    client_cert: str = "optional"
    """``optional`` or ``required``: whether the TLS listener demands a client certificate."""
    trusted_proxies: tuple[str, ...] = ()
    """CIDRs whose forwarded client-certificate headers are believed."""
    cert_headers: tuple[str, ...] = (
        "x-forwarded-client-cert",
        "x-ssl-client-cert",
        "client-cert",
        "ssl_client_cert",
    )
    verify_forwarded_certs: bool = True
    """Check forwarded certificates against client_ca as well (the proxy already did)."""
    flows: str | None = None
    """Directory of flow files (YAML) to deploy."""
    message_log_days: int = 30
    """How long message processing log entries are kept."""
    query_time_limit: float = 5.0
    """Seconds a collection read (``$filter``, ``$orderby``, ``$count``) may run in the
    database before it is stopped and answered 503."""
    step_time_limit: int = 10
    """Seconds an ``xslt`` or ``script`` step may run before the message ends with 504 (a
    flow or step may set its own ``time-limit``)."""
    xslt_workers: int = 2
    """Saxon worker processes: how many XSLT steps run at the same time."""
    keepalive_timeout: int = 15
    """Seconds an idle keep-alive connection stays open after a response."""
    header_timeout: int = 10
    """Seconds a client has, from connecting or from the first byte of a request, to send
    the whole header block; on the TLS listener also the limit for the handshake."""
    max_header_bytes: int = 65536
    """Largest request line and header block; more is answered 431 and closed. (With h11
    instead of httptools: 400, and a block that arrives whole is h11's to judge.)"""
    body_timeout: int = 60
    """Seconds a client has, from the end of the headers, to send the whole request body."""
    max_connections: int | None = None
    """Open connections per listener; more are closed at once. None: from the file
    descriptor limit (``ulimit -n``) at start-up, keeping a reserve for the server."""
    session_lifetime: int = 8 * 3600
    """Seconds a signed-in session lasts (UI sign-in, or an API client's CSRF fetch)."""
    session_idle: int = 3600
    """Seconds a session lasts without a request."""
    login_failures_per_user_address: int = 10
    """Failed logins of one user from one address within ``login_failure_window`` after
    which that user's logins from there are refused (429) without a password check."""
    login_failures_per_address: int = 100
    """Failed logins from one address (any users) within the window before it is refused."""
    login_failures_per_user: int = 100
    """Failed logins of one user from any address within the window before that user's
    logins are refused, except credentials the node remembers as correct."""
    login_failure_window: int = 300
    """Seconds over which failed logins are counted."""
    password_checks_per_address: int = 16
    """Password checks one address may have waiting; more are refused (429) at once."""
    log_format: str = "text"
    """``text`` or ``json`` (one object per line: time, level, logger, message, and the
    message ID, flow and partner where known)."""
    access_log: bool = False
    """A line per request in the log. Off by default: every message is in the message
    processing log, and every refusal is logged with its reason."""
    metrics_auth: str = "role"
    """``role``: ``/metrics`` needs a user or client with ``metrics_role`` or the Partner
    Directory administrator role; ``none``: anyone who reaches the port may read it."""
    metrics_role: str = "partnergate.Monitoring"
    metrics_http: str | None = None
    """HOST:PORT of a plain HTTP listener of its own for the scraper: ``/metrics`` there
    needs no credentials, ``/health`` and ``/ready`` answer as elsewhere, and every other
    path is 404. The other listeners keep ``metrics_auth``."""
    drain_seconds: int = 0
    """Seconds the server keeps serving after SIGTERM with ``/ready`` answering 503, so a
    load balancer stops sending before the listeners close."""
    history_days: int = 365
    """How long change history entries are kept."""
    history_max_entries: int | None = None
    """At most this many change history entries are kept (the newest); None: no limit."""
    trace_hours: int = 24
    """Hours the bodies and headers of a traced message are kept (its step lines stay)."""
    trace_max_bytes: int = 100 * 1024 * 1024
    """Bytes of traces kept at most, over all messages; beyond, the oldest go first (checked
    hourly, and whenever a node has written a quarter of this since it last checked)."""
    trace_max_body: int = 256 * 1024
    """Bytes of a body one traced step keeps, before and after it."""
    workers: int | None = None
    """Server processes sharing the listeners; None (``auto``): the CPUs this process may
    use. 1 runs everything in one process."""
    receiver_ca: str | None = None
    """PEM bundle of CAs trusted for receivers' TLS certificates, beside the system's."""
    keystores: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Client certificates for calls to receivers, by the name a flow's ``call`` step gives
    as ``client-certificate``: ``{cert = FILE, key = FILE, password = TEXT}`` (PEM; without
    ``key`` the key is read from ``cert``)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def credential_key_file(self) -> Path:
        return Path(self.data_dir) / "credentials.key"


_INT_FIELDS = {
    "trace_hours",
    "trace_max_bytes",
    "trace_max_body",
    "max_body_bytes",
    "max_binary_bytes",
    "page_size",
    "binary_page_size",
    "token_lifetime",
    "message_log_days",
    "step_time_limit",
    "xslt_workers",
    "keepalive_timeout",
    "header_timeout",
    "body_timeout",
    "max_header_bytes",
    "max_connections",
    "session_lifetime",
    "session_idle",
    "login_failures_per_user_address",
    "login_failures_per_address",
    "login_failures_per_user",
    "login_failure_window",
    "password_checks_per_address",
    "history_days",
    "history_max_entries",
    "workers",
}
_ZERO_OK = {"drain_seconds"}
_FLOAT_FIELDS = {"query_time_limit"}
_BOOL_FIELDS = {"csrf_for_bearer", "verify_forwarded_certs", "access_log"}
_LIST_FIELDS = {"trusted_proxies", "cert_headers"}
_NAMES = {f.name for f in fields(Settings)} - {"extra"}


def _coerce(name: str, value: Any) -> Any:
    if name in ("max_connections", "workers") and value == "auto":
        return None
    if name in _ZERO_OK:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"setting '{name}' must be a whole number, got {value!r}") from None
        if number < 0:
            raise ConfigError(f"setting '{name}' must not be negative, got {number}")
        return number
    if name == "keystores":
        return _keystores(value)
    if name in _INT_FIELDS:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"setting '{name}' must be a whole number, got {value!r}") from None
        if number <= 0:
            raise ConfigError(f"setting '{name}' must be positive, got {number}")
        return number
    if name in _FLOAT_FIELDS:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"setting '{name}' must be a number, got {value!r}") from None
        if not 0 < seconds < math.inf:
            raise ConfigError(f"setting '{name}' must be positive, got {value!r}")
        return seconds
    if name in _BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"setting '{name}' must be true or false, got {value!r}")
    if name in _LIST_FIELDS:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"setting '{name}' must be a list, got {value!r}")
        return tuple(str(i).strip() for i in items if str(i).strip())
    if name == "client_cert" and value not in ("optional", "required"):
        raise ConfigError(f"setting 'client_cert' must be 'optional' or 'required', got {value!r}")
    if name == "metadata_style" and value not in ("flat", "sap"):
        raise ConfigError(f"setting 'metadata_style' must be 'flat' or 'sap', got {value!r}")
    if name == "log_format" and value not in ("text", "json"):
        raise ConfigError(f"setting 'log_format' must be 'text' or 'json', got {value!r}")
    if name == "metrics_auth" and value not in ("role", "none"):
        raise ConfigError(f"setting 'metrics_auth' must be 'role' or 'none', got {value!r}")
    if name in ("http", "metrics_http") and value in ("", "off", "none"):
        return None
    return value


def _keystores(value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, Mapping):
        raise ConfigError("setting 'keystores' must be a table of [keystores.NAME] tables")
    found: dict[str, dict[str, str]] = {}
    for name, entry in value.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("cert"), str):
            raise ConfigError(f"keystore '{name}' needs cert = \"FILE\" (PEM)")
        unknown = set(entry) - {"cert", "key", "password"}
        if unknown:
            raise ConfigError(f"keystore '{name}': unknown key {', '.join(sorted(unknown))}")
        found[str(name)] = {k: str(v) for k, v in entry.items()}
    return found


def _apply(settings: Settings, values: Mapping[str, Any], source: str) -> Settings:
    changes: dict[str, Any] = {}
    extra = dict(settings.extra)
    for key, value in values.items():
        name = key.replace("-", "_")
        if value is None:
            continue
        if name in _NAMES:
            changes[name] = _coerce(name, value)
        elif isinstance(value, dict):
            extra[name] = value
        else:
            raise ConfigError(f"unknown setting '{key}' in {source}")
    return replace(settings, **changes, extra=extra)


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    settings = Settings()
    env = os.environ if environ is None else environ
    path = config_file or env.get("PARTNERGATE_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        settings = _apply(settings, data, str(path))
    from_env = {
        name: env[f"PARTNERGATE_{name.upper()}"]
        for name in _NAMES
        if f"PARTNERGATE_{name.upper()}" in env
    }
    settings = _apply(settings, from_env, "the environment")
    if overrides:
        settings = _apply(settings, overrides, "the command line")
    return settings
