"""What the readiness probe and the certificate metrics ask of the store.

:func:`answers` is the probe's cheap query. On SQLite it opens a connection of its own
for each probe (in a thread): a pooled connection keeps reading a database file that has
been moved or deleted under it, and the probe must notice that the file is gone.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ..security import certificates
from .database import sqlite_file
from .tables import certificate_user_mappings

__all__ = ["answers", "mapped_certificates"]

PROBE = "SELECT version_num FROM alembic_version"


async def answers(engine: AsyncEngine, timeout: float) -> str | None:
    """None when the store answered the probe within ``timeout`` seconds, else why not."""
    path = sqlite_file(engine)
    try:
        if path is not None:
            found = await asyncio.wait_for(asyncio.to_thread(_sqlite_probe, path, timeout), timeout)
        else:
            found = await asyncio.wait_for(_probe(engine), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except Exception as exc:  # any failure of the store is the answer
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    return None if found else "not migrated"


async def _probe(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return (await conn.execute(text(PROBE))).first() is not None


def _sqlite_probe(path: str, timeout: float) -> bool:
    uri = f"file:{path}?mode=rw"
    with closing(sqlite3.connect(uri, uri=True, timeout=timeout)) as conn:
        return conn.execute(PROBE).fetchone() is not None


async def mapped_certificates(engine: AsyncEngine) -> list[tuple[str, str, float]]:
    """(mapping id, user, not after in Unix seconds) of every CertificateUserMapping."""
    t = certificate_user_mappings
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(t.c.id, t.c.user, t.c.valid_until, t.c.certificate))
        ).all()
    found = []
    for row in rows:
        if row.valid_until is not None:
            not_after = row.valid_until / 1000
        else:
            try:
                cert = certificates.load_certificate(str(row.certificate))
            except (ValueError, certificates.CertificateError):
                continue
            not_after = cert.not_valid_after_utc.timestamp()
        found.append((str(row.id), str(row.user), float(not_after)))
    return found
