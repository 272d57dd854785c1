"""The operating settings: bad values are refused by name, before the server starts."""

from __future__ import annotations

import io
import json
import logging
import ssl
import subprocess
import sys

import pytest

from partnergate import logs, metrics
from partnergate.config import ConfigError, load_settings
from partnergate.server import listeners


def settings(**values: object):  # type: ignore[no-untyped-def]
    return load_settings(None, values, environ={})


def test_defaults_are_the_safe_ones() -> None:
    s = settings()
    assert (s.log_format, s.access_log, s.metrics_auth, s.drain_seconds) == (
        "text",
        False,
        "role",
        0,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("log_format", "xml"),
        ("metrics_auth", "anyone"),
        ("drain_seconds", "-1"),
        ("drain_seconds", "soon"),
        ("access_log", "maybe"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        settings(**{name: value})


def test_good_values() -> None:
    s = settings(log_format="json", metrics_auth="none", drain_seconds="5", access_log="on")
    assert (s.log_format, s.metrics_auth, s.drain_seconds, s.access_log) == (
        "json",
        "none",
        5,
        True,
    )


def test_the_scraper_s_listener_is_a_setting() -> None:
    assert settings().metrics_http is None
    assert settings(metrics_http="off").metrics_http is None
    found = listeners(settings(metrics_http="0.0.0.0:9464"))
    assert [(item.host, item.port, item.metrics_only) for item in found] == [
        ("127.0.0.1", 8080, False),
        ("0.0.0.0", 9464, True),
    ]
    with pytest.raises(ConfigError, match="--metrics-http must be HOST:PORT"):
        listeners(settings(metrics_http="9464"))


def test_refusal_reasons_fold_into_few_words() -> None:
    fold = metrics.refusal_reason
    assert fold(401, "wrong secret for user 'alice'") == "wrong_secret"
    assert fold(401, "unknown user 'bob'") == "unknown_account"
    assert fold(401, "no credentials: neither an Authorization header nor a client cert") == (
        "no_credentials"
    )
    assert fold(401, "bearer token refused: expired") == "bearer_token"
    assert fold(403, "user 'x' lacks role ESBMessaging.send (has: none)") == "role"
    assert fold(429, "too many failed logins of 'x'") == "throttled"


def test_tls_failure_reasons() -> None:
    error = ssl.SSLError(1, "[SSL: HTTP_REQUEST] http request")
    error.reason = "HTTP_REQUEST"
    assert metrics.tls_failure_reason(error) == "http_request"
    assert metrics.tls_failure_reason(None) == "timeout"
    assert metrics.tls_failure_reason(TimeoutError()) == "timeout"
    assert metrics.tls_failure_reason(ConnectionResetError()) == "connection_closed"


def test_json_lines_carry_the_message_context_and_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("partnergate.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logs.bind_message("id-1", "flow A", "Sender_X")
        logger.info("message failed: %s", "step 2 'call': no route\nsecond line")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("fault")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "message failed: step 2 'call': no route\nsecond line"
    assert (first["message_id"], first["flow"], first["partner"]) == ("id-1", "flow A", "Sender_X")
    assert first["level"] == "INFO" and first["logger"] == "partnergate.test-json"
    assert "ValueError: boom" in second["exception"]


def json_log_of(code: str) -> list[dict[str, object]]:
    """The lines a process that configured JSON logs and then ran ``code`` wrote, each
    parsed; it printed nothing to stdout."""
    setup = "from partnergate import logs\nlogs.configure('info', 'json')\n"
    done = subprocess.run(
        [sys.executable, "-c", setup + code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    return [json.loads(line) for line in done.stderr.splitlines()]


def test_python_warnings_are_json_lines_too() -> None:
    """A warning (a flow's script, a library) is a line of the log like any other."""
    lines = json_log_of("import warnings\nwarnings.warn('a script warns', UserWarning)\n")
    assert [e["logger"] for e in lines] == ["py.warnings"]
    assert "UserWarning: a script warns" in str(lines[0]["message"])


def test_what_code_prints_is_a_json_line_too() -> None:
    """With JSON logs a flow script's ``print`` (from any thread) is a line of the log,
    not a bare line among the JSON ones."""
    lines = json_log_of(
        "import threading\n"
        "print('from the script', 42)\n"
        "t = threading.Thread(target=print, args=('two\\nlines',)); t.start(); t.join()\n"
        "print('no newline yet', end='')\n"
    )
    assert [e["message"] for e in lines] == ["from the script 42", "two", "lines", "no newline yet"]
    assert {e["logger"] for e in lines} == {"partnergate.stdout"}
