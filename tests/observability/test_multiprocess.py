"""Metrics with several processes: any process answers ``/metrics`` for all of them.

The first test does what ``serve --workers N`` does: the parent imports partnergate,
calls :func:`partnergate.metrics.prepare_workers`, forks workers, and calls
:func:`~partnergate.metrics.worker_exited` for one that ends. The second runs two real
servers that share the directory and scrapes one for what the other did.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import Api, start_server, stop_server
from .conftest import MONITORING_ROLE, Metrics

FORKED = r"""
import json, os, sys
from partnergate import metrics  # imported before the directory is set, as in serve

metrics.prepare_workers(sys.argv[1])
metrics.message_finished("before-fork", "COMPLETED")  # the parent's own, if any

children = []
for n in (1, 2):
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for _ in range(n * 10):
            metrics.message_finished("flow", "COMPLETED")
        metrics.connections_open("http://x", n * 100)
        metrics.sync()  # what each worker's run_sync does every second
        os.write(ready_w, b"1")
        os.read(go_r, 1)
        os._exit(0)
    os.read(ready_r, 1)
    children.append((pid, go_w))

def scrape():
    return metrics.exposition().decode()

both = scrape()
first_pid, first_go = children[0]
os.write(first_go, b"1")
os.waitpid(first_pid, 0)
metrics.worker_exited(first_pid)
one = scrape()
second_pid, second_go = children[1]
os.write(second_go, b"1")
os.waitpid(second_pid, 0)
print(json.dumps({"both": both, "one": one}))
"""


def test_forked_workers_add_up(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORKED, str(tmp_path / "metrics")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    both, one = Metrics(out["both"]), Metrics(out["one"])
    messages = "partnergate_messages_total"
    assert both.value(messages, flow="flow", status="COMPLETED") == 30
    assert both.value(messages, flow="before-fork") == 1
    connections = "partnergate_open_connections"
    assert both.value(connections, listener="http://x") == 300
    # the ended worker's messages still count; its open connections no longer do
    assert one.value(messages, flow="flow", status="COMPLETED") == 30
    assert one.value(connections, listener="http://x") == 200
    list(text_string_to_metric_families(out["both"]))  # well-formed


def test_two_servers_sharing_the_directory(tmp_path: Path, store_url: str) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    first = start_server(tmp_path, store_url, env)
    try:
        second = start_server(tmp_path, store_url, env)
        try:
            monitor = ("mp_monitor", "mp-monitor-pw-1")
            first.add_user(*monitor, MONITORING_ROLE)

            def scrape(server):  # type: ignore[no-untyped-def]
                r = httpx.get(server.url + "/metrics", auth=monitor, timeout=30)
                assert r.status_code == 200, r.text
                return Metrics(r.text)

            name = "partnergate_api_requests_total"
            labels = {"entity_set": "Partners", "method": "GET", "status": "200"}
            before = scrape(second).value(name, **labels)
            with Api(first) as api:
                for _ in range(3):
                    assert api.get("Partners").status_code == 200
            # the second server answers for the first one's requests too, within a second
            deadline = time.monotonic() + 5
            while scrape(second).value(name, **labels) < before + 3:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert scrape(second).value(name, **labels) == before + 3
            assert scrape(first).value(name, **labels) == before + 3
            listeners = {
                s["listener"] for s in scrape(second).labels("partnergate_open_connections")
            }
            assert {first.url, second.url} <= listeners
        finally:
            stop_server(second)
    finally:
        stop_server(first)
