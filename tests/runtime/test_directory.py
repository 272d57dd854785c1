"""The Partner Directory facade: SAP's method names and argument order, caching, invalidation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from partnergate.runtime import BinaryData, PartnerDirectory, PartnerDirectoryError

from .conftest import DictDirectory, run_async, zipped


@run_async
async def test_sap_method_names_and_argument_order(directory: PartnerDirectory) -> None:
    # getParameter(parameterId, partnerId, type): parameter id first
    assert await directory.get_parameter("ADDRESS", "Receiver_1") == (
        "http://127.0.0.1:9/cxf/receiver_1"
    )
    assert await directory.get_parameter("Receiver_1", "ADDRESS") is None
    assert await directory.get_partner_id("AgencyXYZ", "LONG", "Receiver 2") == "Receiver_2"
    assert await directory.get_alternative_partner_id("AgencyXYZ", "LONG", "Receiver_1") == (
        "Receiver Premium"
    )
    assert await directory.get_partner_id_of_authorized_user("User_For_Sender_CERT") == (
        "Sender_CERT"
    )
    assert await directory.get_authorized_users("Sender_BASIC") == ["user_for_sender_basic"]
    assert await directory.get_authorized_users("Nobody") == []
    with pytest.raises(PartnerDirectoryError):
        await directory.get_parameter("", "Receiver_1")


@run_async
async def test_binary_parameters_as_bytes_or_binary_data(
    reader: DictDirectory, directory: PartnerDirectory
) -> None:
    reader.binaries[("P", "codes")] = (b"<LookUp/>", "xml")
    assert await directory.get_parameter("codes", "P", bytes) == b"<LookUp/>"
    assert await directory.get_parameter("codes", "P", BinaryData) == BinaryData(
        b"<LookUp/>", "xml"
    )
    assert await directory.get_parameter("other", "P", bytes) is None
    with pytest.raises(PartnerDirectoryError):
        await directory.get_parameter("codes", "P", int)


@run_async
async def test_certificate_parameter(reader: DictDirectory, directory: PartnerDirectory) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Receiver_1")])
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    reader.binaries[("Receiver_1", "pem")] = (cert.public_bytes(serialization.Encoding.PEM), "crt")
    reader.binaries[("Receiver_1", "der")] = (cert.public_bytes(serialization.Encoding.DER), "crt")
    reader.binaries[("Receiver_1", "xml")] = (b"<a/>", "xml")
    assert await directory.get_certificate_parameter("pem", "Receiver_1") == cert
    assert await directory.get_certificate_parameter("der", "Receiver_1") == cert
    assert await directory.get_certificate_parameter("none", "Receiver_1") is None
    with pytest.raises(PartnerDirectoryError, match="content type xml, not crt"):
        await directory.get_certificate_parameter("xml", "Receiver_1")


@run_async
async def test_reads_are_cached_absent_ones_too(
    reader: DictDirectory, directory: PartnerDirectory
) -> None:
    for _ in range(3):
        await directory.get_parameter("ADDRESS", "Receiver_1")
        await directory.get_parameter("ADDRESS", "Receiver_9")
        await directory.get_partner_id_of_authorized_user("user_for_sender_basic")
    assert reader.calls["string"] == 2
    assert reader.calls["user"] == 1


@run_async
async def test_invalidation_forgets_exactly_what_a_write_changed(
    reader: DictDirectory, directory: PartnerDirectory
) -> None:
    async def read_all() -> tuple[object, ...]:
        return (
            await directory.get_parameter("ADDRESS", "Receiver_1"),
            await directory.get_parameter("ADDRESS", "Receiver_2"),
            await directory.get_parameter("NEW", "Receiver_1"),
            await directory.get_user_credential("Receiver_1", "USER"),
            await directory.get_partner_id_of_authorized_user("user_for_sender_basic"),
            await directory.get_authorized_users("Sender_BASIC"),
            await directory.get_partner_id("AgencyXYZ", "LONG", "Receiver 2"),
            await directory.get_alternative_partner_id("AgencyXYZ", "LONG", "Receiver_2"),
        )

    await read_all()
    reader.strings[("Receiver_1", "ADDRESS")] = "changed 1"
    reader.strings[("Receiver_2", "ADDRESS")] = "changed 2"
    reader.strings[("Receiver_1", "NEW")] = "created"
    reader.credentials[("Receiver_1", "USER")] = ("u", "new password")
    reader.users["user_for_sender_basic"] = "Sender_CERT"
    reader.alternatives[("AgencyXYZ", "LONG", "Receiver 2")] = "Receiver_1"

    directory.invalidate("StringParameters", {"Pid": "Receiver_1", "Id": "ADDRESS"})
    directory.invalidate("StringParameters", {"Pid": "Receiver_1", "Id": "NEW"})
    values = await read_all()
    assert values[:3] == ("changed 1", "http://127.0.0.1:9/cxf/receiver_2", "created")
    assert values[3] == ("user_receiver_1", "secret 1")

    directory.invalidate("UserCredentialParameters", {"Pid": "Receiver_1", "Id": "USER"})
    directory.invalidate("AuthorizedUsers", {"User": "User_For_Sender_Basic"})
    directory.invalidate(
        "AlternativePartners",
        {
            "Hexagency": "4167656E637958595A",
            "Hexscheme": "4C4F4E47",
            "Hexid": "52656365697665722032",
        },
    )
    values = await read_all()
    assert values[3] == ("u", "new password")
    assert values[4] == "Sender_CERT"
    assert values[5] == []
    assert values[6] == "Receiver_1"
    assert values[7] is None  # Receiver_2 has no alternative id of that scheme any more


@run_async
async def test_partner_and_full_invalidation(
    reader: DictDirectory, directory: PartnerDirectory
) -> None:
    await directory.get_parameter("ADDRESS", "Receiver_1")
    await directory.get_parameter("ADDRESS", "Receiver_2")
    reader.strings[("Receiver_1", "ADDRESS")] = "one"
    reader.strings[("Receiver_2", "ADDRESS")] = "two"
    directory.invalidate_partner("Receiver_1")
    assert await directory.get_parameter("ADDRESS", "Receiver_1") == "one"
    assert await directory.get_parameter("ADDRESS", "Receiver_2") != "two"
    directory.clear()
    assert await directory.get_parameter("ADDRESS", "Receiver_2") == "two"
    assert len(directory) == 1


@run_async
async def test_a_read_overtaken_by_a_write_is_not_cached(reader: DictDirectory) -> None:
    directory = PartnerDirectory(reader)
    reader.gate = asyncio.Event()
    slow = asyncio.create_task(directory.get_parameter("ADDRESS", "Receiver_1"))
    await asyncio.sleep(0)
    reader.strings[("Receiver_1", "ADDRESS")] = "new"
    directory.invalidate("StringParameters", {"Pid": "Receiver_1", "Id": "ADDRESS"})
    reader.gate.set()
    await slow
    reader.gate = None
    assert await directory.get_parameter("ADDRESS", "Receiver_1") == "new"


@run_async
async def test_the_cache_is_bounded(reader: DictDirectory) -> None:
    directory = PartnerDirectory(reader, max_entries=10, max_bytes=1000)
    for i in range(50):
        await directory.get_parameter(f"P{i}", "Receiver_1")
    assert len(directory) == 10
    reader.binaries[("P", "big")] = (b"x" * 600, "text")
    reader.binaries[("P", "big2")] = (b"y" * 600, "text")
    await directory.get_parameter("big", "P", bytes)
    await directory.get_parameter("big2", "P", bytes)
    before = reader.calls["binary"]
    await directory.get_parameter("big2", "P", bytes)  # still cached
    await directory.get_parameter("big", "P", bytes)  # evicted by size
    assert reader.calls["binary"] == before + 1


@run_async
async def test_binary_files_follow_invalidation(
    reader: DictDirectory, directory: PartnerDirectory, tmp_path: Path
) -> None:
    reader.binaries[("GenericPartner", "xsl_util")] = (zipped("xsl_util.xsl", b"<old/>"), "zip")
    path = await directory.binary_file("GenericPartner", "xsl_util")
    assert path == tmp_path / "pd-files" / "GenericPartner:xsl_util:Binary"
    assert path.read_bytes() == b"<old/>"

    reader.binaries[("GenericPartner", "xsl_util")] = (zipped("xsl_util.xsl", b"<new/>"), "zip")
    directory.invalidate("BinaryParameters", {"Pid": "GenericPartner", "Id": "xsl_util"})
    assert not path.exists()
    assert (await directory.binary_file("GenericPartner", "xsl_util")).read_bytes() == b"<new/>"  # type: ignore[union-attr]

    del reader.binaries[("GenericPartner", "xsl_util")]
    directory.invalidate_partner("GenericPartner")
    assert not path.exists()
    assert await directory.binary_file("GenericPartner", "xsl_util") is None


@run_async
async def test_gz_and_zlib_are_unpacked(reader: DictDirectory, directory: PartnerDirectory) -> None:
    import gzip
    import zlib

    reader.binaries[("P", "g")] = (gzip.compress(b"<g/>"), "gz")
    reader.binaries[("P", "z")] = (zlib.compress(b"<z/>"), "zlib")
    assert (await directory.binary_file("P", "g")).read_bytes() == b"<g/>"  # type: ignore[union-attr]
    assert (await directory.binary_file("P", "z")).read_bytes() == b"<z/>"  # type: ignore[union-attr]
    # readers of the parameter itself still get the stored bytes
    assert await directory.get_parameter("z", "P", bytes) == zlib.compress(b"<z/>")


def test_listeners_hear_every_invalidation(reader: DictDirectory) -> None:
    directory = PartnerDirectory(reader)
    heard: list[tuple[str, dict[str, str]]] = []
    directory.add_invalidation_listener(lambda s, k: heard.append((s, dict(k))))
    directory.invalidate("BinaryParameters", {"Pid": "P", "Id": "x"})
    directory.invalidate("CertificateUserMappings", {"Id": "1"})  # not cached here
    directory.invalidate_partner("P")
    directory.clear()
    assert heard == [
        ("BinaryParameters", {"Pid": "P", "Id": "x"}),
        ("Partners", {"Pid": "P"}),
        ("*", {}),
    ]
