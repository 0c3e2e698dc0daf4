"""The package's top level (axolotl_mipo/__init__.py): its version is the one pyproject.toml releases, and
CHANGELOG.md has a section for it. CI's wheel step checks the installed wheel's metadata against it."""

import re
import tomllib
from pathlib import Path

import pytest

import axolotl_mipo

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.fast
def test_version_is_pyprojects():
    with open(REPO / "pyproject.toml", "rb") as f:
        assert axolotl_mipo.__version__ == tomllib.load(f)["project"]["version"]


@pytest.mark.fast
def test_changelog_has_a_section_for_the_version_and_an_unreleased_one():
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[0] == "Unreleased", headings
    assert axolotl_mipo.__version__ in headings, f"CHANGELOG.md has no '## [{axolotl_mipo.__version__}]' section"
    for heading in headings[1:]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", heading), heading
        assert re.search(rf"^## \[{re.escape(heading)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text, flags=re.M), heading
