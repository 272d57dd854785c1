"""Password hashing for users and OAuth client secrets: argon2id.

argon2id is the variant RFC 9106 §4 recommends; argon2-cffi's ``PasswordHasher``
defaults to it with RFC 9106's second recommended parameter set (64 MiB, t=3, p=4).
The parameters live in the hash string, so hashes made with older parameters keep
verifying; :func:`needs_rehash` tells the caller when to store a fresh one.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["hash_password", "needs_rehash", "verify_password", "verify_password_off_loop"]

_HASHER = PasswordHasher()
_WORKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
"""Two checks at a time: each takes 64 MiB and tens of milliseconds, by design."""


def hash_password(password: str) -> str:
    """A salted argon2id hash in PHC string form (``$argon2id$v=19$m=...``)."""
    return _HASHER.hash(password)


def verify_password(hashed: str, password: str) -> bool:
    """Whether ``password`` matches ``hashed``.

    A wrong password, or a stored value that is no argon2 hash at all, is False: the
    caller answers both with the same 401 and must not tell them apart.
    """
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password_off_loop(hashed: str, password: str) -> bool:
    """:func:`verify_password` on a worker thread, so the event loop keeps serving."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_WORKERS, verify_password, hashed, password)


def needs_rehash(hashed: str) -> bool:
    """Whether ``hashed`` was made with other parameters than today's defaults.

    Call it after a successful :func:`verify_password`, while the plain password is at
    hand, and store :func:`hash_password` of it if True. A value that is no argon2
    hash needs replacing too.
    """
    try:
        return _HASHER.check_needs_rehash(hashed)
    except InvalidHashError:
        return True
