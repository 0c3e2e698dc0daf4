"""POPI's trained summarizer (arXiv 2510.17881): GRPO on preference summaries, rewarded by a frozen generator.

A layer above the trainer: it reads rows and builds summary prompts (data), scores responses with a frozen
model (evaluation's scorer) and plugs into Axolotl's GRPO trainer. Nothing below imports it.

* :mod:`axolotl_mipo.popi.reward` — ``popi_reward``, the reward function Axolotl loads by dotted path;
* :mod:`axolotl_mipo.popi.data` — the GRPO dataset: one row per (user history, held-out human pair);
* :mod:`axolotl_mipo.popi.args` — the ``popi:`` block;
* :mod:`axolotl_mipo.popi.plugin` — ``POPIPlugin`` (``axolotl_mipo.POPIPlugin``), for ``rl: grpo``.
"""
