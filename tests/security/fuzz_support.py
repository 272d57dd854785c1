"""What the fuzz tests share: one client that checks the property, and the strategies.

The property, for every request a fuzz test sends: an answer (no dropped connection, no
hang: the client waits up to 30 s), never a 5xx, and after a 4xx to a request that could
write, the Partner Directory as the API exports it is exactly what it was before.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from hypothesis import assume, note, settings
from hypothesis import strategies as st

from ..conftest import ADMIN_ROLE, Api, Server, start_server, stop_server

TIMEOUT = 30.0
"""Seconds a request may take before the fuzz test calls it a hang."""

SNAPSHOT_SETS = (
    "StringParameters",
    "BinaryParameters",
    "UserCredentialParameters",
    "AlternativePartners",
    "AuthorizedUsers",
    "Partners",
    "CertificateUserMappings",
    "CertificateMappingRules",
)
"""What a refused write must leave alone. The message log is not among them: a refused
message is logged, by design."""

CREDENTIALS = "UserCredentialParameters"
"""Listed only per partner (as SAP): exported partner by partner."""

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})


def refused(response: httpx.Response) -> bool:
    return 400 <= response.status_code < 500


class Hang(AssertionError):
    """The server did not answer within :data:`TIMEOUT`."""


class Target:
    """One running server under fuzz, with an admin's client and the last snapshot."""

    def __init__(self, server: Server, admin: Api, bearer: str) -> None:
        self.server = server
        self.admin = admin
        self.bearer = bearer
        """An admin OAuth client's access token: writes with it need no CSRF token."""
        self.directory_untouched = False
        """True where requests cannot write the Partner Directory (flows): the test
        compares the store once, before and after all its examples."""
        self.raw = httpx.Client(base_url=self.server.url, timeout=TIMEOUT)
        self.snapshot = self.take_snapshot()

    def __repr__(self) -> str:
        return f"Target({self.server.url})"

    @property
    def authorized(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer}"}

    def close(self) -> None:
        self.raw.close()
        self.admin.close()

    def take_snapshot(self) -> dict[str, list[str]]:
        """Every entity of every Partner Directory set, as the API exports it."""
        found = {name: self._export(name) for name in SNAPSHOT_SETS if name != CREDENTIALS}
        pids = [json.loads(row)["Pid"] for row in found["Partners"]]
        found[CREDENTIALS] = sorted(
            row for pid in pids for row in self._export(CREDENTIALS, f"Pid eq {quote(pid)}")
        )
        return found

    def _export(self, name: str, where: str | None = None) -> list[str]:
        rows: list[str] = []
        params = {"$format": "json", **({"$filter": where} if where else {})}
        url: str | None = name
        while url:
            r = self.admin.get(url, params=params if url == name else None)
            assert r.status_code == 200, f"snapshot of {name}: {r.status_code} {r.text}"
            d = r.json()["d"]
            rows += [json.dumps(e, sort_keys=True) for e in d["results"]]
            url = d.get("__next")
        return sorted(rows)

    def send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: Iterable[tuple[str, str | bytes]] | dict[str, str] | None = None,
        content: bytes | None = None,
        wrote_nothing: Callable[[httpx.Response], bool] | None = None,
        server_error_ok: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """Send one request; fail on a hang, a dropped connection, a 5xx, or a store that
        a refused write changed. ``wrote_nothing`` tells from an answer that nothing can
        have been written (default: a 4xx); ``server_error_ok`` names a 5xx that is the
        protocol's way to refuse (a SOAP 1.1 fault is sent with 500)."""
        writes = method.upper() in WRITE_METHODS and not self.directory_untouched
        request = self.raw.build_request(method, url, headers=headers, content=content)
        note(f"{request.method} {request.url.raw_path!r} headers={list(request.headers.raw)}")
        note(f"body={content[:2000]!r}" if content else "body=b''")
        try:
            response = self.raw.send(request)
        except httpx.LocalProtocolError:
            assume(False)  # httpx refuses to send it: not a request the server can get
            raise
        except httpx.TimeoutException as exc:
            raise Hang(f"no answer within {TIMEOUT} s to {method} {url!r}") from exc
        except httpx.TransportError as exc:
            before = self.snapshot
            if writes:
                self.snapshot = self.take_snapshot()
            changed = self.changes(before, self.snapshot)
            store = f"; the store changed: {changed}" if changed else ""
            raise AssertionError(f"connection dropped: {type(exc).__name__}: {exc}{store}") from exc
        note(f"-> {response.status_code} {response.text[:500]!r}")
        before = self.snapshot
        if writes:
            if response.status_code == 201 and "location" in response.headers:
                # the store stays small, and with it the snapshot, however long the run
                self.admin.delete(response.headers["location"])
            # taken before the checks, so that a failure leaves the next example a true base
            self.snapshot = self.take_snapshot()
        changed = self.changes(before, self.snapshot)
        if response.status_code >= 500 and not (server_error_ok and server_error_ok(response)):
            store = f"; the store changed: {changed}" if changed else ""
            raise AssertionError(f"{response.status_code}: {response.text[:2000]}{store}")
        if writes and (wrote_nothing or refused)(response):
            assert not changed, f"{response.status_code} but the store changed: {changed}"
        return response

    @staticmethod
    def changes(
        before: dict[str, list[str]], after: dict[str, list[str]]
    ) -> dict[str, tuple[list[str], list[str]]]:
        """Per entity set that differs: a few rows gone and a few rows new."""
        return {
            name: (
                sorted(set(before[name]) - set(after[name]))[:3],
                sorted(set(after[name]) - set(before[name]))[:3],
            )
            for name in SNAPSHOT_SETS
            if after[name] != before[name]
        }


def examples(ci: int) -> settings:
    """``ci`` examples in ``make test`` (where the profile's default is sized for the
    targets that write and are slow); the long profile's count under ``make fuzz``."""
    if os.environ.get("PARTNERGATE_FUZZ", "ci") == "ci":
        return settings(max_examples=ci)
    return settings()


# --- strategies ----------------------------------------------------------------------------

PRINTABLE_LATIN1 = st.characters(codec="latin-1", exclude_categories=("Cc",))
"""Characters a key may hold whatever the findings: printable, encodable in a header."""

ANY_TEXT_CHAR = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
"""Characters a non-key value may hold: any Unicode scalar but NUL (finding 11)."""

key_text = st.one_of(
    st.sampled_from(["FZ_A", "FZ_B", "fz_user", "ADDRESS", "x", ""]),
    st.text(PRINTABLE_LATIN1, max_size=12),
    st.text(string.ascii_letters + "_'%()=,", max_size=12),
)
value_text = st.one_of(st.text(ANY_TEXT_CHAR, max_size=40), st.just("v" * 4001))

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    value_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)

ENTITY_SETS = (
    "StringParameters",
    "BinaryParameters",
    "UserCredentialParameters",
    "AlternativePartners",
    "AuthorizedUsers",
    "Partners",
    "CertificateUserMappings",
    "CertificateMappingRules",
    "MessageProcessingLogs",
    "MessageProcessingLogAttachments",
)

PROPERTIES = {
    "StringParameters": ("Pid", "Id", "Value"),
    "BinaryParameters": ("Pid", "Id", "ContentType", "Value"),
    "UserCredentialParameters": ("Pid", "Id", "User", "Password"),
    "AlternativePartners": ("Agency", "Scheme", "Id", "Pid", "Hexagency", "Hexscheme", "Hexid"),
    "AuthorizedUsers": ("User", "Pid"),
    "Partners": ("Pid",),
    "CertificateUserMappings": ("Id", "User", "Certificate", "ValidUntil"),
    "CertificateMappingRules": (
        "Id",
        "Kind",
        "User",
        "SubjectDN",
        "IssuerDN",
        "SerialNumber",
        "Thumbprint",
    ),
    "MessageProcessingLogs": ("MessageGuid", "Status", "IntegrationFlowName", "LogStart"),
    "MessageProcessingLogAttachments": ("Id", "MessageGuid", "Name", "PayloadSize"),
}
KEYS = {
    "StringParameters": ("Pid", "Id"),
    "BinaryParameters": ("Pid", "Id"),
    "UserCredentialParameters": ("Pid", "Id"),
    "AlternativePartners": ("Hexagency", "Hexscheme", "Hexid"),
    "AuthorizedUsers": ("User",),
    "Partners": ("Pid",),
    "CertificateUserMappings": ("Id",),
    "CertificateMappingRules": ("Id",),
    "MessageProcessingLogs": ("MessageGuid",),
    "MessageProcessingLogAttachments": ("Id",),
}
AUDIT = ("CreatedBy", "CreatedTime", "LastModifiedBy", "LastModifiedTime")


def quote(text: str) -> str:
    """An OData string literal."""
    return "'" + text.replace("'", "''") + "'"


@st.composite
def key_predicate(draw: st.DrawFn, entity_set: str) -> str:
    """``(Pid='a',Id='b')`` and its near misses: wrong names, quotes, escapes, spacing."""
    names = list(KEYS[entity_set])
    style = draw(st.sampled_from(["named", "named", "single", "junk", "numbers"]))
    if style == "junk":
        return "(" + draw(st.text(string.printable.strip() + "é€", max_size=20)) + ")"
    values = [draw(key_text) for _ in names]
    quoted = [
        draw(st.sampled_from([quote(v), "'" + v + "'", v, quote(v) + "'", "%27" + v + "%27"]))
        for v in values
    ]
    if style == "numbers":
        quoted = [str(draw(st.integers())) for _ in names]
    if style == "single":
        return f"({quoted[0]})"
    if draw(st.booleans()):
        names = [draw(st.sampled_from([*names, "Pid", "pid", "Id ", "X"])) for _ in names]
    return "(" + ",".join(f"{n}={q}" for n, q in zip(names, quoted, strict=True)) + ")"


def entity_body(entity_set: str) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object for a write: the set's properties, some missing, some of the wrong
    type, some unknown, some read-only."""
    props = PROPERTIES[entity_set]
    key_like = set(KEYS[entity_set]) | {"Pid", "User", "Id"}

    def value_of(name: str) -> st.SearchStrategy[Any]:
        text = key_text if name in key_like else value_text
        if name == "Value" and entity_set == "BinaryParameters":
            text = st.one_of(
                st.sampled_from(["PGE+PC9hPg==", "", "====", "not base64!"]), value_text
            )
        return st.one_of(text, text, text, json_value)

    optional = {name: value_of(name) for name in props}
    extra = st.dictionaries(
        st.sampled_from([*AUDIT, "__metadata", "Nope", "Pid ", "d"]), json_value, max_size=2
    )
    return st.builds(
        lambda base, more: {**base, **more},
        st.fixed_dictionaries({}, optional=optional),
        extra,
    )


def start_target(tmp: Path, store: str, extra_env: dict[str, str] | None = None) -> Target:
    """A server of its own over ``store``, an admin OAuth client, and a few entities for
    keys to hit."""
    server = start_server(tmp, store, extra_env)
    try:
        server.add_client("fuzz_admin", "fuzz-secret", ADMIN_ROLE)
        token = httpx.post(
            server.url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("fuzz_admin", "fuzz-secret"),
            timeout=TIMEOUT,
        ).json()["access_token"]
        admin = Api(server)
        for set_name, body in SEED:
            r = admin.post(set_name, json=body)
            assert r.status_code == 201, r.text
        return Target(server, admin, token)
    except BaseException:
        stop_server(server)
        raise


def stop_target(target: Target) -> None:
    target.close()
    stop_server(target.server)


SEED = (
    ("StringParameters", {"Pid": "FZ_A", "Id": "ADDRESS", "Value": "https://r.example/a"}),
    ("StringParameters", {"Pid": "FZ_B", "Id": "x", "Value": "o" * 20}),
    ("BinaryParameters", {"Pid": "FZ_A", "Id": "x", "ContentType": "xml", "Value": "PGEvPg=="}),
    ("UserCredentialParameters", {"Pid": "FZ_A", "Id": "USER", "User": "u", "Password": "p"}),
    ("AuthorizedUsers", {"User": "fz_user", "Pid": "FZ_A"}),
    ("AlternativePartners", {"Agency": "FZ", "Scheme": "S", "Id": "x", "Pid": "FZ_B"}),
)
