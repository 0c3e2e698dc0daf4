"""The LLM judge: a model's response against the row's reference, scored by another model.

Reported beside the other figures by :func:`~axolotl_mipo.evaluation.evaluate.evaluate_model`
(``judge=``); wins, ties, losses and invalid answers are kept apart
(:func:`~axolotl_mipo.evaluation.metrics.judge_tally`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from axolotl_mipo.data.example import Example
from axolotl_mipo.evaluation import metrics as M

JUDGE_TEMPLATE = (
    "You are grading how well a response fits one user.\n"
    "User profile: {context}\n"
    "User question: {query}\n"
    "Response: {response}\n\n"
    "On a scale of 1 (ignores the user's preferences) to 5 (follows every stated preference), "
    "how well does the response follow this user's preferences? Answer with one digit.\nScore:"
)
_SCORE = re.compile(r"[1-5]")


def parse_score(text: str) -> float | None:
    """The first digit 1-5 in a judge's answer, or ``None`` when there is none."""
    m = _SCORE.search(text or "")
    return float(m.group(0)) if m else None


class LLMJudge:
    """Scores ``(context, query, response)`` 1-5 with a generation backend (e.g. ``OpenAIBackend``).

    The MIPO paper has a judge score each stated preference 1-5; here one score
    is asked for all preferences together. ``chat_tokenizer`` (optional): the
    judge model's tokenizer, whose chat template renders the question; without
    it the question is sent as plain text ending in ``Score:``. Answers without
    a digit 1-5 are ``None`` (counted as invalid, never as a tie).
    """

    def __init__(self, backend, chat_tokenizer=None, template: str = JUDGE_TEMPLATE):
        self.backend = backend
        self.chat_tokenizer = chat_tokenizer
        self.template = template

    def _render(self, context: str, query: str, response: str) -> str:
        text = self.template.format(context=context, query=query, response=response)
        tok = self.chat_tokenizer
        if tok is not None and getattr(tok, "chat_template", None):
            return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)
        return text

    def score(self, items: Sequence[tuple[str, str, str]]) -> list[float | None]:
        prompts = [self._render(c, q, r) for c, q, r in items]
        out: list[float | None] = []
        size = max(1, int(getattr(self.backend, "batch_size", 8)))
        for i in range(0, len(prompts), size):
            out.extend(parse_score(r.text) for r in self.backend.generate_batch(prompts[i:i + size]))
        return out


def _judge_scores(judge, items):
    if hasattr(judge, "score"):
        return list(judge.score(items))
    return [judge(*it) for it in items]


def run_judge(judge, examples: Sequence[Example], responses: Sequence[str], tol: float = 0.0) -> dict:
    """Win / tie / loss of each response against its row's reference, by judge score."""
    rows = [(ex, r) for ex, r in zip(examples, responses) if ex.meta.get("reference") is not None]
    if not rows:
        return {"n": 0, "invalid": 0, "note": "no reference responses: the judge needs them"}
    def query(ex):
        return "\n".join(c for role, c in ex.messages if role == "user")

    model_items = [(ex.context or "", query(ex), r) for ex, r in rows]
    ref_items = [(ex.context or "", query(ex), ex.meta["reference"]) for ex, _ in rows]
    scores = _judge_scores(judge, model_items + ref_items)
    mine, refs = scores[: len(rows)], scores[len(rows):]
    outcomes, invalid = [], 0
    for a, b in zip(mine, refs):
        if a is None or b is None or not (math.isfinite(float(a)) and math.isfinite(float(b))):
            invalid += 1
            continue
        outcomes.append(M.judge_outcome(a, b, tol=tol))
    tally = M.judge_tally(outcomes).to_dict()
    tally["invalid"] = invalid
    valid_mine = [float(a) for a in mine if a is not None]
    tally["mean_score"] = sum(valid_mine) / len(valid_mine) if valid_mine else float("nan")
    return tally
