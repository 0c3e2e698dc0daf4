"""The project's studies: task generators, runners, plans and committed results (not part of the wheel).

Run a study from the repository root as a module, e.g. ``python -m experiments.grid.run --help``;
``experiments/README.md`` lists them. Everything here may import ``axolotl_mipo``; the package never
imports ``experiments`` (``tests/test_layers.py`` checks both).
"""
