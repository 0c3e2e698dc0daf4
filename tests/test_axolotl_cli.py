"""``axolotl mipo ...`` (axolotl_mipo.axolotl_cli) through Axolotl's own plugin-command group, tested the way
Axolotl's ``tests/cli/test_cli_plugins.py`` tests a plugin command: entry points patched to name ours."""

import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from axolotl_mipo import axolotl_cli, cli

REPO = Path(__file__).resolve().parents[1]
TARGET = "axolotl_mipo.axolotl_cli:mipo"


def _argparse_subcommands() -> list[str]:
    parser = cli.build_parser()
    return [name for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0]))
            for name in a.choices]


@pytest.fixture
def axolotl_group(monkeypatch):
    """Axolotl's ``PluginCommandGroup``, whose plugin commands come only from a patched ``mipo`` entry point."""
    from axolotl.cli import plugins

    monkeypatch.setattr(plugins, "BUILTIN_COMMANDS", {})
    monkeypatch.setattr(plugins, "entry_points",
                        lambda group: [EntryPoint(name="mipo", value=TARGET, group=group)])
    return plugins.PluginCommandGroup(name="axolotl")


def test_the_entry_point_is_declared_under_axolotls_group_and_is_a_click_group():
    with open(REPO / "pyproject.toml", "rb") as f:
        eps = tomllib.load(f)["project"]["entry-points"]
    from axolotl.cli.plugins import ENTRY_POINT_GROUP

    assert eps[ENTRY_POINT_GROUP] == {"mipo": TARGET}
    assert isinstance(axolotl_cli.mipo, click.Group)


def test_importing_the_entry_point_module_imports_no_torch():
    """Axolotl imports it to render ``axolotl --help``: that must stay fast."""
    code = ("import sys, axolotl_mipo.axolotl_cli as m; m.mipo.list_commands(None); "
            "print(sorted(k for k in ('torch', 'transformers', 'trl', 'axolotl', 'datasets', 'numpy') "
            "if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_axolotl_help_lists_mipo_and_mipo_help_lists_every_subcommand(axolotl_group):
    runner = CliRunner()
    result = runner.invoke(axolotl_group, ["--help"])
    assert result.exit_code == 0 and "mipo" in result.output
    result = runner.invoke(axolotl_group, ["mipo", "--help"])
    assert result.exit_code == 0, result.output
    names = _argparse_subcommands()
    assert {"generate", "eval", "make-tiny", "make-smollm2"} <= set(names)
    for name in names:
        assert name in result.output


def test_a_subcommands_options_are_argparses(axolotl_group):
    result = CliRunner().invoke(axolotl_group, ["mipo", "eval", "--help"])
    assert result.exit_code == 0, result.output
    assert "usage: axolotl mipo eval" in result.output
    for option in ("--adapter", "--k", "--preference-only"):
        assert option in result.output


def test_arguments_reach_the_argparse_command_unparsed(axolotl_group, monkeypatch):
    seen = []

    def fake_generate(args):
        seen.append(args)
        return 3

    monkeypatch.setattr(cli, "cmd_generate", fake_generate)
    result = CliRunner().invoke(axolotl_group, ["mipo", "generate", "run.yml", "--out", "pairs.jsonl"])
    assert result.exit_code == 3, result.output  # the command's own exit code
    assert len(seen) == 1 and seen[0].config == "run.yml" and seen[0].out == "pairs.jsonl"


def test_bad_arguments_get_argparses_error(axolotl_group):
    result = CliRunner().invoke(axolotl_group, ["mipo", "generate", "--nope"])
    assert result.exit_code == 2
    assert "axolotl mipo generate" in result.output and "the following arguments are required: config" in (
        result.output)


def test_unknown_subcommand_errors(axolotl_group):
    result = CliRunner().invoke(axolotl_group, ["mipo", "nope"])
    assert result.exit_code != 0 and "No such command" in result.output


def test_a_subcommand_added_to_the_argparse_parser_appears_without_an_edit(axolotl_group, monkeypatch):
    build = cli.build_parser

    def with_extra(prog="axolotl-mipo"):
        parser = build(prog)
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        extra = sub.add_parser("rounds-demo", help="a subcommand another change adds")
        extra.add_argument("--n", type=int, default=1)
        extra.set_defaults(fn=lambda args: 0 if args.n == 5 else 1)
        return parser

    monkeypatch.setattr(cli, "build_parser", with_extra)
    runner = CliRunner()
    assert "a subcommand another change adds" in runner.invoke(axolotl_group, ["mipo", "--help"]).output
    assert runner.invoke(axolotl_group, ["mipo", "rounds-demo", "--n", "5"]).exit_code == 0
    assert runner.invoke(axolotl_group, ["mipo", "rounds-demo"]).exit_code == 1


def test_axolotl_mipo_executable_still_works(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: axolotl-mipo") and all(name in out for name in _argparse_subcommands())
