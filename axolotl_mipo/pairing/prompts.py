"""``partial_prompt``: MIPO's "incomplete prompt" variant for reasoning (arXiv 2603.19294).

Chosen is the model's answer to row ``i``'s question; rejected is its answer to
the same question with one sentence removed. Both are stored under the full
question with no context, so DPO prefers the answer that used every premise.

How the question is shortened follows the authors' data script
(nam630/mutual_information_preference_optimization, ``eval_scripts/gsm.py``,
``dataset()``): the question is split into sentences, one sentence *before the
last* is removed at random, and the last one is always kept. The last sentence
of a word problem is the question asked ("How many apples does she have
left?"); without it the rejected prompt asks nothing, and the pair would teach
"answer a question" rather than "use all of the question's information".
Rows whose question has a single sentence have nothing to remove; the authors
skip them ("Skipped..."), and so does this strategy by default.

Differences from that script, each for a reason:

* Sentences end at ``.``, ``!`` or ``?`` (and closing quotes or brackets)
  followed by white space, not at every ``.``, so ``$2.50`` and ``3.5 km`` are
  not cut in the middle; the text around the removed sentence is kept
  byte for byte.
* The removed sentence is a seeded choice: a SHA-256 of ``(seed, question)``
  picks it, so a row gets the same partial prompt in every run, whatever
  other rows are present (a mixture's subset, a resumed run), and the
  generation cache finds it again.
* The question is ``Example.meta["question"]`` when the row has one (a
  preset that wraps the question in instructions and few-shot exemplars
  sets it, so that only the question itself is shortened), else the row's
  last user message.

``single_sentence`` (``mipo.strategy_kwargs``) says what happens to a row with
nothing to remove: ``"skip"`` (default) makes no pair for it, counted in
:attr:`PartialPrompt.skipped` and logged; ``"raise"`` refuses the data with
an error naming the first such row. Data where every row is one sentence is
always refused (no pair could be made).

With short answers (a bare number) the answer to the shortened question is
often the same text as the full one's; the dataset builder drops such pairs
(they carry no preference) and counts them as ``dropped_identical``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence

from axolotl_mipo.data.example import QUESTION_KEY, Example
from axolotl_mipo.errors import MIPODataError, MIPOStrategyError
from axolotl_mipo.pairing.base import GenRequest, Pair, PairingStrategy
from axolotl_mipo.pairing.registry import register_strategy

__all__ = ["PartialPrompt", "drop_sentence", "sentence_spans"]

LOG = logging.getLogger(__name__)

_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s)")
_WORD = re.compile(r"\w")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``; a sentence's span runs to the start of the next one.

    A fragment with no letter or digit (``"..."``) joins the sentence before it.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _END.finditer(text):
        end = m.end()
        while end < len(text) and text[end].isspace():
            end += 1
        if _WORD.search(text, start, m.end()) is None and spans:
            spans[-1] = (spans[-1][0], end)
        elif _WORD.search(text, start, m.end()) is not None:
            spans.append((start, end))
        start = end
    if start < len(text):
        if _WORD.search(text, start) is None and spans:
            spans[-1] = (spans[-1][0], len(text))
        else:
            spans.append((start, len(text)))
    return spans


def _pick(question: str, n_removable: int, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}\x00{question}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "little") % n_removable


def drop_sentence(question: str, seed: int) -> tuple[str, int, int] | None:
    """``(shortened question, index of the removed sentence, number of sentences)``; ``None`` for one sentence.

    The removed sentence is never the last one, and the choice is a function of ``(seed, question)`` only.
    """
    spans = sentence_spans(question)
    if len(spans) < 2:
        return None
    k = _pick(question, len(spans) - 1, seed)
    start, end = spans[k]
    return (question[:start] + question[end:]).strip(), k, len(spans)


def _question(ex: Example) -> tuple[str, str]:
    """``(question, last user message)``; the question is ``meta["question"]`` when the message holds it."""
    last = next((c for role, c in reversed(ex.messages) if role == "user"), None)
    if last is None:
        raise MIPODataError("has no user message to shorten; partial_prompt needs the question as a user turn",
                            row=ex.index, field="messages", source=ex.source or None)
    q = ex.meta.get(QUESTION_KEY)
    if isinstance(q, str) and q.strip() and q in last:
        return q, last
    return last, last


@register_strategy
class PartialPrompt(PairingStrategy):
    """Reasoning variant with an incomplete prompt: rejected answers the question with one sentence removed.

    Two generations per row, with no context: the row's own messages (chosen)
    and the same messages with the question shortened (rejected, a
    :class:`GenRequest` with ``query`` set). See the module docstring for how
    the sentence is chosen and what happens to one-sentence questions.
    ``meta`` holds ``removed_sentence`` (0-based index) and ``sentences``.
    """

    name = "partial_prompt"
    needs_context = False
    prompt_only = True
    min_distinct_contexts = 1
    min_distinct_prompts = 1
    generations_per_row = 2

    def __init__(self, single_sentence: str = "skip"):
        if single_sentence not in ("skip", "raise"):
            raise MIPOStrategyError(
                f"partial_prompt: single_sentence must be 'skip' or 'raise', got {single_sentence!r}; set "
                "mipo.strategy_kwargs.single_sentence"
            )
        self.single_sentence = single_sentence
        #: rows of the last plan that had a single sentence (no pair made for them)
        self.skipped = 0

    def _plan(self, examples: Sequence[Example], seed: int) -> list[tuple[str, int, int] | None]:
        """Per row: ``(rejected query, removed sentence, sentences)``, or ``None`` for a one-sentence question."""
        plan: list[tuple[str, int, int] | None] = []
        for ex in examples:
            question, last = _question(ex)
            cut = drop_sentence(question, seed)
            if cut is None:
                plan.append(None)
                continue
            short, k, n = cut
            # the question's last copy in the message: few-shot exemplars above it may quote other questions
            head, _, tail = last.rpartition(question)
            plan.append((head + short + tail, k, n))
        return plan

    def _check(self, examples: Sequence[Example], plan) -> None:
        single = [i for i, p in enumerate(plan) if p is None]
        if single and (self.single_sentence == "raise" or len(single) == len(plan)):
            ex = examples[single[0]]
            every = len(single) == len(plan)
            raise MIPODataError(
                f"pairing strategy {self.name!r} removes one sentence from the question, but this question has "
                f"a single sentence ({len(single)} of {len(plan)} rows do)"
                + ("; none can be paired: use strategy mismatched_prompt" if every else
                   "; remove such rows, or set mipo.strategy_kwargs.single_sentence: skip to leave them out"),
                row=ex.index, field="prompt", source=ex.source or None,
            )

    def validate(self, examples: Sequence[Example]) -> None:
        super().validate(examples)
        self._check(examples, self._plan(examples, 0))  # the sentence count does not depend on the seed

    def requests(self, examples: Sequence[Example], seed: int) -> list[GenRequest]:
        plan = self._plan(examples, seed)
        self._check(examples, plan)
        out: list[GenRequest] = []
        for i, p in enumerate(plan):
            if p is not None:
                out += [GenRequest(i, None), GenRequest(i, None, p[0])]
        return out

    def pair(self, examples: Sequence[Example], responses: Mapping[GenRequest, str], seed: int) -> list[Pair]:
        plan = self._plan(examples, seed)
        self._check(examples, plan)
        pairs: list[Pair] = []
        for i, p in enumerate(plan):
            if p is None:
                continue
            chosen, rejected = GenRequest(i, None), GenRequest(i, None, p[0])
            for req in (chosen, rejected):
                if req not in responses:
                    ex = examples[i]
                    raise MIPODataError(
                        f"pairing strategy {self.name!r} has no generated response for {req}; generate every "
                        "request that requests() listed (with the same rows and seed) before calling pair()",
                        row=ex.index, field="response", source=ex.source or None,
                    )
            pairs.append(Pair(i, None, chosen, rejected, {"removed_sentence": p[1], "sentences": p[2]}))
        self.skipped = sum(p is None for p in plan)
        if self.skipped:
            LOG.warning(f"mipo: partial_prompt: {self.skipped} of {len(plan)} rows have a one-sentence question "
                        "(nothing to remove); they make no pair")
        return pairs
