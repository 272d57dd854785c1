"""Fixtures for Partner Directory as code: fresh stores, servers on them, a development PKI."""

from __future__ import annotations

import asyncio
import gzip
import io
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..conftest import (
    PG_URL,
    STORE,
    Api,
    Server,
    _pg_admin,
    cli,
    start_server,
    stop_server,
)

SECRET = "S3cr3t-never-in-files-" + uuid.uuid4().hex[:6]
"""The password every credential gets: it must never appear in a file, log or plan."""


@pytest.fixture
def new_db(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Make empty stores of the kind under test; dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        if STORE == "sqlite":
            return f"sqlite:///{tmp_path / ('s' + uuid.uuid4().hex[:8])}.db"
        name = f"partnergate_pd_{uuid.uuid4().hex[:12]}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return f"{PG_URL.rsplit('/', 1)[0]}/{name}"

    yield make
    for name in made:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def servers(tmp_path: Path, new_db: Callable[[], str]) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(extra_env: dict[str, str] | None = None) -> Server:
        folder = tmp_path / ("srv" + uuid.uuid4().hex[:6])
        folder.mkdir()
        srv = start_server(folder, new_db(), extra_env)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        stop_server(srv)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    env = dict(__import__("os").environ)
    for args in (
        ("pki", "init", str(folder)),
        ("pki", "server", str(folder), "--host", "127.0.0.1", "--host", "localhost"),
        ("pki", "client", str(folder), "sender_one"),
        ("pki", "client", str(folder), "sender_two"),
    ):
        stdin = "export-password\n" if args[1] == "client" else None
        extra = ("--password-stdin",) if args[1] == "client" else ()
        done = cli(*args, *extra, env=env, stdin=stdin)
        assert done.returncode == 0, done.stderr
    return folder


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.xsl", "<xsl:stylesheet/>")
    return buffer.getvalue()


BINARIES = {
    "map.xml": ("xml", b"<a>\xc3\xa9</a>"),
    "style": ("xsl", b"<xsl:stylesheet version='3.0'/>"),
    "schema": ("xsd", b"<xs:schema/>"),
    "codes": ("json", b'{"a": 1}\n'),
    "readme": ("text", b"line one\r\nline two\n"),
    "latin": ("xml; encoding=ISO-8859-1", "<a>\xe9</a>".encode("latin-1")),
    "bundle": ("zip", zip_bytes()),
    "packed": ("gz", gzip.compress(b"payload")),
    "squeezed": ("zlib", zlib.compress(b"payload")),
}


def fill(api: Api, pki: Path) -> None:
    """Every entity type, with the values that are hard to carry through files."""
    import base64

    def ok(response: object) -> None:
        assert response.status_code in (200, 201, 204), response.text  # type: ignore[attr-defined]

    strings = {
        "ADDRESS": "https://r1.example/cxf/receiver_1",
        "MULTI": "line 1\nline 2\r\nline 3\\n not a newline",
        "UNICODE": "Grüße — 日本語 ✓",
        "SPACES": "  leading and trailing  ",
        "EQUALS": "a=b#c!d:e",
    }
    for id_, value in strings.items():
        ok(api.post("StringParameters", json={"Pid": "Receiver_1", "Id": id_, "Value": value}))
    ok(api.post("StringParameters", json={"Pid": "Receiver_2", "Id": "ADDRESS", "Value": "x"}))
    cert_der = (pki / "ca.crt").read_bytes()
    for id_, (ctype, data) in {**BINARIES, "cacert": ("crt", cert_der)}.items():
        body = {
            "Pid": "Receiver_1",
            "Id": id_,
            "ContentType": ctype,
            "Value": base64.b64encode(data).decode(),
        }
        ok(api.post("BinaryParameters", json=body))
    ok(
        api.post(
            "AlternativePartners",
            json={"Agency": "Buyer", "Scheme": "GLN", "Id": "4000001", "Pid": "Sender_A"},
        )
    )
    ok(
        api.post(
            "AlternativePartners",
            json={"Agency": "Ägency", "Scheme": "DUNS", "Id": "id with space", "Pid": "Sender_A"},
        )
    )
    ok(api.post("AuthorizedUsers", json={"User": "user_for_sender_a", "Pid": "Sender_A"}))
    ok(api.post("AuthorizedUsers", json={"User": "oauth_client_x", "Pid": "Sender_B"}))
    ok(
        api.post(
            "UserCredentialParameters",
            json={"Pid": "Receiver_1", "Id": "CRED", "User": "user_r1", "Password": SECRET},
        )
    )
    ok(
        api.post(
            "UserCredentialParameters",
            json={"Pid": "Receiver_2", "Id": "CRED", "User": "user_r2", "Password": SECRET},
        )
    )
    cert = (pki / "sender_one.crt").read_text()
    ok(api.post("CertificateUserMappings", json={"User": "user_for_sender_a", "Certificate": cert}))
    ok(
        api.post(
            "CertificateMappingRules",
            json={
                "Id": "renewals",
                "Kind": "SubjectIssuer",
                "User": "user_for_sender_a",
                "SubjectDN": "CN=sender_two",
                "IssuerDN": "CN=partnergate development CA",
            },
        )
    )


ENTITY_SETS = (
    "StringParameters",
    "BinaryParameters",
    "AlternativePartners",
    "AuthorizedUsers",
    "CertificateUserMappings",
    "CertificateMappingRules",
    "Partners",
)
AUDIT = ("CreatedBy", "CreatedTime", "LastModifiedBy", "LastModifiedTime", "__metadata")


def content(api: Api) -> dict[str, object]:
    """What the API answers for every entity, audit fields aside."""
    out: dict[str, object] = {}
    for name in ENTITY_SETS:
        rows = []
        url: str | None = name
        while url:
            d = api.get(url, params={"$format": "json"} if url == name else None).json()["d"]
            rows += d["results"]
            url = d.get("__next")
        out[name] = sorted(({k: v for k, v in r.items() if k not in AUDIT} for r in rows), key=repr)
    creds = []
    for pid in ("Receiver_1", "Receiver_2"):
        for r in api.get("UserCredentialParameters", params={"$filter": f"Pid eq '{pid}'"}).json()[
            "d"
        ]["results"]:
            hashed = api.get(
                f"UserCredentialParameters(Pid='{pid}',Id='{r['Id']}')",
                params={"returnHashedPassword": "SHA256"},
            ).json()["d"]
            creds.append((pid, r["Id"], r["User"], hashed["Password"]))
    out["UserCredentialParameters"] = sorted(creds)
    return out


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }
