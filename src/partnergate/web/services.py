"""What every endpoint of the app reaches through ``app.state.services``.

Lives apart from :mod:`.app` so that the UI's pages can name it without importing the app.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..runtime.changes import Changes
from ..security.gate import Gate
from ..store.accounts import AccountCache, Clients, Users
from ..store.directory import DirectoryStore
from ..store.messagelog import StoreMessageLog
from ..store.sessions import Sessions
from .flows import Runtime


@dataclass
class Services:
    settings: Settings
    store: DirectoryStore
    users: Users
    clients: Clients
    accounts: AccountCache
    sessions: Sessions
    gate: Gate
    runtime: Runtime
    message_log: StoreMessageLog
    changes: Changes
