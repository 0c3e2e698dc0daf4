"""``axolotl mipo ...``: the plugin's commands inside Axolotl's own CLI.

Registered under the ``axolotl.cli_commands`` entry-point group (Axolotl >=
0.18: ``axolotl/cli/plugins.py``), so ``axolotl mipo generate CONFIG`` runs
what ``axolotl-mipo generate CONFIG`` runs. The argparse parser in
:mod:`axolotl_mipo.cli` stays the one definition of the subcommands and their
options: this click group lists its subparsers, and each click command hands
its arguments, unparsed, to that parser. A subcommand added there appears here
without an edit, ``axolotl mipo eval --help`` prints argparse's full help, and
no option is written twice.

Axolotl imports this module to render ``axolotl --help`` (a third-party command
has no summary in Axolotl's registry), so it imports only click and the
standard library at the top; ``axolotl_mipo.cli`` defers every heavy import
(torch, transformers, Axolotl's loaders) to the command that needs it.
"""

from __future__ import annotations

import click

from axolotl_mipo import cli

PROG = "axolotl mipo"


def subcommands() -> dict[str, str]:
    """``{name: help}`` of the argparse subcommands, in their declared order."""
    parser = cli.build_parser(PROG)
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return {choice.dest: choice.help or "" for action in actions for choice in action._choices_actions}


def _passthrough(name: str, help_text: str) -> click.Command:
    def run(args: tuple[str, ...]) -> None:
        # argparse exits by itself on --help or bad arguments (SystemExit, which click passes on)
        code = cli.main([name, *args], prog=PROG)
        click.get_current_context().exit(code or 0)

    return click.Command(
        name,
        callback=run,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        help=help_text,
        short_help=help_text,
        # every argument, --help included, belongs to the argparse subcommand
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
        add_help_option=False,
    )


class ArgparseGroup(click.Group):
    """A click group whose commands are :func:`axolotl_mipo.cli.build_parser`'s subcommands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(subcommands())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        helps = subcommands()
        return _passthrough(cmd_name, helps[cmd_name]) if cmd_name in helps else None


mipo = ArgparseGroup(
    name="mipo",
    help="axolotl-mipo's commands: generate pairs, evaluate, build the tiny or SmolLM2 model "
    "(the same as the axolotl-mipo executable).",
    short_help="axolotl-mipo: generate MIPO pairs, evaluate, build models",
)
