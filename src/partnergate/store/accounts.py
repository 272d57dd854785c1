"""Local users, OAuth clients and server keys: who may call partnergate, and with what.

Passwords and client secrets are stored only as argon2 hashes. Roles are a space-separated
list, e.g. ``AuthGroup_TenantPartnerDirectoryConfigurator ESBMessaging.send``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..model.errors import AlreadyExists, InvalidValue, NotFound
from ..security.passwords import hash_password, verify_password
from .database import begin
from .directory import now
from .tables import local_users, oauth_clients, server_keys

MAX_NAME = 150


@dataclass(frozen=True)
class Account:
    name: str
    roles: tuple[str, ...]


def _roles(text: str) -> tuple[str, ...]:
    return tuple(r for r in text.split() if r)


def _check_name(kind: str, name: str) -> None:
    if not name or len(name) > MAX_NAME or any(c.isspace() or c == ":" for c in name):
        raise InvalidValue(
            f"{kind} name must be 1 to {MAX_NAME} characters without spaces or ':'", field="name"
        )


class _AccountTable:
    kind = ""
    table: Table
    key: str
    secret: str

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, name: str, secret: str, roles: list[str]) -> Account:
        _check_name(self.kind, name)
        if not secret:
            raise InvalidValue(f"the {self.kind}'s secret must not be empty", field="secret")
        stamp = now()
        row = {
            self.key: name,
            self.secret: hash_password(secret),
            "roles": " ".join(roles),
            "created_time": stamp,
            "changed_time": stamp,
        }
        try:
            async with begin(self.engine) as conn:
                await conn.execute(insert(self.table).values(**row))
        except IntegrityError:
            raise AlreadyExists(f"{self.kind} '{name}' already exists") from None
        return Account(name, tuple(roles))

    async def list(self) -> list[Account]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(self.table).order_by(self.table.c[self.key]))
            return [Account(r._mapping[self.key], _roles(r.roles)) for r in rows]

    async def get(self, name: str) -> Account | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(self.table).where(self.table.c[self.key] == name))
            ).first()
        return None if row is None else Account(name, _roles(row.roles))

    async def remove(self, name: str) -> None:
        async with begin(self.engine) as conn:
            result = await conn.execute(delete(self.table).where(self.table.c[self.key] == name))
        if result.rowcount == 0:
            raise NotFound(f"{self.kind} '{name}' does not exist")

    async def set_secret(self, name: str, secret: str) -> None:
        if not secret:
            raise InvalidValue(f"the {self.kind}'s secret must not be empty", field="secret")
        async with begin(self.engine) as conn:
            result = await conn.execute(
                update(self.table)
                .where(self.table.c[self.key] == name)
                .values({self.secret: hash_password(secret), "changed_time": now()})
            )
        if result.rowcount == 0:
            raise NotFound(f"{self.kind} '{name}' does not exist")

    async def set_roles(self, name: str, roles: list[str]) -> None:
        async with begin(self.engine) as conn:
            result = await conn.execute(
                update(self.table)
                .where(self.table.c[self.key] == name)
                .values(roles=" ".join(roles), changed_time=now())
            )
        if result.rowcount == 0:
            raise NotFound(f"{self.kind} '{name}' does not exist")

    async def verify(self, name: str, secret: str) -> tuple[Account | None, str]:
        """Check a secret; return the account, or None and why (for the log, not the caller)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(self.table).where(self.table.c[self.key] == name))
            ).first()
        if row is None:
            return None, f"unknown {self.kind} '{name}'"
        if not verify_password(row._mapping[self.secret], secret):
            return None, f"wrong secret for {self.kind} '{name}'"
        return Account(name, _roles(row.roles)), ""

    async def fingerprint(self, name: str) -> str | None:
        """Changes whenever the secret or roles change: keys a cache of verified logins."""
        current = await self.current(name)
        return None if current is None else current[1]

    async def current(self, name: str) -> tuple[Account, str] | None:
        """The account and its fingerprint, in one query."""
        columns = (self.table.c[self.secret], self.table.c.roles)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(*columns).where(self.table.c[self.key] == name))
            ).first()
        if row is None:
            return None
        return Account(name, _roles(row[1])), f"{row[0]}|{row[1]}"


class Users(_AccountTable):
    kind = "user"
    table = local_users
    key = "name"
    secret = "password_hash"


class Clients(_AccountTable):
    kind = "OAuth client"
    table = oauth_clients
    key = "client_id"
    secret = "secret_hash"


async def server_key(engine: AsyncEngine, name: str, size: int = 32) -> bytes:
    """A random key kept in the store, made on first use, the same for every node."""
    async with begin(engine) as conn:
        row = (
            await conn.execute(select(server_keys.c.value).where(server_keys.c.name == name))
        ).first()
        if row is not None:
            return bytes(row[0])
    value = secrets.token_bytes(size)
    try:
        async with begin(engine) as conn:
            await conn.execute(
                insert(server_keys).values(name=name, value=value, created_time=now())
            )
    except IntegrityError:
        async with engine.connect() as conn:
            row = (
                await conn.execute(select(server_keys.c.value).where(server_keys.c.name == name))
            ).first()
            assert row is not None
            return bytes(row[0])
    return value
