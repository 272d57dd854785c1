"""The Partner Directory as flows see it: a reader the store implements, and a cached facade.

Lives here: :class:`DirectoryReader` (what the store offers the runtime), the facade
:class:`PartnerDirectory` whose methods mirror SAP's ``PartnerDirectoryService`` in
snake_case, its bounded LRU cache, and the files that binary parameters are
materialised into for XSLT's ``pd:`` URIs. Must not know: SQL, HTTP.

SAP's runtime cache forgets a changed entry "within a few minutes"; this one forgets it
before the API call that changed it answers: it subscribes to the runtime's change stream
(:mod:`.changes`), where the store publishes every committed write, creations included
(a cached "absent" must go too), and where other processes' writes arrive before the
next message. A read that started before an invalidation never stores its stale result.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, overload

from .. import metrics
from ..model.errors import DirectoryError
from ..model.rules import normalize_user, unhex_key
from .changes import PARTNERS, Change, Changes
from .pduri import unpack

log = logging.getLogger(__name__)

T = TypeVar("T")


class DirectoryReader(Protocol):
    """Reads of the Partner Directory store that flows need; ``None`` when absent."""

    async def get_string_parameter(self, pid: str, id: str) -> str | None: ...

    async def get_binary_parameter(self, pid: str, id: str) -> tuple[bytes, str] | None:
        """``(value, content type)``, the content type as stored (``xml``, ``zip``, …)."""
        ...

    async def get_user_credential(self, pid: str, id: str) -> tuple[str, str] | None:
        """``(user, plaintext password)``."""
        ...

    async def get_partner_id(self, agency: str, scheme: str, alt_id: str) -> str | None: ...

    async def get_alternative_partner_id(
        self, agency: str, scheme: str, pid: str
    ) -> str | None: ...

    async def get_partner_id_of_authorized_user(self, user: str) -> str | None:
        """``user`` arrives lower-cased: authorised users are stored lower-case."""
        ...

    async def get_authorized_users(self, pid: str) -> list[str]: ...


@dataclass(frozen=True)
class BinaryData:
    """SAP's ``com.sap.it.api.pd.BinaryData``: the stored bytes and their content type."""

    data: bytes
    content_type: str


class PartnerDirectoryError(ValueError):
    """SAP's ``PartnerDirectoryException`` and ``IllegalArgumentException`` in one."""


InvalidationListener = Callable[[str, Mapping[str, str]], None]
"""Called with ``(entity set, key)`` after each invalidation; ``("*", {})`` for all."""

_ABSENT = object()

STRING, BINARY, CREDENTIAL = "StringParameters", "BinaryParameters", "UserCredentialParameters"
USER, USERS_OF = "AuthorizedUsers", "AuthorizedUsersOf"
ALT_TO_PID, PID_TO_ALT = "AlternativePartners", "AlternativePartnerOf"


_CACHED_SETS = frozenset({STRING, BINARY, CREDENTIAL, USER, ALT_TO_PID})
"""Entity sets whose entries this cache holds; certificate mappings and accounts are the
gate's."""


class _Lru:
    """A bounded LRU by entry count and by bytes of binary values."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Hashable, ...], tuple[Any, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple[Hashable, ...]) -> Any:
        item = self._entries.get(key, _ABSENT)
        if item is _ABSENT:
            return _ABSENT
        self._entries.move_to_end(key)
        return item[0]

    def put(self, key: tuple[Hashable, ...], value: Any, size: int = 0) -> None:
        self.drop(key)
        if size > self.max_bytes:
            return
        self._entries[key] = (value, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped

    def drop(self, key: tuple[Hashable, ...]) -> None:
        item = self._entries.pop(key, None)
        if item is not None:
            self._bytes -= item[1]

    def drop_where(self, predicate: Callable[[tuple[Hashable, ...], Any], bool]) -> None:
        for key in [k for k, (v, _) in self._entries.items() if predicate(k, v)]:
            self.drop(key)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


class PartnerDirectory:
    """What flows call: SAP's ``PartnerDirectoryService`` over a reader, with a cache.

    Note SAP's argument order: parameter id first, partner id second.
    """

    def __init__(
        self,
        reader: DirectoryReader,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        files_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.reader = reader
        self._cache = _Lru(max_entries, max_bytes)
        self._generation = 0
        self._listeners: list[InvalidationListener] = []
        self._files_dir = Path(files_dir).absolute() if files_dir is not None else None
        self._own_files_dir = False
        self._files: dict[tuple[str, str], Path] = {}

    # SAP's PartnerDirectoryService

    @overload
    async def get_parameter(
        self, parameter_id: str, partner_id: str, type: type[str] = ...
    ) -> str | None: ...
    @overload
    async def get_parameter(
        self, parameter_id: str, partner_id: str, type: type[bytes]
    ) -> bytes | None: ...
    @overload
    async def get_parameter(
        self, parameter_id: str, partner_id: str, type: type[BinaryData]
    ) -> BinaryData | None: ...

    async def get_parameter(
        self, parameter_id: str, partner_id: str, type: type = str
    ) -> str | bytes | BinaryData | None:
        """A string parameter (``str``) or a binary one (``bytes`` or ``BinaryData``)."""
        _require(parameter_id=parameter_id, partner_id=partner_id)
        if type is str:
            return await self._cached(
                (STRING, partner_id, parameter_id),
                lambda: self.reader.get_string_parameter(partner_id, parameter_id),
            )
        if type is bytes or type is BinaryData:
            binary = await self.get_binary(partner_id, parameter_id)
            if binary is None:
                return None
            return binary.data if type is bytes else binary
        raise PartnerDirectoryError(f"parameters are str, bytes or BinaryData, not {type!r}")

    async def get_certificate_parameter(self, parameter_id: str, partner_id: str) -> Any:
        """The X.509 certificate in a binary parameter of content type ``crt``."""
        from cryptography import x509

        binary = await self.get_binary(partner_id, parameter_id)
        if binary is None:
            return None
        if binary.content_type.lower() != "crt":
            raise PartnerDirectoryError(
                f"parameter {partner_id}/{parameter_id} has content type "
                f"{binary.content_type}, not crt"
            )
        try:
            if b"-----BEGIN" in binary.data:
                return x509.load_pem_x509_certificate(binary.data)
            return x509.load_der_x509_certificate(binary.data)
        except ValueError:
            raise PartnerDirectoryError(
                f"parameter {partner_id}/{parameter_id} is not an X.509 certificate"
            ) from None

    async def get_partner_id(
        self, agency: str, scheme: str, alternative_partner_id: str
    ) -> str | None:
        _require(agency=agency, scheme=scheme, alternative_partner_id=alternative_partner_id)
        return await self._cached(
            (ALT_TO_PID, agency, scheme, alternative_partner_id),
            lambda: self.reader.get_partner_id(agency, scheme, alternative_partner_id),
        )

    async def get_alternative_partner_id(
        self, agency: str, scheme: str, partner_id: str
    ) -> str | None:
        _require(agency=agency, scheme=scheme, partner_id=partner_id)
        return await self._cached(
            (PID_TO_ALT, agency, scheme, partner_id),
            lambda: self.reader.get_alternative_partner_id(agency, scheme, partner_id),
        )

    async def get_partner_id_of_authorized_user(self, authorized_user: str) -> str | None:
        """Compares lower-cased, as SAP stores authorised users."""
        _require(authorized_user=authorized_user)
        user = normalize_user(authorized_user)
        return await self._cached(
            (USER, user), lambda: self.reader.get_partner_id_of_authorized_user(user)
        )

    async def get_authorized_users(self, partner_id: str) -> list[str]:
        _require(partner_id=partner_id)
        users = await self._cached(
            (USERS_OF, partner_id), lambda: self.reader.get_authorized_users(partner_id)
        )
        return list(users or ())

    # Beyond SAP's API: what adapters and the XSLT engine need.

    @property
    def generation(self) -> int:
        """Advances with every invalidation: what was derived from the directory at one
        generation holds while it stays the same."""
        return self._generation

    async def get_binary(self, pid: str, id: str) -> BinaryData | None:
        async def load() -> BinaryData | None:
            found = await self.reader.get_binary_parameter(pid, id)
            return None if found is None else BinaryData(bytes(found[0]), found[1])

        return await self._cached((BINARY, pid, id), load)

    async def get_user_credential(self, pid: str, id: str) -> tuple[str, str] | None:
        """``(user, password)`` of ``pd:<pid>:<id>:UserCredential``."""
        return await self._cached(
            (CREDENTIAL, pid, id), lambda: self.reader.get_user_credential(pid, id)
        )

    async def binary_file(self, pid: str, id: str) -> Path | None:
        """The file ``<files_dir>/<pid>:<id>:Binary`` holding the unpacked parameter.

        ``pd:`` URIs in stylesheets are rewritten to these files (see ``xslt.py``);
        invalidation deletes the file, so the next use writes the current content.
        """
        known = self._files.get((pid, id))
        if known is not None and known.exists():
            return known
        for _ in range(3):
            generation = self._generation
            binary = await self.get_binary(pid, id)
            if binary is None:
                return None
            path = self._write_file(f"{pid}:{id}:Binary", unpack(binary.data, binary.content_type))
            if generation == self._generation:
                break
            # something was invalidated while we read: read again rather than keep stale bytes
        self._files[(pid, id)] = path
        return path

    def _write_file(self, name: str, content: bytes) -> Path:
        path = self.files_dir / name
        fd, tmp = tempfile.mkstemp(dir=self.files_dir, prefix=".write-")
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(tmp, path)
        return path

    @property
    def files_dir(self) -> Path:
        """Where binary parameters are materialised; a private temporary one by default."""
        if self._files_dir is None:
            self._files_dir = Path(tempfile.mkdtemp(prefix="partnergate-pd-"))
            self._own_files_dir = True
        self._files_dir.mkdir(parents=True, exist_ok=True)
        return self._files_dir

    # Invalidation: the change stream calls these before a write's answer is sent.

    def follow(self, changes: Changes) -> None:
        """Drop what each change published on ``changes`` touched; all of it on a gap."""
        changes.subscribe(self.apply, self.clear)

    def apply(self, changes: Sequence[Change]) -> None:
        """Forget what committed changes touched; changes of other sets are no concern."""
        for change in changes:
            if change.entity_set == PARTNERS:
                if change.pid is not None:
                    self.invalidate_partner(change.pid)
                else:
                    self.clear()
            elif change.entity_set in _CACHED_SETS:
                self.invalidate(change.entity_set, change.key)

    def invalidate(self, entity_set: str, key: Mapping[str, object]) -> None:
        """Forget what a write to ``entity_set`` at ``key`` (the OData key) may have changed.

        ``key`` holds the OData key properties: ``Pid``/``Id`` for parameters, ``User``
        for authorised users, ``Hexagency``/``Hexscheme``/``Hexid`` (or
        ``Agency``/``Scheme``/``Id``) for alternative partners, ``Pid`` for partners.
        An incomplete key forgets more, never less.
        """
        key = {name: str(value) for name, value in key.items() if value is not None}
        self._generation += 1
        pid, id = key.get("Pid"), key.get("Id")
        if entity_set in (STRING, BINARY, CREDENTIAL):
            if pid is None:
                self._clear()
            elif id is None:
                self._forget_partner(pid)
            else:
                self._cache.drop((entity_set, pid, id))
                if entity_set == BINARY:
                    self._forget_file(pid, id)
        elif entity_set == USER:
            user = key.get("User")
            if user is None:
                self._cache.drop_where(lambda k, v: k[0] in (USER, USERS_OF))
            else:
                self._cache.drop((USER, normalize_user(user)))
                self._cache.drop_where(lambda k, v: k[0] == USERS_OF)
        elif entity_set == ALT_TO_PID:
            self._forget_alternative(key)
        elif entity_set == "Partners":
            if pid is None:
                self._clear()
            else:
                self._forget_partner(pid)
        else:
            return
        self._notify(entity_set, key)

    def invalidate_partner(self, pid: str) -> None:
        """Forget everything about one partner (a partner deleted, or a bulk import)."""
        self._generation += 1
        self._forget_partner(pid)
        self._notify("Partners", {"Pid": pid})

    def clear(self) -> None:
        """Forget everything (a restore, or a change the caller cannot name)."""
        self._generation += 1
        self._clear()
        self._notify("*", {})

    def add_invalidation_listener(self, listener: InvalidationListener) -> None:
        """Also tell ``listener`` about each invalidation (compiled stylesheets use it)."""
        self._listeners.append(listener)

    def close(self) -> None:
        """Remove the materialised files (and the directory, if it was made here)."""
        for path in self._files.values():
            path.unlink(missing_ok=True)
        self._files.clear()
        if self._own_files_dir and self._files_dir is not None:
            shutil.rmtree(self._files_dir, ignore_errors=True)
            self._files_dir = None
            self._own_files_dir = False

    def __len__(self) -> int:
        return len(self._cache)

    # internals

    async def _cached(self, key: tuple[str, ...], load: Callable[[], Awaitable[T]]) -> T:
        hit = self._cache.get(key)
        metrics.directory_cache(hit is not _ABSENT)
        if hit is not _ABSENT:
            return hit  # type: ignore[no-any-return]
        generation = self._generation
        value = await load()
        if generation == self._generation:
            size = len(value.data) if isinstance(value, BinaryData) else 0
            self._cache.put(key, value, size)
        return value

    def _forget_partner(self, pid: str) -> None:
        def about(k: tuple[Hashable, ...], v: Any) -> bool:
            kind = k[0]
            if kind in (STRING, BINARY, CREDENTIAL, USERS_OF):
                return k[1] == pid
            if kind == PID_TO_ALT:
                return k[3] == pid
            return v == pid  # USER and ALT_TO_PID map to a pid

        self._cache.drop_where(about)
        for file_pid, file_id in [k for k in self._files if k[0] == pid]:
            self._forget_file(file_pid, file_id)

    def _forget_alternative(self, key: Mapping[str, str]) -> None:
        try:
            agency = key.get("Agency") or unhex_key("Hexagency", key["Hexagency"])
            scheme = key.get("Scheme") or unhex_key("Hexscheme", key["Hexscheme"])
            alt_id = key.get("Id") if "Agency" in key else unhex_key("Hexid", key["Hexid"])
        except (KeyError, DirectoryError):
            self._cache.drop_where(lambda k, v: k[0] in (ALT_TO_PID, PID_TO_ALT))
            return
        self._cache.drop((ALT_TO_PID, agency, scheme, alt_id))
        self._cache.drop_where(lambda k, v: k[0] == PID_TO_ALT and k[1:3] == (agency, scheme))

    def _forget_file(self, pid: str, id: str) -> None:
        path = self._files.pop((pid, id), None)
        if path is not None:
            path.unlink(missing_ok=True)

    def _clear(self) -> None:
        self._cache.clear()
        for pid, id in list(self._files):
            self._forget_file(pid, id)

    def _notify(self, entity_set: str, key: Mapping[str, str]) -> None:
        for listener in self._listeners:
            try:
                listener(entity_set, key)
            except Exception:
                log.exception("invalidation listener failed")


def _require(**arguments: str) -> None:
    for name, value in arguments.items():
        if not value:
            raise PartnerDirectoryError(f"{name} must not be empty")
