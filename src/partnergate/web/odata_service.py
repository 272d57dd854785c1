"""The OData V2 service at ``/api/v1``: resource paths, methods, paging, ``$batch``.

Framework-free on purpose: a request is plain data (``odata.requests.ODataRequest``) and
the answer is an :class:`ODataResponse`, so a ``$batch`` part runs through exactly the
same code as a request that arrives on its own.

An answer tells the truth: a write runs in one transaction (its own, or its change set's)
and the whole answer, body and headers, is made and checked before that transaction
commits. Whatever fails before then rolls the write back; a success is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlencode

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
from ..odata import atom, json_format, metadata, requests
from ..odata.batch import (
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
from ..odata.paths import Resource, entity_set_name
from ..odata.query import QueryOptions, parse_query
from ..odata.requests import ODataRequest, Target, wants_json
from ..odata.values import entity_uri, uri_text
from ..security.principals import PARTNER_DIRECTORY_CONFIGURATOR
from ..store.directory import HONOURS_USER_OPTION, DirectoryStore, ListRequest, Unit
from ..store.messagelog import read_attachment, read_error_text
from . import mpl_api
from .downloads import download_headers

JSON = "application/json"
ATOM_ENTRY = "application/atom+xml;type=entry"
ATOM_FEED = "application/atom+xml;type=feed"
XML = "application/xml"
DSV = {"DataServiceVersion": "2.0"}

log = logging.getLogger("partnergate.odata")


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
MPL_SETS = frozenset(t.entity_set for t in mpl_api.TYPES)
"""The sets whose entity types :mod:`.mpl_api` may answer for (a name is one type here)."""
MONITORED = frozenset({"MessageProcessingLogs", "MessageProcessingLogAttachments"})
MONITORED |= mpl_api.READ_ONLY
READ_ONLY = MONITORED | {"AuditEntries"}

Navigation = Callable[["ODataRequest", Resource, "Unit", bool], Awaitable["ODataResponse"]]
"""Answers a resource below one entity (``MessageProcessingLogs('…')/Attachments``)."""

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
    """A thin driver: parse (``odata``), one unit of work (``store``), serialise (``odata``).

    Each request opens one unit of work, a read or a write transaction as its method asks;
    a ``$batch`` change set opens one for all its operations. Below :meth:`_answer` the
    code is the same for both and does not know which it serves.
    """

    def __init__(
        self,
        store: DirectoryStore,
        settings: Settings,
        message_log: Any = None,
        flow_names: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self.store = store
        self.message_log = message_log
        self.flow_names = flow_names
        """The flows deployed here, whose log levels ``FlowLogLevels`` sets; None: any."""
        self.settings = replace(settings, base_url=uri_text(settings.base_url))
        self.served = SERVED
        self.navigation: dict[str, Navigation] = {
            "error_information": self._error_information,
            "attachments": self._attachments,
            "attachment_value": self._attachment_value,
        }
        """Handlers of the resources below one entity, by ``odata.paths.NAVIGATION`` kind."""

    # -- entry point -------------------------------------------------------------------

    async def handle(self, request: ODataRequest) -> ODataResponse:
        """Answer one request, in a unit of work of its own.

        A write commits only if the answer is a success and could be made in full.
        """
        try:
            target = requests.target(request, self.served)
            if target.resource.kind == "batch":
                self._only(target.method, "POST")
                requests.answers_json(request)  # a $format of its own we cannot give: 406
                return await self._batch(request)
            return await self._in_unit(request, target)
        except _Refused as refused:
            return refused.answer
        except (ODataError, DirectoryError) as exc:
            return _refusal(request, exc)

    async def _in_unit(self, request: ODataRequest, target: Target) -> ODataResponse:
        unit = self.store.begin(request.actor) if target.writes else self.store.read()
        async with unit as directory:
            return await self._answer(request, target, directory)

    async def _answer(
        self, request: ODataRequest, target: Target, directory: Unit
    ) -> ODataResponse:
        """The successful answer, checked to be sendable; a refusal raises."""
        as_json = requests.answers_json(request)
        answer = await self._handle(request, target, directory, as_json)
        if answer.status >= 400:
            raise _Refused(answer)
        check_fields(answer.headers)
        return answer

    async def _handle(
        self, request: ODataRequest, target: Target, directory: Unit, as_json: bool
    ) -> ODataResponse:
        resource, method = target.resource, target.method
        if resource.kind == "service":
            self._only(method, "GET", "HEAD")
            return self._service_document(as_json)
        if resource.kind == "metadata":
            self._only(method, "GET", "HEAD")
            types = list(self.served.values())
            body = metadata.metadata_document(types, self.settings.metadata_style)
            return ODataResponse(200, body, {"Content-Type": XML, **DSV})
        if resource.kind == "batch":
            raise BadRequest("A $batch cannot contain another $batch")
        entity_type = resource.entity_type
        assert entity_type is not None
        if entity_type.entity_set in READ_ONLY and method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{entity_type.entity_set} is read-only")
        if entity_type.entity_set in MPL_SETS and mpl_api.handles(resource):
            return await mpl_api.answer(self, request, resource, method, as_json, directory)
        navigate = self.navigation.get(resource.kind)
        if navigate is not None:
            return await navigate(request, resource, directory, as_json)
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
        directory: Unit,
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
        page = await directory.list(entity_type.entity_set, req)
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
        directory: Unit,
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
        directory: Unit,
        as_json: bool,
    ) -> ODataResponse:
        options = self._options(request, entity_type, collection=False)
        hashed = False
        if entity_type is USER_CREDENTIAL_PARAMETER:
            wanted = options.custom.get("returnHashedPassword")
            if wanted is not None and wanted != "SHA256":
                raise BadRequest("returnHashedPassword supports only the value SHA256")
            hashed = wanted == "SHA256"
        entity = await directory.get(entity_type.entity_set, key, hashed_password=hashed)
        return self._entity_response(200, entity_type, entity, options.select, as_json)

    async def _error_information(
        self, request: ODataRequest, resource: Resource, directory: Unit, as_json: bool
    ) -> ODataResponse:
        """``MessageProcessingLogs('<guid>')/ErrorInformation/$value``: the error as text;
        404 for a message that did not fail, as its ``ErrorInformation`` is."""
        key = resource.key or {}
        await directory.get("MessageProcessingLogs", key)
        text = await self.message_text(str(key["MessageGuid"]))
        if not text:
            raise NotFoundError(
                f"MessageProcessingLog (MessageGuid='{key['MessageGuid']}') has no ErrorInformation"
            )
        return ODataResponse(
            200, text.encode(), {"Content-Type": "text/plain; charset=utf-8", **DSV}
        )

    async def _attachments(
        self, request: ODataRequest, resource: Resource, directory: Unit, as_json: bool
    ) -> ODataResponse:
        """``MessageProcessingLogs('<guid>')/Attachments``: that message's attachments."""
        key = resource.key or {}
        await directory.get("MessageProcessingLogs", key)
        guid = str(key["MessageGuid"]).replace("'", "''")
        query = [(k, v) for k, v in request.query if k != "$filter"]
        mine = f"MessageGuid eq '{guid}'"
        given = [v for k, v in request.query if k == "$filter"]
        query.append(("$filter", f"{mine} and ({given[-1]})" if given else mine))
        narrowed = replace(request, path="MessageProcessingLogAttachments", query=query)
        return await self._read_collection(
            narrowed, MESSAGE_PROCESSING_LOG_ATTACHMENT, directory, as_json
        )

    async def _attachment_value(
        self, request: ODataRequest, resource: Resource, directory: Unit, as_json: bool
    ) -> ODataResponse:
        """``MessageProcessingLogAttachments('<id>')/$value``: the bytes the flow kept.

        What a sender sent must not run in a browser that holds an admin's session: the
        bytes come as a download, never sniffed, in a sandbox."""
        key = prepare_key(MESSAGE_PROCESSING_LOG_ATTACHMENT, resource.key or {})
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
        headers = {**DSV, **extra} if extra else DSV
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
        directory: Unit,
        as_json: bool,
    ) -> ODataResponse:
        if entity_type is PARTNER:
            raise NotSupported(
                "Partners cannot be created directly: a partner exists as soon as one of "
                "its entities (e.g. a string parameter or an authorized user) does"
            )
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
        directory: Unit,
    ) -> ODataResponse:
        if entity_type in (USER_CREDENTIAL_PARAMETER, CERTIFICATE_USER_MAPPING):
            raise MethodNotAllowed(
                f"{entity_type.entity_set} cannot be updated with PUT; POST the whole entity "
                "again to change it"
            )
        if entity_type is PARTNER:
            raise MethodNotAllowed("Partners cannot be updated; change their entities instead")
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
        directory: Unit,
    ) -> ODataResponse:
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
        base = self.settings.base_url
        chunks: list[bytes] = []
        for item in parts:
            if isinstance(item, ChangeSet):
                operations = [requests.part_request(request, p, base) for p in item.parts]
                chunks.append(await self._change_set(request, operations))
            else:
                chunks.append(await self._query_part(requests.part_request(request, item, base)))
        content_type, body = serialize_batch(chunks)
        return ODataResponse(202, body, {"Content-Type": content_type, **DSV})

    async def _query_part(self, request: ODataRequest) -> bytes:
        """A query part: a request like any other, in a unit of work of its own."""
        try:
            target = requests.target(request, self.served)
            answer = await self._in_unit(request, target)
        except _Refused as refused:
            answer = refused.answer
        except (ODataError, DirectoryError) as exc:
            answer = _refusal(request, exc)
        except Exception:
            log.exception("$batch: %s %s failed", request.method, request.path[:200])
            return serialize_item(_internal_error(request))
        return serialize_item(_batch_response(answer, request))

    async def _change_set(self, outer: ODataRequest, operations: list[ODataRequest]) -> bytes:
        """All of a change set's operations in one unit of work, or none of them.

        The answer is serialised before the commit: an operation refused, or an answer
        that cannot be written, leaves nothing behind and is the change set's answer.
        """
        targets: list[tuple[ODataRequest, Target]] = []
        for req in operations:
            try:
                targets.append((req, requests.target(req, self.served)))
            except (ODataError, DirectoryError) as exc:
                return serialize_item(_batch_response(_refusal(req, exc), req))
        alone = [
            t.resource.entity_type.entity_set
            for _, t in targets
            if t.resource.entity_type is not None
            and t.resource.entity_type.entity_set in ALONE_IN_CHANGE_SET
        ]
        if alone and len(targets) > 1:
            error = BadRequest(
                f"A change set that contains a {alone[0]} request must contain only that one "
                "request"
            )
            return serialize_item(_batch_response(_refusal(outer, error)))
        current = outer
        try:
            async with self.store.begin(outer.actor) as unit:
                answers: list[BatchResponse] = []
                for req, target in targets:
                    current = req
                    answer = await self._answer(req, target, unit)
                    answers.append(_batch_response(answer, req))
                return serialize_item(answers)
        except _Refused as refused:
            return serialize_item(_batch_response(refused.answer, current))
        except (ODataError, DirectoryError) as exc:
            return serialize_item(_batch_response(_refusal(current, exc), current))
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
    return _batch_response(
        error_response(error, wants_json(request.headers, request.query)), request
    )


def _batch_response(answer: ODataResponse, request: ODataRequest | None = None) -> BatchResponse:
    """A part's answer carries the part's ``Content-ID`` back, so clients that match
    answers by it (SAP Cloud SDK, Olingo) find theirs ([MS-ODATA] §2.2.7.6.6)."""
    content_id = request.content_id if request is not None else None
    return BatchResponse(answer.status, answer.headers, answer.body, content_id)


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
