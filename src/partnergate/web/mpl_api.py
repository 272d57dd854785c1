"""The message processing log's part of the OData service: reads that plain entity sets
do not cover, and flow log levels.

``MessageProcessingLogs`` (with ``$expand``, ``filterCustomHeaderProperties``, SAP's
constant and complex properties and ``__deferred`` links), its navigation properties
(``AdapterAttributes``, ``CustomHeaderProperties``, ``ErrorInformation``, ``Runs``),
``MessageProcessingLogRuns('<id>')/RunSteps``, and ``FlowLogLevels`` (our own: a flow's
log level, ``TRACE`` for ten minutes). The protocol shapes are :mod:`..odata.mpl`'s; the
reads are :mod:`..store.messagelog`'s.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..model.entities import (
    FLOW_LOG_LEVEL,
    MESSAGE_PROCESSING_LOG,
    MPL_ADAPTER_ATTRIBUTE,
    MPL_ERROR_INFORMATION,
    MPL_RUN,
    MPL_RUN_STEP,
    MPL_TYPES,
    EntityType,
)
from ..model.rules import prepare_key
from ..odata import atom, json_format, mpl
from ..odata.errors import BadRequest, MethodNotAllowed, NotFoundError
from ..odata.filter import PropertyRef
from ..odata.paths import Resource
from ..odata.query import QueryOptions, parse_query
from ..runtime.messagelog import LOG_LEVELS
from ..store import messagelog as store
from ..store.directory import Directory
from ..store.messagelog import ADAPTER, CUSTOM, PropertyMatch

if TYPE_CHECKING:
    from .odata_service import ODataRequest, ODataResponse, ODataService

TYPES = frozenset({MESSAGE_PROCESSING_LOG, FLOW_LOG_LEVEL, *MPL_TYPES})
SETS = tuple(t for t in (*MPL_TYPES, FLOW_LOG_LEVEL))
"""Entity sets this module adds to the service."""
READ_ONLY = frozenset(t.entity_set for t in MPL_TYPES)

JSON = "application/json"
DSV = {"DataServiceVersion": "2.0"}


def handles(resource: Resource) -> bool:
    if resource.entity_type not in TYPES:
        return False
    if resource.entity_type is MESSAGE_PROCESSING_LOG:
        kinds = ("collection", "entity", "count")
        return resource.kind in kinds or resource.kind.startswith("navigation:")
    return True


async def answer(
    service: ODataService,
    request: ODataRequest,
    resource: Resource,
    method: str,
    as_json: bool,
    directory: Directory | None = None,
) -> ODataResponse:
    """The answer for a resource :func:`handles`; a write runs in ``directory``'s
    transaction (the request's own, or its change set's)."""
    entity_type = resource.entity_type
    assert entity_type is not None
    if resource.key is not None:  # a key no store can hold (a NUL, too long) is 400
        resource = replace(resource, key=prepare_key(entity_type, resource.key))
    if entity_type is FLOW_LOG_LEVEL:
        return await _log_levels(service, request, resource, method, as_json, directory)
    if method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"{entity_type.entity_set} is read-only")
    await service.store.catch_up()
    reader = _Reader(service, request, as_json)
    if entity_type is MESSAGE_PROCESSING_LOG:
        if resource.kind == "collection":
            return await reader.logs()
        if resource.kind == "count":
            return await reader.count()
        key = str((resource.key or {})["MessageGuid"])
        if resource.kind == "entity":
            return await reader.log(key)
        return await reader.below_log(key, resource.kind.removeprefix("navigation:"))
    if resource.kind == "collection" or resource.kind == "count":
        raise BadRequest(
            f"{entity_type.entity_set} are read through MessageProcessingLogs('<guid>')"
            f"{'/Runs' if entity_type in (MPL_RUN, MPL_RUN_STEP) else ''}"
        )
    key = resource.key or {}
    if resource.kind.startswith("navigation:"):  # MessageProcessingLogRuns('<id>')/RunSteps
        guid = str(key["Id"])
        await reader.require(guid)
        return reader.few(MPL_RUN_STEP, await reader.run_steps(guid), "RunSteps")
    reader.single(entity_type)
    return await reader.by_key(entity_type, key)


class _Reader:
    def __init__(self, service: ODataService, request: ODataRequest, as_json: bool) -> None:
        self.service = service
        self.request = request
        self.as_json = as_json
        self.engine = service.store.engine
        self.base = service.settings.base_url

    def option(self, name: str) -> str | None:
        return next((v for k, v in self.request.query if k == name), None)

    def options(self, entity_type: EntityType, *, collection: bool) -> QueryOptions:
        query = []
        for k, v in self.request.query:
            if k in ("$expand", "filterCustomHeaderProperties"):
                continue
            if k == "$select" and entity_type is MESSAGE_PROCESSING_LOG:
                v = mpl.strip_select(v)[0] or v
            query.append((k, v))
        return parse_query(query, entity_type, collection=collection)

    def few(
        self, entity_type: EntityType, rows: list[dict[str, object]], what: str
    ) -> ODataResponse:
        """A feed of a message's few related entries, ``$orderby``, ``$skip``, ``$top`` and
        ``$inlinecount`` applied here; ``$filter`` and ``$expand`` are refused, not ignored."""
        self.no_expand(what)
        options = self.options(entity_type, collection=True)
        count = len(rows) if options.inlinecount else None
        return self.feed(entity_type, _narrow(rows, options, what), count)

    def single(self, entity_type: EntityType) -> None:
        """The options of a single entry below the log checked: no ``$top`` and the like."""
        self.no_expand(entity_type.entity_set)
        self.options(entity_type, collection=False)

    def no_expand(self, what: str) -> None:
        if self.option("$expand") not in (None, ""):
            raise BadRequest(f"$expand is offered on MessageProcessingLogs only, not on {what}")

    def select(self, entity_type: EntityType) -> list[str] | None:
        given = self.option("$select")
        if given is None or given.strip() in ("", "*"):
            return None
        return [s.strip() for s in given.split(",")]

    # -- message processing logs -------------------------------------------------------

    async def logs(self) -> ODataResponse:
        entity_type = MESSAGE_PROCESSING_LOG
        expand = mpl.parse_expand(self.option("$expand"), entity_type)
        having = self.having()
        options = self.options(entity_type, collection=True)
        page_size = self.service.settings.page_size
        start = (options.skip or 0) + (options.skiptoken or 0)
        wanted = None if options.top is None else max(0, options.top - (options.skiptoken or 0))
        limit = page_size if wanted is None else min(wanted, page_size)
        page = await store.list_logs(
            self.engine,
            filter=options.filter,
            orderby=options.orderby or (),
            top=limit + 1,
            skip=start,
            count=options.inlinecount,
            having=having,
        )
        rows = [_complete(r) for r in page.rows[:limit]]
        next_url = None
        if len(page.rows) > limit and (wanted is None or wanted > limit):
            next_url = self.service._next_link(
                self.request, entity_type, (options.skiptoken or 0) + limit
            )
        expanded = [await self.expansions(r, expand) for r in rows]
        return self.feed(entity_type, rows, page.count, next_url, expanded)

    def having(self) -> list[PropertyMatch]:
        given = self.option("filterCustomHeaderProperties")
        return [PropertyMatch(f.name, f.value) for f in mpl.parse_header_property_filter(given)]

    async def count(self) -> ODataResponse:
        """``MessageProcessingLogs/$count``, narrowed by ``filterCustomHeaderProperties`` too."""
        from .odata_service import ODataResponse

        options = self.options(MESSAGE_PROCESSING_LOG, collection=True)
        page = await store.list_logs(
            self.engine, filter=options.filter, top=0, count=True, having=self.having()
        )
        total = max(0, (page.count or 0) - (options.skip or 0))
        if options.top is not None:
            total = min(total, options.top)
        return ODataResponse(200, str(total).encode(), {"Content-Type": "text/plain", **DSV})

    async def log(self, guid: str) -> ODataResponse:
        expand = mpl.parse_expand(self.option("$expand"), MESSAGE_PROCESSING_LOG)
        self.options(MESSAGE_PROCESSING_LOG, collection=False)
        row = await self.require(guid)
        return self.entry(MESSAGE_PROCESSING_LOG, row, await self.expansions(row, expand))

    async def require(self, guid: str) -> dict[str, object]:
        row = await store.get_log(self.engine, guid)
        if row is None:
            raise NotFoundError(f"MessageProcessingLog (MessageGuid='{guid}') does not exist")
        return _complete(row)

    async def below_log(self, guid: str, name: str) -> ODataResponse:
        row = await self.require(guid)
        related = await self.related(row, name)
        nav = mpl.NAVIGATIONS[(MESSAGE_PROCESSING_LOG.name, name)]
        if isinstance(related, list):
            return self.few(nav.target, related, name)
        self.single(nav.target)
        if related is None:
            raise NotFoundError(f"MessageProcessingLog (MessageGuid='{guid}') has no {name}")
        return self.entry(nav.target, related)

    async def expansions(self, row: dict[str, object], names: list[str]) -> mpl.Expanded:
        out: mpl.Expanded = {}
        for name in names:
            nav = mpl.NAVIGATIONS[(MESSAGE_PROCESSING_LOG.name, name)]
            out[name] = (nav.target, await self.related(row, name))
        return out

    async def related(
        self, row: dict[str, object], name: str
    ) -> list[dict[str, object]] | dict[str, object] | None:
        guid = str(row["MessageGuid"])
        if name == "CustomHeaderProperties":
            found = await store.read_properties(self.engine, guid, CUSTOM)
            return [_custom_property(p) for p in found]
        if name == "AdapterAttributes":
            found = await store.read_properties(self.engine, guid, ADAPTER)
            return [_adapter_attribute(p) for p in found]
        if name == "ErrorInformation":
            if row.get("Status") != "FAILED":
                return None
            return {
                "MessageGuid": guid,
                "Type": "text/plain",
                "LastErrorModelStepId": row.get("_failed_step"),
            }
        if name == "Runs":
            steps = await store.read_steps(self.engine, guid)
            return [_run(row, steps)]
        raise NotFoundError(f"{name} is not served")

    async def run_steps(self, guid: str) -> list[dict[str, object]]:
        return [_run_step(guid, s) for s in await store.read_steps(self.engine, guid)]

    async def by_key(self, entity_type: EntityType, key: dict[str, object]) -> ODataResponse:
        """``MessageProcessingLogRuns('<id>')`` and the other sets below the log, by key."""
        if entity_type is MPL_RUN:
            guid = str(key["Id"])
            row = await self.require(guid)
            return self.entry(MPL_RUN, _run(row, await store.read_steps(self.engine, guid)))
        if entity_type is MPL_RUN_STEP:
            guid = str(key["RunId"])
            for step in await self.run_steps(guid):
                if step["ChildCount"] == key["ChildCount"]:
                    return self.entry(MPL_RUN_STEP, step)
        elif entity_type is MPL_ERROR_INFORMATION:
            guid = str(key["MessageGuid"])
            found = await self.related(await self.require(guid), "ErrorInformation")
            if isinstance(found, dict):
                return self.entry(entity_type, found)
        else:
            guid, _, seq = str(key["Id"]).rpartition(".")
            kind = "CustomHeaderProperties"
            if entity_type is MPL_ADAPTER_ATTRIBUTE:
                kind = "AdapterAttributes"
            row = await store.get_log(self.engine, guid) if guid else None
            if row is not None and seq.isdigit():
                for item in await self.related(row, kind) or []:  # type: ignore[union-attr]
                    if isinstance(item, dict) and item["Id"] == key["Id"]:
                        return self.entry(entity_type, item)
        raise NotFoundError(f"{entity_type.name} {key} does not exist")

    # -- answers -----------------------------------------------------------------------

    def _json_entity(self, entity_type: EntityType, values: dict[str, object]) -> dict[str, Any]:
        document = json.loads(json_format.entry_json(entity_type, values, self.base))
        return mpl.augment_json(
            entity_type, document["d"], values, self.base, {}, None, self._json_entity
        )

    def entry(
        self,
        entity_type: EntityType,
        values: dict[str, object],
        expanded: mpl.Expanded | None = None,
    ) -> ODataResponse:
        from .odata_service import ODataResponse

        select = self.select(entity_type)
        plain = mpl.strip_select(",".join(select))[0].split(",") if select else None
        expanded = expanded or {}
        if self.as_json:
            document = json.loads(json_format.entry_json(entity_type, values, self.base, plain))
            body = mpl.augment_json(
                entity_type,
                document["d"],
                values,
                self.base,
                expanded,
                select,
                self._json_entity,
            )
            return ODataResponse(200, mpl.dump({"d": body}), {"Content-Type": JSON, **DSV})
        raw = atom.entry_atom(entity_type, values, self.base, plain)
        body_bytes = mpl.augment_atom(
            entity_type, raw, [values], [expanded], select, self._feed_atom, self._entry_atom
        )
        return ODataResponse(
            200, body_bytes, {"Content-Type": "application/atom+xml;type=entry", **DSV}
        )

    def feed(
        self,
        entity_type: EntityType,
        rows: list[dict[str, object]],
        count: int | None = None,
        next_url: str | None = None,
        expanded: list[mpl.Expanded] | None = None,
    ) -> ODataResponse:
        from .odata_service import ODataResponse

        select = self.select(entity_type)
        plain = mpl.strip_select(",".join(select))[0].split(",") if select else None
        expanded = expanded or [{} for _ in rows]
        if self.as_json:
            document = json.loads(
                json_format.feed_json(entity_type, rows, self.base, plain, count, next_url)
            )
            results = document["d"]["results"]
            for entry, values, expand in zip(results, rows, expanded, strict=True):
                mpl.augment_json(
                    entity_type, entry, values, self.base, expand, select, self._json_entity
                )
            return ODataResponse(200, mpl.dump(document), {"Content-Type": JSON, **DSV})
        raw = atom.feed_atom(entity_type, rows, self.base, plain, count, next_url)
        body = mpl.augment_atom(
            entity_type, raw, rows, expanded, select, self._feed_atom, self._entry_atom
        )
        return ODataResponse(200, body, {"Content-Type": "application/atom+xml;type=feed", **DSV})

    def _feed_atom(self, entity_type: EntityType, rows: list[dict[str, object]]) -> bytes:
        raw = atom.feed_atom(entity_type, rows, self.base)
        return mpl.augment_atom(
            entity_type,
            raw,
            rows,
            [{} for _ in rows],
            None,
            self._feed_atom,
            self._entry_atom,
        )

    def _entry_atom(self, entity_type: EntityType, values: dict[str, object]) -> bytes:
        raw = atom.entry_atom(entity_type, values, self.base)
        return mpl.augment_atom(
            entity_type, raw, [values], [{}], None, self._feed_atom, self._entry_atom
        )


def _complete(row: dict[str, object]) -> dict[str, object]:
    """The entry with SAP's properties that no column holds."""
    row.update(store.derived(str(row.get("MessageGuid")), row.get("CorrelationId")))
    return row


def _custom_property(p: dict[str, Any]) -> dict[str, object]:
    return {"Id": f"{p['message_guid']}.{p['seq']}", "Name": p["name"], "Value": p["value"]}


def _adapter_attribute(p: dict[str, Any]) -> dict[str, object]:
    return {
        "Id": f"{p['message_guid']}.{p['seq']}",
        "AdapterId": p["adapter_id"],
        "AdapterMessageId": p["message_guid"],
        "Name": p["name"],
        "Value": p["value"],
    }


def _run(row: dict[str, object], steps: list[dict[str, Any]]) -> dict[str, object]:
    return {
        "Id": mpl.run_id(str(row["MessageGuid"])),
        "RunStart": row.get("LogStart"),
        "RunStop": row.get("LogEnd"),
        "LogLevel": row.get("LogLevel"),
        "OverallState": row.get("Status"),
        "ProcessId": row.get("MessageGuid"),
    }


def _run_step(guid: str, step: dict[str, Any]) -> dict[str, object]:
    start: datetime = step["step_start"]
    stop: datetime = step["step_stop"]
    return {
        "RunId": mpl.run_id(guid),
        "ChildCount": step["step_index"],
        "StepStart": start.replace(microsecond=start.microsecond // 1000 * 1000),
        "StepStop": stop.replace(microsecond=stop.microsecond // 1000 * 1000),
        "StepId": f"step{step['step_index']}",
        "ModelStepId": step["step_id"],
        "BranchId": "main",
        "Status": step["status"],
        "Error": step["error"],
        "Activity": step["kind"],
        "Summary": step["summary"],
        "DurationMicros": int((stop - start) / timedelta(microseconds=1)),
    }


def _narrow(
    rows: list[dict[str, object]], options: QueryOptions, what: str
) -> list[dict[str, object]]:
    """``$orderby``/``$skip``/``$top`` on a message's few related entries, in memory."""
    if options.filter is not None:
        if what == "CustomHeaderProperties":
            raise BadRequest(f"$filter on {what}: use filterCustomHeaderProperties")
        raise BadRequest(f"$filter is not offered on {what}")
    for order in reversed(options.orderby or ()):
        if not isinstance(order.expr, PropertyRef):
            raise BadRequest(f"$orderby on {what} takes property names")
        name = order.expr.name
        rows = sorted(rows, key=lambda r: _in_order(r.get(name)), reverse=order.descending)
    start = (options.skip or 0) + (options.skiptoken or 0)
    end = None if options.top is None else start + options.top
    return rows[start:end]


def _in_order(value: object) -> tuple[bool, Any]:
    """A sort key: null first, then the values (of one property, so of one type)."""
    return (value is not None, value if value is not None else 0)


# -- flow log levels ---------------------------------------------------------------------


async def _log_levels(
    service: ODataService,
    request: ODataRequest,
    resource: Resource,
    method: str,
    as_json: bool,
    directory: Directory | None,
) -> ODataResponse:
    from .odata_service import ODataResponse

    message_log = service.message_log
    if message_log is None:
        raise NotFoundError("FlowLogLevels are served by a running server only")
    reader = _Reader(service, request, as_json)
    if resource.kind == "collection" and method in ("GET", "HEAD"):
        await message_log.load_levels()
        rows = [
            _level_row(flow, level) for flow, level in sorted(message_log.levels.items().items())
        ]
        return reader.few(FLOW_LOG_LEVEL, rows, "FlowLogLevels")
    if resource.kind != "entity":
        raise MethodNotAllowed("use FlowLogLevels('<flow>')")
    flow = str((resource.key or {})["Flow"])
    if method in ("GET", "HEAD"):
        await message_log.load_levels()
        found = message_log.levels.items().get(flow)
        level = message_log.levels.level_of(flow)
        until = message_log.levels.expires(flow)
        row = {"Flow": flow, "LogLevel": level, "Until": until, "ChangedBy": None}
        if found is not None:
            row["ChangedBy"] = None
        return reader.entry(FLOW_LOG_LEVEL, row)
    if method not in ("PUT", "PATCH", "MERGE"):
        raise MethodNotAllowed(f"{method} is not allowed on FlowLogLevels; use PUT")
    deployed = service.flow_names() if service.flow_names is not None else None
    if deployed is not None and flow not in deployed:
        raise NotFoundError(f"No deployed flow '{flow}'; FlowLogLevels are set by a flow's name")
    values = service._parse_body(request, FLOW_LOG_LEVEL)
    level = str(values.get("LogLevel") or "").upper()
    if level not in LOG_LEVELS:
        raise BadRequest(f"LogLevel must be one of {', '.join(LOG_LEVELS)}")
    if values.get("Flow") not in (None, flow):
        raise BadRequest("Flow in the body differs from the key")
    assert directory is not None, "a write runs in a transaction"
    await message_log.set_level(flow, level, request.actor, directory.conn)
    return ODataResponse(204, b"", dict(DSV))


def _level_row(flow: str, level: tuple[str, datetime | None]) -> dict[str, object]:
    name, until = level
    expired = until is not None and until <= store.now()
    return {
        "Flow": flow,
        "LogLevel": "INFO" if expired else name,
        "Until": None if expired else until,
        "ChangedBy": None,
        "ChangedTime": None,
    }
