"""The integration runtime: flows that route messages by the Partner Directory.

Lives here: flows and their steps, the message exchange, the receiver adapter, the
Partner Directory facade with its cache, ``pd:`` URI resolution, the message processing
log entries. Must not know: Starlette or any HTTP server (the web layer turns a request
into an :class:`Exchange` and a :class:`Reply` into a response), SQL (the store
implements :class:`DirectoryReader` and :class:`MessageLogSink`).
"""

from .directory import BinaryData, DirectoryReader, PartnerDirectory, PartnerDirectoryError
from .engine import Engine
from .errors import FlowError, StepError
from .exchange import AUTHENTICATED_USER, MESSAGE_ID, Exchange, Headers, Reply
from .flows import DEFAULT_ROLE, Flow, FlowSet, load_flow, load_flows
from .messagelog import MemoryMessageLog, MessageLogEntry, MessageLogSink
from .receivers import ClientKeystore, ReceiverPool
from .xslt import XsltEngine

__all__ = [
    "AUTHENTICATED_USER",
    "DEFAULT_ROLE",
    "MESSAGE_ID",
    "BinaryData",
    "ClientKeystore",
    "DirectoryReader",
    "Engine",
    "Exchange",
    "Flow",
    "FlowError",
    "FlowSet",
    "Headers",
    "MemoryMessageLog",
    "MessageLogEntry",
    "MessageLogSink",
    "PartnerDirectory",
    "PartnerDirectoryError",
    "ReceiverPool",
    "Reply",
    "StepError",
    "XsltEngine",
    "load_flow",
    "load_flows",
]
