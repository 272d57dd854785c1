"""Bounded queries: ``$filter``/``$orderby`` cannot grow values, nest or cost without limit,
and a read that runs too long in the database is stopped with an OData error.

The finding: ``length(replace(replace(replace(IntegrationFlowName,'o','ooo…'),…))) gt 0``
on ``MessageProcessingLogs``, three at once by a read-only monitor, took the server from
110 MB to 1.6 GB and then answered 500 ``string or blob too big``. Each refusal here must be
a 400 that names the limit, before any SQL runs; the time budget a 503 while the server
keeps answering. Runs on the store ``PARTNERGATE_TEST_STORE`` names, in a database of its
own (the time budget needs many message log rows that other tests must not see).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from partnergate.config import ConfigError, load_settings
from partnergate.model.entities import MESSAGE_PROCESSING_LOG, STRING_PARAMETER, EntityType
from partnergate.odata.errors import BadRequest
from partnergate.odata.filter import (
    MAX_COST,
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    MAX_STRING_LENGTH,
    UNDECLARED_LENGTH,
    parse_filter,
    parse_orderby,
)
from partnergate.store import database
from partnergate.store.tables import message_processing_logs

from ..conftest import PG_URL, STORE, Api, Server, _pg_admin, start_server, stop_server

TIME_LIMIT = 2.0
"""The server's ``query_time_limit`` here, in seconds."""

ROWS = 60_000
"""Message log rows: enough that the costly filter below runs far past TIME_LIMIT on both
stores (about 15 s on SQLite and 40 s on PostgreSQL without the budget, measured)."""

MONITOR_ROLE = "AuthGroup_BusinessExpert"
"""Reads message processing logs and nothing else."""

LOGS = "MessageProcessingLogs"
O_1000 = "'" + "o" * 1000 + "'"
FINDING = (
    f"length(replace(replace(replace(IntegrationFlowName,'o',{O_1000}),'o',{O_1000}),"
    f"'o',{O_1000})) gt 0"
)


def _costly_filter() -> str:
    """As many terms as MAX_COST allows, each a search in a grown copy of a 200-character
    column, none true: accepted by the parser, slow in the database for many rows."""
    term = "substringof('zq{}', replace(IntegrationFlowName, 'a', 'aa'))"
    return " or ".join(term.format(i) for i in range(40))


def _await(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on a loop of its own, in a thread: other tests of the session (the
    browser's) may leave a loop running on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="module")
def own_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if STORE == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('limits') / 'partnergate.db'}"
        return
    name = f"partnergate_limits_{uuid.uuid4().hex[:12]}"
    _await(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        _await(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _fill_message_log(url: str, count: int) -> None:
    engine = database.create_engine(url)
    try:
        rows = [
            {
                "message_guid": uuid.uuid4().hex,
                "log_start": datetime(2026, 1, 1),
                "status": "COMPLETED",
                "integration_flow_name": "a" * 200,
                "sender": "S" * 60,
                "receiver": "R" * 60,
            }
            for _ in range(count)
        ]
        async with engine.begin() as conn:
            for start in range(0, count, 5000):
                await conn.execute(sa.insert(message_processing_logs), rows[start : start + 5000])
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, own_store: str) -> Iterator[Server]:
    """A server with a short time budget over a message log of ROWS entries."""
    srv = start_server(
        tmp_path_factory.mktemp("limited"),
        own_store,
        {"PARTNERGATE_QUERY_TIME_LIMIT": str(TIME_LIMIT)},
    )
    try:
        _await(_fill_message_log(own_store, ROWS))
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def monitor(limited: Server) -> tuple[str, str]:
    user = ("monitor_" + uuid.uuid4().hex[:6], uuid.uuid4().hex)
    limited.add_user(*user, MONITOR_ROLE)
    return user


def _client(server: Server, auth: tuple[str, str]) -> httpx.Client:
    return httpx.Client(
        base_url=server.api + "/",
        auth=auth,
        headers={"Accept": "application/json"},
        timeout=60,
    )


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _odata_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert error["code"] and error["message"]["lang"] == "en"
    message: str = error["message"]["value"]
    return message


# -- the finding ---------------------------------------------------------------------------


def test_the_finding_is_a_quick_400_and_memory_stays_flat(
    limited: Server, monitor: tuple[str, str]
) -> None:
    """Three concurrent monitors, ten rounds: every answer a 400 naming the string limit,
    and the server's memory grows by less than 300 MB (it grew 1.5 GB before)."""
    before = _rss_mb(limited.process.pid)

    def ask(_: int) -> httpx.Response:
        with _client(limited, monitor) as client:
            return client.get(LOGS, params={"$filter": FINDING, "$top": "5"})

    with ThreadPoolExecutor(3) as pool:
        for _ in range(10):
            for response in pool.map(ask, range(3)):
                message = _odata_error(response, 400)
                assert f"at most {MAX_STRING_LENGTH} are allowed" in message
    assert _rss_mb(limited.process.pid) - before < 300
    assert httpx.get(limited.url + "/health", timeout=30).status_code == 200


def test_ordinary_queries_with_functions_still_work(
    limited: Server, monitor: tuple[str, str], pid: str
) -> None:
    """The limits leave ordinary queries alone, string functions included."""
    with Api(limited) as api:
        for n in range(3):
            body = {"Pid": pid, "Id": f"key{n}", "Value": f"va{n}a"}
            assert api.post("StringParameters", json=body).status_code == 201
        r = api.get(
            "StringParameters",
            params={
                "$filter": f"Pid eq '{pid}' and length(replace(Value, 'a', 'aa')) eq 6 "
                "and startswith(tolower(Id), 'KEY') eq false",
                "$orderby": "concat(Id, Value) desc",
            },
        )
        assert r.status_code == 200, r.text[:500]
        assert [e["Id"] for e in r.json()["d"]["results"]] == ["key2", "key1", "key0"]
    with _client(limited, monitor) as client:
        r = client.get(
            LOGS, params={"$filter": "startswith(Sender, 'SS') and length(Receiver) eq 60"}
        )
        assert r.status_code == 200, r.text[:500]
        assert r.json()["d"]["results"]


# -- variants: refused by the parser, before any SQL -----------------------------------------

GROWN = "replace(IntegrationFlowName, 'a', 'aaaa')"
"""A value that could be 4 × 8192 characters long: over MAX_STRING_LENGTH by itself."""

STRING_LIMIT = f"at most {MAX_STRING_LENGTH} are allowed"

VARIANTS: dict[str, tuple[str, dict[str, str], str]] = {
    "concat chain": (
        LOGS,
        {"$filter": "concat(concat(concat(Sender, Receiver), Sender), Receiver) eq 'x'"},
        STRING_LIMIT,
    ),
    "concat of itself in a replace": (
        LOGS,
        {"$filter": "length(replace(Sender, 'S', concat(Sender, Sender))) gt 0"},
        STRING_LIMIT,
    ),
    "substringof over a grown value": (
        LOGS,
        {"$filter": f"substringof('x', {GROWN})"},
        STRING_LIMIT,
    ),
    "indexof over a grown value": (
        LOGS,
        {"$filter": f"indexof({GROWN}, 'x') ge 0"},
        STRING_LIMIT,
    ),
    "tolower/toupper chain over a grown value": (
        LOGS,
        {"$filter": f"tolower(toupper(tolower(trim({GROWN})))) eq 'x'"},
        STRING_LIMIT,
    ),
    "replace with a computed find": (
        "StringParameters",
        {"$filter": "length(replace(Value, substring(Pid, 0, 1), Value)) gt 0"},
        STRING_LIMIT,
    ),
    "substring keeps the growth": (
        LOGS,
        {"$filter": f"substring({GROWN}, 1) eq 'x'"},
        STRING_LIMIT,
    ),
    "orderby with a grown key": (
        LOGS,
        {"$orderby": f"{GROWN} desc"},
        STRING_LIMIT,
    ),
    "orderby with a concat chain": (
        LOGS,
        {"$orderby": "concat(concat(Sender, Receiver), IntegrationFlowName)"},
        STRING_LIMIT,
    ),
    "count with a grown value": (
        f"{LOGS}/$count",
        {"$filter": f"length({GROWN}) gt 0"},
        STRING_LIMIT,
    ),
    "many or terms over long values": (
        LOGS,
        {"$filter": " or ".join(f"substringof('{i}', Sender)" for i in range(200))},
        f"at most {MAX_COST} are allowed",
    ),
    "parentheses 10,000 deep": (
        LOGS,
        {"$filter": "(" * 10_000 + "Sender eq 'a'" + ")" * 10_000},
        f"longer than {MAX_EXPRESSION_LENGTH} characters",
    ),
    "functions nested too deep": (
        LOGS,
        {"$filter": "tolower(" * 20 + "Sender" + ")" * 20 + " eq 'a'"},
        f"nested more than {MAX_DEPTH} levels deep",
    ),
    "not 1,500 times": (
        LOGS,
        {"$filter": "not " * 1500 + "(Sender eq 'a')"},
        f"nested more than {MAX_DEPTH} levels deep",
    ),
    "a literal longer than the expression limit": (
        LOGS,
        {"$filter": "Sender eq '" + "x" * MAX_EXPRESSION_LENGTH + "'"},
        f"longer than {MAX_EXPRESSION_LENGTH} characters",
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_are_400s_that_name_the_limit(
    limited: Server, monitor: tuple[str, str], variant: str
) -> None:
    path, params, limit = VARIANTS[variant]
    auth = monitor if path.startswith(LOGS) else limited.admin
    with _client(limited, auth) as client:
        message = _odata_error(client.get(path, params=params), 400)
    assert limit in message


EXTREMES = {
    "substring(Value, 2147483647) eq ''": True,
    "substring(Value, 2147483647, 2147483647) eq 'a'": False,
    "substring(Value, indexof(Value, 'x'), 2147483647) eq 'abc'": True,
    "length(Value) eq 9223372036854775807L": False,
    "length(Value) ne -9223372036854775808L": True,
    "indexof(Value, 'c') lt 2147483647": True,
}
"""Filters at the edges of Int32/Int64 and whether the entity (Value 'abc') matches: the
same answer on both stores (PostgreSQL's ``int4`` once overflowed into a 500)."""


@pytest.mark.parametrize("text", list(EXTREMES))
def test_extreme_numbers_are_answered_alike(limited: Server, pid: str, text: str) -> None:
    with Api(limited) as api:
        body = {"Pid": pid, "Id": "edge", "Value": "abc"}
        assert api.post("StringParameters", json=body).status_code == 201
        r = api.get("StringParameters", params={"$filter": f"Pid eq '{pid}' and {text}"})
        assert r.status_code == 200, r.text[:500]
        assert bool(r.json()["d"]["results"]) is EXTREMES[text]


def test_a_megabyte_literal_is_refused(limited: Server) -> None:
    """No path brings a megabyte of ``$filter`` to the parser: a ``$batch`` part's request
    line is refused with its limit named, and so is the URL, by the HTTP layer."""
    literal = "x" * (1 << 20)
    with Api(limited) as api:
        boundary = "batch_limits"
        part = f"GET {LOGS}?$filter=Sender%20eq%20'{literal}' HTTP/1.1"
        body = "\r\n".join(
            [
                f"--{boundary}",
                "Content-Type: application/http",
                "Content-Transfer-Encoding: binary",
                "",
                part,
                "Accept: application/json",
                "",
                "",
                f"--{boundary}--",
                "",
            ]
        ).encode()
        r = api.post(
            "$batch",
            content=body,
            headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
        )
        message = _odata_error(r, 400)
        assert "request line longer than" in message
    with socket.create_connection(("127.0.0.1", int(limited.url.rsplit(":", 1)[1]))) as sock:
        sock.settimeout(30)
        target = f"/api/v1/{LOGS}?$filter=Sender%20eq%20'{literal}'"
        try:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            answer = b"(reset)"
    assert answer == b"(reset)" or answer.startswith(b"HTTP/1.1 4"), answer[:200]


# -- the time budget -----------------------------------------------------------------------


def test_a_query_past_the_time_budget_is_a_503_and_health_answers_meanwhile(
    limited: Server, monitor: tuple[str, str]
) -> None:
    answers: dict[str, Any] = {}

    def slow() -> None:
        with _client(limited, monitor) as client:
            answers["slow"] = client.get(
                LOGS, params={"$filter": _costly_filter(), "$inlinecount": "allpages"}
            )

    worker = threading.Thread(target=slow)
    worker.start()
    healthy_while_busy = False
    try:
        while worker.is_alive():
            health = httpx.get(limited.url + "/health", timeout=30)
            assert health.status_code == 200
            healthy_while_busy = healthy_while_busy or worker.is_alive()
            time.sleep(0.05)
    finally:
        worker.join(120)
    assert healthy_while_busy
    message = _odata_error(answers["slow"], 503)
    assert "query_time_limit" in message and f"{TIME_LIMIT:g} s" in message


def test_the_store_answers_normally_after_a_stopped_query(
    limited: Server, monitor: tuple[str, str]
) -> None:
    """The stopped statement leaves no budget behind on its pooled connection."""
    with _client(limited, monitor) as client:
        for _ in range(3):
            stopped = client.get(LOGS, params={"$filter": _costly_filter(), "$top": "1"})
            _odata_error(stopped, 503)
        for _ in range(5):
            r = client.get(LOGS, params={"$top": "2", "$inlinecount": "allpages"})
            assert r.status_code == 200, r.text[:500]
            assert r.json()["d"]["__count"] == str(ROWS)


# -- the store's part: database limits and the budget, straight on the engine --------------


def _run(url: str, check: Any) -> Any:
    async def main() -> Any:
        engine = database.create_engine(url, query_time_limit=0.5)
        try:
            return await check(engine)
        finally:
            await engine.dispose()

    return _await(main())


SLOW_SQL = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000000) "
    "SELECT count(*) FROM c"
)


def test_a_bounded_read_maps_database_limits_to_400_and_time_to_503(own_store: str) -> None:
    too_big = (
        ["SELECT randomblob(2000000000)"]
        if STORE == "sqlite"
        else ["SELECT repeat('x', 2000000000)", "SELECT 2147483647::int4 + 1"]
    )

    async def check(engine: Any) -> list[tuple[str, int]]:
        found = []
        for sql in (SLOW_SQL, *too_big):
            async with engine.connect() as conn:
                try:
                    async with database.bounded_read(conn):
                        await conn.execute(sa.text(sql))
                except (database.QueryTimeLimit, database.QueryTooLarge) as exc:
                    found.append((type(exc).__name__, exc.status))
        return found

    refused = [("QueryTooLarge", 400)] * len(too_big)
    assert _run(own_store, check) == [("QueryTimeLimit", 503), *refused]


def test_statements_after_a_bounded_read_are_not_cut_short(own_store: str) -> None:
    """A ``$batch`` change set's writes share a transaction with its reads: the budget
    ends with the read (PostgreSQL's SET LOCAL is undone, SQLite's deadline cleared)."""
    longer = "SELECT pg_sleep(1.5)" if STORE == "postgresql" else SLOW_SQL.replace("300", "10")

    async def check(engine: Any) -> bool:
        async with engine.begin() as conn:
            async with database.bounded_read(conn):
                await conn.execute(sa.text("SELECT 1"))
            await conn.execute(sa.text(longer))
        return True

    assert _run(own_store, check)


# -- the rule itself: worst-case lengths, at the parser ------------------------------------


def _parses(text: str, entity_type: EntityType = STRING_PARAMETER) -> bool:
    try:
        parse_filter(text, entity_type)
    except BadRequest as exc:
        assert STRING_LIMIT in exc.message or f"at most {MAX_COST}" in exc.message, exc.message
        return False
    return True


def _concat(*parts: str) -> str:
    text = parts[0]
    for part in parts[1:]:
        text = f"concat({text}, {part})"
    return text


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        # Value has MaxLength 4000: four of it and 384 characters more is the limit exactly.
        (_concat("Value", "Value", "Value", "Value", "'" + "x" * 384 + "'") + " eq 'a'", True),
        (_concat("Value", "Value", "Value", "Value", "'" + "x" * 385 + "'") + " eq 'a'", False),
        ("replace(Value, 'a', 'bbbb') eq 'a'", True),
        ("replace(Value, 'a', 'bbbbb') eq 'a'", False),
        ("replace(Value, 'ab', 'cccccccc') eq 'a'", True),
        # An empty find replaces nothing, whatever the replacement.
        ("replace(Value, '', '" + "x" * 5000 + "') eq 'a'", True),
        # A computed find may be one character long.
        ("replace(Value, Pid, 'xxxx') eq 'a'", True),
        ("replace(Value, Pid, 'xxxxx') eq 'a'", False),
        # Literal text and find: the exact number of matches counts.
        ("replace('abc', 'a', '" + "x" * 5000 + "') eq 'a'", True),
        ("replace('aaaa', 'a', '" + "x" * 5000 + "') eq 'a'", False),
        # substring with a literal length cuts the worst case; without one it does not.
        (_concat("substring(replace(Value, 'a', 'bbbb'), 0, 10)", "Value") + " eq 'a'", True),
        (_concat("substring(replace(Value, 'a', 'bbbb'), 10)", "Value") + " eq 'a'", False),
        ("tolower(toupper(trim(replace(Value, 'a', 'bbbb')))) eq 'a'", True),
    ],
)
def test_worst_case_string_length(text: str, allowed: bool) -> None:
    assert _parses(text) is allowed


def test_cost_per_row_counts_every_term() -> None:
    """Each ``substringof('x', Sender)`` reads up to 8192 + 1 characters and is one call:
    127 of them fit in MAX_COST, 128 do not."""
    term = "substringof('x', Sender)"
    assert (127 * (UNDECLARED_LENGTH + 2) + 1) <= MAX_COST < 128 * (UNDECLARED_LENGTH + 2) + 1
    assert _parses(" or ".join([term] * 127), MESSAGE_PROCESSING_LOG)
    assert not _parses(" or ".join([term] * 128), MESSAGE_PROCESSING_LOG)


def test_orderby_keys_obey_the_same_rule() -> None:
    assert parse_orderby("replace(Value, 'a', 'bbbb') desc, Pid", STRING_PARAMETER)
    with pytest.raises(BadRequest, match=STRING_LIMIT):
        parse_orderby("Pid, replace(Value, 'a', 'bbbbb')", STRING_PARAMETER)


@pytest.mark.parametrize(("given", "seconds"), [(None, 5.0), ("0.25", 0.25), ("30", 30.0)])
def test_query_time_limit_setting(given: str | None, seconds: float) -> None:
    environ = {} if given is None else {"PARTNERGATE_QUERY_TIME_LIMIT": given}
    assert load_settings(environ=environ).query_time_limit == seconds


@pytest.mark.parametrize("given", ["0", "-1", "soon", "nan", "inf"])
def test_query_time_limit_must_be_a_positive_number(given: str) -> None:
    with pytest.raises(ConfigError, match="query_time_limit"):
        load_settings(environ={"PARTNERGATE_QUERY_TIME_LIMIT": given})
