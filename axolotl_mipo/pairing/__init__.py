"""Pairing strategies: which two generations become the chosen and rejected response of each DPO pair.

Public API: :class:`PairingStrategy` (subclass it to add a strategy),
:class:`GenRequest`, :class:`Pair`, :func:`register_strategy`,
:func:`get_strategy`, :func:`available_strategies`, and the reusable
:func:`constrained_derangement`. Built-ins: ``drop_context`` (default),
``swap_context``, ``mismatched_prompt``, ``partial_prompt``
(:mod:`~axolotl_mipo.pairing.prompts`), ``nearest_context`` (hard negatives,
:mod:`~axolotl_mipo.pairing.nearest`) and ``mixture`` (several strategies with
weights, :mod:`~axolotl_mipo.pairing.mixing`; :func:`build_strategy` turns
``mipo.strategy`` into a strategy). Contributors test a new strategy with
:mod:`axolotl_mipo.testing.pairing_checks`; see CONTRIBUTING.md.
"""

from axolotl_mipo.pairing.base import GenRequest, Pair, PairingStrategy
from axolotl_mipo.pairing.derangement import constrained_derangement
from axolotl_mipo.pairing.mixing import Mixture, build_strategy
from axolotl_mipo.pairing.nearest import NearestContext
from axolotl_mipo.pairing.prompts import PartialPrompt
from axolotl_mipo.pairing.registry import available_strategies, get_strategy, register_strategy
from axolotl_mipo.pairing.strategies import DropContext, MismatchedPrompt, SwapContext

__all__ = [
    "DropContext",
    "GenRequest",
    "MismatchedPrompt",
    "Mixture",
    "NearestContext",
    "Pair",
    "PairingStrategy",
    "PartialPrompt",
    "SwapContext",
    "available_strategies",
    "build_strategy",
    "constrained_derangement",
    "get_strategy",
    "register_strategy",
]
