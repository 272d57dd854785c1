"""Settings come from defaults, a TOML file, PARTNERGATE_* variables and flags, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from partnergate.config import ConfigError, load_settings


def test_precedence(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('db = "sqlite:///file.db"\npage_size = 10\nhttp = "0.0.0.0:9000"\n')
    s = load_settings(f, {"http": "127.0.0.1:1"}, {"PARTNERGATE_PAGE_SIZE": "20"})
    assert (s.db, s.page_size, s.http) == ("sqlite:///file.db", 20, "127.0.0.1:1")
    assert load_settings(None, None, {}).db == "sqlite:///./partnergate.db"


@pytest.mark.parametrize(
    "text",
    ['page_size = "x"', "page_size = -1", 'metadata_style = "odd"', 'colour = "red"', "not toml ="],
)
def test_bad_settings_name_the_setting(tmp_path: Path, text: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text + "\n")
    with pytest.raises(ConfigError):
        load_settings(f, None, {})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", None, {})
