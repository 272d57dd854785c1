"""``time-limit`` in flow files and the ``step_time_limit`` setting."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from partnergate.config import ConfigError, load_settings
from partnergate.runtime.errors import FlowError
from partnergate.runtime.flows import parse_flow

from ..conftest import start_server, stop_server
from .test_xml_door import LOOP_XSL


def flow(tmp_path: Path, text: str) -> object:
    (tmp_path / "loop.xsl").write_text(LOOP_XSL)
    (tmp_path / "s.py").write_text("def process(message, pd):\n    pass\n")
    return parse_flow(text, tmp_path / "f.yaml")


def test_a_step_limit_wins_over_the_flow_limit(tmp_path: Path) -> None:
    parsed = flow(
        tmp_path,
        "endpoint: /http/a\ntime-limit: 7\nsteps:\n"
        "  - xslt: loop.xsl\n"
        "  - xslt: {stylesheet: loop.xsl, time-limit: 0.5}\n"
        "  - script: s.py\n"
        "  - script: {file: s.py, time-limit: 3}\n",
    )
    assert [s.time_limit for s in parsed.steps] == [7, 0.5, 7, 3]  # type: ignore[attr-defined]
    parsed = flow(tmp_path, "endpoint: /http/a\nsteps:\n  - xslt: loop.xsl\n")
    assert parsed.steps[0].time_limit is None  # type: ignore[attr-defined]  # the setting


@pytest.mark.parametrize("value", ["0", "-1", "soon", "true", "[1]"])
def test_a_limit_must_be_a_positive_number(tmp_path: Path, value: str) -> None:
    with pytest.raises(FlowError) as flow_level:
        flow(tmp_path, f"endpoint: /http/a\ntime-limit: {value}\nsteps:\n  - xslt: loop.xsl\n")
    assert "time-limit" in str(flow_level.value) and flow_level.value.line == 2
    with pytest.raises(FlowError) as step_level:
        flow(
            tmp_path,
            f"endpoint: /http/a\nsteps:\n  - script: {{file: s.py, time-limit: {value}}}\n",
        )
    assert "time-limit" in str(step_level.value) and step_level.value.line == 3


def test_the_settings_are_positive_whole_numbers() -> None:
    settings = load_settings(environ={"PARTNERGATE_STEP_TIME_LIMIT": "3"})
    assert settings.step_time_limit == 3 and settings.xslt_workers == 2
    for name, value in (("STEP_TIME_LIMIT", "0"), ("XSLT_WORKERS", "many")):
        with pytest.raises(ConfigError):
            load_settings(environ={f"PARTNERGATE_{name}": value})


def test_the_setting_bounds_steps_without_a_limit_of_their_own(
    tmp_path: Path, store_url: str
) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "loop.xsl").write_text(LOOP_XSL)
    (folder / "loop.yaml").write_text("endpoint: /http/loop\nsteps:\n  - xslt: loop.xsl\n")
    srv = start_server(tmp_path, store_url, {
        "PARTNERGATE_FLOWS": str(folder), "PARTNERGATE_STEP_TIME_LIMIT": "1"
    })  # fmt: skip
    try:
        sender = (f"limit_{secrets.token_hex(4)}", secrets.token_urlsafe(10))
        srv.add_user(*sender, "ESBMessaging.send")
        r = httpx.post(srv.url + "/http/loop", content=b"<r/>", auth=sender, timeout=60)
        assert r.status_code == 504 and "within 1 s" in r.text, r.text
    finally:
        stop_server(srv)
