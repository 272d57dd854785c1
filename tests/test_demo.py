"""``partnergate demo`` (what ``make demo`` runs): the seed scenario's eight outcomes."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_scenario_behaves() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "partnergate", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for n in (1, 2):
        for sender in ("Sender_BASIC", "Sender_OAUTH", "Sender_CERT"):
            assert f"<Content>Receiver_{n} greets {sender}</Content>" in out
    assert "ok  an unmapped client certificate is refused: 401" in out
    assert "ok  Sender_BASIC claiming to be Sender_CERT is refused: 403" in out
    assert "8 of 8 messages behaved as expected" in out
    assert "BAD" not in out
    assert "POST /api/v1/CertificateUserMappings" in out
