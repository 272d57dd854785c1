"""examples/partner-directory/replay.sh: the README's curl walk-through stays true."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import free_port

REPLAY = Path(__file__).resolve().parents[2] / "examples" / "partner-directory" / "replay.sh"


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-through is written for curl")
def test_replay_with_curl(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PARTNERGATE": f"{sys.executable} -m partnergate",
        "HTTP_PORT": str(free_port()),
        "HTTPS_PORT": str(free_port()),
    }
    done = subprocess.run(
        ["bash", str(REPLAY)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines.count("201 POST AuthorizedUsers") == 3
    assert "201 POST CertificateUserMappings" in lines
    for sender in ("Sender_BASIC", "Sender_OAUTH", "Sender_CERT"):
        assert f"<Content>Receiver_2 greets {sender}</Content>" in lines
    assert lines.count("<Content>Receiver_2 greets Sender_CERT</Content>") == 2
    assert '"partner":"Sender_CERT"' in lines[-1]
