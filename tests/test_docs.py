"""The documentation: the generated config reference is current, the README stays short, every page is in the nav.

The site itself is built in strict mode by `.ci/run` (`bash scripts/docs.sh build`), which fails on a broken link,
anchor or nav entry; these tests cover what that build cannot see.
"""

import dataclasses
import importlib.util
import re
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, Field

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.fast


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_docs", REPO / "scripts" / "gen_config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_what_the_generator_writes():
    committed = (REPO / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    assert committed == _generator().render(), (
        "docs/reference/config.md is out of date with the option declarations: run python scripts/gen_config_docs.py"
    )


def _table_rows(page: str, heading: str) -> dict[str, list[str]]:
    """``{key: cells}`` of the table under the ``## heading`` that starts with ``heading``."""
    section = page.split("\n## " + heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_config_reference_lists_every_option_with_its_declaration():
    """Every key of both blocks and every training-argument field has its row, with its default and choices; the
    loss options, declared once as training-argument fields, say the same in the mipo: block."""
    from axolotl_mipo.args import MIPOConfig, MIPOTrainingArgsMixin
    from axolotl_mipo.popi.args import POPIConfig

    page = _generator().render()
    mipo, popi = _table_rows(page, "`mipo`:"), _table_rows(page, "`popi`:")
    assert set(mipo) == set(MIPOConfig.model_fields) and set(popi) == set(POPIConfig.model_fields)
    args = _table_rows(page, "Training arguments")
    mixin = {f.name: f for f in dataclasses.fields(MIPOTrainingArgsMixin)}
    assert set(args) == set(mixin)
    for name, f in mixin.items():
        key = name[len("mipo_"):]
        block = MIPOConfig.model_fields[key]
        assert block.default == f.default and block.description == f.metadata["help"], key
        assert args[name][1] == f"`{key}`" and args[name][3] == mipo[key][2], key
        assert args[name][4] == mipo[key][3], key
        choices = f.metadata.get("choices")
        if choices:
            assert typing.get_args(block.annotation) == choices, key
            assert mipo[key][3] == ", ".join(f"`{c}`" for c in choices), key


def test_loss_options_are_enforced_as_the_reference_states_them():
    """What the page says of each loss option (its default, choices and bounds: the training-argument field's
    metadata) is what the trainer's settings and the checks apply. Moved here from tests/test_args.py, where it
    compared the same declarations with the README's hand-written table."""
    from axolotl_mipo.args import MIPOLossSettings, MIPOTrainingArgsMixin, training_args_from_config
    from axolotl_mipo.errors import MIPOConfigError

    defaults = MIPOLossSettings.from_args(None)
    for f in dataclasses.fields(MIPOTrainingArgsMixin):
        key = f.name[len("mipo_"):]
        assert getattr(defaults, key) == f.default, key
        if f.metadata.get("choices"):
            with pytest.raises(MIPOConfigError, match=f"mipo.{key}"):
                training_args_from_config({key: "not-a-choice"})
        for bound, below in (("gt", 0.0), ("ge", -1.0)):
            if bound in f.metadata:
                with pytest.raises(MIPOConfigError, match=key):
                    training_args_from_config({key: f.metadata[bound] + below})


def test_generator_walks_any_model_generically():
    """A model it has never seen: nested models get their own linked table, once; bounds, choices, defaults,
    default factories and json_schema_extra all reach the page."""

    class Inner(BaseModel):
        """An inner block."""

        size: int = Field(default=3, ge=1, le=9, description="how many")

    class Outer(BaseModel):
        """The outer block."""

        mode: typing.Literal["a", "b"] = Field(default="a", description="a | b", json_schema_extra={"presets": ["x"]})
        inner: Inner = Field(default_factory=Inner)
        inners: list[Inner] | None = None
        path: str = Field(description="required path")
        template: str = "{x}\n\n{y}"

    doc = _generator()._Doc()
    doc.model("blk", Outer)
    page = "\n".join(doc.sections)
    assert page.count("## `blk.inner`: Inner") == 1 and "## `blk.inners" not in page
    rows = _table_rows("\n" + page, "`blk`:")
    assert rows["mode"][1:5] == ["str", "`a`", "`a`, `b`", 'a \\| b; presets: ["x"]']
    assert rows["inner"][1:3] == ["[Inner](#blkinner-inner)", "see its table"]
    assert rows["inners"][1] == "list[[Inner](#blkinner-inner)] \\| null"
    assert rows["path"][2] == "required" and rows["template"][2] == '`"{x}\\n\\n{y}"`'
    assert _table_rows("\n" + page, "`blk.inner`")["size"][1:4] == ["int", "`3`", ">= 1, &lt;= 9"]


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the details to a page under docs/"
    first_block = lines[lines.index("```bash") + 1:lines.index("```")]
    assert lines.index("```bash") <= 2, "the README's first lines must be the fresh-machine commands"
    assert [cmd.split("#")[0].strip() for cmd in first_block] == [
        "bash scripts/demo_smollm2_cpu.sh", "bash scripts/test.sh"]
    assert "MIPO_STACK=0.21" in "\n".join(lines[:12])


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for v in nav.values() for p in _nav_pages(v)]
    return [p for item in nav for p in _nav_pages(item)]


def test_every_page_is_in_the_nav():
    """mkdocs only reports a page missing from the nav (info): a page nobody can reach fails here."""
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *_: None)  # mkdocs.yml's !!python/name
    config = yaml.load((REPO / "mkdocs.yml").read_text(encoding="utf-8"), Loader=loader)
    assert config["strict"] is True
    nav = _nav_pages(config["nav"])
    pages = sorted(p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md"))
    assert sorted(nav) == pages
