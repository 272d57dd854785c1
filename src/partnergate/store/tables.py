"""The database tables, one per entity set plus local users, sessions and server keys.

Column names are the snake_case of SAP's property names, so the property → column map
(:func:`columns_of`) is derived, not written out by hand. Timestamps are naive UTC.
"""

from __future__ import annotations

import functools
import re

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.sql.elements import ColumnElement

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _audit() -> list[Column]:
    return [
        Column("last_modified_by", String(150)),
        Column("last_modified_time", DateTime()),
        Column("created_by", String(150)),
        Column("created_time", DateTime()),
    ]


string_parameters = Table(
    "string_parameters",
    metadata,
    Column("pid", String(60), primary_key=True),
    Column("id", String(1500), primary_key=True),
    Column("value", String(4000), nullable=False),
    *_audit(),
)

binary_parameters = Table(
    "binary_parameters",
    metadata,
    Column("pid", String(60), primary_key=True),
    Column("id", String(1500), primary_key=True),
    Column("content_type", String(300), nullable=False),
    Column("value", LargeBinary, nullable=False),
    *_audit(),
)

user_credential_parameters = Table(
    "user_credential_parameters",
    metadata,
    Column("pid", String(60), primary_key=True),
    Column("id", String(1500), primary_key=True),
    Column("user", String(200), nullable=False),
    Column("password_enc", LargeBinary, nullable=False),
    *_audit(),
)

alternative_partners = Table(
    "alternative_partners",
    metadata,
    Column("hexagency", String(480), primary_key=True),
    Column("hexscheme", String(480), primary_key=True),
    Column("hexid", String(1020), primary_key=True),
    Column("agency", String(120), nullable=False),
    Column("scheme", String(120), nullable=False),
    Column("id", String(255), nullable=False),
    Column("pid", String(60), nullable=False, index=True),
    *_audit(),
    UniqueConstraint("agency", "scheme", "pid"),
    Index(None, "agency", "scheme", "id", unique=True),
)

authorized_users = Table(
    "authorized_users",
    metadata,
    Column("user", String(150), primary_key=True),
    Column("pid", String(60), nullable=False, index=True),
    *_audit(),
)

certificate_user_mappings = Table(
    "certificate_user_mappings",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user", String(150), nullable=False, index=True),
    Column("certificate", Text, nullable=False),
    Column("valid_until", BigInteger),
    *_audit(),
)

local_users = Table(
    "local_users",
    metadata,
    Column("name", String(150), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("roles", Text, nullable=False, default=""),
    Column("created_time", DateTime()),
    Column("changed_time", DateTime()),
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(150), primary_key=True),
    Column("secret_hash", String(255), nullable=False),
    Column("roles", Text, nullable=False, default=""),
    Column("created_time", DateTime()),
    Column("changed_time", DateTime()),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user", String(150), nullable=False, index=True),
    Column("created_time", DateTime(), nullable=False),
    Column("last_seen", DateTime(), nullable=False),
    Column("expires", DateTime(), nullable=False, index=True),
)
"""Signed-in sessions, by the SHA-256 of the id their cookie carries."""

server_keys = Table(
    "server_keys",
    metadata,
    Column("name", String(60), primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("created_time", DateTime()),
)

message_processing_logs = Table(
    "message_processing_logs",
    metadata,
    Column("message_guid", String(64), primary_key=True),
    Column("correlation_id", String(64), index=True),
    Column("application_message_id", String(200)),
    Column("application_message_type", String(200)),
    Column("log_start", DateTime(), nullable=False, index=True),
    Column("log_end", DateTime()),
    Column("sender", String(60), index=True),
    Column("receiver", String(60)),
    Column("integration_flow_name", String(200), index=True),
    Column("status", String(20), nullable=False, index=True),
    Column("custom_status", String(20)),
    Column("log_level", String(20)),
    Column("transaction_id", String(64)),
    Column("endpoint", String(400)),
    Column("user", String(150)),
    Column("http_status", Integer),
    Column("failed_step", String(400)),
    Column("error_information", Text),
    Column("steps", Text),
    Column("adapter_attributes", Text),
)

message_processing_log_attachments = Table(
    "message_processing_log_attachments",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("message_guid", String(64), nullable=False, index=True),
    Column("time_stamp", DateTime(), nullable=False),
    Column("name", String(200), nullable=False),
    Column("content_type", String(200)),
    Column("payload_size", BigInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),
)

message_processing_log_traces = Table(
    "message_processing_log_traces",
    metadata,
    Column("message_guid", String(64), primary_key=True),
    Column("step_index", Integer, primary_key=True),
    Column("step_start", DateTime(), nullable=False, index=True),
    Column("trace", Text),
    Column("trace_size", Integer, nullable=False, default=0),
)
"""What a step of a message saw before and after it, at log level TRACE (JSON text)."""

message_processing_log_properties = Table(
    "message_processing_log_properties",
    metadata,
    Column("message_guid", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("kind", String(10), nullable=False),
    Column("adapter_id", String(100)),
    Column("name", String(200), nullable=False),
    Column("value", String(1000), nullable=False),
    Index("ix_message_processing_log_properties_search", "kind", "name", "value"),
)
"""A message's custom header properties (``kind`` CUSTOM), searchable by name and value."""

flow_log_levels = Table(
    "flow_log_levels",
    metadata,
    Column("flow", String(200), primary_key=True),
    Column("level", String(10), nullable=False),
    Column("until", DateTime()),
    Column("changed_by", String(150)),
    Column("changed_time", DateTime()),
)
"""Log levels set at run time, so that every node of a fleet runs a flow at the same one."""

certificate_mapping_rules = Table(
    "certificate_mapping_rules",
    metadata,
    Column("id", String(60), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("user", String(150), nullable=False),
    Column("subject_dn", String(1024)),
    Column("issuer_dn", String(1024), index=True),
    Column("serial_number", String(64)),
    Column("thumbprint", String(64), index=True),
    *_audit(),
)

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("change_id", String(32), nullable=False, index=True),
    Column("time", DateTime(), nullable=False),
    Column("user", String(150)),
    Column("operation", String(20), nullable=False),
    Column("entity_set", String(60), nullable=False),
    Column("pid", String(60), index=True),
    Column("previous_pid", String(60)),
    Column("entity_key", Text, nullable=False),
    Column("label", String(600)),
    Column("before", Text),
    Column("after", Text),
    Index(
        "ix_audit_entries_previous_pid",
        "previous_pid",
        sqlite_where=text("previous_pid IS NOT NULL"),
        postgresql_where=text("previous_pid IS NOT NULL"),
    ),
    Index("ix_audit_entries_time", "time").ddl_if(dialect="postgresql"),
)
"""The change history: one row per entity a committed write changed (:mod:`.audit`).
``previous_pid`` is indexed only where set (a move): no query looks for its NULLs. On SQLite
``time`` has no index: an ``id`` begins with its entry's time, so the primary key's index
serves time ranges and order (:func:`.audit.id_range`). PostgreSQL orders strings with
``COLLATE "C"``, which the primary key's index cannot serve, so it keeps one on ``time``."""

ENTITY_TABLES: dict[str, Table] = {
    "StringParameters": string_parameters,
    "BinaryParameters": binary_parameters,
    "UserCredentialParameters": user_credential_parameters,
    "AlternativePartners": alternative_partners,
    "AuthorizedUsers": authorized_users,
    "CertificateUserMappings": certificate_user_mappings,
    "MessageProcessingLogs": message_processing_logs,
    "MessageProcessingLogAttachments": message_processing_log_attachments,
    "CertificateMappingRules": certificate_mapping_rules,
    "AuditEntries": audit_entries,
}

PARTNER_TABLES: dict[str, Table] = {
    name: ENTITY_TABLES[name]
    for name in (
        "AlternativePartners",
        "AuthorizedUsers",
        "BinaryParameters",
        "StringParameters",
        "UserCredentialParameters",
    )
}


@functools.cache
def column_name(prop: str) -> str:
    """``LastModifiedTime`` → ``last_modified_time``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", prop).lower()


def columns_of(table: Table, props: tuple[str, ...]) -> dict[str, ColumnElement]:
    """Map each property that has a column of the same (snake_case) name to that column."""
    return {p: table.c[column_name(p)] for p in props if column_name(p) in table.c}


change_log = Table(
    "change_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("node", String(32), nullable=False),
    Column("changes", Text, nullable=False),
    Column("created_time", DateTime(), nullable=False),
    sqlite_autoincrement=True,
)
"""What each committed write changed, in commit order, for the other processes on a SQLite
file (PostgreSQL tells them with NOTIFY instead)."""
