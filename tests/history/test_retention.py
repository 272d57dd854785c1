"""Retention of the change history: by age and by count, on a store of its own."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from partnergate.store import audit, database
from partnergate.store.directory import now
from partnergate.store.tables import audit_entries

from ..conftest import Api, start_server, stop_server
from ..ui.conftest import run_async


async def _age_and_prune(url: str, days: int) -> tuple[int, int]:
    """Make every entry but the newest 40 days old (its time, and its Id, which begins
    with its time), then prune by age."""
    engine = database.create_engine(url)
    old = now() - timedelta(days=40)
    try:
        async with engine.begin() as conn:
            ids = (await conn.execute(select(audit_entries.c.id).order_by("id"))).scalars().all()
            for id_ in ids[:-1]:
                await conn.execute(
                    update(audit_entries)
                    .where(audit_entries.c.id == id_)
                    .values(time=old, id=audit.time_prefix(old) + id_[20:])
                )
        removed = await audit.prune(engine, now(), days, None)
        async with engine.connect() as conn:
            left = int(
                (await conn.execute(select(func.count()).select_from(audit_entries))).scalar_one()
            )
        return removed, left
    finally:
        await engine.dispose()


def test_history_keeps_what_the_settings_say(tmp_path: Path, fresh_url: str) -> None:
    env = {"PARTNERGATE_HISTORY_MAX_ENTRIES": "3"}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    server = start_server(tmp_path / "one", fresh_url, env)
    try:
        with Api(server) as api:
            for n in range(6):
                api.post("StringParameters", json={"Pid": "Retained", "Id": f"P{n}", "Value": "v"})
    finally:
        stop_server(server)
    # Pruned when the server starts, and hourly after that.
    server = start_server(tmp_path / "two", fresh_url, env)
    try:
        with Api(server) as api:
            kept = api.get("AuditEntries", params={"$orderby": "Id"}).json()["d"]["results"]
        # The newest three: two parameters, then the admin this second start added.
        assert [e["Label"] for e in kept] == ["P4", "P5", server.admin[0]]
    finally:
        stop_server(server)
    removed, left = run_async(lambda: _age_and_prune(fresh_url, 30))
    assert (removed, left) == (2, 1)
