"""The OData V2 service at ``/api/v1``: resource paths, methods, paging, ``$batch``.

Framework-free on purpose: a request is plain data (:class:`ODataRequest`) and the answer
is an :class:`ODataResponse`, so a ``$batch`` part runs through exactly the same code as a
request that arrives on its own.

An answer tells the truth: a write runs in one transaction (its own, or its change set's)
and the whole answer, body and headers, is made and checked before that transaction
commits. Whatever fails before then rolls the write back; a success is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from ..model.entities import (
    AUDIT_ENTRY,
    CERTIFICATE_MAPPING_RULE,
    CERTIFICATE_USER_MAPPING,
    ENTITY_TYPES,
    MESSAGE_PROCESSING_LOG,
    MESSAGE_PROCESSING_LOG_ATTACHMENT,
    PARTNER,
    PARTNER_DIRECTORY_TYPES,
    USER_CREDENTIAL_PARAMETER,
    EntityType,
)
from ..model.errors import DirectoryError, NotSupported
from ..model.rules import prepare_key
from ..odata import atom, json_format, metadata
from ..odata.batch import (
    BatchPart,
    BatchResponse,
    ChangeSet,
    parse_batch,
    serialize_batch,
    serialize_item,
)
from ..odata.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFoundError,
    ODataError,
    error_json,
    error_xml,
)
from ..odata.filter import Compare, CompareOp, Literal, PropertyRef
from ..odata.headers import check_fields
from ..odata.paths import Resource, entity_set_name, parse_resource
from ..odata.query import QueryOptions, parse_query
from ..odata.values import entity_uri, uri_text
from ..security.principals import PARTNER_DIRECTORY_CONFIGURATOR
from ..store.directory import HONOURS_USER_OPTION, Directory, DirectoryStore, ListRequest
from ..store.messagelog import read_attachment, read_error_text
from . import mpl_api
from .downloads import download_headers

JSON = "application/json"
ATOM_ENTRY = "application/atom+xml;type=entry"
ATOM_FEED = "application/atom+xml;type=feed"
XML = "application/xml"
DSV = {"DataServiceVersion": "2.0"}

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})

log = logging.getLogger("partnergate.odata")


@dataclass
class ODataRequest:
    method: str
    path: str
    """Resource path below the service root, still percent-encoded, e.g. ``StringParameters``."""
    query: list[tuple[str, str]]
    headers: Mapping[str, str]
    """Lower-case names."""
    body: bytes
    actor: str


@dataclass
class ODataResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    base_url: str
    """Absolute service root ending in ``/``."""
    page_size: int = 1000
    binary_page_size: int = 30
    metadata_style: str = "flat"


def wants_json(headers: Mapping[str, str], query: list[tuple[str, str]]) -> bool:
    """Whether an error body is JSON. Never raises: with an unknown ``$format`` the error
    (406) is written as ``Accept`` asks, so every refusal has an OData body."""
    fmt = next((v for k, v in query if k == "$format"), None)
    try:
        return json_format.negotiate(headers.get("accept"), fmt) == "json"
    except ODataError:
        return json_format.negotiate(headers.get("accept"), None) == "json"


def _negotiate(request: ODataRequest) -> bool:
    """The body format the request asks for; 406 for a ``$format`` we do not offer."""
    fmt = next((v for k, v in request.query if k == "$format"), None)
    return json_format.negotiate(request.headers.get("accept"), fmt) == "json"


def _method(request: ODataRequest) -> str:
    """The method, after SAP's ``X-HTTP-Method`` tunnelling of a POST."""
    tunnelled = request.headers.get("x-http-method", "").upper()
    if request.method == "POST" and tunnelled in ("MERGE", "PATCH", "PUT", "DELETE"):
        return tunnelled
    return request.method


def error_response(exc: ODataError | DirectoryError, as_json: bool) -> ODataResponse:
    status = exc.status
    code = exc.code
    message = exc.message
    if as_json:
        return ODataResponse(status, error_json(code, message), {"Content-Type": JSON, **DSV})
    return ODataResponse(status, error_xml(code, message), {"Content-Type": XML, **DSV})


SERVED: dict[str, EntityType] = {
    t.entity_set: t
    for t in (
        *PARTNER_DIRECTORY_TYPES,
        CERTIFICATE_USER_MAPPING,
        CERTIFICATE_MAPPING_RULE,
        MESSAGE_PROCESSING_LOG,
        MESSAGE_PROCESSING_LOG_ATTACHMENT,
        AUDIT_ENTRY,
        *mpl_api.SETS,
    )
}
MONITORED = frozenset({"MessageProcessingLogs", "MessageProcessingLogAttachments"})
MONITORED |= mpl_api.READ_ONLY
READ_ONLY = MONITORED | {"AuditEntries"}

MONITORING_ROLES = frozenset(
    {
        PARTNER_DIRECTORY_CONFIGURATOR,
        "AuthGroup_IntegrationDeveloper",
        "AuthGroup_BusinessExpert",
        "AuthGroup_Administrator",
    }
)
"""SAP's role collections that may read message processing logs (SAP-doc fda781c)."""


def accepted_roles(path: str, method: str) -> frozenset[str]:
    """The roles any one of which lets a caller make this request."""
    head = entity_set_name(path)
    if head in MONITORED and method in ("GET", "HEAD"):
        return MONITORING_ROLES
    return frozenset({PARTNER_DIRECTORY_CONFIGURATOR})


class ODataService:
    def __init__(self, store: DirectoryStore, settings: Settings, message_log: Any = None) -> None:
        self.store = store
        self.message_log = message_log
        self.settings = replace(settings, base_url=uri_text(settings.base_url))
        self.served = SERVED

    # -- entry point -------------------------------------------------------------------

    async def handle(
        self, request: ODataRequest, directory: Directory | None = None
    ) -> ODataResponse:
        """Answer one request; ``directory`` is the change set's transaction, if any.

        A write outside a change set gets a transaction of its own, which commits only
        if the answer is a success and could be made in full.
        """
        as_json = wants_json(request.headers, request.query)
        try:
            resource = parse_resource(request.path, self.served)
            method = _method(request)
            if directory is not None or method not in WRITE_METHODS or resource.kind == "batch":
                return await self._answer(request, resource, method, directory)
            async with self.store.begin(request.actor) as unit:
                return await self._answer(request, resource, method, unit)
        except _Refused as refused:
            return refused.answer
        except (ODataError, DirectoryError) as exc:
            return error_response(exc, as_json)

    async def _answer(
        self, request: ODataRequest, resource: Resource, method: str, directory: Directory | None
    ) -> ODataResponse:
        """The successful answer, checked to be sendable; a refusal raises."""
        as_json = _negotiate(request)
        answer = await self._handle(request, resource, method, directory, as_json)
        if answer.status >= 400:
            raise _Refused(answer)
        check_fields(answer.headers)
        return answer

    async def _handle(
        self,
        request: ODataRequest,
        resource: Resource,
        method: str,
        directory: Directory | None,
        as_json: bool,
    ) -> ODataResponse:
        if resource.kind == "service":
            self._only(method, "GET", "HEAD")
            return self._service_document(as_json)
        if resource.kind == "metadata":
            self._only(method, "GET", "HEAD")
            types = list(self.served.values())
            body = metadata.metadata_document(types, self.settings.metadata_style)
            return ODataResponse(200, body, {"Content-Type": XML, **DSV})
        if resource.kind == "batch":
            self._only(method, "POST")
            if directory is not None:
                raise BadRequest("A $batch cannot contain another $batch")
            return await self._batch(request)
        entity_type = resource.entity_type
        assert entity_type is not None
        if entity_type.entity_set in READ_ONLY and method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{entity_type.entity_set} is read-only")
        if mpl_api.handles(resource):
            return await mpl_api.answer(self, request, resource, method, as_json, directory)
        if resource.kind == "error_information":
            return await self._error_information(resource.key or {}, directory)
        if resource.kind == "attachments":
            return await self._attachments(request, resource.key or {}, directory, as_json)
        if resource.kind == "attachment_value":
            return await self._attachment_value(resource.key or {})
        if resource.kind == "count":
            self._only(method, "GET", "HEAD")
            options = self._options(request, entity_type, collection=True)
            page = await self._list(entity_type, options, directory, count_only=True)
            return ODataResponse(200, str(page).encode(), {"Content-Type": "text/plain", **DSV})
        if resource.kind == "collection":
            if method in ("GET", "HEAD"):
                return await self._read_collection(request, entity_type, directory, as_json)
            if method == "POST":
                return await self._create(request, entity_type, directory, as_json)
            raise MethodNotAllowed(
                f"{method} is not allowed on the collection {entity_type.entity_set}"
            )
        key = resource.key
        assert key is not None
        if method in ("GET", "HEAD"):
            return await self._read_entity(request, entity_type, key, directory, as_json)
        if method in ("PUT", "PATCH", "MERGE"):
            return await self._update(request, entity_type, key, directory)
        if method == "DELETE":
            return await self._delete(request, entity_type, key, directory)
        raise MethodNotAllowed(f"{method} is not allowed on {entity_type.entity_set}")

    @staticmethod
    def _only(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise MethodNotAllowed(f"{method} is not allowed here; use {' or '.join(allowed)}")

    def _service_document(self, as_json: bool) -> ODataResponse:
        body = metadata.service_document(list(self.served), self.settings.base_url, json=as_json)
        ctype = JSON if as_json else "application/atomsvc+xml"
        return ODataResponse(200, body, {"Content-Type": ctype, **DSV})

    def _options(
        self, request: ODataRequest, entity_type: EntityType, *, collection: bool
    ) -> QueryOptions:
        return parse_query(request.query, entity_type, collection=collection)

    def _actor(
        self, request: ODataRequest, entity_type: EntityType, options: QueryOptions | None
    ) -> str:
        user = options.custom.get("user") if options is not None else None
        if user and entity_type.entity_set in HONOURS_USER_OPTION:
            return user
        return request.actor

    # -- reading -----------------------------------------------------------------------

    def _page_size(self, entity_type: EntityType) -> int:
        if entity_type.entity_set in ("BinaryParameters", "AuditEntries"):
            return self.settings.binary_page_size
        return self.settings.page_size

    async def _list(
        self,
        entity_type: EntityType,
        options: QueryOptions,
        directory: Directory | None,
        *,
        count_only: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> Any:
        self._check_ucp_filter(entity_type, options)
        if count_only:
            req = ListRequest(filter=options.filter, top=0, count=True)
        else:
            req = ListRequest(
                filter=options.filter,
                orderby=options.orderby,
                top=limit,
                skip=offset,
                count=options.inlinecount,
            )
        if directory is not None:
            page = await directory.list(entity_type.entity_set, req)
        else:
            page = await self.store.list(entity_type.entity_set, req)
        if count_only:
            total = page.count or 0
            total = max(0, total - (options.skip or 0))
            return min(total, options.top) if options.top is not None else total
        return page

    @staticmethod
    def _check_ucp_filter(entity_type: EntityType, options: QueryOptions) -> None:
        """SAP lists UserCredentialParameters only with ``$filter=Pid eq '<pid>'``."""
        if entity_type is not USER_CREDENTIAL_PARAMETER:
            return
        expr = options.filter
        by_pid = (
            isinstance(expr, Compare)
            and expr.op is CompareOp.EQ
            and isinstance(expr.left, PropertyRef)
            and expr.left.name == "Pid"
            and isinstance(expr.right, Literal)
            and isinstance(expr.right.value, str)
        )
        if not by_pid:
            raise BadRequest(
                "UserCredentialParameters can only be listed for one partner: "
                "use $filter=Pid eq '<partner id>'"
            )

    async def _read_collection(
        self,
        request: ODataRequest,
        entity_type: EntityType,
        directory: Directory | None,
        as_json: bool,
    ) -> ODataResponse:
        options = self._options(request, entity_type, collection=True)
        page_size = self._page_size(entity_type)
        start = (options.skip or 0) + (options.skiptoken or 0)
        wanted = None if options.top is None else max(0, options.top - (options.skiptoken or 0))
        limit = page_size if wanted is None else min(wanted, page_size)
        page = await self._list(entity_type, options, directory, limit=limit + 1, offset=start)
        rows = page.rows[:limit]
        next_url = None
        more = len(page.rows) > limit and (wanted is None or wanted > limit)
        if more:
            next_url = self._next_link(request, entity_type, (options.skiptoken or 0) + limit)
        select = options.select
        base = self.settings.base_url
        if as_json:
            body = json_format.feed_json(entity_type, rows, base, select, page.count, next_url)
            return ODataResponse(200, body, {"Content-Type": JSON, **DSV})
        body = atom.feed_atom(entity_type, rows, base, select, page.count, next_url)
        return ODataResponse(200, body, {"Content-Type": ATOM_FEED, **DSV})

    def _next_link(self, request: ODataRequest, entity_type: EntityType, skiptoken: int) -> str:
        query = [(k, v) for k, v in request.query if k != "$skiptoken"]
        query.append(("$skiptoken", str(skiptoken)))
        return (
            self.settings.base_url
            + entity_type.entity_set
            + "?"
            + urlencode(query, quote_via=quote, safe="$',()")
        )

    async def _read_entity(
        self,
        request: ODataRequest,
        entity_type: EntityType,
        key: dict[str, object],
        directory: Directory | None,
        as_json: bool,
    ) -> ODataResponse:
        options = self._options(request, entity_type, collection=False)
        hashed = False
        if entity_type is USER_CREDENTIAL_PARAMETER:
            wanted = options.custom.get("returnHashedPassword")
            if wanted is not None and wanted != "SHA256":
                raise BadRequest("returnHashedPassword supports only the value SHA256")
            hashed = wanted == "SHA256"
        if directory is not None:
            entity = await directory.get(entity_type.entity_set, key, hashed_password=hashed)
        else:
            entity = await self.store.get(entity_type.entity_set, key, hashed_password=hashed)
        return self._entity_response(200, entity_type, entity, options.select, as_json)

    async def _error_information(
        self, key: dict[str, object], directory: Directory | None
    ) -> ODataResponse:
        """``MessageProcessingLogs('<guid>')/ErrorInformation/$value``: the error as text."""
        if directory is not None:
            await directory.get("MessageProcessingLogs", key)
        else:
            await self.store.get("MessageProcessingLogs", key)
        text = await self.message_text(str(key["MessageGuid"]))
        return ODataResponse(
            200, text.encode(), {"Content-Type": "text/plain; charset=utf-8", **DSV}
        )

    async def _attachments(
        self,
        request: ODataRequest,
        key: dict[str, object],
        directory: Directory | None,
        as_json: bool,
    ) -> ODataResponse:
        """``MessageProcessingLogs('<guid>')/Attachments``: that message's attachments."""
        if directory is not None:
            await directory.get("MessageProcessingLogs", key)
        else:
            await self.store.get("MessageProcessingLogs", key)
        guid = str(key["MessageGuid"]).replace("'", "''")
        query = [(k, v) for k, v in request.query if k != "$filter"]
        mine = f"MessageGuid eq '{guid}'"
        given = [v for k, v in request.query if k == "$filter"]
        query.append(("$filter", f"{mine} and ({given[-1]})" if given else mine))
        narrowed = replace(request, path="MessageProcessingLogAttachments", query=query)
        return await self._read_collection(
            narrowed, MESSAGE_PROCESSING_LOG_ATTACHMENT, directory, as_json
        )

    async def _attachment_value(self, key: dict[str, object]) -> ODataResponse:
        """``MessageProcessingLogAttachments('<id>')/$value``: the bytes the flow kept.

        What a sender sent must not run in a browser that holds an admin's session: the
        bytes come as a download, never sniffed, in a sandbox."""
        key = prepare_key(MESSAGE_PROCESSING_LOG_ATTACHMENT, key)
        await self.store.catch_up()
        found = await read_attachment(self.store.engine, str(key["Id"]))
        if found is None:
            raise NotFoundError(f"MessageProcessingLogAttachment (Id='{key['Id']}') does not exist")
        headers = download_headers(found.name, found.content_type or "application/octet-stream")
        headers.update(DSV)
        return ODataResponse(200, found.payload, headers)

    async def message_text(self, guid: str) -> str:
        return await read_error_text(self.store.engine, guid) or ""

    def _entity_response(
        self,
        status: int,
        entity_type: EntityType,
        entity: dict[str, object],
        select: list[str] | None,
        as_json: bool,
        extra: dict[str, str] | None = None,
    ) -> ODataResponse:
        base = self.settings.base_url
        headers = {**DSV, **(extra or {})}
        if as_json:
            body = json_format.entry_json(entity_type, entity, base, select)
            return ODataResponse(status, body, {"Content-Type": JSON, **headers})
        body = atom.entry_atom(entity_type, entity, base, select)
        return ODataResponse(status, body, {"Content-Type": ATOM_ENTRY, **headers})

    # -- writing -----------------------------------------------------------------------

    def _parse_body(self, request: ODataRequest, entity_type: EntityType) -> dict[str, object]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("application/json", ""):
            if not request.body.strip():
                raise BadRequest("The request body is empty; send the entity as JSON")
            return json_format.parse_entity_json(entity_type, request.body)
        if ctype in ("application/atom+xml", "application/xml", "text/xml"):
            return atom.parse_entity_atom(entity_type, request.body)
        raise ODataError(
            415,
            "Unsupported Media Type",
            f"Content-Type '{ctype}' is not supported; "
            "send application/json or application/atom+xml",
        )

    async def _create(
        self,
        request: ODataRequest,
        entity_type: EntityType,
        directory: Directory | None,
        as_json: bool,
    ) -> ODataResponse:
        if entity_type is PARTNER:
            raise NotSupported(
                "Partners cannot be created directly: a partner exists as soon as one of "
                "its entities (e.g. a string parameter or an authorized user) does"
            )
        assert directory is not None, "a write runs in a transaction"
        options = self._options(request, entity_type, collection=False)
        values = self._parse_body(request, entity_type)
        actor = self._actor(request, entity_type, options)
        entity = await directory.create(entity_type.entity_set, values, actor)
        location = entity_uri(entity_type, entity, self.settings.base_url)
        return self._entity_response(
            201, entity_type, entity, None, as_json, {"Location": location}
        )

    async def _update(
        self,
        request: ODataRequest,
        entity_type: EntityType,
        key: dict[str, object],
        directory: Directory | None,
    ) -> ODataResponse:
        if entity_type in (USER_CREDENTIAL_PARAMETER, CERTIFICATE_USER_MAPPING):
            raise MethodNotAllowed(
                f"{entity_type.entity_set} cannot be updated with PUT; POST the whole entity "
                "again to change it"
            )
        if entity_type is PARTNER:
            raise MethodNotAllowed("Partners cannot be updated; change their entities instead")
        assert directory is not None, "a write runs in a transaction"
        options = self._options(request, entity_type, collection=False)
        values = self._parse_body(request, entity_type)
        actor = self._actor(request, entity_type, options)
        await directory.update(entity_type.entity_set, key, values, actor)
        return ODataResponse(204, b"", dict(DSV))

    async def _delete(
        self,
        request: ODataRequest,
        entity_type: EntityType,
        key: dict[str, object],
        directory: Directory | None,
    ) -> ODataResponse:
        assert directory is not None, "a write runs in a transaction"
        options = self._options(request, entity_type, collection=False)
        if entity_type is PARTNER:
            exclude = _exclude_option(options.custom.get("exclude"))
            await directory.delete_partner(str(key["Pid"]), exclude)
        else:
            await directory.delete(entity_type.entity_set, key)
        return ODataResponse(204, b"", dict(DSV))

    # -- $batch ------------------------------------------------------------------------

    async def _batch(self, request: ODataRequest) -> ODataResponse:
        """SAP answers each part on its own: a query's refusal is that part's answer and
        leaves the change sets around it as they are."""
        parts = parse_batch(request.headers.get("content-type", ""), request.body)
        chunks: list[bytes] = []
        for item in parts:
            if isinstance(item, ChangeSet):
                chunks.append(await self._change_set(request, item))
            else:
                chunks.append(await self._query_part(self._part_request(request, item)))
        content_type, body = serialize_batch(chunks)
        return ODataResponse(202, body, {"Content-Type": content_type, **DSV})

    async def _query_part(self, request: ODataRequest) -> bytes:
        try:
            return serialize_item(_batch_response(await self.handle(request)))
        except Exception:
            log.exception("$batch: %s %s failed", request.method, request.path[:200])
            return serialize_item(_internal_error(request))

    def _part_request(self, outer: ODataRequest, part: BatchPart) -> ODataRequest:
        url = part.url
        root = self.settings.base_url
        if url.startswith(root):
            url = url[len(root) :]
        elif url.startswith("/"):
            marker = "/api/v1/"
            if marker in url:
                url = url.split(marker, 1)[1]
        path, _, query = url.partition("?")
        headers = {k.lower(): v for k, v in part.headers.items()}
        return ODataRequest(
            method=part.method.upper(),
            path=path,
            query=parse_qsl(query, keep_blank_values=True),
            headers=headers,
            body=part.body,
            actor=outer.actor,
        )

    async def _change_set(self, outer: ODataRequest, change_set: ChangeSet) -> bytes:
        """All of a change set's operations in one transaction, or none of them.

        The answer is serialised before the commit: an operation refused, or an answer
        that cannot be written, leaves nothing behind and is the change set's answer.
        """
        requests = [self._part_request(outer, part) for part in change_set.parts]
        operations: list[tuple[ODataRequest, Resource]] = []
        for req in requests:
            try:
                operations.append((req, parse_resource(req.path, self.served)))
            except (ODataError, DirectoryError) as exc:
                return serialize_item(_batch_response(_refusal(req, exc)))
        alone = [
            res.entity_type.entity_set
            for _, res in operations
            if res.entity_type is not None and res.entity_type.entity_set in ALONE_IN_CHANGE_SET
        ]
        if alone and len(operations) > 1:
            error = BadRequest(
                f"A change set that contains a {alone[0]} request must contain only that one "
                "request"
            )
            return serialize_item(_batch_response(_refusal(outer, error)))
        current = outer
        try:
            async with self.store.begin(outer.actor) as unit:
                answers: list[BatchResponse] = []
                for req, resource in operations:
                    current = req
                    answer = await self._answer(req, resource, _method(req), unit)
                    answers.append(_batch_response(answer))
                return serialize_item(answers)
        except _Refused as refused:
            return serialize_item(_batch_response(refused.answer))
        except (ODataError, DirectoryError) as exc:
            return serialize_item(_batch_response(_refusal(current, exc)))
        except Exception:
            log.exception("$batch: change set failed at %s %s", current.method, current.path[:200])
            return serialize_item(_internal_error(current))


ALONE_IN_CHANGE_SET = frozenset({"UserCredentialParameters", "CertificateUserMappings"})
"""SAP-doc 79c06dd and e01d3f0: these requests stand alone in their change set."""


class _Refused(Exception):
    """An answer that is not a success: leaves the transaction without committing it."""

    def __init__(self, answer: ODataResponse) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _refusal(request: ODataRequest, exc: ODataError | DirectoryError) -> ODataResponse:
    return error_response(exc, wants_json(request.headers, request.query))


def _internal_error(request: ODataRequest) -> BatchResponse:
    """A part that failed on our side; the log holds the reason."""
    error = ODataError(500, "Internal Server Error", "The request failed; see the server log")
    return _batch_response(error_response(error, wants_json(request.headers, request.query)))


def _batch_response(answer: ODataResponse) -> BatchResponse:
    return BatchResponse(answer.status, answer.headers, answer.body)


def _exclude_option(value: str | None) -> list[str]:
    """SAP's ``exclude`` is a list of entity set names: ``exclude=AuthorizedUsers,...``."""
    if not value:
        return []
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [v.strip().strip("'\"") for v in text.split(",") if v.strip()]


def entity_type_of(entity_set: str) -> EntityType | None:
    return ENTITY_TYPES.get(entity_set)
