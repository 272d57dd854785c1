"""The entity types of the Partner Directory, as SAP's live ``$metadata`` declares them.

Lives here: names, keys, property types, nullability and MaxLength facets — the one place
from which ``$metadata``, serialisation, request parsing, validation and the store's
columns are derived. Must not know: HTTP, SQL, any I/O.

Values of entities travel through the code as ``dict[str, object]`` with Python types:
``str`` for Edm.String, ``bytes`` for Edm.Binary, ``int`` for Edm.Int64/Int32,
``bool`` for Edm.Boolean and naive UTC ``datetime`` (millisecond precision) for
Edm.DateTime; ``None`` where the property is null.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum

NAMESPACE = "com.sap.hci.api"


class EdmType(StrEnum):
    STRING = "Edm.String"
    BINARY = "Edm.Binary"
    DATETIME = "Edm.DateTime"
    INT64 = "Edm.Int64"
    INT32 = "Edm.Int32"
    BOOLEAN = "Edm.Boolean"


@dataclass(frozen=True)
class Property:
    name: str
    edm_type: EdmType
    nullable: bool = True
    max_length: int | None = None
    multiline: bool = False
    """A text that may span lines (TAB, LF, CR allowed); every other string is one line."""


@dataclass(frozen=True)
class EntityType:
    """An entity type and the entity set that holds it (one set per type here)."""

    name: str
    entity_set: str
    keys: tuple[str, ...]
    properties: tuple[Property, ...]
    base_type: str | None = None
    """SAP declares the parameter types as derived from ``Parameter``; see DECISIONS D1."""
    paths: tuple[Property, ...] = ()
    """Members of complex values, named by their path (``IntegrationArtifact/Id``):
    ``$filter`` and ``$orderby`` read them, but they are no properties of their own."""
    _by_name: dict[str, Property] = field(init=False, repr=False, compare=False)
    _by_path: dict[str, Property] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.properties})
        object.__setattr__(self, "_by_path", {p.name: p for p in self.paths})

    @property
    def qualified_name(self) -> str:
        return f"{NAMESPACE}.{self.name}"

    def prop(self, name: str) -> Property:
        return self._by_name[name]

    def has_property(self, name: str) -> bool:
        return name in self._by_name

    def filterable(self, name: str) -> Property | None:
        """The property or member path ``name`` that an expression may read."""
        return self._by_name.get(name) or self._by_path.get(name)

    @functools.cached_property
    def property_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.properties)

    @property
    def key_properties(self) -> tuple[Property, ...]:
        return tuple(self._by_name[k] for k in self.keys)


def _s(
    name: str, max_length: int | None = None, nullable: bool = True, *, multiline: bool = False
) -> Property:
    return Property(name, EdmType.STRING, nullable, max_length, multiline)


def _dt(name: str) -> Property:
    return Property(name, EdmType.DATETIME, True)


AUDIT = (
    _s("LastModifiedBy", 150),
    _dt("LastModifiedTime"),
    _s("CreatedBy", 150),
    _dt("CreatedTime"),
)
AUDIT_NAMES = tuple(p.name for p in AUDIT)

PID = _s("Pid", 60, nullable=False)
PARAMETER_BASE = (PID, _s("Id", 1500, nullable=False), *AUDIT)

PARAMETER = EntityType("Parameter", "", ("Pid", "Id"), PARAMETER_BASE)

STRING_PARAMETER = EntityType(
    "StringParameter",
    "StringParameters",
    ("Pid", "Id"),
    (*PARAMETER_BASE, _s("Value", 4000, nullable=False, multiline=True)),
    base_type="Parameter",
)

BINARY_PARAMETER = EntityType(
    "BinaryParameter",
    "BinaryParameters",
    ("Pid", "Id"),
    (
        *PARAMETER_BASE,
        _s("ContentType", 300, nullable=False),
        Property("Value", EdmType.BINARY, False, 1572864),
    ),
    base_type="Parameter",
)

USER_CREDENTIAL_PARAMETER = EntityType(
    "UserCredentialParameter",
    "UserCredentialParameters",
    ("Pid", "Id"),
    (*PARAMETER_BASE, _s("User", 200, nullable=False), _s("Password", 200, multiline=True)),
    base_type="Parameter",
)

ALTERNATIVE_PARTNER = EntityType(
    "AlternativePartner",
    "AlternativePartners",
    ("Hexagency", "Hexscheme", "Hexid"),
    (
        _s("Hexagency", 480, nullable=False),
        _s("Hexscheme", 480, nullable=False),
        _s("Hexid", 1020, nullable=False),
        _s("Agency", 120, nullable=False),
        _s("Scheme", 120, nullable=False),
        _s("Id", 255, nullable=False),
        PID,
        *AUDIT,
    ),
)

AUTHORIZED_USER = EntityType(
    "AuthorizedUser",
    "AuthorizedUsers",
    ("User",),
    (_s("User", 150, nullable=False), PID, *AUDIT),
)

PARTNER = EntityType("Partner", "Partners", ("Pid",), (PID,))

CERTIFICATE_USER_MAPPING = EntityType(
    "CertificateUserMapping",
    "CertificateUserMappings",
    ("Id",),
    (
        _s("Id", 32, nullable=False),
        _s("User", 150, nullable=False),
        _s("Certificate", 8192, nullable=False, multiline=True),
        *AUDIT,
        Property("ValidUntil", EdmType.INT64, True),
    ),
)

MESSAGE_PROCESSING_LOG = EntityType(
    "MessageProcessingLog",
    "MessageProcessingLogs",
    ("MessageGuid",),
    (
        _s("MessageGuid", nullable=False),
        _s("CorrelationId"),
        _s("ApplicationMessageId"),
        _s("ApplicationMessageType"),
        _dt("LogStart"),
        _dt("LogEnd"),
        _s("Sender"),
        _s("Receiver"),
        _s("IntegrationFlowName"),
        _s("Status"),
        _s("CustomStatus"),
        _s("LogLevel"),
        _s("TransactionId"),
        _s("AlternateWebLink"),
        _s("ArchivingStatus"),
        _s("ArchivingSenderChannelMessages"),
        _s("ArchivingReceiverChannelMessages"),
        _s("ArchivingLogAttachments"),
        _s("ArchivingPersistedMessages"),
        _s("PreviousComponentName"),
        _s("LocalComponentName"),
        _s("OriginComponentName"),
    ),
    paths=tuple(
        _s(f"IntegrationArtifact/{member}")
        for member in ("Id", "Name", "Type", "PackageId", "PackageName")
    ),
)
"""SAP's Message Processing Logs API. ``IntegrationArtifact`` (a complex value) and the
navigation properties are added by :mod:`partnergate.odata.mpl`; ``$filter`` and
``$orderby`` read the complex value's members (``IntegrationArtifact/Id eq 'flow'``, as
SAP's own pipeline steps ask)."""

MPL_CUSTOM_HEADER_PROPERTY = EntityType(
    "MessageProcessingLogCustomHeaderProperty",
    "MessageProcessingLogCustomHeaderProperties",
    ("Id",),
    (_s("Id", nullable=False), _s("Name"), _s("Value")),
)

MPL_ADAPTER_ATTRIBUTE = EntityType(
    "MessageProcessingLogAdapterAttribute",
    "MessageProcessingLogAdapterAttributes",
    ("Id",),
    (
        _s("Id", nullable=False),
        _s("AdapterId"),
        _s("AdapterMessageId"),
        _s("Name"),
        _s("Value"),
    ),
)

MPL_ERROR_INFORMATION = EntityType(
    "MessageProcessingLogErrorInformation",
    "MessageProcessingLogErrorInformations",
    ("MessageGuid",),
    (_s("MessageGuid", nullable=False), _s("Type"), _s("LastErrorModelStepId")),
)

MPL_RUN = EntityType(
    "MessageProcessingLogRun",
    "MessageProcessingLogRuns",
    ("Id",),
    (
        _s("Id", nullable=False),
        _dt("RunStart"),
        _dt("RunStop"),
        _s("LogLevel"),
        _s("OverallState"),
        _s("ProcessId"),
    ),
)
"""One run of a message through its flow; here every message has exactly one."""

MPL_RUN_STEP = EntityType(
    "MessageProcessingLogRunStep",
    "MessageProcessingLogRunSteps",
    ("RunId", "ChildCount"),
    (
        _s("RunId", nullable=False),
        Property("ChildCount", EdmType.INT32, False),
        _dt("StepStart"),
        _dt("StepStop"),
        _s("StepId"),
        _s("ModelStepId"),
        _s("BranchId"),
        _s("Status"),
        _s("Error", multiline=True),
        _s("Activity"),
        _s("Summary"),
        Property("DurationMicros", EdmType.INT64, True),
    ),
)
"""A step of a run; ``Summary`` and ``DurationMicros`` are partnergate's own."""


@dataclass(frozen=True)
class Navigation:
    """A navigation property: ``source``'s ``name`` leads to one or many ``target``."""

    source: EntityType
    name: str
    target: EntityType
    many: bool

    @property
    def association(self) -> str:
        return f"{self.source.name}_{self.name}"


MESSAGE_PROCESSING_LOG_ATTACHMENT = EntityType(
    "MessageProcessingLogAttachment",
    "MessageProcessingLogAttachments",
    ("Id",),
    (
        _s("Id", nullable=False),
        _s("MessageGuid"),
        _dt("TimeStamp"),
        _s("Name"),
        _s("ContentType"),
        Property("PayloadSize", EdmType.INT64, True),
    ),
)
"""What a flow kept of a message (a ``log-attachment`` step); the bytes are its ``$value``."""

MPL_NAVIGATIONS: tuple[Navigation, ...] = (
    Navigation(MESSAGE_PROCESSING_LOG, "AdapterAttributes", MPL_ADAPTER_ATTRIBUTE, True),
    Navigation(MESSAGE_PROCESSING_LOG, "Attachments", MESSAGE_PROCESSING_LOG_ATTACHMENT, True),
    Navigation(MESSAGE_PROCESSING_LOG, "CustomHeaderProperties", MPL_CUSTOM_HEADER_PROPERTY, True),
    Navigation(MESSAGE_PROCESSING_LOG, "ErrorInformation", MPL_ERROR_INFORMATION, False),
    Navigation(MESSAGE_PROCESSING_LOG, "Runs", MPL_RUN, True),
    Navigation(MPL_RUN, "RunSteps", MPL_RUN_STEP, True),
)
"""SAP's navigation properties of the message processing log that we serve."""

MPL_TYPES: tuple[EntityType, ...] = (
    MPL_CUSTOM_HEADER_PROPERTY,
    MPL_ADAPTER_ATTRIBUTE,
    MPL_ERROR_INFORMATION,
    MPL_RUN,
    MPL_RUN_STEP,
)
"""Entity sets below ``MessageProcessingLogs``, read through it or by key."""

CERTIFICATE_MAPPING_RULE = EntityType(
    "CertificateMappingRule",
    "CertificateMappingRules",
    ("Id",),
    (
        _s("Id", 60, nullable=False),
        _s("Kind", 20, nullable=False),
        _s("User", 150, nullable=False),
        _s("SubjectDN", 1024),
        _s("IssuerDN", 1024),
        _s("SerialNumber", 64),
        _s("Thumbprint", 64),
        *AUDIT,
    ),
)
"""partnergate's own: map certificates to a user by what survives a renewal (not in SAP)."""

AUDIT_ENTRY = EntityType(
    "AuditEntry",
    "AuditEntries",
    ("Id",),
    (
        _s("Id", 40, nullable=False),
        _s("ChangeId", 32, nullable=False),
        _dt("Time"),
        _s("User", 150),
        _s("Operation", 20, nullable=False),
        _s("EntitySet", 60, nullable=False),
        _s("Pid", 60),
        _s("PreviousPid", 60),
        _s("EntityKey", nullable=False),
        _s("Label", 600),
        _s("Before", multiline=True),
        _s("After", multiline=True),
    ),
)
"""partnergate's own, read-only: one entry per entity a committed write changed; the
entries of one transaction share a ``ChangeId``. ``Before``/``After`` are JSON, secrets
masked (see docs/history.md)."""

PARTNER_DIRECTORY_TYPES: tuple[EntityType, ...] = (
    STRING_PARAMETER,
    BINARY_PARAMETER,
    USER_CREDENTIAL_PARAMETER,
    ALTERNATIVE_PARTNER,
    AUTHORIZED_USER,
    PARTNER,
)

ENTITY_TYPES: dict[str, EntityType] = {
    t.entity_set: t
    for t in (
        *PARTNER_DIRECTORY_TYPES,
        CERTIFICATE_USER_MAPPING,
        CERTIFICATE_MAPPING_RULE,
        MESSAGE_PROCESSING_LOG,
        MESSAGE_PROCESSING_LOG_ATTACHMENT,
        AUDIT_ENTRY,
    )
}
"""Entity set name → entity type, for every set the service exposes."""

PARTNER_ENTITY_SETS = (
    "AlternativePartners",
    "AuthorizedUsers",
    "BinaryParameters",
    "StringParameters",
    "UserCredentialParameters",
)
"""The sets whose entities belong to a partner (the values of ``exclude``)."""

FLOW_LOG_LEVEL = EntityType(
    "FlowLogLevel",
    "FlowLogLevels",
    ("Flow",),
    (
        _s("Flow", 200, nullable=False),
        _s("LogLevel", 10, nullable=False),
        _dt("Until"),
        _s("ChangedBy", 150),
        _dt("ChangedTime"),
    ),
)
"""partnergate's own: a deployed flow's log level (NONE, INFO, TRACE), set at run time.
SAP sets it in the monitor's "Manage Integration Content"; TRACE ends after 10 minutes."""
