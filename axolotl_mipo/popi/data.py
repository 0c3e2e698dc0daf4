"""The summarizer's GRPO dataset: one row per (user history, held-out human pair).

Each input row with a user context (the history) and the user's own preference pair becomes one
GRPO prompt: the request for a preference summary of that history, built with the template and
history fitting of ``context_builder: preference_summary`` (the same prompt the summarizer will get
when MIPO uses it), and the columns the reward reads: the query and the held-out chosen/rejected
responses. The pair is the row's own, which the presets keep out of the row's context (AlignX's
pair, PRISM's and Community Alignment's rated responses), so the summary never sees the answer.

A row without a history or without a pair cannot be rewarded: an error naming it, or with
``on_bad_row: skip`` a counted skip.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPOConfigError, MIPODataError
from axolotl_mipo.pipeline.summary import DEFAULT_TEMPLATE, _fit_history, summary_prompt

LOG = logging.getLogger("axolotl_mipo.popi")


@dataclass
class POPIDataReport:
    rows_in: int = 0
    rows_out: int = 0
    users: int = 0
    truncated_histories: int = 0
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        line = (f"popi: {self.rows_out} summarizer prompts from {self.rows_in} rows ({self.users} users)")
        if self.truncated_histories:
            line += f", {self.truncated_histories} histories cut to their most recent part to fit the prompt"
        if self.skipped:
            line += ", skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return line


def _why_unusable(ex: Example) -> str | None:
    if not (ex.context or "").strip():
        return "without a user history (context)"
    if ex.human_pair is None:
        return "without a held-out human pair (chosen/rejected)"
    c, r = ex.human_pair
    if not c.strip() or not r.strip():
        return "with an empty chosen or rejected response"
    if c == r:
        return "whose chosen and rejected responses are identical"
    return None


def summarizer_rows(
    examples: Sequence[Example],
    tokenizer,
    *,
    template: str | None = None,
    max_words: int = 60,
    max_prompt_tokens: int | None = None,
    on_bad_row: str = "raise",
) -> tuple[list[dict], POPIDataReport]:
    """GRPO rows ``{prompt, popi_query, popi_chosen, popi_rejected, popi_user, popi_row}``.

    ``prompt`` is conversational (one user turn) so TRL applies the chat template as
    ``preference_summary`` does (:func:`axolotl_mipo.pipeline.summary.summary_prompt`).
    """
    template = template or DEFAULT_TEMPLATE
    report = POPIDataReport(rows_in=len(examples))
    overhead = (len(tokenizer(summary_prompt(tokenizer, "", template, max_words), add_special_tokens=False)
                    ["input_ids"]) if max_prompt_tokens else 0)
    fitted: dict[str, str] = {}
    rows, users = [], set()
    for ex in examples:
        why = _why_unusable(ex)
        if why is not None:
            if on_bad_row != "skip":
                raise MIPODataError(
                    f"a row {why} cannot train the summarizer (POPI's reward needs the user's history and their "
                    "own chosen/rejected pair); fix the row or set popi.on_bad_row: skip",
                    row=ex.index, source=ex.source or None,
                )
            report.skipped[why] += 1
            continue
        if ex.context not in fitted:
            ids = tokenizer(ex.context, add_special_tokens=False)["input_ids"]
            try:
                text, cut = _fit_history(tokenizer, ex.context, ids, template, max_words, max_prompt_tokens, overhead)
            except MIPOConfigError as exc:  # the shared fitting names preference_summary's key
                raise MIPOConfigError(str(exc).replace("mipo.summary.template", "popi.template")
                                      + " (popi.max_prompt_tokens)") from None
            report.truncated_histories += int(cut)
            fitted[ex.context] = text
        chosen, rejected = ex.human_pair
        users.add(ex.user_id if ex.user_id is not None else ex.context)
        rows.append({
            "prompt": [{"role": "user", "content": template.format(history=fitted[ex.context], max_words=max_words)}],
            "popi_query": ex.message_dicts(),
            "popi_chosen": chosen,
            "popi_rejected": rejected,
            "popi_user": ex.user_id or "",
            "popi_row": f"{ex.source}#{ex.index}",
        })
    report.rows_out, report.users = len(rows), len(users)
    if not rows:
        raise MIPODataError(
            f"no row can train the summarizer: of {len(examples)} rows, "
            + ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
            + ". POPI needs rows with a user history and the user's own chosen/rejected pair (format alignx, "
            "prism or community_alignment)"
        )
    return rows, report
