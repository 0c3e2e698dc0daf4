"""Property checks every pairing strategy must pass, for the built-ins and for contributors' strategies.

A new strategy is tested in a few lines::

    from hypothesis import given, strategies as st
    from axolotl_mipo.errors import MIPOError
    from axolotl_mipo.testing.pairing_checks import check_strategy_invariants, examples_strategy

    @given(examples_strategy(), st.integers(0, 2**32 - 1))
    def test_my_strategy(examples, seed):
        strategy = MyStrategy()
        try:
            strategy.validate(examples)
        except MIPOError:
            return  # a documented refusal is fine; check its message in a separate test
        pairs = check_strategy_invariants(strategy, examples, seed)
        # ... then assert what is specific to MyStrategy on ``pairs``

:func:`check_strategy_invariants` runs the three phases the dataset builder
runs (validate -> requests -> fake responses -> pair) and asserts the
contract of :mod:`axolotl_mipo.pairing.base`:

* ``requests`` is deterministic, lists :class:`GenRequest` objects for
  existing rows only, and asks for at most ``generations_per_row`` distinct
  generations per row;
* ``pair`` looks up only responses that ``requests`` listed, returns
  :class:`Pair` objects for existing rows whose chosen and rejected were both
  listed and differ, and whose ``meta`` values named ``*_row`` are existing
  rows;
* both phases are deterministic given the seed: a second run on a deep copy
  of the strategy, with the responses in another order, gives equal results.

:func:`examples_strategy` is a Hypothesis strategy for lists of
:class:`Example` drawn from small pools of prompts and contexts, so that
duplicate prompts, shared contexts and missing contexts happen often.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from axolotl_mipo.data.example import Example
from axolotl_mipo.pairing.base import GenRequest, Pair, PairingStrategy

__all__ = [
    "RecordingResponses",
    "check_strategy_invariants",
    "examples_strategy",
    "fake_response",
    "fake_responses",
]


def fake_response(req: GenRequest, examples: Sequence[Example]) -> str:
    """A response text unique to ``req`` (row, context and query), so that distinct requests never collide."""
    query = "" if req.query is None else f" and query {req.query!r}"
    return f"response to row {req.row} ({examples[req.row].index}) with context {req.context!r}{query}"


def fake_responses(requests: Sequence[GenRequest], examples: Sequence[Example],
                   respond: Callable[[GenRequest, Sequence[Example]], str] | None = None) -> dict[GenRequest, str]:
    """``{request: text}`` for every distinct request, as the generation step would return it.

    ``respond`` makes the text (default :func:`fake_response`); pass one that
    repeats texts to test how a strategy handles identical responses.
    """
    respond = respond or fake_response
    return {r: respond(r, examples) for r in dict.fromkeys(requests)}


class RecordingResponses(Mapping):
    """A read-only response mapping that records lookups of requests it does not hold.

    Strategies must only look up what they listed in ``requests()``; a lookup
    of anything else raises ``KeyError`` (as a plain dict would) and is kept in
    :attr:`unlisted` so the check can fail even if the strategy swallowed the
    ``KeyError``.
    """

    def __init__(self, data: Mapping[GenRequest, str]):
        self._data = dict(data)
        self.unlisted: list[Any] = []

    def __getitem__(self, key: GenRequest) -> str:
        try:
            return self._data[key]
        except KeyError:
            self.unlisted.append(key)
            raise

    def __contains__(self, key: object) -> bool:
        found = key in self._data
        if not found:
            self.unlisted.append(key)
        return found

    def __iter__(self) -> Iterator[GenRequest]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def check_strategy_invariants(
    strategy: PairingStrategy,
    examples: Sequence[Example],
    seed: int,
    *,
    respond: Callable[[GenRequest, Sequence[Example]], str] | None = None,
) -> list[Pair]:
    """Run validate -> requests -> fake responses -> pair twice and assert the contract; return the pairs.

    Args:
        strategy: the instance under test (it is deep-copied for the second run,
            so hidden state that changes the result is caught).
        examples: rows the strategy accepts; ``validate`` errors propagate, so
            call this only on data it should accept.
        seed: the pairing seed.
        respond: makes each fake response text (default: unique per request).

    Raises:
        AssertionError: with a message naming the broken rule.
    """
    n = len(examples)
    strategy.validate(examples)
    requests = strategy.requests(examples, seed)
    assert isinstance(requests, list), f"requests() must return a list, got {type(requests).__name__}"
    for r in requests:
        assert isinstance(r, GenRequest), f"requests() listed {r!r}, not a GenRequest"
        assert isinstance(r.row, int) and 0 <= r.row < n, f"requests() listed {r}, but rows are 0..{n - 1}"
        assert r.context is None or isinstance(r.context, str), f"requests() listed {r} with a non-str context"
    listed = set(requests)
    assert len(listed) <= strategy.generations_per_row * n, (
        f"requests() asked for {len(listed)} distinct generations for {n} rows, more than "
        f"generations_per_row={strategy.generations_per_row} per row"
    )

    responses = RecordingResponses(fake_responses(requests, examples, respond))
    pairs = strategy.pair(examples, responses, seed)
    assert not responses.unlisted, (
        f"pair() looked up responses that requests() did not list: {responses.unlisted[:5]}"
    )
    assert isinstance(pairs, list), f"pair() must return a list, got {type(pairs).__name__}"
    for p in pairs:
        assert isinstance(p, Pair), f"pair() returned {p!r}, not a Pair"
        assert isinstance(p.row, int) and 0 <= p.row < n, f"{p} refers to row {p.row}, but rows are 0..{n - 1}"
        assert p.chosen in listed, f"{p}: chosen {p.chosen} was not listed by requests()"
        assert p.rejected in listed, f"{p}: rejected {p.rejected} was not listed by requests()"
        assert p.chosen != p.rejected, f"{p}: chosen and rejected are the same request"
        assert p.prompt_context is None or isinstance(p.prompt_context, str), f"{p}: prompt_context is not a str"
        assert isinstance(p.meta, dict), f"{p}: meta is not a dict"
        for key, value in p.meta.items():
            if key.endswith("_row"):
                assert isinstance(value, int) and 0 <= value < n, f"{p}: meta[{key!r}]={value!r} is not a row"

    # determinism: fresh copy, same inputs, responses in reverse order
    twin = copy.deepcopy(strategy)
    assert twin.requests(examples, seed) == requests, "requests() differs between two runs with the same seed"
    reordered = RecordingResponses(dict(reversed(list(responses._data.items()))))
    assert twin.pair(examples, reordered, seed) == pairs, "pair() differs between two runs with the same seed"
    assert strategy.pair(examples, RecordingResponses(responses._data), seed) == pairs, (
        "pair() differs when called twice on the same instance"
    )
    return pairs


def examples_strategy(
    *,
    min_size: int = 1,
    max_size: int = 30,
    context: str = "always",
    max_prompts: int = 6,
    max_contexts: int = 4,
    system_turns: bool = True,
):
    """A Hypothesis strategy for ``list[Example]``.

    Rows draw their prompt from a pool of at most ``max_prompts`` distinct
    queries and their context from a pool of at most ``max_contexts``, so
    duplicates are common. ``context`` is ``"always"`` (every row has a
    non-empty context), ``"never"`` (all ``None``), or ``"sometimes"`` (some
    rows have ``None``, empty or whitespace-only contexts). With
    ``system_turns`` some prompts get a system turn, so equal user turns do
    not always mean equal prompts. ``Example.index`` is an increasing but not
    necessarily contiguous row number, to catch strategies that confuse it
    with the position.
    """
    from hypothesis import strategies as st

    if context not in ("always", "never", "sometimes"):
        raise ValueError("context must be 'always', 'never' or 'sometimes'")
    word = st.text(alphabet="abcxyz ", min_size=1, max_size=6).filter(lambda s: s.strip())

    @st.composite
    def build(draw) -> list[Example]:
        n = draw(st.integers(min_size, max_size))
        queries = draw(st.lists(word, min_size=1, max_size=max_prompts, unique=True))
        systems = [None]
        if system_turns:
            systems += draw(st.lists(word, max_size=2, unique=True))
        contexts: list[str | None] = draw(st.lists(word, min_size=1, max_size=max_contexts, unique=True))
        if context == "sometimes":
            contexts += [None, "", "  "]
        start = draw(st.integers(0, 5))
        stride = draw(st.sampled_from([1, 1, 3]))
        rows = []
        for pos in range(n):
            sys_turn = draw(st.sampled_from(systems))
            messages = ((("system", sys_turn),) if sys_turn else ()) + (("user", draw(st.sampled_from(queries))),)
            ctx = None if context == "never" else draw(st.sampled_from(contexts))
            rows.append(Example(index=start + stride * pos, messages=messages, context=ctx, source="hyp"))
        return rows

    return build()
