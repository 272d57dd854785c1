"""Trace on demand: a flow's log level set at run time through the API, bodies and
headers kept before and after each step with secrets masked, TRACE ending after ten
minutes as SAP's does, and traces bounded by age and size."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from datetime import UTC, datetime, timedelta

import httpx

from partnergate.runtime.exchange import new_message_id
from partnergate.runtime.messagelog import (
    INFO,
    NONE,
    TRACE,
    LogLevels,
    MessageLogEntry,
    RunStep,
    snapshot,
    utcnow,
)
from partnergate.store import database
from partnergate.store.messagelog import StoreMessageLog, read_steps

from ..conftest import Api
from ..ui.conftest import sign_in
from .conftest import SEND, Scenario

SENDER_FLOW = "Partner Directory sender"
DATE = re.compile(r"/Date\((\d+)\)/")


def level(api: Api, flow: str, value: str) -> httpx.Response:
    return api.put(f"FlowLogLevels('{flow}')", json={"LogLevel": value})


def test_trace_keeps_bodies_and_headers_with_secrets_masked(scenario: Scenario) -> None:
    srv = scenario.server
    with Api(srv) as api:
        before = datetime.now(UTC).replace(tzinfo=None)
        assert level(api, SENDER_FLOW, "TRACE").status_code == 204
        seen = api.get(f"FlowLogLevels('{SENDER_FLOW}')").json()["d"]
        assert seen["LogLevel"] == "TRACE"
        until = datetime.fromtimestamp(int(DATE.match(seen["Until"]).group(1)) / 1000, UTC)
        lasts = until.replace(tzinfo=None) - before
        assert timedelta(minutes=9) < lasts <= timedelta(minutes=11)
        listed = api.get("FlowLogLevels").json()["d"]["results"]
        assert any(r["Flow"] == SENDER_FLOW and r["LogLevel"] == "TRACE" for r in listed)
        try:
            # the sender puts the receiver's password in its message: the trace must not
            body = (
                "<Message><Receiver>Receiver_2</Receiver>"
                f"<Note>{scenario.receiver_password}</Note></Message>"
            )
            r = httpx.post(
                srv.url + SEND,
                content=body.encode(),
                headers={
                    "Content-Type": "application/xml",
                    "X-Api-Key": "api-key-never-shown",
                    "X-Trace-Me": "visible-header",
                },
                auth=scenario.basic,
                timeout=30,
            )
            assert r.status_code == 200, r.text
            guid = r.headers["sap_messageprocessinglogid"]
            entry = api.get(f"MessageProcessingLogs('{guid}')").json()["d"]
            assert entry["LogLevel"] == "TRACE"
        finally:
            assert level(api, SENDER_FLOW, "INFO").status_code == 204
        plain = httpx.post(
            srv.url + SEND,
            content=b"<Message><Receiver>Receiver_2</Receiver></Message>",
            headers={"Content-Type": "application/xml"},
            auth=scenario.basic,
            timeout=30,
        ).headers["sap_messageprocessinglogid"]
        assert api.get(f"MessageProcessingLogs('{plain}')").json()["d"]["LogLevel"] == "INFO"
        refused = level(api, SENDER_FLOW, "LOUD")
        assert refused.status_code == 400 and "LogLevel" in refused.text
        typo = level(api, SENDER_FLOW.lower(), "TRACE")  # no such flow: not silently kept
        assert typo.status_code == 404 and "deployed flow" in typo.text
        names = [r["Flow"] for r in api.get("FlowLogLevels").json()["d"]["results"]]
        assert SENDER_FLOW.lower() not in names
    with sign_in(srv, *srv.admin) as ui:
        page = ui.get(f"/ui/monitor/{guid}").text
        assert page.count("Message before and after this step") == 5
        assert "visible-header" in page
        assert "&lt;Receiver&gt;Receiver_2&lt;/Receiver&gt;" in page
        assert scenario.receiver_password not in page
        assert "api-key-never-shown" not in page
        assert "********" in page
        quiet = ui.get(f"/ui/monitor/{plain}").text
        assert "Message before and after this step" not in quiet
        assert "string parameter Receiver_2/ADDRESS found" in quiet


def test_trace_ends_after_ten_minutes() -> None:
    levels = LogLevels()
    start = datetime(2026, 12, 4, 3, 0)
    assert levels.level_of("f", start) == INFO
    until = levels.set("f", TRACE, start)
    assert until == start + timedelta(minutes=10)
    assert levels.level_of("f", start + timedelta(minutes=9, seconds=59)) == TRACE
    assert levels.level_of("f", start + timedelta(minutes=10)) == INFO
    levels.set("f", NONE, start)
    assert levels.level_of("f", start + timedelta(days=3)) == NONE


def traced(guid: str, at: datetime) -> MessageLogEntry:
    """A message of one step at ``TRACE`` with a body of 1000 bytes: about 2 KB of trace."""
    taken = snapshot({"Content-Type": "text/plain"}, b"x" * 1000, (), 10_000)
    step = RunStep(1, "step 1", "set", at, 0, 5, "COMPLETED", "", None, taken, taken)
    return MessageLogEntry(guid, "f", "/http/f", "COMPLETED", at, at, steps=(step,))


def test_traces_are_bounded_by_age_and_size(store_url: str) -> None:
    async def main() -> None:
        engine = database.create_engine(store_url)
        await database.upgrade(engine)
        log = StoreMessageLog(engine, trace_hours=1, trace_max_bytes=5000)
        now = utcnow()
        old = new_message_id()
        await log.finished(traced(old, now - timedelta(hours=2)))
        fresh = [new_message_id() for _ in range(4)]
        for n, guid in enumerate(fresh):
            # ahead of every other trace in the shared store, so they are the newest
            await log.finished(traced(guid, now + timedelta(days=1, minutes=n)))
        await log.flush()
        assert (await read_steps(engine, old))[0]["trace"] is not None
        await log.purge_traces()
        assert (await read_steps(engine, old))[0]["trace"] is None  # too old
        kept = [(await read_steps(engine, g))[0]["trace"] is not None for g in fresh]
        assert kept == [False, False, True, True]  # the newest within 5000 bytes
        assert (await read_steps(engine, old))[0]["step_id"] == "step 1"  # the line stays
        log.close()
        await engine.dispose()

    asyncio.run(main())


def test_the_size_bound_holds_between_the_hourly_purges(store_url: str) -> None:
    """A busy traced flow writes far more than ``trace_max_bytes`` in an hour: the log
    drops the oldest traces as it writes, not only at the hourly housekeeping."""

    async def main() -> None:
        engine = database.create_engine(store_url)
        await database.upgrade(engine)
        log = StoreMessageLog(engine, interval=0.02, trace_max_bytes=5000)
        writing = asyncio.create_task(log.run())
        at = utcnow() + timedelta(days=2)  # the newest traces of the shared store
        guids = [new_message_id() for _ in range(8)]
        try:
            for n, guid in enumerate(guids):
                await log.finished(traced(guid, at + timedelta(minutes=n)))
                await asyncio.sleep(0.05)
            deadline = time.monotonic() + 10
            while (await read_steps(engine, guids[0]))[0]["trace"] is not None:
                assert time.monotonic() < deadline, "the oldest trace was never dropped"
                await asyncio.sleep(0.05)
        finally:
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
        kept = [(await read_steps(engine, g))[0]["trace"] is not None for g in guids]
        assert kept[-2:] == [True, True] and not any(kept[:-3]), kept
        log.close()
        await engine.dispose()

    asyncio.run(main())
