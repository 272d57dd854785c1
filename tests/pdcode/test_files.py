"""The file layout: FlashPipe's documented format in, deterministic files out, overlays."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from partnergate.pdcode import files
from partnergate.security.secretbox import SecretBox
from partnergate.store import database
from partnergate.store.directory import DirectoryStore, ListRequest

from ..conftest import cli


@pytest.mark.parametrize(
    "value",
    ["plain", "a\nb", "a\r\nb", "back\\slash", "\\n literally", "tab\there", "=#!:", "ü→日本", ""],
)
def test_string_values_survive_properties(value: str) -> None:
    data = files.write_properties({"Id": value})
    assert files.read_properties(data, "x") == {"Id": value}
    assert data.count(b"\n") == 1, "one line per parameter"


def test_flashpipe_escapes_and_comments_are_read() -> None:
    text = (
        "# a comment\n! another\n\nMULTILINE_VALUE=Line 1\\nLine 2\\nLine 3\r\nURL=https://a?b=c\n"
    )
    assert files.read_properties(text.encode(), "x") == {
        "MULTILINE_VALUE": "Line 1\nLine 2\nLine 3",
        "URL": "https://a?b=c",
    }
    with pytest.raises(files.LayoutError, match="x:2: expected Id=Value"):
        files.read_properties(b"A=1\nno separator\n", "x")


@pytest.mark.parametrize(
    ("content_type", "name"),
    [
        ("xml", "p.xml"),
        ("xsl", "p.xsl"),
        ("zip", "p.zip"),
        ("crt", "p.crt"),
        ("text", "p.text"),
        ("xml;encoding=UTF-8", "p.xml"),
    ],  # fmt: skip
)
def test_binary_file_names_follow_flashpipe(content_type: str, name: str) -> None:
    assert files.binary_filename("p", content_type) == name
    assert files.content_type_of(name, {name: content_type} if ";" in content_type else {}) == (
        content_type
    )


def test_content_types_flashpipe_writes_are_understood() -> None:
    metadata = {"transform.xsl": "application/xml", "certificate.crt": "application/x-x509-ca-cert"}
    assert files.content_type_of("transform.xsl", metadata) == "xsl"
    assert files.content_type_of("certificate.crt", metadata) == "crt"
    assert files.content_type_of("notes.txt", {}) == "text"
    assert files.content_type_of("notes.txt", {"notes.txt": "txt; encoding=UTF-8"}) == (
        "text; encoding=UTF-8"
    )
    assert files.content_type_of("a.xml", {"a.xml": "text/xml; encoding=UTF-8"}) == (
        "xml; encoding=UTF-8"
    )


def _flashpipe_fixture(root: Path) -> None:
    """Written by hand from FlashPipe's docs/partner-directory.md."""
    pid = root / "PID_001"
    (pid / "Binary").mkdir(parents=True)
    (pid / "String.properties").write_text(
        "API_KEY=abc123def456\n"
        "ENDPOINT_URL=https://api.example.com/v1\n"
        "TIMEOUT_SECONDS=30\n"
        "MULTILINE_VALUE=Line 1\\nLine 2\\nLine 3\n"
    )
    (pid / "Binary" / "transform.xsl").write_text("<xsl:stylesheet version='1.0'/>")
    (pid / "Binary" / "config.xml").write_text("<config/>")
    (pid / "Binary" / "notes.txt").write_text("hello")
    (pid / "Binary" / "_metadata.json").write_text(
        json.dumps({"transform.xsl": "application/xml", "config.xml": "application/xml"}, indent=2)
    )
    (root / "PID_002" / "Binary").mkdir(parents=True)
    (root / "PID_002" / "String.properties").write_text("A=1\n")
    (root / "PID_002" / "Binary" / "_metadata.json").write_text("{}")


def _rows(db: str, data_dir: Path, entity_set: str) -> list[dict[str, object]]:
    async def read() -> list[dict[str, object]]:
        engine = database.create_engine(db)
        try:
            store = DirectoryStore(engine, SecretBox.from_key_file(data_dir / "credentials.key"))
            return (await store.list(entity_set, ListRequest())).rows
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _env(db: str, data_dir: Path) -> dict[str, str]:
    import os

    return {**os.environ, "PARTNERGATE_DB": db, "PARTNERGATE_DATA_DIR": str(data_dir)}


def test_a_flashpipe_directory_imports(tmp_path: Path, new_db: Callable[[], str]) -> None:
    root = tmp_path / "partner-directory"
    _flashpipe_fixture(root)
    db, data_dir = new_db(), tmp_path / "data"
    done = cli("pd", "import", str(root), env=_env(db, data_dir))
    assert done.returncode == 0, done.stderr
    assert "8 to create, 0 to update, 0 to delete: applied in one transaction" in done.stdout
    strings = {(r["Pid"], r["Id"]): r["Value"] for r in _rows(db, data_dir, "StringParameters")}
    assert strings[("PID_001", "MULTILINE_VALUE")] == "Line 1\nLine 2\nLine 3"
    assert strings[("PID_001", "TIMEOUT_SECONDS")] == "30"
    binaries = {
        r["Id"]: (r["ContentType"], r["Value"]) for r in _rows(db, data_dir, "BinaryParameters")
    }
    assert binaries == {
        "transform": ("xsl", b"<xsl:stylesheet version='1.0'/>"),
        "config": ("xml", b"<config/>"),
        "notes": ("text", b"hello"),
    }
    # What we write back is FlashPipe's layout: the same names, metadata only where needed.
    out = tmp_path / "out"
    assert cli("pd", "export", str(out), env=_env(db, data_dir)).returncode == 0
    assert sorted(p.name for p in (out / "PID_001" / "Binary").iterdir()) == [
        "config.xml",
        "notes.text",
        "transform.xsl",
    ]


def test_overlay_replaces_values_per_stage(tmp_path: Path, new_db: Callable[[], str]) -> None:
    root = tmp_path / "pd"
    for pid in ("Receiver_1", "Receiver_2", "Sender_1"):
        (root / pid).mkdir(parents=True)
        (root / pid / "String.properties").write_text("ADDRESS=http://dev.local\nOTHER=keep\n")
    overlay = tmp_path / "prod.yaml"
    overlay.write_text(
        "strings:\n"
        "  - pid: 'Receiver_*'\n    id: ADDRESS\n    value: 'https://prod.example/cxf/{pid}'\n"
        "  - pid: Sender_1\n    id: ADDRESS\n    value: 'https://sender.example'\n"
    )
    db, data_dir = new_db(), tmp_path / "data"
    env = _env(db, data_dir)
    done = cli("pd", "import", str(root), "--overlay", str(overlay), "--json", "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["applied"] is False and plan["counts"]["create"] == 6
    assert {"action": "create", "entitySet": "StringParameters",
            "key": {"Pid": "Receiver_2", "Id": "ADDRESS"}, "pid": "Receiver_2",
            "detail": "Value=https://prod.example/cxf/Receiver_2"} in plan["plan"]  # fmt: skip
    assert _rows(db, data_dir, "StringParameters") == []
    assert cli("pd", "import", str(root), "--overlay", str(overlay), env=env).returncode == 0
    values = {(r["Pid"], r["Id"]): r["Value"] for r in _rows(db, data_dir, "StringParameters")}
    assert values[("Receiver_1", "ADDRESS")] == "https://prod.example/cxf/Receiver_1"
    assert values[("Sender_1", "ADDRESS")] == "https://sender.example"
    assert values[("Sender_1", "OTHER")] == "keep"
    done = cli("pd", "diff", str(root), "--overlay", str(overlay), env=env)
    assert (done.returncode, done.stdout) == (0, "")


def test_a_refused_write_rolls_the_whole_import_back(
    tmp_path: Path, new_db: Callable[[], str]
) -> None:
    root = tmp_path / "pd"
    (root / "Good").mkdir(parents=True)
    (root / "Good" / "String.properties").write_text("A=1\n")
    (root / "Worse" / "Binary").mkdir(parents=True)
    (root / "Worse" / "Binary" / "bad.exe").write_bytes(b"MZ")
    db, data_dir = new_db(), tmp_path / "data"
    done = cli("pd", "import", str(root), env=_env(db, data_dir))
    assert done.returncode == 1
    assert "BinaryParameters(Pid=Worse,Id=bad)" in done.stderr
    assert "nothing was changed" in done.stderr
    assert _rows(db, data_dir, "StringParameters") == []


def test_an_import_folds_parameter_changes_into_one_per_partner() -> None:
    from partnergate.pdcode.local import compact
    from partnergate.store.changes import Change

    user = Change("AuthorizedUsers", {"User": "u"}, "A")
    mapping = Change("CertificateUserMappings", {"Id": "x"}, None)
    changes = [
        Change("StringParameters", {"Pid": "A", "Id": "1"}, "A"),
        Change("BinaryParameters", {"Pid": "A", "Id": "2"}, "A"),
        user,
        mapping,
        Change("UserCredentialParameters", {"Pid": "B", "Id": "c"}, "B"),
    ]
    folded = [Change("Partners", {"Pid": "A"}, "A"), user, mapping]
    folded.append(Change("Partners", {"Pid": "B"}, "B"))
    assert compact(changes) == folded
    assert compact(folded) == folded


def test_folding_in_parts_is_folding_at_once() -> None:
    """An import folds only the events since its last fold; the Pids folded before are
    not announced again, and every partner still gets its one event."""
    from partnergate.pdcode.local import compact
    from partnergate.store.changes import Change

    changes = [
        Change("StringParameters", {"Pid": pid, "Id": str(n)}, pid)
        for pid in ("A", "B", "A", "C")
        for n in range(3)
    ]
    changes.insert(4, Change("AuthorizedUsers", {"User": "u"}, "B"))
    seen: set[str] = set()
    first = compact(changes[:7], seen)
    assert seen == {"A", "B"}
    assert first + compact(changes[7:], seen) == compact(changes)
    assert seen == {"A", "B", "C"}
