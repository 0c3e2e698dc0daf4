"""Several pairing strategies in one run, with weights: ``mixture``.

In the YAML, ``mipo.strategy`` becomes a list::

    mipo:
      strategy:
        - {name: drop_context, weight: 0.7}
        - {name: nearest_context, weight: 0.3, kwargs: {top_k: 3}}

(equivalently ``strategy: mixture`` with ``strategy_kwargs: {components: [...]}``).

How it works:

* Each row is assigned to exactly one component. The numbers of rows follow
  the weights (normalised to sum to 1; ``round(w * n)`` by largest remainder,
  so 0.7/0.3 of 10 rows is exactly 7/3), and which rows go where is a seeded
  random permutation: same rows and seed, same assignment.
* Each component runs all three phases on *its own subset* only. Strategies
  that pick a partner row (``swap_context``, ``nearest_context``,
  ``mismatched_prompt``) therefore draw partners **within the subset**: with
  30% of the rows, ``nearest_context`` searches among those 30%.
* Requests and pairs are translated back to positions in the whole data,
  including the ``*_row`` entries of ``Pair.meta``; every pair's ``meta``
  gets ``"strategy"``: the component's name, which the dataset builder writes
  to the ``mipo_strategy`` column (a nested mixture records the innermost
  name).
* Validation: :meth:`Mixture.validate` runs every component's ``validate`` on
  the whole data (any row can land in any component, so every row must carry
  every component's fields); :meth:`Mixture.requests` then validates each
  component on its subset, still before anything is generated, and names the
  component when a subset is too small (e.g. one distinct context).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPOConfigError, MIPOError, MIPOStrategyError
from axolotl_mipo.pairing.base import GenRequest, Pair, PairingStrategy
from axolotl_mipo.pairing.derangement import seeded_rng
from axolotl_mipo.pairing.registry import get_strategy, register_strategy, strategy_class

__all__ = ["Mixture", "build_strategy", "check_dataset_formats"]

# Mixed into the seed so the assignment draw is independent of the components' own draws.
_ASSIGN_SALT = 0x6D6978


def _field(item: Any, key: str, default: Any = None) -> Any:
    return item.get(key, default) if isinstance(item, Mapping) else getattr(item, key, default)


@register_strategy
class Mixture(PairingStrategy):
    """Assign each row to one of several strategies by a seeded weighted draw (see the module docstring).

    ``components``: a list of ``{name, weight, kwargs}`` (mappings or objects
    with those attributes, e.g. the YAML's ``StrategyWeight``); ``weight`` is
    relative and > 0 (default 1), ``kwargs`` go to that component.
    """

    name = "mixture"

    def __init__(self, components: Sequence[Any]):
        if not components:
            raise MIPOStrategyError("pairing strategy 'mixture' needs at least one component in mipo.strategy")
        self.strategies: list[PairingStrategy] = []
        weights = []
        for pos, item in enumerate(components):
            name = _field(item, "name")
            weight = _field(item, "weight", 1.0)
            kwargs = _field(item, "kwargs", None) or {}
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight > 0 \
                    or not np.isfinite(weight):
                raise MIPOStrategyError(f"mipo.strategy[{pos}].weight must be a number > 0, got {weight!r}")
            if not isinstance(kwargs, Mapping):
                raise MIPOStrategyError(f"mipo.strategy[{pos}].kwargs must be a mapping, got {kwargs!r}")
            self.strategies.append(get_strategy(name, **dict(kwargs)))
            weights.append(float(weight))
        total = sum(weights)
        self.weights = [w / total for w in weights]
        # the builder batches generation over all components; a row asks at most this many
        self.generations_per_row = max(s.generations_per_row for s in self.strategies)
        self.needs_context = any(s.needs_context for s in self.strategies)

    def __repr__(self) -> str:
        parts = ", ".join(f"{s.name}: {w:.3g}" for s, w in zip(self.strategies, self.weights))
        return f"Mixture({parts})"

    # -- assignment ------------------------------------------------------------------------------
    def assign(self, n: int, seed: int) -> np.ndarray:
        """Component number of each of ``n`` rows: exact quotas by largest remainder, seeded shuffle."""
        seeded_rng(seed)  # refuses a bad seed with the documented message
        w = np.asarray(self.weights)
        raw = w * n
        counts = np.floor(raw).astype(np.int64)
        short = n - int(counts.sum())
        if short:
            # ties in the remainder go to the earlier component
            order = np.lexsort((np.arange(w.size), -(raw - counts)))
            counts[order[:short]] += 1
        labels = np.repeat(np.arange(w.size), counts)
        rng = np.random.default_rng([int(seed), _ASSIGN_SALT])
        return labels[rng.permutation(n)]

    def subsets(self, examples: Sequence[Example], seed: int) -> list[np.ndarray]:
        """For each component, the positions of its rows (increasing)."""
        labels = self.assign(len(examples), seed)
        return [np.flatnonzero(labels == c) for c in range(len(self.strategies))]

    # -- phases ----------------------------------------------------------------------------------
    def validate(self, examples: Sequence[Example]) -> None:
        if not examples:
            raise MIPOStrategyError("pairing strategy 'mixture' got a dataset of zero rows; check mipo.datasets")
        for s in self.strategies:
            s.validate(examples)

    def _parts(self, examples: Sequence[Example], seed: int) -> Iterator[tuple[PairingStrategy, np.ndarray, list]]:
        for s, pos in zip(self.strategies, self.subsets(examples, seed)):
            if pos.size:
                yield s, pos, [examples[i] for i in pos.tolist()]

    def requests(self, examples: Sequence[Example], seed: int) -> list[GenRequest]:
        out: list[GenRequest] = []
        for s, pos, sub in self._parts(examples, seed):
            try:
                s.validate(sub)
            except MIPOError as e:
                raise type(e)(
                    f"mixture component {s.name!r} got {pos.size} of {len(examples)} rows (seed {seed}), which it "
                    f"cannot pair: {e}; raise its weight, add rows, or remove it from mipo.strategy"
                ) from None
            glob = pos.tolist()
            out.extend(GenRequest(glob[r.row], r.context, r.query) for r in s.requests(sub, seed))
        return out

    def pair(self, examples: Sequence[Example], responses: Mapping[GenRequest, str], seed: int) -> list[Pair]:
        pairs: list[Pair] = []
        for s, pos, sub in self._parts(examples, seed):
            glob = pos.tolist()
            for p in s.pair(sub, _SubsetResponses(responses, glob), seed):
                meta = {k: (glob[v] if k.endswith("_row") and isinstance(v, int) and 0 <= v < len(glob) else v)
                        for k, v in p.meta.items()}
                meta.setdefault("strategy", s.name)
                chosen = GenRequest(glob[p.chosen.row], p.chosen.context, p.chosen.query)
                rejected = GenRequest(glob[p.rejected.row], p.rejected.context, p.rejected.query)
                pairs.append(Pair(glob[p.row], p.prompt_context, chosen, rejected, meta))
        pairs.sort(key=lambda p: p.row)  # stable: a strategy's several pairs of one row keep their order
        return pairs


class _SubsetResponses(Mapping):
    """The responses seen by one component: its local row numbers translated to global ones on lookup.

    Lookups go through to the underlying mapping, so a lookup of something the
    component did not request is still seen (and refused) there.
    """

    def __init__(self, responses: Mapping[GenRequest, str], glob: list[int]):
        self._responses, self._glob = responses, glob
        self._local = {g: i for i, g in enumerate(glob)}

    def _to_global(self, key: Any) -> Any:
        if not isinstance(key, GenRequest):
            return key
        if 0 <= key.row < len(self._glob):
            return GenRequest(self._glob[key.row], key.context, key.query)
        # not a row of this subset: a key no global request can equal, so the lookup fails (and is recorded)
        return GenRequest(-1 - key.row if key.row >= 0 else key.row - len(self._glob) - 1, key.context,
                          key.query)

    def __getitem__(self, key: GenRequest) -> str:
        return self._responses[self._to_global(key)]

    def __contains__(self, key: object) -> bool:
        return self._to_global(key) in self._responses

    def __iter__(self) -> Iterator[GenRequest]:
        for r in self._responses:
            local = self._local.get(r.row)
            if local is not None:
                yield GenRequest(local, r.context, r.query)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def build_strategy(spec: str | Sequence[Any], kwargs: Mapping[str, Any] | None = None) -> PairingStrategy:
    """The strategy ``mipo.strategy`` describes: a name (with ``strategy_kwargs``) or a weighted list."""
    kwargs = dict(kwargs or {})
    if isinstance(spec, str):
        return get_strategy(spec, **kwargs)
    if kwargs:
        raise MIPOStrategyError(
            "mipo.strategy_kwargs cannot be used with a list of strategies; give each entry its own kwargs, "
            "e.g. strategy: [{name: nearest_context, weight: 0.3, kwargs: {top_k: 3}}]"
        )
    return Mixture(list(spec))


def _declared(spec: str | Sequence[Any], kwargs: Mapping[str, Any] | None) -> Iterator[tuple[str, type]]:
    """``(name, class)`` of every strategy ``mipo.strategy`` names, a mixture's components in its place; a name
    that does not resolve is left out (building the strategy names it)."""
    items = [{"name": spec, "kwargs": kwargs}] if isinstance(spec, str) else spec
    for item in items:
        name = _field(item, "name")
        try:
            cls = strategy_class(name)
        except MIPOStrategyError:
            continue
        if issubclass(cls, Mixture):
            yield from _declared(list((_field(item, "kwargs") or {}).get("components") or []), None)
        else:
            yield name.strip(), cls


def _contextless() -> str:
    from axolotl_mipo.data.presets import PRESETS

    return ", ".join(sorted(name for name, preset in PRESETS.items() if not preset.context))


def check_dataset_formats(spec: str | Sequence[Any], kwargs: Mapping[str, Any] | None, formats: Sequence[str],
                          has_context: Sequence[bool]) -> None:
    """Refuse, naming ``mipo.strategy`` and ``mipo.datasets[i].format``, a strategy whose declaration the rows of
    a dataset cannot meet: :attr:`~PairingStrategy.needs_context` (or ``"context"`` in ``required_fields``) needs
    rows with a user context, :attr:`~PairingStrategy.prompt_only` rows without one.

    Derived from what each class declares, so a built-in, an entry point and a ``module:object`` strategy get the
    same check. In a weighted list (or a mixture) any row can go to any entry, so every entry's declaration
    applies to all the data. ``formats[i]`` / ``has_context[i]``: dataset ``i``'s format and whether its rows
    carry a user context.
    """
    seen: set[str] = set()
    for name, cls in _declared(spec, kwargs):
        if name in seen:
            continue
        seen.add(name)
        if cls.prompt_only:
            bad = [i for i, c in enumerate(has_context) if c]
            if bad:
                raise MIPOConfigError(
                    f"mipo.strategy {name} is the reasoning variant (prompt_only: it pairs prompts without their "
                    f"user context) and needs format: prompt or a preset without a user context ({_contextless()}); "
                    f"mipo.datasets[{bad[0]}].format is {formats[bad[0]]!r}, whose rows carry a user context"
                )
        elif cls.needs_user_context():
            bad = [i for i, c in enumerate(has_context) if not c]
            if bad:
                raise MIPOConfigError(
                    f"mipo.strategy {name} needs a user context, but mipo.datasets[{bad[0]}].format is "
                    f"{formats[bad[0]]!r} (no context); use format context_query or messages, or a strategy "
                    "without needs_context such as mismatched_prompt"
                )
