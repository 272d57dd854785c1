"""An import larger than what the store keeps waiting in memory: still one transaction,
one history entry per entity, and nothing at all when a row is refused late."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from partnergate.pdcode.sync import CHUNK
from partnergate.store.directory import SETTLE_AT

from ..conftest import Api, Server, cli

PARTNERS = SETTLE_AT // 100 + 12
PARAMETERS = 100


def _write(root: Path, bad_last: bool = False) -> None:
    for p in range(PARTNERS):
        folder = root / f"Scale_{p:04d}"
        folder.mkdir(parents=True)
        lines = [f"P{i:03d}=https://r{p}.example/{i}\n" for i in range(PARAMETERS)]
        if bad_last and p == PARTNERS - 1:
            lines.append("not allowed=x\n")  # an Id with a space: refused by the rules
        (folder / "String.properties").write_text("".join(lines))
    (root / "Scale_0000" / "AuthorizedUsers.yaml").write_text("- scale-user\n")


def _count(api: Api, entity_set: str, query: str = "") -> int:
    found = api.get(f"{entity_set}/$count", params={"$filter": query} if query else None)
    assert found.status_code == 200, found.text
    return int(found.text)


def test_a_large_import_records_one_entry_per_entity_in_one_change(
    servers: Callable[..., Server], tmp_path: Path
) -> None:
    root = tmp_path / "pd"
    _write(root)
    target = servers()
    done = cli("pd", "import", str(root), env=target.env)
    assert done.returncode == 0, done.stderr
    rows = PARTNERS * PARAMETERS
    assert f"{rows + 1} to create, 0 to update, 0 to delete: applied" in done.stdout
    with Api(target) as api:
        assert _count(api, "StringParameters") == rows
        assert _count(api, "AuthorizedUsers") == 1
        assert _count(api, "AuditEntries", "EntitySet eq 'StringParameters'") == rows
        assert _count(api, "AuditEntries", "EntitySet eq 'AuthorizedUsers'") == 1
        entries = api.get(
            "AuditEntries", params={"$select": "Id,ChangeId,Operation,Time", "$orderby": "Id"}
        ).json()["d"]["results"]
        change = entries[-1]["ChangeId"]
        assert _count(api, "AuditEntries", f"ChangeId eq '{change}'") == rows + 1
        assert _count(api, "AuditEntries", "Operation ne 'Create'") == 0
        first, last = (
            api.get(
                "AuditEntries",
                params={"$filter": f"ChangeId eq '{change}'", "$orderby": order, "$top": "1"},
            ).json()["d"]["results"][0]
            for order in ("Id", "Id desc")
        )
    assert len({len(e["Id"]) for e in entries}) == 1
    assert first["Time"] == last["Time"], "one import, one moment"


def test_a_row_refused_after_thousands_were_written_leaves_nothing(
    servers: Callable[..., Server], tmp_path: Path
) -> None:
    root = tmp_path / "pd"
    _write(root, bad_last=True)
    target = servers()
    done = cli("pd", "import", str(root), env=target.env)
    assert done.returncode == 1
    assert "not allowed" in done.stderr and "nothing was changed" in done.stderr
    with Api(target) as api:
        assert _count(api, "StringParameters") == 0
        assert _count(api, "AuditEntries", "EntitySet eq 'StringParameters'") == 0
        assert _count(api, "AuthorizedUsers") == 0


def test_an_authorised_user_given_to_two_partners_is_refused_across_chunks(
    servers: Callable[..., Server], tmp_path: Path
) -> None:
    """The two partners are compared in different chunks: the second is not a move."""
    root = tmp_path / "pd"
    for p in range(CHUNK + 1):
        folder = root / f"Claim_{p:04d}"
        folder.mkdir(parents=True)
        (folder / "String.properties").write_text("URL=https://r.example\n")
    for p in (0, CHUNK):
        (root / f"Claim_{p:04d}" / "AuthorizedUsers.yaml").write_text("- twice\n")
    target = servers()
    done = cli("pd", "import", str(root), env=target.env)
    assert done.returncode == 1
    assert "'twice' is given to both Claim_0000 and Claim_0500" in done.stderr
    with Api(target) as api:
        assert _count(api, "AuthorizedUsers") == 0
        assert _count(api, "StringParameters") == 0
        assert _count(api, "AuditEntries", "EntitySet eq 'StringParameters'") == 0
