"""``make test`` on a machine without Chromium or nginx: installed where it may (root with
apt-get), otherwise a message naming what to install and a failure, never a silent skip.

The machine's own Chromium is hidden from the script by a bind mount in a mount namespace
of its own, and the script runs as ``nobody``, so nothing is installed by the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "system-deps.sh"


def test_make_test_checks_the_system_first() -> None:
    for target in ("test", "test-sqlite", "test-postgresql"):
        plan = subprocess.run(
            ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        assert "scripts/system-deps.sh" in plan, target
        assert plan.index("scripts/system-deps.sh") < plan.index("pytest"), target


def test_nothing_missing_is_quiet() -> None:
    if not (Path("/usr/bin/chromium").exists() and shutil.which("nginx", path="/usr/sbin")):
        pytest.skip("this machine lacks Chromium or nginx")
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_a_missing_browser_that_may_not_be_installed_is_named_and_fails() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root, unshare and setpriv to hide the browser")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("no Chromium to hide")
    hidden = (
        "mount --bind /dev/null /usr/bin/chromium && "
        f"exec setpriv --reuid=65534 --regid=65534 --clear-groups bash {SCRIPT}"
    )
    done = subprocess.run(["unshare", "-m", "sh", "-c", hidden], capture_output=True, text=True)
    if "mount" in done.stderr and "chromium" not in done.stderr:
        pytest.skip(f"no mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 1
    assert "apt-get install chromium" in done.stderr
    assert "nginx" not in done.stderr.split("apt-get install", 1)[1].splitlines()[0]
