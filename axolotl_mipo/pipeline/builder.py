"""Rows -> generation -> pairing -> the DPO dataset Axolotl's trainer consumes.

The output is TRL's *conversational* preference format, one row per pair:

* ``prompt`` — chat messages with the user context (as the pair's strategy set it);
* ``chosen`` / ``rejected`` — one assistant message each;
* ``prompt_no_context`` — the same conversation without the user context (PerCE's
  second forward and evaluation use it);
* ``mipo_strategy``, ``mipo_row``, ``mipo_source``, ``mipo_meta`` — provenance;
* ``mipo_human_chosen`` / ``mipo_human_rejected`` — the user's own preference
  pair from the dataset ("" for a row without one), present only when some row
  has one (the dataset presets). TRL's collator drops these columns, so they
  cost nothing in training; evaluation reads them.

TRL applies the tokenizer's chat template to ``prompt`` exactly as the
generation step did, so a chosen response is trained under the prompt it was
generated from.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from axolotl_mipo.data.example import GOLD_KEYS, Example
from axolotl_mipo.data.prompts import PromptFormat, build_messages
from axolotl_mipo.errors import MIPODataError, MIPOStrategyError
from axolotl_mipo.generation.base import GenerationBackend, GenerationStats, generate_with_cache
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.pairing.base import GenRequest, PairingStrategy, request_messages
from axolotl_mipo.pipeline.diagnostics import RejectedSharing, rejected_prompt_sharing, warn_if_degenerate

LOG = logging.getLogger(__name__)
_GOLD = frozenset(GOLD_KEYS)


@dataclass
class BuildStats:
    rows: int = 0
    pairs_planned: int = 0
    pairs_kept: int = 0
    dropped_empty: int = 0
    dropped_identical: int = 0
    neutralized_rows: int = 0
    skipped_long: int = 0
    truncated_long: int = 0
    generation: GenerationStats = field(default_factory=GenerationStats)
    sharing: RejectedSharing | None = None

    def summary(self) -> str:
        long = ""
        if self.skipped_long or self.truncated_long:
            long = f"; {self.skipped_long} rows skipped and {self.truncated_long} contexts truncated as too long"
        return (
            f"mipo: {self.rows} rows -> {self.pairs_planned} pairs planned, {self.pairs_kept} kept "
            f"({self.dropped_empty} dropped for an empty response, {self.dropped_identical} for identical "
            f"chosen and rejected{long})"
        )


_BREAK = "\u200b"  # zero-width space: invisible, but no longer the special token's string


def special_token_strings(tokenizer) -> list[str]:
    """Every string the tokenizer would turn into a special (control) token."""
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in getattr(tokenizer, "added_tokens_decoder", {}).values():
        if getattr(tok, "special", False):
            specials.add(str(tok))
    # longest first so that a token containing another is broken as a whole
    return sorted((s for s in specials if len(s) > 1), key=len, reverse=True)


def neutralize(text: str, specials: Sequence[str]) -> str:
    """Break every special-token string in user text so it is read as text, not as a role marker.

    A context holding ``<|eot_id|><|start_header_id|>system...`` would otherwise close
    the user's turn and open a forged one once the chat template is tokenized.
    """
    for sp in specials:
        if sp in text:
            text = text.replace(sp, sp[0] + _BREAK + sp[1:])
    return text


def neutralize_examples(examples: Sequence[Example], tokenizer) -> tuple[list[Example], int]:
    specials = special_token_strings(tokenizer)
    out, changed = [], 0
    for ex in examples:
        ctx = neutralize(ex.context, specials) if ex.context is not None else None
        msgs = tuple((r, neutralize(c, specials)) for r, c in ex.messages)
        meta = ex.meta
        if ex.human_pair is not None:
            pair = {k: neutralize(meta[k], specials) for k in ("human_chosen", "human_rejected")}
            meta = {**meta, **pair} if any(pair[k] != meta[k] for k in pair) else meta
        if ctx != ex.context or msgs != ex.messages or meta is not ex.meta:
            changed += 1
            ex = Example(index=ex.index, messages=msgs, context=ctx, source=ex.source, meta=meta)
        out.append(ex)
    return out, changed


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The exact text the model is asked to continue (chat template + generation prompt)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _prompt_len(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _fit_prompts(examples, tokenizer, fmt, limit, policy, stats) -> list[Example]:
    """Apply the ``long_prompt`` policy to each row's own prompt (context + conversation)."""
    out = []
    for ex in examples:
        n = _prompt_len(tokenizer, render_prompt(tokenizer, build_messages(ex.messages, ex.context, fmt)))
        if n <= limit:
            out.append(ex)
            continue
        if policy == "truncate_context" and ex.context:
            ids = tokenizer(ex.context, add_special_tokens=False)["input_ids"]
            keep = len(ids) - (n - limit)
            # decoding can merge tokens differently: shrink until the rendered prompt really fits
            while keep > 0:
                ctx = tokenizer.decode(ids[-keep:], skip_special_tokens=True).strip()
                prompt = render_prompt(tokenizer, build_messages(ex.messages, ctx, fmt)) if ctx else ""
                if ctx and _prompt_len(tokenizer, prompt) <= limit:
                    out.append(Example(index=ex.index, messages=ex.messages, context=ctx, source=ex.source,
                                       meta={**ex.meta, "context_truncated_from_tokens": len(ids)}))
                    stats.truncated_long += 1
                    break
                keep -= max(1, keep // 20)
            else:
                stats.skipped_long += 1
            continue
        stats.skipped_long += 1
    if stats.skipped_long or stats.truncated_long:
        LOG.warning(f"mipo: prompts over {limit} tokens: {stats.skipped_long} rows skipped, "
                    f"{stats.truncated_long} contexts truncated to their last tokens")
    if not out:
        raise MIPODataError(f"every row's prompt is longer than {limit} tokens; raise sequence_len or "
                            "mipo.generation.max_prompt_tokens")
    return out


def build_preference_rows(
    examples: Sequence[Example],
    strategy: PairingStrategy,
    backend: GenerationBackend,
    cache: GenerationCache,
    tokenizer,
    *,
    fmt: PromptFormat | None = None,
    seed: int = 42,
    max_prompt_tokens: int | None = None,
    progress: bool = True,
    gen_kwargs: dict | None = None,
    long_prompt: str = "raise",
) -> tuple[list[dict], BuildStats]:
    """Validate, generate what is missing, pair, and return the DPO rows.

    Args:
        examples: the split input rows (:func:`axolotl_mipo.data.rows.load_examples`).
        strategy: the pairing strategy; its requirements are checked before
            anything is generated.
        backend: generates the responses; only prompts missing from ``cache``
            reach it.
        cache: the generation cache (responses keyed by prompt, under a folder
            keyed by the backend's settings).
        tokenizer: renders prompts with its chat template and counts tokens.
        fmt: where and how the context enters the prompt (default: a system
            message).
        seed: the pairing seed.
        max_prompt_tokens: the longest prompt allowed (``None``: no limit).
        progress: show a progress bar while generating.
        gen_kwargs: passed on to :func:`~axolotl_mipo.generation.base.generate_with_cache`
            (``retries``, ``rank``, ``world_size``, ``barrier``...).
        long_prompt: what happens to a row whose prompt (with its own context)
            is longer than ``max_prompt_tokens``: ``raise`` (an error naming the
            row), ``skip`` (dropped and counted) or ``truncate_context`` (the
            context keeps its *last* tokens, the most recent history, until the
            prompt fits; dropped and counted if even an empty context does not
            fit).

    Returns:
        ``(rows, stats)``: TRL conversational preference rows (see the module
        docstring) and the counts of what was kept, dropped and generated.
    """
    fmt = fmt or PromptFormat()
    stats = BuildStats(rows=len(examples))
    examples, stats.neutralized_rows = neutralize_examples(examples, tokenizer)
    if stats.neutralized_rows:
        LOG.warning(
            f"mipo: {stats.neutralized_rows} rows contained the chat template's special tokens as text; "
            "they were broken up (a zero-width space inserted) so they cannot open or close a role"
        )
    if max_prompt_tokens is not None and long_prompt != "raise":
        examples = _fit_prompts(examples, tokenizer, fmt, max_prompt_tokens, long_prompt, stats)
    # everything that can be checked is checked before the first token is generated
    strategy.validate(examples)
    requests = list(dict.fromkeys(strategy.requests(examples, seed)))
    for r in requests:
        if not 0 <= r.row < len(examples):
            raise MIPOStrategyError(f"strategy {strategy.name!r} asked for row {r.row}, which does not exist")
    stats.sharing = rejected_prompt_sharing(examples, strategy, seed, requests)
    warn_if_degenerate(stats.sharing, strategy.name)
    texts = {r: render_prompt(tokenizer, build_messages(request_messages(examples[r.row], r), r.context, fmt))
             for r in requests}
    if max_prompt_tokens is not None:
        order = list(texts)
        lengths = backend.prompt_lengths([texts[r] for r in order])
        for r, n in zip(order, lengths):
            if n > max_prompt_tokens:
                ex = examples[r.row]
                what = "context and query" if r.context else "query"
                raise MIPODataError(
                    f"the rendered prompt ({what}) is {n} tokens, longer than the limit of {max_prompt_tokens} "
                    "(sequence_len or mipo.generation.max_prompt_tokens); set mipo.long_prompt: truncate_context "
                    "(keep the context's last tokens) or mipo.long_prompt: skip (drop such rows, counted), "
                    "shorten the context/query, or raise the limit",
                    row=ex.index, field="context" if r.context else "query", source=ex.source or None,
                )
    generated, stats.generation = generate_with_cache(backend, list(texts.values()), cache, progress=progress,
                                                      **(gen_kwargs or {}))
    specials = special_token_strings(tokenizer)
    responses: dict[GenRequest, str] = {r: neutralize(generated[t].text, specials) for r, t in texts.items()}

    pairs = strategy.pair(examples, responses, seed)
    stats.pairs_planned = len(pairs)
    rows: list[dict] = []
    human = any(ex.human_pair is not None for ex in examples)
    for p in pairs:
        if p.chosen not in responses or p.rejected not in responses:
            raise MIPOStrategyError(
                f"strategy {strategy.name!r} paired a generation it did not request in requests(): "
                f"{p.chosen if p.chosen not in responses else p.rejected}"
            )
        chosen, rejected = responses[p.chosen], responses[p.rejected]
        if not chosen.strip() or not rejected.strip():
            stats.dropped_empty += 1
            continue
        if chosen.strip() == rejected.strip():
            # identical responses carry no preference signal
            stats.dropped_identical += 1
            continue
        ex = examples[p.row]
        rows.append(
            {
                "prompt": build_messages(ex.messages, p.prompt_context, fmt),
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "prompt_no_context": build_messages(ex.messages, None, fmt),
                "mipo_strategy": p.meta.get("strategy", strategy.name),  # a mixture's component
                "mipo_row": ex.index,
                "mipo_source": ex.source,
                # a strategy that copied Example.meta must not carry the gold answer into training data
                "mipo_meta": json.dumps(p.meta if _GOLD.isdisjoint(p.meta) else
                                        {k: v for k, v in p.meta.items() if k not in _GOLD},
                                        sort_keys=True, default=str),
            }
        )
        if human:
            hp = ex.human_pair or ("", "")
            rows[-1]["mipo_human_chosen"], rows[-1]["mipo_human_rejected"] = hp
    stats.pairs_kept = len(rows)
    LOG.info(stats.summary())
    if not rows:
        raise MIPODataError(
            f"no usable pairs: {stats.pairs_planned} planned, {stats.dropped_empty} had an empty response and "
            f"{stats.dropped_identical} identical chosen and rejected responses; raise "
            "mipo.generation.max_new_tokens or temperature, or check the chat template"
        )
    return rows, stats
