"""Encryption at rest for the passwords of UserCredentialParameters.

The directory must give those passwords back in clear to the flows that call partners,
so they are encrypted, not hashed. The key lives in a file outside the database: a copy
of the database alone (a backup, a dump) does not reveal them. Every node that shares
one database needs the same key file.

Cipher: AES-256-GCM (NIST SP 800-38D) from ``cryptography``, a fresh 96-bit random nonce
per value. A stored value is ``version (1 byte) | key id (4 bytes) | nonce (12 bytes) |
ciphertext and tag``; version and key id are authenticated as associated data. The key
id tells "this is another key" apart from "this value was altered".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SecretBox", "SecretBoxError"]

KEY_BYTES = 32
_VERSION = b"\x01"
_KID_BYTES = 4
_NONCE_BYTES = 12
_TAG_BYTES = 16
_PREFIX = len(_VERSION) + _KID_BYTES


class SecretBoxError(Exception):
    """A value cannot be decrypted, or the key file is unusable."""


class SecretBox:
    """Encrypts and decrypts short secrets under one AES-256 key."""

    __slots__ = ("_aead", "_kid", "_source")

    def __init__(self, key: bytes, *, source: str = "the key") -> None:
        if len(key) != KEY_BYTES:
            raise SecretBoxError(f"{source} must hold {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self._kid = hashlib.sha256(b"partnergate secretbox key\x00" + key).digest()[:_KID_BYTES]
        self._source = source

    @classmethod
    def from_key_file(cls, path: Path) -> SecretBox:
        """Load the key from ``path``, creating the file (mode 0600) if it is missing.

        The file holds the key in base64 on one line. It is created under a temporary
        name and linked into place, so two nodes starting at once agree on one key and
        a crash never leaves half a key behind.
        """
        path = Path(path)
        if not path.exists():
            _create_key_file(path)
        try:
            text = path.read_text("ascii").strip()
            key = base64.urlsafe_b64decode(text.encode("ascii"))
        except (OSError, UnicodeDecodeError, ValueError, binascii.Error) as exc:
            raise SecretBoxError(f"cannot read the key file {path}: {exc}") from None
        return cls(key, source=f"the key file {path}")

    @property
    def key_id(self) -> str:
        """A public name for the key, stored with every value: shows which key a value
        needs without revealing the key."""
        return self._kid.hex()

    def encrypt(self, plain: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        head = _VERSION + self._kid
        return head + nonce + self._aead.encrypt(nonce, plain.encode("utf-8"), head)

    def decrypt(self, blob: bytes | bytearray | memoryview) -> str:
        """The plain text of ``blob``; :class:`SecretBoxError` if this key cannot open it."""
        data = bytes(blob)
        if len(data) < _PREFIX + _NONCE_BYTES + _TAG_BYTES or data[:1] != _VERSION:
            raise SecretBoxError("not a value this version encrypted (damaged or foreign data)")
        head, sealed = data[:_PREFIX], data[_PREFIX + _NONCE_BYTES :]
        nonce = data[_PREFIX : _PREFIX + _NONCE_BYTES]
        if head[len(_VERSION) :] != self._kid:
            raise SecretBoxError(
                f"{self._source} does not match the data: the value was encrypted with"
                f" key id {head[len(_VERSION) :].hex()}, this key has id"
                f" {self.key_id}"
            )
        try:
            plain = self._aead.decrypt(nonce, sealed, head)
        except InvalidTag:
            raise SecretBoxError(
                f"{self._source} does not match the data, or the value was altered"
            ) from None
        return plain.decode("utf-8")

    def __repr__(self) -> str:
        return f"SecretBox(key id {self.key_id} from {self._source})"


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n"
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)  # fails if another node got there first: keep its key
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
