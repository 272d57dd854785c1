"""Export → import into an empty store → export: the same bytes, the same API answers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..conftest import Api, Server, cli
from .conftest import SECRET, content, fill, tree


def _env(server: Server, **extra: str) -> dict[str, str]:
    return {**server.env, **extra}


def _add_references(root: Path, name: str) -> None:
    for path in root.glob("*/UserCredentials.yaml"):
        text = path.read_text()
        path.write_text(text.replace("\n  User:", f"\n  Password: env:{name}\n  User:"))


def test_round_trip_is_byte_identical_with_every_entity_type(
    servers: Callable[..., Server], pki: Path, tmp_path: Path
) -> None:
    source = servers()
    with Api(source) as api:
        fill(api, pki)
        before = content(api)
    first = tmp_path / "first"
    done = source.cli("pd", "export", str(first))
    assert done.returncode == 0, done.stderr
    assert "exported 4 partners" in done.stdout
    files = tree(first)
    assert files["Receiver_1/Binary/map.xml.xml"] == "<a>é</a>".encode()
    assert files["Receiver_1/Binary/bundle.zip"].startswith(b"PK")
    assert (
        b"MULTI=line 1\\nline 2\\r\\nline 3\\\\n not a newline\n"
        in files["Receiver_1/String.properties"]
    )
    assert "UNICODE=Grüße — 日本語 ✓\n".encode() in files["Receiver_1/String.properties"]
    assert files["Receiver_1/Binary/_metadata.json"] == (
        b'{\n  "latin.xml": "xml;encoding=ISO-8859-1"\n}\n'
    )
    assert any(name.startswith("_certificates/") for name in files)
    assert all(SECRET.encode() not in data for data in files.values())

    again = tmp_path / "again"
    assert source.cli("pd", "export", str(again)).returncode == 0
    assert tree(again) == files, "two exports of the same content differ"

    # Password references are added by hand once; an export keeps them.
    with_refs = tmp_path / "with_refs"
    shutil.copytree(first, with_refs)
    _add_references(with_refs, "PD_TEST_PASSWORD")
    refs = tree(with_refs)
    assert source.cli("pd", "export", str(with_refs)).returncode == 0
    assert tree(with_refs) == refs

    target = servers()
    env = _env(target, PD_TEST_PASSWORD=SECRET)
    done = cli("pd", "import", str(with_refs), env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "applied in one transaction" in done.stdout
    assert SECRET not in done.stdout + done.stderr

    second = tmp_path / "second"
    assert cli("pd", "export", str(second), env=env).returncode == 0
    assert tree(second) == files
    with Api(target) as api:
        assert content(api) == before

    # In step: nothing to import, nothing to show.
    done = cli("pd", "diff", str(with_refs), env=env)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    done = cli("pd", "import", str(with_refs), env=env)
    assert done.returncode == 0 and "nothing to do" in done.stdout
    for log in (source.log(), target.log()):
        assert SECRET not in log


def test_import_without_a_password_reference_fails_and_changes_nothing(
    servers: Callable[..., Server], pki: Path, tmp_path: Path
) -> None:
    source = servers()
    with Api(source) as api:
        fill(api, pki)
    exported = tmp_path / "x"
    assert source.cli("pd", "export", str(exported)).returncode == 0
    target = servers()
    done = cli("pd", "import", str(exported), env=target.env)
    assert done.returncode == 1
    assert "UserCredentials.yaml gives no password reference" in done.stderr
    with Api(target) as api:
        assert api.get("Partners").json()["d"]["results"] == []

    # An unset variable is named, and a literal password is refused as such.
    _add_references(exported, "PD_UNSET_VARIABLE")
    os.environ.pop("PD_UNSET_VARIABLE", None)
    done = cli("pd", "import", str(exported), env=target.env)
    assert done.returncode == 1 and "PD_UNSET_VARIABLE is not set" in done.stderr
    path = exported / "Receiver_1" / "UserCredentials.yaml"
    path.write_text(path.read_text().replace("env:PD_UNSET_VARIABLE", "plain-text"))
    done = cli("pd", "import", str(exported), env=target.env)
    assert done.returncode == 1 and "must be a reference" in done.stderr
    assert "plain-text" not in done.stderr
