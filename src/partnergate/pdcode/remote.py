"""Any SAP-compatible ``/api/v1`` as source and target, spoken as SAP's clients speak it.

* Authentication: OAuth 2.0 client credentials (a token fetched from the token URL and
  fetched again once when a call answers 401) or HTTP Basic.
* CSRF: writes carry ``X-CSRF-Token`` fetched with ``GET /api/v1/`` and
  ``X-CSRF-Token: Fetch``; a 403 saying ``X-CSRF-Token: Required`` fetches a new one once.
* Reads: JSON verbose, following ``d.__next`` (SAP pages string parameters by 1,000 and
  binary parameters by 30); ``UserCredentialParameters`` only with ``$filter=Pid eq '…'``,
  SAP's one supported filter; their passwords compared through
  ``returnHashedPassword=SHA256``.
* Writes: ``$batch`` with one change set per request (SAP executes one change set per
  batch atomically), at most ``batch_size`` operations each; a user credential or
  certificate mapping always alone in its change set (SAP-doc 79c06dd). Creates are POST,
  updates PUT, except the sets where POST is SAP's upsert.
* Rate limits: 429 and 503 are retried after ``Retry-After`` or a doubling pause.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from ..model.entities import ENTITY_TYPES
from ..odata.values import entity_path
from ..security import certificates as certs
from . import files
from .plan import Binary, Certificates, Credential, Mapping, Op, Partner

BATCH_SIZE = 90
"""Operations per change set: FlashPipe's default."""

SINGLE_SETS = frozenset({"UserCredentialParameters", "CertificateUserMappings"})
UPSERT_SETS = SINGLE_SETS


class RemoteError(Exception):
    """The remote API refused a call or could not be reached."""


@dataclass
class Auth:
    user: str | None = None
    password: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)


@dataclass
class ChangeSetResult:
    number: int
    ops: list[Op]
    applied: bool
    error: str | None = None


@dataclass
class PushResult:
    change_sets: list[ChangeSetResult] = field(default_factory=list)

    @property
    def failed(self) -> ChangeSetResult | None:
        return next((c for c in self.change_sets if not c.applied), None)

    @property
    def applied(self) -> list[int]:
        return [c.number for c in self.change_sets if c.applied]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Remote:
    """A client of one ``/api/v1`` service root."""

    def __init__(
        self,
        url: str,
        auth: Auth,
        *,
        ca_file: str | None = None,
        batch_size: int = BATCH_SIZE,
        retries: int = 6,
        timeout: float = 60,
    ) -> None:
        self.root = url.rstrip("/") + "/"
        self.auth = auth
        self.batch_size = batch_size
        self.retries = retries
        verify: ssl.SSLContext | bool = True
        if ca_file:
            verify = ssl.create_default_context(cafile=ca_file)
        basic = (auth.user, auth.password or "") if auth.user else None
        self.client = httpx.AsyncClient(
            auth=basic, verify=verify, timeout=timeout, headers={"Accept": "application/json"}
        )
        self._token: str | None = None
        self._csrf: str | None = None
        self._alternatives: dict[tuple[str, str, str], str] | None = None
        self._users: dict[str, str] | None = None

    async def __aenter__(self) -> Remote:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    # -- calls ---------------------------------------------------------------------------

    async def _fetch_token(self) -> None:
        assert self.auth.token_url
        form = {
            "grant_type": "client_credentials",
            "client_id": self.auth.client_id or "",
            "client_secret": self.auth.client_secret or "",
        }
        response = await self._send("POST", self.auth.token_url, data=form, auth=None)
        if response.status_code != 200:
            raise RemoteError(f"token URL answered {response.status_code}: {_message(response)}")
        try:
            self._token = str(response.json()["access_token"])
        except (ValueError, KeyError):
            raise RemoteError("token URL answered without an access_token") from None

    async def _send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """One call, retried on 429/503 after the pause the server asks for."""
        pause = 1.0
        for attempt in range(self.retries + 1):
            try:
                response = await self.client.request(method, url, **kw)
            except httpx.HTTPError as exc:
                raise RemoteError(f"{method} {url}: {exc}") from None
            if response.status_code not in (429, 503) or attempt == self.retries:
                return response
            wait = _retry_after(response) or pause
            pause = min(pause * 2, 60)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        for attempt in range(2):
            if self.auth.token_url and self._token is None:
                await self._fetch_token()
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            if method != "GET" and self._csrf is None:
                await self._fetch_csrf()
            if method != "GET" and self._csrf:
                headers["X-CSRF-Token"] = self._csrf
            response = await self._send(method, url, headers=headers, **kw)
            if attempt == 0 and response.status_code == 401 and self.auth.token_url:
                self._token = None
                continue
            if (
                attempt == 0
                and response.status_code == 403
                and response.headers.get("x-csrf-token", "").lower() == "required"
            ):
                self._csrf = None
                continue
            return response
        return response

    async def _fetch_csrf(self) -> None:
        headers = {"X-CSRF-Token": "Fetch"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        response = await self._send("GET", self.root, headers=headers)
        if response.status_code in (401, 403):
            raise RemoteError(f"{self.root} refused the credentials ({response.status_code})")
        self._csrf = response.headers.get("x-csrf-token") or ""

    async def get_json(self, url: str, params: dict[str, str] | None = None) -> Any:
        response = await self.request("GET", url, params=params)
        if response.status_code != 200:
            raise RemoteError(f"GET {url} answered {response.status_code}: {_message(response)}")
        try:
            return response.json()["d"]
        except (ValueError, KeyError):
            raise RemoteError(f"GET {url}: not an OData JSON answer") from None

    async def collection(
        self, entity_set: str, filter_: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every entity of a collection, page after page as the server gives them."""
        params = {"$format": "json"}
        if filter_:
            params["$filter"] = filter_
        url: str | None = self.root + entity_set
        first = True
        while url is not None:
            d = await self.get_json(url, params if first else None)
            first = False
            for row in d.get("results", []) if isinstance(d, dict) else d:
                yield row
            following = d.get("__next") if isinstance(d, dict) else None
            url = urljoin(self.root, following) if following else None

    # -- the Target protocol ---------------------------------------------------------------

    async def all_pids(self) -> list[str]:
        return sorted({str(r["Pid"]) async for r in self.collection("Partners")})

    async def partners(self, pids: list[str]) -> dict[str, Partner]:
        out: dict[str, Partner] = {}
        for pid in pids:
            partner = await self._partner(pid)
            if not partner.is_empty():
                out[pid] = partner
        return out

    async def _partner(self, pid: str, *, hashed: bool = True) -> Partner:
        partner = Partner(pid)
        where = f"Pid eq {_quote(pid)}"
        async for r in self.collection("StringParameters", where):
            partner.strings[r["Id"]] = r["Value"]
        async for r in self.collection("BinaryParameters", where):
            partner.binaries[r["Id"]] = _binary(r)
        async for r in self.collection("AlternativePartners", where):
            partner.alternatives.add((r["Agency"], r["Scheme"], r["Id"]))
        async for r in self.collection("AuthorizedUsers", where):
            partner.users.add(r["User"])
        async for r in self.collection("UserCredentialParameters", where):
            password = None
            if hashed:
                key = {"Pid": pid, "Id": r["Id"]}
                path = entity_path(ENTITY_TYPES["UserCredentialParameters"], key)
                d = await self.get_json(
                    self.root + path, {"returnHashedPassword": "SHA256", "$format": "json"}
                )
                password = d.get("Password")
            partner.credentials[r["Id"]] = Credential(r["User"], password)
        return partner

    async def everything(self, pids: Iterable[str] | None = None) -> list[Partner]:
        """What a pull writes: whole collections at once when all Pids are wanted."""
        if pids is not None:
            found = []
            for pid in sorted(set(pids)):
                partner = await self._partner(pid, hashed=False)
                if not partner.is_empty():
                    found.append(partner)
            return found
        out: dict[str, Partner] = {}

        def get(pid: str) -> Partner:
            return out.setdefault(pid, Partner(pid))

        async for r in self.collection("StringParameters"):
            get(r["Pid"]).strings[r["Id"]] = r["Value"]
        async for r in self.collection("BinaryParameters"):
            get(r["Pid"]).binaries[r["Id"]] = _binary(r)
        async for r in self.collection("AlternativePartners"):
            get(r["Pid"]).alternatives.add((r["Agency"], r["Scheme"], r["Id"]))
        async for r in self.collection("AuthorizedUsers"):
            get(r["Pid"]).users.add(r["User"])
        for pid in await self.all_pids():
            async for r in self.collection("UserCredentialParameters", f"Pid eq {_quote(pid)}"):
                get(pid).credentials[r["Id"]] = Credential(r["User"])
        return [out[pid] for pid in sorted(out)]

    async def owners(
        self, alternatives: set[tuple[str, str, str]], users: set[str]
    ) -> tuple[dict[tuple[str, str, str], str], dict[str, str]]:
        if alternatives and self._alternatives is None:
            self._alternatives = {
                (r["Agency"], r["Scheme"], r["Id"]): r["Pid"]
                async for r in self.collection("AlternativePartners")
            }
        if users and self._users is None:
            self._users = {r["User"]: r["Pid"] async for r in self.collection("AuthorizedUsers")}
        alt = {k: v for k, v in (self._alternatives or {}).items() if k in alternatives}
        usr = {k: v for k, v in (self._users or {}).items() if k in users}
        return alt, usr

    async def certificates(self) -> Certificates | None:
        out = Certificates()
        response = await self.request("GET", self.root + "CertificateUserMappings",
                                      params={"$format": "json"})  # fmt: skip
        if response.status_code == 404:
            return None
        async for r in self.collection("CertificateUserMappings"):
            pem = files.pem_text(certs.load_certificate(r["Certificate"]))
            out.mappings[r["Id"]] = Mapping(r["User"], pem)
        probe = await self.request("GET", self.root + "CertificateMappingRules",
                                   params={"$format": "json"})  # fmt: skip
        if probe.status_code == 200:
            async for r in self.collection("CertificateMappingRules"):
                out.rules[r["Id"]] = {
                    k: str(r[k]) for k in files.RULE_FIELDS if r.get(k) not in (None, "")
                }
        return out

    # -- writing ---------------------------------------------------------------------------

    def change_sets(self, ops: list[Op]) -> list[list[Op]]:
        out: list[list[Op]] = []
        current: list[Op] = []
        for op in ops:
            if op.entity_set in SINGLE_SETS:
                if current:
                    out.append(current)
                    current = []
                out.append([op])
                continue
            current.append(op)
            if len(current) >= self.batch_size:
                out.append(current)
                current = []
        if current:
            out.append(current)
        return out

    async def push(self, ops: list[Op]) -> PushResult:
        """Apply the plan change set by change set; stop at the first that fails."""
        result = PushResult()
        for number, change_set in enumerate(self.change_sets(ops), 1):
            error = await self._apply(change_set)
            result.change_sets.append(ChangeSetResult(number, change_set, error is None, error))
            if error is not None:
                break
        return result

    async def _apply(self, ops: list[Op]) -> str | None:
        batch = "batch_" + uuid.uuid4().hex
        body = batch_body(batch, ops)
        response = await self.request(
            "POST",
            self.root + "$batch",
            content=body,
            headers={"Content-Type": f"multipart/mixed; boundary={batch}"},
        )
        if response.status_code != 202:
            return f"$batch answered {response.status_code}: {_message(response)}"
        statuses = [int(s) for s in _STATUS_LINE.findall(response.content)]
        if len(statuses) == len(ops) and all(200 <= s < 300 for s in statuses):
            return None
        return _batch_error(response.content) or f"change set answered {statuses}"


_STATUS_LINE = re.compile(rb"(?m)^HTTP/1\.[01] (\d{3})")


def request_for(op: Op) -> tuple[str, str, dict[str, object] | None]:
    """Method, path relative to the service root, and JSON body of one operation."""
    entity_type = ENTITY_TYPES[op.entity_set]
    if op.action == "delete":
        return "DELETE", entity_path(entity_type, op.key), None
    body = {k: _json(v) for k, v in op.values.items()}
    if op.action == "create" or op.entity_set in UPSERT_SETS:
        if op.entity_set == "CertificateUserMappings":
            cert = certs.load_certificate(str(op.values["Certificate"]))
            body["Certificate"] = certs.pem_base64(cert)
        return "POST", op.entity_set, body
    return "PUT", entity_path(entity_type, op.key), body


def _json(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def batch_body(boundary: str, ops: list[Op]) -> bytes:
    """One change set in a ``$batch`` body, as SAP's documented example lays it out."""
    change_set = "changeset_" + uuid.uuid4().hex
    lines = [f"--{boundary}", f"Content-Type: multipart/mixed; boundary={change_set}", ""]
    for number, op in enumerate(ops, 1):
        method, path, body = request_for(op)
        lines += [
            f"--{change_set}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {number}",
            "",
            f"{method} {path} HTTP/1.1",
            "Accept: application/json",
        ]
        if body is not None:
            lines += ["Content-Type: application/json", "", json.dumps(body)]
        else:
            lines += [""]
        lines.append("")
    lines += [f"--{change_set}--", f"--{boundary}--", ""]
    return "\r\n".join(lines).encode()


def _batch_error(content: bytes) -> str | None:
    for match in re.finditer(rb'\{"error".*\}', content):
        try:
            error = json.loads(match.group(0))["error"]
            return str(error["message"]["value"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _binary(row: dict[str, Any]) -> Binary:
    return Binary(str(row["ContentType"]), base64.b64decode(row["Value"] or ""))


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"]["value"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return min(float(value), 120.0)
    except ValueError:
        return None
