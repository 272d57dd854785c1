"""One real server for the operator's view: the seed's flows over HTTP, a TLS listener,
a listener for the scraper, JSON logs and the access log on; a monitoring user who may
read ``/metrics``."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import Api, Server, free_port, start_server, stop_server
from ..tls.conftest import made  # noqa: F401 - the development PKI, a fixture

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "partner-directory"
SEND = "/http/partner_directory"
MONITORING_ROLE = "partnergate.Monitoring"


@dataclass
class Observed:
    server: Server
    https_port: int
    basic: tuple[str, str]
    monitor: tuple[str, str]
    scraper_url: str
    """The listener of its own for ``/metrics`` (setting ``metrics_http``)."""

    def metrics(self) -> Metrics:
        r = httpx.get(self.server.url + "/metrics", auth=self.monitor, timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        return Metrics(r.text)

    def send(self, receiver: str, auth: tuple[str, str] | None = None) -> httpx.Response:
        return httpx.post(
            self.server.url + SEND,
            content=f"<Message><Receiver>{receiver}</Receiver></Message>".encode(),
            headers={"Content-Type": "text/xml"},
            auth=auth or self.basic,
            timeout=30,
        )


class Metrics:
    """A scrape, parsed with prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum over samples of ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def labels(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self.samples if s.name == name]


@pytest.fixture(scope="session")
def observed(
    tmp_path_factory: pytest.TempPathFactory,
    store_url: str,
    made: SimpleNamespace,  # noqa: F811
) -> Iterator[Observed]:
    https_port, scraper_port = free_port(), free_port()
    env = {
        "PARTNERGATE_METRICS_HTTP": f"127.0.0.1:{scraper_port}",
        "PARTNERGATE_FLOWS": str(EXAMPLES),
        "PARTNERGATE_HTTPS": f"127.0.0.1:{https_port}",
        "PARTNERGATE_TLS_CERT": str(made.server.cert_path),
        "PARTNERGATE_TLS_KEY": str(made.server.key_path),
        "PARTNERGATE_CLIENT_CA": str(made.ca.cert_path),
        "PARTNERGATE_LOG_FORMAT": "json",
        "PARTNERGATE_ACCESS_LOG": "true",
        "PARTNERGATE_HEADER_TIMEOUT": "2",
        # one process: its directory cache answers every message (a cache per worker
        # misses once in each); sums over workers are test_multiprocess's
        "PARTNERGATE_WORKERS": "1",
    }
    srv = start_server(tmp_path_factory.mktemp("observed"), store_url, env)
    try:
        basic = ("obs_sender_" + secrets.token_hex(3), secrets.token_urlsafe(10))
        srv.add_user(*basic, "ESBMessaging.send")
        monitor = ("obs_monitor_" + secrets.token_hex(3), secrets.token_urlsafe(10))
        srv.add_user(*monitor, MONITORING_ROLE)
        receiver_pw = secrets.token_urlsafe(10)
        srv.add_user("obs_receiver", receiver_pw, "receiver_1.send")
        with Api(srv) as api:
            api.delete("Partners('Receiver_1')")  # the store is shared across modules
            for pid, id_, value in (("Receiver_1", "ADDRESS", f"{srv.url}/cxf/receiver_1"),):
                body = {"Pid": pid, "Id": id_, "Value": value}
                assert api.post("StringParameters", json=body).status_code == 201
            body = {"Pid": "Receiver_1", "Id": "USER", "User": "obs_receiver"}
            body["Password"] = receiver_pw
            assert api.post("UserCredentialParameters", json=body).status_code == 201
            assert (
                api.post("AuthorizedUsers", json={"User": basic[0], "Pid": "Sender_OBS"})
            ).status_code == 201
        yield Observed(srv, https_port, basic, monitor, f"http://127.0.0.1:{scraper_port}")
    finally:
        stop_server(srv)
