"""One OData request as plain data, and what it asks for: method, resource, body format.

Sans-I/O. A request that arrives on its own and a part of a ``$batch`` become the same
:class:`ODataRequest` here, so everything after this module treats them alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from ..model.entities import EntityType
from . import json_format
from .batch import BatchPart
from .errors import ODataError
from .paths import Resource, parse_resource, request_target

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})
TUNNELLED = frozenset({"MERGE", "PATCH", "PUT", "DELETE"})
"""Methods SAP's clients tunnel through a POST with ``X-HTTP-Method``."""


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
    content_id: str | None = None
    """A ``$batch`` part's ``Content-ID``, echoed in its answer ([MS-ODATA] §2.2.7.6.6)."""


@dataclass(frozen=True)
class Target:
    """What a request addresses and does, before any data is touched."""

    resource: Resource
    method: str
    """After SAP's ``X-HTTP-Method`` tunnelling of a POST."""

    @property
    def writes(self) -> bool:
        return self.method in WRITE_METHODS

    @property
    def entity_type(self) -> EntityType | None:
        return self.resource.entity_type


def method_of(request: ODataRequest) -> str:
    """The method, after SAP's ``X-HTTP-Method`` tunnelling of a POST."""
    tunnelled = request.headers.get("x-http-method", "").upper()
    if request.method == "POST" and tunnelled in TUNNELLED:
        return tunnelled
    return request.method


def target(request: ODataRequest, served: Mapping[str, EntityType]) -> Target:
    return Target(parse_resource(request.path, served), method_of(request))


def _format_option(query: list[tuple[str, str]]) -> str | None:
    return next((v for k, v in query if k == "$format"), None)


def answers_json(request: ODataRequest) -> bool:
    """The body format the request asks for; 406 for a ``$format`` we do not offer."""
    return json_format.negotiate(request.headers.get("accept"), _format_option(request.query)) == (
        "json"
    )


def wants_json(headers: Mapping[str, str], query: list[tuple[str, str]]) -> bool:
    """Whether an error body is JSON. Never raises: with an unknown ``$format`` the error
    (406) is written as ``Accept`` asks, so every refusal has an OData body."""
    try:
        return json_format.negotiate(headers.get("accept"), _format_option(query)) == "json"
    except ODataError:
        return json_format.negotiate(headers.get("accept"), None) == "json"


SERVICE_ROOT = "/api/v1/"


def part_request(outer: ODataRequest, part: BatchPart, base_url: str) -> ODataRequest:
    """A ``$batch`` part as a request of its own: relative to the service root, or
    absolute (the service root's URL, or a path that holds it)."""
    url = part.url
    if url.startswith(base_url):
        url = url[len(base_url) :]
    elif url.startswith("/") and SERVICE_ROOT in url:
        url = url.split(SERVICE_ROOT, 1)[1]
    path, _, query = url.partition("?")
    return ODataRequest(
        method=part.method.upper(),
        path=request_target(path.encode("utf-8")),
        query=parse_qsl(query, keep_blank_values=True),
        headers={k.lower(): v for k, v in part.headers.items()},
        body=part.body,
        actor=outer.actor,
        content_id=part.content_id,
    )
