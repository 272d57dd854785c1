"""The message processing log's writer on the run's store (SQLite file or PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from partnergate.runtime.messagelog import COMPLETED, PROCESSING, MessageLogEntry, keep, utcnow
from partnergate.store import database
from partnergate.store.messagelog import ROWS_PER_TRANSACTION, StoreMessageLog
from partnergate.store.tables import message_processing_log_attachments as attachments
from partnergate.store.tables import message_processing_logs as mpl


def entry(guid: str, status: str = COMPLETED, **changes: object) -> MessageLogEntry:
    values: dict[str, object] = {
        "message_guid": guid,
        "flow": "f",
        "endpoint": "/http/f",
        "status": status,
        "start": utcnow(),
    }
    values.update(changes)
    return MessageLogEntry(**values)  # type: ignore[arg-type]


async def rows(engine, query):  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return (await conn.execute(query)).all()


def test_batches_larger_than_a_transaction_and_a_batch_written_twice(store_url: str) -> None:
    async def main() -> None:
        engine = database.create_engine(store_url)
        await database.upgrade(engine)
        log = StoreMessageLog(engine)
        prefix = utcnow().strftime("w%H%M%S%f")
        count = ROWS_PER_TRANSACTION * 2 + 7
        for n in range(count):
            await log.started(entry(f"{prefix}-{n}", PROCESSING))
        kept = keep("received", "text/xml", b"<Message/>")
        last = entry(
            f"{prefix}-0", end=utcnow(), receiver_partner="Receiver_2", attachments=(kept,)
        )
        await log.finished(last)
        await log.flush()
        await log.finished(last)  # the same report again: the attachment stays one
        await log.flush()

        written = await rows(
            engine,
            sa.select(mpl.c.message_guid, mpl.c.status).where(
                mpl.c.message_guid.like(f"{prefix}-%")
            ),
        )
        assert len(written) == count
        statuses = dict(written)
        assert statuses[f"{prefix}-0"] == COMPLETED and statuses[f"{prefix}-1"] == PROCESSING
        stored = await rows(
            engine,
            sa.select(attachments.c.name, attachments.c.payload, attachments.c.time_stamp).where(
                attachments.c.message_guid == f"{prefix}-0"
            ),
        )
        assert [(n, bytes(p)) for n, p, _ in stored] == [("received", b"<Message/>")]
        assert stored[0][2] == kept.time  # read back as the datetime it was written as

        async with database.begin(engine) as conn:  # make the first message old
            await conn.execute(
                sa.update(mpl)
                .where(mpl.c.message_guid == f"{prefix}-0")
                .values(log_start=utcnow() - timedelta(days=40))
            )
        assert await log.purge(30) >= 1
        gone = await rows(
            engine, sa.select(attachments.c.id).where(attachments.c.message_guid == f"{prefix}-0")
        )
        assert gone == []
        log.close()
        await engine.dispose()

    asyncio.run(main())


def test_every_field_is_stored_as_it_was_reported(store_url: str) -> None:
    """Quotes, backslashes, line breaks and any Unicode survive the batch; a missing
    HTTP status stays NULL and a present one an integer."""

    async def main() -> None:
        engine = database.create_engine(store_url)
        await database.upgrade(engine)
        log = StoreMessageLog(engine)
        prefix = utcnow().strftime("f%H%M%S%f")
        start = utcnow()
        odd = 'line 1\nline 2\t"quoted" \\ back\\slash, Grüße, 日本, \U0001f600 and \x07'
        full = entry(
            f"{prefix}-a",
            COMPLETED,
            flow='Flow "ö"',
            start=start,
            end=start + timedelta(milliseconds=5),
            user="user_ä",
            sender_partner="Sender\\1",
            receiver_partner="Receiver'2",
            http_status=502,
            failed_step="call the receiver",
            error=odd,
        )
        bare = entry(f"{prefix}-b", PROCESSING, start=start)
        await log.finished(full)
        await log.started(bare)
        await log.flush()
        found = {
            row.message_guid: row
            for row in await rows(
                engine, sa.select(mpl).where(mpl.c.message_guid.like(f"{prefix}-%"))
            )
        }
        a, b = found[f"{prefix}-a"], found[f"{prefix}-b"]
        assert a.integration_flow_name == 'Flow "ö"'
        assert (a.user, a.sender, a.receiver) == ("user_ä", "Sender\\1", "Receiver'2")
        assert a.http_status == 502 and isinstance(a.http_status, int)
        assert a.error_information == f"call the receiver: {odd}"  # the label as the engine gave it
        assert (a.log_start, a.log_end) == (start, start + timedelta(milliseconds=5))
        assert (b.status, b.http_status, b.log_end, b.error_information) == (
            PROCESSING,
            None,
            None,
            None,
        )
        # time filters compare the stored form, as the API's $filter on LogStart does
        later = await rows(
            engine,
            sa.select(mpl.c.message_guid).where(
                mpl.c.message_guid.like(f"{prefix}-%"), mpl.c.log_end > start
            ),
        )
        assert [r[0] for r in later] == [f"{prefix}-a"]
        log.close()
        await engine.dispose()

    asyncio.run(main())


def test_times_are_written_in_sqlalchemys_form() -> None:
    """The writer's own conversion of a time gives SQLAlchemy's text for SQLite, which
    ``$filter`` comparisons and every reader of the log expect, at both ends of time."""
    from datetime import UTC, datetime

    from partnergate.store.messagelog import _TO_TEXT, _as_text

    moments = [
        datetime(1, 1, 1),
        datetime(999, 12, 31, 23, 59, 59),
        datetime(2026, 12, 5, 2, 11, 48, 635000),
        datetime(2026, 12, 5, 2, 11, 48, 7),
        datetime(9999, 12, 31, 23, 59, 59, 999999),
        datetime(2026, 12, 5, 2, 11, 48, 635000, tzinfo=UTC),
        utcnow(),
    ]
    for moment in moments:
        assert _as_text(moment) == _TO_TEXT(moment)
    assert _as_text(None) is None
