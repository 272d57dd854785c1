"""Invalidate what changed, not everything: the runtime's change stream keeps a
generation per entity set, and who a sender is depends only on accounts, certificate
mappings and authorised users. Driven through the real gate, Partner Directory cache and
change stream, over an account book and a directory reader that count their reads."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from partnergate.runtime.changes import IDENTITY_SETS, Change, Changes
from partnergate.runtime.directory import PartnerDirectory
from partnergate.security import pki
from partnergate.security.accounts import StoredAccount
from partnergate.security.gate import Allowed, Facts, Gate
from partnergate.security.password_checks import PasswordChecks
from partnergate.security.passwords import hash_password
from partnergate.security.senders import Senders

from ..runtime.conftest import DictDirectory, run_async, seed_directory

PASSWORD = "a password"


class CountingBook:
    """Accounts as a store holds them; ``reads`` counts what the gate asked."""

    kind = "user"

    def __init__(self) -> None:
        self.accounts = {
            "user_for_sender_basic": StoredAccount(
                "user_for_sender_basic", (), hash_password(PASSWORD)
            )
        }
        self.reads = 0

    async def stored(self, name: str) -> StoredAccount | None:
        self.reads += 1
        return self.accounts.get(name)


class NoMappings:
    async def certificate_mapping(self, cert: object) -> None:
        return None

    async def mapping_rule(self, cert: object) -> None:
        return None


class NoSessions:
    async def create(self, key: str, user: str, lifetime: int) -> None: ...
    async def get(self, key: str, fresh: bool = False) -> None: ...
    async def touch(self, key: str) -> None: ...
    async def end(self, key: str) -> None: ...


BASIC = b"Basic " + base64.b64encode(f"user_for_sender_basic:{PASSWORD}".encode())
FACTS = Facts(headers=[(b"authorization", BASIC)], peer="127.0.0.1")


Parts = tuple[Changes, CountingBook, DictDirectory, Gate, PartnerDirectory]


def sender_gate(changes: Changes, book: CountingBook, senders: Senders) -> Gate:
    """The gate as the server builds it for senders, following ``changes``."""
    changes.subscribe(senders.apply, senders.forget_certificates)
    return Gate(
        book,
        book,
        NoSessions(),  # type: ignore[arg-type]
        b"k" * 32,
        b"s" * 32,
        senders=senders,
        checks=PasswordChecks(),
        version=lambda: changes.stamp(IDENTITY_SETS),
    )


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    changes = Changes()
    book = CountingBook()
    reader = seed_directory()
    directory = PartnerDirectory(reader, files_dir=tmp_path / "pd")
    directory.follow(changes)
    gate = sender_gate(changes, book, Senders(NoMappings(), directory))  # type: ignore[arg-type]
    yield changes, book, reader, gate, directory
    directory.close()


def test_generations_advance_per_entity_set() -> None:
    changes = Changes()
    identity = changes.generation(IDENTITY_SETS)
    address = changes.generation(["StringParameters"])
    changes.publish([Change("StringParameters", {"Pid": "R", "Id": "ADDRESS"}, "R")])
    assert changes.generation(IDENTITY_SETS) == identity
    assert changes.generation(["StringParameters"]) == address + 1
    for entity_set in (
        "AuthorizedUsers",
        "LocalUsers",
        "OAuthClients",
        "CertificateUserMappings",
        "CertificateMappingRules",
        "Partners",
    ):
        before = changes.generation(IDENTITY_SETS)
        changes.publish([Change(entity_set, {"Pid": "R"}, "R")])
        assert changes.generation(IDENTITY_SETS) > before, entity_set
    before = changes.generation(IDENTITY_SETS)
    changes.gap()
    assert changes.generation(IDENTITY_SETS) > before
    changes.live = lambda: False
    assert changes.stamp(IDENTITY_SETS) is None


@run_async
async def test_a_string_parameter_write_leaves_the_senders_identity_remembered(
    parts: Parts,
) -> None:
    changes, book, reader, gate, directory = parts
    first = await gate.sender(FACTS, None)
    assert isinstance(first, Allowed) and first.partner == "Sender_BASIC"
    assert (book.reads, reader.calls["user"]) == (1, 1)
    assert await directory.get_parameter("ADDRESS", "Receiver_1") is not None
    assert reader.calls["string"] == 1

    changes.publish(
        [Change("StringParameters", {"Pid": "Sender_BASIC", "Id": "X"}, "Sender_BASIC")]
    )
    again = await gate.sender(FACTS, None)
    assert isinstance(again, Allowed) and again.partner == "Sender_BASIC"
    assert (book.reads, reader.calls["user"]) == (1, 1)  # authentication did not run again
    await directory.get_parameter("ADDRESS", "Receiver_1")
    assert reader.calls["string"] == 1  # another parameter's entry stayed too

    changes.publish(
        [Change("StringParameters", {"Pid": "Receiver_1", "Id": "ADDRESS"}, "Receiver_1")]
    )
    await directory.get_parameter("ADDRESS", "Receiver_1")
    assert reader.calls["string"] == 2  # the changed one is read afresh


@run_async
async def test_identity_changes_make_the_gate_resolve_the_sender_again(parts: Parts) -> None:
    changes, book, reader, gate, directory = parts
    await gate.sender(FACTS, None)
    reads = book.reads
    reader.users["user_for_sender_basic"] = "Sender_MOVED"
    changes.publish([Change("AuthorizedUsers", {"User": "user_for_sender_basic"}, "Sender_MOVED")])
    moved = await gate.sender(FACTS, None)
    assert isinstance(moved, Allowed) and moved.partner == "Sender_MOVED"
    assert book.reads == reads + 1

    del reader.users["user_for_sender_basic"]
    changes.publish([Change("Partners", {"Pid": "Sender_MOVED"}, "Sender_MOVED")])
    revoked = await gate.sender(FACTS, None)
    assert isinstance(revoked, Allowed) and revoked.partner is None

    book.accounts.clear()
    changes.publish([Change("LocalUsers", {"name": "user_for_sender_basic"}, None)])
    gone = await gate.sender(FACTS, None)
    assert not isinstance(gone, Allowed)


@dataclass(frozen=True)
class Mapping:
    mapping_id: str
    user: str


class CountingMappings:
    """Maps every certificate to ``user``; ``reads`` counts what the gate asked."""

    def __init__(self, user: str) -> None:
        self.user: str | None = user
        self.reads = 0

    async def certificate_mapping(self, cert: object) -> Mapping | None:
        self.reads += 1
        return None if self.user is None else Mapping("mapping-1", self.user)

    async def mapping_rule(self, cert: object) -> None:
        return None


CertParts = tuple[Changes, CountingMappings, Gate, PartnerDirectory, x509.Certificate]


@pytest.fixture
def cert_parts(tmp_path: Path) -> Iterator[CertParts]:
    changes = Changes()
    mappings = CountingMappings("user_for_sender_cert")
    directory = PartnerDirectory(seed_directory(), files_dir=tmp_path / "pd")
    directory.follow(changes)
    gate = sender_gate(changes, CountingBook(), Senders(mappings, directory))  # type: ignore[arg-type]
    ca = pki.init_ca(tmp_path / "pki")
    cert = pki.issue_client(ca, tmp_path / "pki", "sender_cert", password="p").certificate
    yield changes, mappings, gate, directory, cert
    directory.close()


@run_async
async def test_a_certificates_sender_is_remembered_until_an_identity_set_changes(
    cert_parts: CertParts,
) -> None:
    changes, mappings, gate, _, cert = cert_parts
    facts = Facts(certificate=cert, peer="127.0.0.1")
    first = await gate.sender(facts, None)
    assert isinstance(first, Allowed) and first.partner == "Sender_CERT"
    again = await gate.sender(facts, None)
    assert isinstance(again, Allowed) and again.identity is first.identity  # nothing resolved

    changes.publish([Change("StringParameters", {"Pid": "Sender_CERT", "Id": "X"}, None)])
    unrelated = await gate.sender(facts, None)
    assert isinstance(unrelated, Allowed) and unrelated.identity is first.identity
    assert mappings.reads == 1

    mappings.user = "user_for_sender_basic"
    changes.publish([Change("CertificateUserMappings", {"Id": "mapping-1"}, None)])
    moved = await gate.sender(facts, None)
    assert isinstance(moved, Allowed) and moved.partner == "Sender_BASIC"
    assert mappings.reads == 2

    mappings.user = None
    changes.publish([Change("CertificateUserMappings", {"Id": "mapping-1"}, None)])
    gone = await gate.sender(facts, None)
    assert not isinstance(gone, Allowed) and "is not mapped to a user" in gone.reason


@run_async
async def test_a_certificates_sender_is_not_remembered_past_its_validity(
    cert_parts: CertParts, tmp_path: Path
) -> None:
    _, mappings, gate, _, _ = cert_parts
    ca = pki.load_ca(tmp_path / "pki")
    start = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=2)
    short = pki.issue_client(
        ca, tmp_path / "short", "short", password="p", days=1, not_before=start
    )
    facts = Facts(certificate=short.certificate, peer="127.0.0.1")
    first = await gate.sender(facts, None)
    assert isinstance(first, Allowed) and first.partner == "Sender_CERT"
    await asyncio.sleep(short.certificate.not_valid_after_utc.timestamp() - time.time() + 0.1)
    expired = await gate.sender(facts, None)
    assert not isinstance(expired, Allowed) and "outside its validity period" in expired.reason
    assert mappings.reads == 1  # the mapping was remembered; the validity was not
