"""docs/ui: the README shows every screenshot there is, and ``make screenshots`` makes
each of them again, at the window size its name says."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_the_script_makes_every_screenshot_the_readme_shows(tmp_path: Path) -> None:
    shown = set(re.findall(r"\(docs/ui/([\w-]+\.png)\)", (ROOT / "README.md").read_text()))
    kept = {p.name for p in (ROOT / "docs" / "ui").glob("*.png")}
    assert shown == kept, "README and docs/ui differ"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshots.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    made = {p.name for p in tmp_path.glob("*.png")}
    assert made == kept
    for name in made:
        size = name.removesuffix(".png").rsplit("-", 1)[1]
        assert png_size(tmp_path / name) == SIZES[size], name
    assert {n.rsplit("-", 1)[0] for n in made if n.endswith("-desktop.png")} | {"menu"} == {
        n.rsplit("-", 1)[0] for n in made if n.endswith("-phone.png")
    }
